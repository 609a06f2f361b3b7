"""Webhooks: each alert POSTed as JSON to a URL, signed, retried, never blocking the stream.

The body is ``Alert.to_json()`` encoded once (sorted keys). Headers: ``X-Iotsec-Signature``
(``sha256=<hex>``, HMAC-SHA256 with the webhook's secret over ``"<timestamp>." + body``),
``X-Iotsec-Timestamp`` and ``X-Iotsec-Delivery`` (the same on each retry). 2xx is success;
5xx, 429 (honouring ``Retry-After``), timeouts and connection failures are retried with
backoff; any other answer is a permanent failure. TLS certificates are verified unless the
configuration says otherwise; the secret never appears in logs, errors or ``repr``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson

from iotsec import __version__
from iotsec.analytics.alerts import Alert, AlertStatus
from iotsec.analytics.detection import Severity
from iotsec.analytics.errors import OutputError
from iotsec.analytics.outputs.base import (
    AlertFilter,
    Backoff,
    OutputConfigError,
    QueuedOutput,
    Sleep,
    TransientFailure,
)
from iotsec.analytics.outputs.signing import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    sign,
)

__all__ = ["MIN_SECRET_BYTES", "WebhookConfig", "WebhookOutput", "safe_url"]

log = logging.getLogger("iotsec.analytics.outputs")

MIN_SECRET_BYTES = 16
_EMPTY: Mapping[str, str] = MappingProxyType({})
_RESERVED = {h.lower() for h in (SIGNATURE_HEADER, TIMESTAMP_HEADER, DELIVERY_HEADER)} | {
    "content-type",
    "content-length",
    "host",
}


def safe_url(url: str) -> str:
    """``url`` without user info, query or fragment (they may carry credentials), for logs."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    where = f"{host}:{port}" if port else host
    return f"{parts.scheme}://{where}{parts.path}"


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    """One webhook: where, the signing secret, and how hard to try.

    ``ca_file`` adds a CA bundle to trust (a private CA); ``verify=False`` turns certificate
    checks off (logged as a warning; for labs only).
    """

    url: str
    secret: str = field(repr=False)
    name: str = ""
    timeout: float = 10.0
    attempts: int = 5
    backoff: Backoff = field(default_factory=Backoff)
    queue_size: int = 1000
    concurrency: int = 2
    verify: bool = True
    ca_file: str | None = None
    min_severity: Severity = "Informational"
    statuses: tuple[AlertStatus, ...] = ("Active",)
    headers: Mapping[str, str] = field(default_factory=lambda: _EMPTY)

    def __post_init__(self) -> None:
        label = self.display_name
        parts = urlsplit(self.url)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise OutputConfigError(label, "url must be an http(s) URL with a host")
        if len(self.secret.encode("utf-8")) < MIN_SECRET_BYTES:
            raise OutputConfigError(label, f"secret must be at least {MIN_SECRET_BYTES} bytes")
        if self.timeout <= 0 or self.queue_size < 1:
            raise OutputConfigError(label, "timeout must be > 0 and queue_size >= 1")
        bad = sorted(h for h in self.headers if h.lower() in _RESERVED)
        if bad:
            raise OutputConfigError(label, f"header {bad[0]!r} is set by iotsec")
        AlertFilter(self.min_severity, self.statuses)  # validates both

    @property
    def display_name(self) -> str:
        """The configured name, else the URL without credentials."""
        return self.name or safe_url(self.url)

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, where: str = "webhook") -> WebhookConfig:
        """A webhook from configuration JSON (``url``, ``secret``, ``minSeverity``, ...).

        Raises:
            OutputConfigError: a missing or unknown key, or a bad value (``where`` names it).
        """
        keys = {
            "url": "url",
            "secret": "secret",
            "name": "name",
            "timeout": "timeout",
            "attempts": "attempts",
            "queueSize": "queue_size",
            "concurrency": "concurrency",
            "verify": "verify",
            "caFile": "ca_file",
            "minSeverity": "min_severity",
            "statuses": "statuses",
            "headers": "headers",
        }
        kwargs = _kwargs(data, keys, where, required=("url", "secret"))
        if "statuses" in kwargs:
            kwargs["statuses"] = tuple(kwargs["statuses"])
        try:
            return cls(**kwargs)
        except TypeError as exc:
            raise OutputConfigError(where, str(exc)) from None


