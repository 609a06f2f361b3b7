"""Fixtures of the hub tests. HTTPS API fixtures are prefixed ``http_``."""

from __future__ import annotations

import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509

from iotsec.hub.auth import Authenticator
from iotsec.hub.c2d import C2dQueue
from iotsec.hub.certificates import CaCertificate, CaCertificateStore
from iotsec.hub.deadletters import DeadLetterStore
from iotsec.hub.http import HubContext, build_app
from iotsec.hub.hubconfig import HubConfiguration
from iotsec.hub.ingest import Ingestor
from iotsec.hub.oplog import OPLOG_KIND, OperationLog, OperationLogEntry
from iotsec.hub.ratelimit import RateLimiter
from iotsec.hub.registry import SqliteRegistry
from iotsec.protocol import generate_sas_token, resource_uri
from iotsec.stream import MemoryLog, Record
from tests.tls import LoopbackPki

#: The host name devices and services put in their tokens (the loopback server certificate's).
HTTP_HOST = "localhost"


class HttpClock:
    """A settable clock, starting at the real time (so test certificates are valid)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class HttpHub:
    """A hub's HTTPS application over real components in a temp dir, and helpers to drive it."""

    context: HubContext
    registry: SqliteRegistry
    durable: MemoryLog
    limiter: RateLimiter
    clock: HttpClock
    c2d_pushes: list[str] = field(default_factory=list)
    desired_pushes: list[tuple[str, str | None, dict[str, Any]]] = field(default_factory=list)
    configurations: list[HubConfiguration] = field(default_factory=list)

    @property
    def app(self) -> Any:
        return build_app(self.context)

    def device_token(
        self,
        device_id: str,
        module_id: str | None = None,
        *,
        key: str | None = None,
        ttl: float = 3600,
    ) -> str:
        """A SAS token signed with the identity's primary key (or ``key``)."""
        if key is None:
            identity = self.registry.identity(device_id, module_id)
            assert identity is not None and identity.keys is not None
            key = identity.keys.primary
        uri = resource_uri(HTTP_HOST, device_id, module_id)
        return generate_sas_token(uri, key, int(self.clock.now + ttl))

    def service_token(self, policy: str = "iothubowner", *, ttl: float = 3600) -> str:
        """A policy token for the whole hub."""
        found = self.registry.policy(policy)
        assert found is not None
        return generate_sas_token(HTTP_HOST, found.keys.primary, int(self.clock.now + ttl), policy)

    def service(self, policy: str = "iothubowner") -> dict[str, str]:
        """Headers of a service call."""
        return {"Authorization": self.service_token(policy)}

    def device(self, device_id: str, module_id: str | None = None) -> dict[str, str]:
        """Headers of a device call."""
        return {"Authorization": self.device_token(device_id, module_id)}

    async def records(self, kind: str | None = None) -> list[Record]:
        """What was appended to the durable log (of ``kind``), by partition, then offset."""
        await self.context.oplog.drain()
        found: list[Record] = []
        for partition in range(self.durable.partitions):
            entries = await self.durable.read(partition, 0, 100_000)
            found += [e.record for e in entries if kind is None or e.record.kind == kind]
        return found

    async def oplog(self) -> list[OperationLogEntry]:
        """The operation-log entries written so far."""
        return [OperationLog.decode(r.body) for r in await self.records(OPLOG_KIND)]


@pytest.fixture
def http_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory for the hub's SQLite files: in RAM (``/dev/shm``) where there is one.

    The files are real SQLite files either way; RAM only makes their fsyncs free, which takes
    the hub fixture from ~150 ms to a few ms on a disk with slow syncs.
    """
    shm = Path("/dev/shm")  # a private temp dir is made inside it
    if not shm.is_dir():
        yield tmp_path
        return
    with tempfile.TemporaryDirectory(dir=shm, prefix="iotsec-http-") as directory:
        yield Path(directory)


@pytest.fixture
def http_hub(http_dir: Path, pki: LoopbackPki) -> Iterator[HttpHub]:
    """Registry, authenticator, ingestor, queues and logs in ``http_dir``, with dev1 and mod1."""
    tmp_path = http_dir
    clock = HttpClock()
    registry = SqliteRegistry(tmp_path / "registry.db")
    ca = x509.load_pem_x509_certificate(pki.ca.cert.read_bytes())
    authenticator = Authenticator(
        registry, hub_host=HTTP_HOST, clock=clock, ca_certificates=[ca], host_aliases=["127.0.0.1"]
    )
    durable = MemoryLog(partitions=2)
    deadletters = DeadLetterStore(tmp_path / "deadletters.db")
    limiter = RateLimiter(rate=1000, burst=1000, clock=clock)
    c2d = C2dQueue(tmp_path / "c2d.db", clock=clock)

    def certificates_changed(certificates: Sequence[CaCertificate]) -> None:
        authenticator.trust_cas([ca, *(c for entry in certificates for c in entry.certificates)])

    store = CaCertificateStore(
        tmp_path / "tls" / "client-ca", on_change=certificates_changed, clock=clock
    )
    hub = HttpHub(
        context=None,  # type: ignore[arg-type]  # set below, once the callbacks exist
        registry=registry,
        durable=durable,
        limiter=limiter,
        clock=clock,
    )
    hub.context = HubContext(
        registry=registry,
        authenticator=authenticator,
        ingestor=Ingestor(durable, deadletters, limiter, clock=clock),
        c2d=c2d,
        deadletters=deadletters,
        oplog=OperationLog(durable),
        hub_name="testhub",
        hub_host=HTTP_HOST,
        notify_c2d=hub.c2d_pushes.append,
        notify_desired=lambda d, m, p: hub.desired_pushes.append((d, m, p)),
        notify_configuration=hub.configurations.append,
        certificates=store,
        clock=clock,
    )
    registry.create_device("dev1")
    registry.create_module("dev1", "mod1")
    yield hub
    c2d.close()
    deadletters.close()
    registry.close()


@pytest.fixture
async def http_client(http_hub: HttpHub) -> AsyncIterator[httpx.AsyncClient]:
    """An in-process client of ``http_hub``'s application."""
    transport = httpx.ASGITransport(app=http_hub.app)
    async with httpx.AsyncClient(transport=transport, base_url="https://localhost") as client:
        yield client
    await http_hub.context.oplog.drain()
