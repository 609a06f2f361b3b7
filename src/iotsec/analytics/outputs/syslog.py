"""Syslog: alerts as RFC 5424 or CEF messages over UDP, TCP or TLS.

UDP sends one message per datagram (RFC 5426). TCP and TLS (RFC 5425) keep one connection and
frame each message by octet counting (RFC 6587: ``<length> SP <message>``); a connection that
fails, or that the receiver closed, is dropped and opened again on the next attempt, with
backoff. Syslog has no acknowledgements: a message written into a connection the receiver is
closing at that moment can be lost without an error; use the webhook output where that matters.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from iotsec.analytics.alerts import Alert, AlertStatus
from iotsec.analytics.detection import Severity
from iotsec.analytics.outputs.base import (
    AlertFilter,
    Backoff,
    OutputConfigError,
    QueuedOutput,
    Sleep,
    TransientFailure,
)
from iotsec.analytics.outputs.syslog_format import (
    FACILITIES,
    cef_message,
    format_rfc5424,
    frame_octet_counted,
)

__all__ = ["SyslogConfig", "SyslogFormat", "SyslogOutput", "SyslogTransport"]

log = logging.getLogger("iotsec.analytics.outputs")

SyslogTransport = Literal["udp", "tcp", "tls"]
SyslogFormat = Literal["rfc5424", "cef"]
_DEFAULT_PORTS = {"udp": 514, "tcp": 514, "tls": 6514}


@dataclass(frozen=True, slots=True)
class SyslogConfig:
    """One syslog destination: where, how, in which format.

    ``facility`` is a number (0-23) or a name (``authpriv``, ``local0``, ...). For TLS,
    ``ca_file`` is the CA to trust (the system's when None), ``cert_file``/``key_file`` a client
    certificate, and ``server_name`` the name the certificate must carry (the host's by default).
    """

    host: str
    port: int | None = None
    transport: SyslogTransport = "udp"
    format: SyslogFormat = "rfc5424"
    facility: int | str = "authpriv"
    hostname: str | None = None
    app_name: str = "iotsec"
    name: str = ""
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    verify: bool = True
    server_name: str | None = None
    timeout: float = 10.0
    attempts: int = 5
    backoff: Backoff = field(default_factory=Backoff)
    queue_size: int = 10_000
    max_message_bytes: int = 8192
    min_severity: Severity = "Informational"
    statuses: tuple[AlertStatus, ...] = ("Active",)

    def __post_init__(self) -> None:
        label = self.display_name
        if not self.host:
            raise OutputConfigError(label, "host is required")
        if self.transport not in _DEFAULT_PORTS:
            raise OutputConfigError(label, "transport must be udp, tcp or tls")
        if self.format not in ("rfc5424", "cef"):
            raise OutputConfigError(label, "format must be rfc5424 or cef")
        if self.port is not None and not 0 < self.port < 65536:
            raise OutputConfigError(label, "port must be 1..65535")
        self.facility_code  # noqa: B018 - validates the facility
        if (self.cert_file is None) != (self.key_file is None):
            raise OutputConfigError(label, "give both cert_file and key_file, or neither")
        if self.timeout <= 0 or self.queue_size < 1 or self.max_message_bytes < 480:
            # RFC 5424 section 6.1: receivers must accept 480 octets; less cannot be useful.
            raise OutputConfigError(
                label, "timeout must be > 0, queue_size >= 1 and max_message_bytes >= 480"
            )
        AlertFilter(self.min_severity, self.statuses)

    @property
    def display_name(self) -> str:
        """The configured name, else ``transport://host:port``."""
        return self.name or f"{self.transport}://{self.host}:{self.effective_port}"

    @property
    def effective_port(self) -> int:
        """The port, or the transport's default (514, TLS 6514)."""
        return self.port if self.port is not None else _DEFAULT_PORTS.get(self.transport, 514)

    @property
    def facility_code(self) -> int:
        """The facility as a number."""
        if isinstance(self.facility, int) and not isinstance(self.facility, bool):
            if 0 <= self.facility <= 23:
                return self.facility
        elif isinstance(self.facility, str) and self.facility in FACILITIES:
            return FACILITIES[self.facility]
        raise OutputConfigError(
            self.display_name,
            f"facility must be 0..23 or one of {', '.join(FACILITIES)}, not {self.facility!r}",
        )

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, where: str = "syslog") -> SyslogConfig:
        """A destination from configuration JSON (``host``, ``port``, ``transport``, ...).

        Raises:
            OutputConfigError: a missing or unknown key, or a bad value (``where`` names it).
        """
        keys = {
            "host": "host",
            "port": "port",
            "transport": "transport",
            "format": "format",
            "facility": "facility",
            "hostname": "hostname",
            "appName": "app_name",
            "name": "name",
            "caFile": "ca_file",
            "certFile": "cert_file",
            "keyFile": "key_file",
            "verify": "verify",
            "serverName": "server_name",
            "timeout": "timeout",
            "attempts": "attempts",
            "queueSize": "queue_size",
            "maxMessageBytes": "max_message_bytes",
            "minSeverity": "min_severity",
            "statuses": "statuses",
        }
        if not isinstance(data, Mapping):
            raise OutputConfigError(where, "must be a JSON object")
        unknown = sorted(set(data) - set(keys))
        if unknown:
            raise OutputConfigError(
                where, f"unknown key {unknown[0]!r}; known: {', '.join(sorted(keys))}"
            )
        if "host" not in data:
            raise OutputConfigError(where, "'host' is required")
        kwargs = {keys[k]: v for k, v in data.items()}
        if "statuses" in kwargs:
            kwargs["statuses"] = tuple(kwargs["statuses"])
        try:
            return cls(**kwargs)
        except TypeError as exc:
            raise OutputConfigError(where, str(exc)) from None


class _Datagrams(asyncio.DatagramProtocol):
    """Keeps the error a connected UDP socket reports (ICMP port unreachable) for the next send."""

    def __init__(self) -> None:
        self.error: Exception | None = None

    def error_received(self, exc: Exception) -> None:
        self.error = exc


class SyslogOutput(QueuedOutput[bytes]):
    """Sends alerts to one syslog receiver; an ``AlertSink`` that only queues."""

    kind = "syslog"

    def __init__(
        self,
        config: SyslogConfig,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(
            config.display_name,
            queue_size=config.queue_size,
            attempts=config.attempts,
            backoff=config.backoff,
            alert_filter=AlertFilter(config.min_severity, config.statuses),
            concurrency=1,  # one connection, messages in order
            clock=clock,
            sleep=sleep,
            rng=rng,
        )
        self.config = config
        self.hostname = config.hostname or socket.gethostname()
        self._facility = config.facility_code
        self._ssl: ssl.SSLContext | None = None
        self._udp: asyncio.DatagramTransport | None = None
        self._udp_protocol: _Datagrams | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    def __repr__(self) -> str:
        return f"SyslogOutput({self.name!r})"

    def message(self, alert: Alert) -> bytes:
        """``alert`` in the configured format, unframed."""
        c = self.config
        if c.format == "cef":
            return cef_message(
                alert,
                hostname=self.hostname,
                facility=self._facility,
                app_name=c.app_name,
                max_bytes=c.max_message_bytes,
            )
        return format_rfc5424(
            alert,
            hostname=self.hostname,
            facility=self._facility,
            app_name=c.app_name,
            max_bytes=c.max_message_bytes,
        )

    def prepare(self, alert: Alert) -> bytes:
        message = self.message(alert)
        return message if self.config.transport == "udp" else frame_octet_counted(message)

    async def open(self) -> None:
        c = self.config
        if c.transport != "tls":
            return
        try:
            context = ssl.create_default_context(cafile=c.ca_file)
        except (OSError, ssl.SSLError) as exc:
            reason = f"cannot load the CA file {c.ca_file}: {exc}"
            raise OutputConfigError(self.name, reason) from None
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if c.cert_file is not None and c.key_file is not None:
            try:
                context.load_cert_chain(c.cert_file, c.key_file)
            except (OSError, ssl.SSLError) as exc:
                reason = f"cannot load the client certificate: {exc}"
                raise OutputConfigError(self.name, reason) from None
        if not c.verify:
            log.warning("syslog %s: TLS certificate verification is OFF", self.name)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        self._ssl = context

    async def shutdown(self) -> None:
        writer = self._writer
        self._drop_connection()
        if writer is not None:
            with contextlib.suppress(OSError, TimeoutError, ssl.SSLError):  # closing anyway
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def attempt(self, alert: Alert, prepared: bytes) -> None:
        try:
            if self.config.transport == "udp":
                await self._send_datagram(prepared)
            else:
                await self._send_stream(prepared)
        except TransientFailure:
            self._drop_connection()
            raise
        except (OSError, TimeoutError, ssl.SSLError, EOFError) as exc:
            self._drop_connection()
            reason = f"{type(exc).__name__}: {exc}"[:300]
            raise TransientFailure(self.name, reason) from None

    async def _send_datagram(self, message: bytes) -> None:
        c = self.config
        if self._udp is None or self._udp.is_closing():
            loop = asyncio.get_running_loop()
            transport, protocol = await loop.create_datagram_endpoint(
                _Datagrams, remote_addr=(c.host, c.effective_port)
            )
            self._udp, self._udp_protocol = transport, protocol
        assert self._udp_protocol is not None
        if self._udp_protocol.error is not None:
            error, self._udp_protocol.error = self._udp_protocol.error, None
            raise TransientFailure(self.name, f"the receiver reported: {error}")
        self._udp.sendto(message)

    async def _send_stream(self, frame: bytes) -> None:
        c = self.config
        if self._reader is not None and self._reader.at_eof():
            self._drop_connection()  # the receiver closed it
        writer = self._writer
        if writer is None:
            server_name = (c.server_name or c.host) if self._ssl is not None else None
            reader, opened = await asyncio.wait_for(
                asyncio.open_connection(
                    c.host, c.effective_port, ssl=self._ssl, server_hostname=server_name
                ),
                c.timeout,
            )
            self._reader, self._writer = reader, opened
            writer = opened
        writer.write(frame)
        await asyncio.wait_for(writer.drain(), c.timeout)

    def _drop_connection(self) -> None:
        if self._writer is not None:
            with contextlib.suppress(OSError, RuntimeError):  # already broken: nothing to save
                self._writer.close()
        self._reader = self._writer = None
        if self._udp is not None:
            self._udp.close()
        self._udp = self._udp_protocol = None