def _kwargs(
    data: Mapping[str, Any], keys: Mapping[str, str], where: str, *, required: tuple[str, ...]
) -> dict[str, Any]:
    if not isinstance(data, Mapping):
        raise OutputConfigError(where, "must be a JSON object")
    unknown = sorted(set(data) - set(keys))
    if unknown:
        raise OutputConfigError(
            where, f"unknown key {unknown[0]!r}; known: {', '.join(sorted(keys))}"
        )
    missing = [k for k in required if k not in data]
    if missing:
        raise OutputConfigError(where, f"{missing[0]!r} is required")
    return {keys[k]: v for k, v in data.items()}


class WebhookOutput(QueuedOutput[tuple[str, bytes]]):
    """POSTs alerts to one webhook; an ``AlertSink`` that only queues.

    Args:
        config: The webhook.
        transport: An httpx transport to use instead of the network (tests, proxies).
        clock: Unix time for the signature timestamp and the status.
        sleep: How to wait between retries (tests pass a recorder).
        rng: The jitter's random source (seeded in tests).
    """

    kind = "webhook"

    def __init__(
        self,
        config: WebhookConfig,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
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
            concurrency=config.concurrency,
            clock=clock,
            sleep=sleep,
            rng=rng,
        )
        self.config = config
        self._secret = config.secret.encode("utf-8")
        self._transport = transport
        self._client: httpx.AsyncClient | None = None

    def __repr__(self) -> str:
        return f"WebhookOutput({self.name!r})"

    async def open(self) -> None:
        verify: ssl.SSLContext | bool
        if not self.config.verify:
            log.warning("webhook %s: TLS certificate verification is OFF", self.name)
            verify = False
        else:
            try:
                verify = ssl.create_default_context(cafile=self.config.ca_file)
            except (OSError, ssl.SSLError) as exc:
                reason = f"cannot load the CA file {self.config.ca_file}: {exc}"
                raise OutputConfigError(self.name, reason) from None
        self._client = httpx.AsyncClient(
            transport=self._transport,
            verify=verify,
            timeout=self.config.timeout,
            follow_redirects=False,
            headers={"User-Agent": f"iotsec/{__version__}"},
        )

    async def shutdown(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    @staticmethod
    def body(alert: Alert) -> bytes:
        """The JSON body sent for ``alert``."""
        return orjson.dumps(alert.to_json(), option=orjson.OPT_SORT_KEYS)

    def prepare(self, alert: Alert) -> tuple[str, bytes]:
        # One delivery id and body for all attempts; each attempt signs with a fresh timestamp.
        return str(uuid.uuid4()), self.body(alert)

    async def attempt(self, alert: Alert, prepared: tuple[str, bytes]) -> None:
        client = self._client
        if client is None:
            raise OutputError(self.name, "not started")
        delivery, body = prepared
        stamp = int(self.clock())
        headers = {
            **self.config.headers,
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: str(stamp),
            SIGNATURE_HEADER: sign(self._secret, stamp, body),
            DELIVERY_HEADER: delivery,
        }
        try:
            response = await client.post(self.config.url, content=body, headers=headers)
        except httpx.TimeoutException:
            raise TransientFailure(self.name, "timed out") from None
        except httpx.TransportError as exc:
            # The exception text names the host and the failure, never our headers.
            reason = f"{type(exc).__name__}: {exc}"[:300]
            if _certificate_refused(exc):
                raise OutputError(self.name, f"{reason} (TLS certificate; not retried)") from None
            raise TransientFailure(self.name, reason) from None
        status = response.status_code
        if 200 <= status < 300:
            return
        reason = f"HTTP {status}"
        if status == 429 or status >= 500:
            raise TransientFailure(self.name, reason, retry_after=_retry_after(response))
        raise OutputError(self.name, f"{reason} (not retried)")


def _certificate_refused(exc: BaseException) -> bool:
    """True when the server's certificate failed verification (retrying cannot help)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLCertVerificationError):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    return float(value) if value.isascii() and value.isdigit() else None
