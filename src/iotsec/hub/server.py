"""The hub process: opens the stores, makes the PKI, and serves MQTT and HTTPS until stopped.

Everything the hub keeps lives in the data dir::

    registry.db      devices, modules, twins, policies, hub configuration, custom alerts
    log.db           the durable log (device messages, operation logs, dead letters)
    c2d.db           cloud-to-device queues
    deadletters.db   the operator's copy of refused messages
    tls/             local CA and server certificate (client-ca/, device-certs/: trusted certs;
                     client-ca/ is managed through the service API's /certificates)
    owner.credential the iothubowner policy connection string (0600)
    server.json      where the running hub listens, for the CLI
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import signal
import socket
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.routing import BaseRoute

from iotsec.hub.auth import Authenticator
from iotsec.hub.c2d import C2dQueue
from iotsec.hub.certificates import CaCertificate, CaCertificateStore
from iotsec.hub.customalerts import CustomAlertValidator, check_shape
from iotsec.hub.deadletters import DeadLetterStore
from iotsec.hub.errors import AuthFailure, AuthFailureReason
from iotsec.hub.http.app import build_app
from iotsec.hub.http.context import HubContext
from iotsec.hub.http.server import https_server
from iotsec.hub.hubconfig import HubConfiguration
from iotsec.hub.identity import Permission
from iotsec.hub.ingest import TELEMETRY_FLUSH_SECONDS, Ingestor
from iotsec.hub.mqtt.server import MqttEndpoint
from iotsec.hub.oplog import OperationLog, OperationLogEntry
from iotsec.hub.pki import HubPki, ensure_owner_credential, ensure_pki, load_certificates
from iotsec.hub.ratelimit import RateLimiter
from iotsec.hub.registry import SqliteRegistry
from iotsec.hub.settings import HubSettings
from iotsec.hub.tls import ServerTls
from iotsec.stream import SqliteLog

__all__ = ["HubServer"]

log = logging.getLogger("iotsec.hub")

Progress = Callable[[str], None]


def _quiet(_message: str) -> None:
    return None


class HubServer:
    """One hub: ``await start()``, then ``await serve_forever()`` or ``await stop()``."""

    def __init__(
        self,
        settings: HubSettings,
        *,
        clock: Callable[[], float] = time.time,
        on_progress: Progress = _quiet,
        extra_routes: Sequence[BaseRoute] = (),
        custom_alert_validator: CustomAlertValidator = check_shape,
    ) -> None:
        self.settings = settings
        self._extra_routes = tuple(extra_routes)
        self._validate_custom_alerts = custom_alert_validator
        self.clock = clock
        self._say = on_progress
        self._stopping = asyncio.Event()
        self._https_task: asyncio.Task[None] | None = None
        self._telemetry_task: asyncio.Task[None] | None = None
        self.mqtt_port = 0
        self.https_port = 0

    async def start(self) -> None:
        """Open everything and start both listeners; writes ``server.json`` when serving."""
        s = self.settings
        raise_open_file_limit()
        s.data_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(s.data_dir, 0o700)
        if s.tls_cert is not None and s.tls_key is not None:
            self.pki = HubPki.from_files(s.tls_cert, s.tls_key)
        else:
            names = sorted({s.public_host, socket.gethostname()} - {"localhost"})
            self.pki = await asyncio.to_thread(
                ensure_pki, s.data_dir, host_names=names, on_progress=self._say
            )
        self.registry = SqliteRegistry(s.data_dir / "registry.db")
        owner = self.registry.policy("iothubowner")
        assert owner is not None  # the registry creates the default policies on first open
        ensure_owner_credential(s.data_dir, host_name=s.public_host, key=owner.keys.primary)
        self.log = await SqliteLog.open(s.data_dir / "log.db")
        self.oplog = OperationLog(self.log)
        self.deadletters = DeadLetterStore(s.data_dir / "deadletters.db")
        self.c2d = C2dQueue(s.data_dir / "c2d.db", clock=self.clock)
        config = self.registry.hub_configuration()
        self.limiter = RateLimiter(rate=config.rate_per_device, burst=config.rate_burst)
        # Device certificates may chain to the hub's own CA or to any CA the operator added
        # (tls/client-ca/, changed at run time through the certificates API).
        own_ca = [self.pki.ca] if self.pki.ca is not None else []
        self._own_cas = [cert for path in own_ca for cert in load_certificates(path)]
        self.certificates = CaCertificateStore(
            s.tls_dir / "client-ca", on_change=self._certificates_changed, clock=self.clock
        )
        device_certs = [p.read_bytes() for p in sorted((s.tls_dir / "device-certs").glob("*.pem"))]
        self.authenticator = Authenticator(
            self.registry,
            hub_host=s.public_host,
            clock=self.clock,
            ca_certificates=[*self._own_cas, *self.certificates.trusted()],
            host_aliases=sorted({"localhost", "127.0.0.1", socket.gethostname(), s.hub_name}),
        )
        self.tls = ServerTls(
            self.pki,
            config,
            client_ca=own_ca,
            ca_certificates=_pem(self.certificates.entries()),
            device_certificates=device_certs,
        )
        self.ssl_context = self.tls.context
        self.ingestor = Ingestor(self.log, self.deadletters, self.limiter, clock=self.clock)
        self.mqtt = MqttEndpoint(
            registry=self.registry,
            authenticator=self.authenticator,
            ingestor=self.ingestor,
            c2d=self.c2d,
            oplog=self.oplog,
            hub_host=s.public_host,
            ssl_context=self.ssl_context,
            host=s.host,
            port=s.mqtt_port,
            clock=self.clock,
        )
        context = HubContext(
            registry=self.registry,
            authenticator=self.authenticator,
            ingestor=self.ingestor,
            c2d=self.c2d,
            deadletters=self.deadletters,
            oplog=self.oplog,
            hub_name=s.hub_name,
            hub_host=s.public_host,
            notify_c2d=self.mqtt.notify_c2d,
            notify_desired=self.mqtt.notify_desired,
            certificates=self.certificates,
            clock=self.clock,
            is_connected=self._is_connected,
            notify_configuration=self._configuration_changed,
            validate_custom_alerts=self._validate_custom_alerts,
        )
        server, sock = https_server(
            build_app(context, self._extra_routes), self.ssl_context, host=s.host, port=s.https_port
        )
        self._uvicorn = server
        self.https_port = int(sock.getsockname()[1])
        await self.mqtt.start()
        self.mqtt_port = self.mqtt.port
        self._telemetry_task = asyncio.get_running_loop().create_task(
            self.ingestor.flush_telemetry_every(TELEMETRY_FLUSH_SECONDS)
        )
        self._https_task = asyncio.get_running_loop().create_task(server.serve([sock]))
        while not server.started:
            if self._https_task.done():
                self._https_task.result()  # raises what stopped it
            await asyncio.sleep(0.01)
        self._write_info()
        await self.oplog.record(
            OperationLogEntry(
                time=self.clock(),
                category="Configurations",
                operation="hub-start",
                protocol="cli",
                properties={"mqttPort": str(self.mqtt_port), "httpsPort": str(self.https_port)},
            )
        )

    def info(self) -> dict[str, Any]:
        """What ``iotsec info`` prints and the CLI reads: names, URLs, CA, device host."""
        s = self.settings
        host = s.public_host
        return {
            "hub_name": s.hub_name,
            "resource_id": s.resource_id,
            "device_host": host,
            "mqtt_url": f"mqtts://{host}:{self.mqtt_port}",
            "https_url": f"https://{host}:{self.https_port}",
            "service_url": f"https://{host}:{self.https_port}",
            "mqtt_port": self.mqtt_port,
            "https_port": self.https_port,
            "bind_host": s.host,
            "ca_file": str(self.pki.ca.resolve()) if self.pki.ca else None,
            "data_dir": str(s.data_dir.resolve()),
            "owner_credential": str((s.data_dir / "owner.credential").resolve()),
            "pid": os.getpid(),
            "started": self.clock(),
        }

    def _write_info(self) -> None:
        path = self.settings.data_dir / "server.json"
        temporary = path.with_suffix(".json.tmp")
        temporary.write_bytes(orjson.dumps(self.info(), option=orjson.OPT_INDENT_2))
        temporary.replace(path)

    def _is_connected(self, device_id: str, module_id: str | None) -> bool:
        key = device_id if module_id is None else f"{device_id}/{module_id}"
        return key in self.mqtt.sessions

    def _configuration_changed(self, config: HubConfiguration) -> None:
        self.limiter.configure(rate=config.rate_per_device, burst=config.rate_burst)
        # New handshakes use the new minimum; live connections keep what they negotiated.
        self.tls.configure(config)

    def _certificates_changed(self, certificates: Sequence[CaCertificate]) -> None:
        # New handshakes trust exactly the new set, and so does the check after them; live
        # connections keep going.
        self.tls.trust(_pem(certificates))
        self.authenticator.trust_cas(
            [*self._own_cas, *(c for entry in certificates for c in entry.certificates)]
        )

    async def authorize_service(self, request: Request, permission: Permission) -> None:
        """Refuse (with an IoT Hub error answer) a request whose policy token lacks ``permission``.

        For APIs mounted with ``extra_routes`` (the workspace's query API).
        """
        address = request.client.host if request.client is not None else "unknown"
        token = request.headers.get("authorization")
        try:
            if token is None:
                raise AuthFailure(
                    AuthFailureReason.NO_CREDENTIALS, "a shared access policy token is required"
                )
            self.authenticator.authenticate_service(token, permission=permission, source_ip=address)
        except AuthFailure as failure:
            status = (
                403
                if failure.reason
                in (AuthFailureReason.IP_FILTERED, AuthFailureReason.INSUFFICIENT_PERMISSION)
                else 401
            )
            self.oplog.record_soon(
                OperationLogEntry(
                    time=self.clock(),
                    category="Connections",
                    operation="authenticate",
                    result="Failure",
                    protocol="service",
                    source_ip=address,
                    reason=failure.reason.value,
                )
            )
            raise HTTPException(status, f"{failure.reason.value}: not authorized") from None

    def request_stop(self) -> None:
        """Ask ``serve_forever`` to return (signal handlers call this)."""
        self._stopping.set()

    def install_stop_signals(self) -> None:
        """Turn SIGINT/SIGTERM into ``request_stop`` (so a signal during start-up stops cleanly)."""
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signum, self.request_stop)

    async def wait_for_stop_request(self) -> None:
        """Return on SIGINT/SIGTERM (or ``request_stop``); the hub keeps serving meanwhile."""
        self.install_stop_signals()
        await self._stopping.wait()

    async def serve_forever(self) -> None:
        """Serve until SIGINT/SIGTERM (or ``request_stop``), then stop cleanly."""
        try:
            await self.wait_for_stop_request()
        finally:
            await self.stop()

    async def stop(self) -> None:
        """Close the listeners, finish pending writes, close the stores."""
        await self.mqtt.stop()
        self._uvicorn.should_exit = True
        if self._https_task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(self._https_task, 10)
        if self._telemetry_task is not None:
            self._telemetry_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._telemetry_task
        await self.ingestor.flush_telemetry()
        await self.oplog.record(
            OperationLogEntry(
                time=self.clock(), category="Configurations", operation="hub-stop", protocol="cli"
            )
        )
        await self.oplog.drain()
        await self.log.close()
        self.c2d.close()
        self.deadletters.close()
        self.registry.close()


def _pem(certificates: Sequence[CaCertificate]) -> list[bytes]:
    return [entry.pem.encode("ascii") for entry in certificates]


def raise_open_file_limit() -> int:
    """Raise the soft limit on open files to the hard limit (each device holds a socket).

    An unlimited hard limit is not a valid soft limit on Linux; the kernel's own ceiling,
    ``/proc/sys/fs/nr_open``, is used then. Returns the soft limit now in force.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard
    if hard == resource.RLIM_INFINITY:
        try:
            target = int(Path("/proc/sys/fs/nr_open").read_text())
        except (OSError, ValueError):
            log.warning("the open-file hard limit is unlimited and nr_open is unreadable")
            return soft
    if soft != resource.RLIM_INFINITY and soft >= target:
        log.info("open-file limit: %d", soft)
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (OSError, ValueError) as exc:
        log.warning("could not raise the open-file limit from %d to %d: %s", soft, target, exc)
        return soft
    log.info("open-file limit raised from %d to %d", soft, target)
    return target
