"""A whole system for analytics' end-to-end tests: hub, workspace and analytics in this process.

``RunningSystem`` is ``iotsec up`` without the console (``System``), on loopback ports the OS
picks, in a temporary data dir whose ``analytics.yaml`` loads the simulator's STIX bundle as a
``stix-file`` feed. Tests reach it only as a deployment is reached: devices are registered
through the service API, send their security messages through the SDK over TLS MQTT with their
security module's SAS connection string, and results are read back with KQL through the
workspace's query API. Two looks inside are allowed, both to wait rather than to sleep: the
durable log's end offsets and consumer positions (has everything sent been consumed?), and the
feed manager's first load (is the STIX feed in before the attack is sent?).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import pytest_asyncio

from iotsec.analytics.pipeline import CONSUMER as ANALYTICS
from iotsec.cli.device_cmd import SECURITY_MODULE, connection_string
from iotsec.cli.query_cmd import QUERY_PATH
from iotsec.cli.service_client import API_VERSION
from iotsec.cli.system import System
from iotsec.hub.settings import HubSettings
from iotsec.protocol import generate_sas_token
from iotsec.schema import Event
from iotsec.sdk import AsyncDeviceClient, RetryPolicy
from iotsec.simulate import SimDevice, scenario_indicators
from iotsec.stream import SqliteLog
from iotsec.workspace.ingest import CONSUMER as WORKSPACE

HUB_NAME = "e2e-hub"
FEED_NAME = "demo-stix"
#: The configuration the system starts with: the simulator's STIX bundle as a feed.
ANALYTICS_YAML = f"""\
feeds:
  - name: {FEED_NAME}
    kind: stix-file
    path: demo-feed.json
"""


class ServiceApi:
    """The hub's service API (and the workspace's query API) as the owner, over HTTPS."""

    def __init__(self, data_dir: Path) -> None:
        info: dict[str, Any] = orjson.loads((data_dir / "server.json").read_bytes())
        text = (data_dir / "owner.credential").read_text("utf-8").strip()
        self._owner = dict(part.split("=", 1) for part in text.split(";") if "=" in part)
        self.info = info
        self._client = httpx.AsyncClient(
            base_url=info["service_url"],
            verify=ssl.create_default_context(cafile=info["ca_file"]),
            timeout=30.0,
        )

    async def close(self) -> None:
        await self._client.aclose()

    def _token(self) -> str:
        owner = self._owner
        expiry = int(time.time()) + 300
        return generate_sas_token(
            owner["HostName"], owner["SharedAccessKey"], expiry, owner["SharedAccessKeyName"]
        )

    async def request(
        self, method: str, path: str, *, body: Any = None, headers: Mapping[str, str] = {}
    ) -> Any:
        """One call; the decoded JSON answer (None for no content). Fails the test on >= 400."""
        response = await self._client.request(
            method,
            path,
            params={"api-version": API_VERSION},
            content=None if body is None else orjson.dumps(body),
            headers={"Authorization": self._token(), "Content-Type": "application/json", **headers},
        )
        assert response.status_code < 400, (
            f"{method} {path}: {response.status_code} {response.text}"
        )
        return orjson.loads(response.content) if response.content else None

    async def query(self, kql: str) -> list[dict[str, Any]]:
        """A KQL query's rows, as dicts by column name."""
        answer = await self.request("POST", QUERY_PATH, body={"query": kql, "language": "kql"})
        assert not answer.get("truncated"), answer.get("reason")
        names = [c["name"] for c in answer["columns"]]
        return [dict(zip(names, row, strict=True)) for row in answer["rows"]]

    async def register(self, device: SimDevice) -> str:
        """Create ``device`` (the hub adds its security module), tag its twin with its group and
        tags, as ``iotsec simulate`` does; returns the security module's connection string."""
        device_id = device.device_id
        await self.request(
            "PUT",
            f"/devices/{device_id}",
            body={"deviceId": device_id, "status": "enabled"},
            headers={"If-None-Match": "*"},
        )
        tags = {"SecurityGroup": device.group, **dict(device.tags)}
        await self.request("PATCH", f"/twins/{device_id}", body={"tags": tags})
        module = await self.request("GET", f"/devices/{device_id}/modules/{SECURITY_MODULE}")
        return connection_string(self.info["device_host"], module, SECURITY_MODULE)


@dataclass
class RunningSystem:
    """A started ``System`` (hub, workspace, analytics; no console) and how tests use it."""

    data_dir: Path
    system: System | None = None
    api: ServiceApi | None = None
    #: Connection strings of the devices registered so far, by device id.
    credentials: dict[str, str] = field(default_factory=dict)

    @property
    def service(self) -> ServiceApi:
        assert self.api is not None, "the system is not running"
        return self.api

    async def start(self) -> None:
        """Start the system on the data dir (again, after ``stop``) and wait for the feed."""
        settings = HubSettings(
            data_dir=self.data_dir,
            hub_name=HUB_NAME,
            mqtt_port=0,
            https_port=0,
            local_agent=False,
        )
        system = System(settings, on_progress=lambda _line: None, console=False)
        await system.start()
        self.system = system
        self.api = ServiceApi(self.data_dir)
        assert system.analytics is not None and system.analytics.feeds is not None
        assert await asyncio.to_thread(system.analytics.feeds.wait_loaded, 30)
        [status] = system.analytics.feeds.status()
        assert status.ok and status.indicators == 3, status

    async def stop(self) -> None:
        """Stop the system as SIGTERM does (state saved, logs closed)."""
        if self.api is not None:
            await self.api.close()
            self.api = None
        if self.system is not None:
            system, self.system = self.system, None
            await system.stop()

    async def register(self, devices: Iterable[SimDevice]) -> None:
        for device in devices:
            self.credentials[device.device_id] = await self.service.register(device)

    async def send(self, device: SimDevice, events: Sequence[Event]) -> int:
        """Send ``events`` from ``device``'s agent, in order, packed into as few security
        messages as fit (the SDK's 256 KB limit), each acked by the hub; returns messages."""
        info = self.service.info
        client = AsyncDeviceClient.from_connection_string(
            self.credentials[device.device_id],
            transport="mqtt",
            ca_file=info["ca_file"],
            port=int(info["mqtt_port"]),
            agent_id=device.agent_id,
            retry=RetryPolicy(max_attempts=3, max_delay=2.0),
        )
        async with client:
            return len(await client.send_security_message(events))

    async def wait_consumed(self, timeout: float = 30.0) -> None:
        """Wait until analytics and the workspace consumed the log as far as it is now.

        Analytics commits a position only after its alerts reached the workspace, so once it
        is at the end, every alert for what was sent so far is queryable.
        """
        system = self.system
        assert system is not None
        log = system.hub.log
        await system.hub.oplog.drain()
        ends = [await log.end_offset(p) for p in range(log.partitions)]
        deadline = time.monotonic() + timeout
        while True:
            behind = [
                (consumer, p)
                for consumer in (ANALYTICS, WORKSPACE)
                for p in range(log.partitions)
                if await log.position(consumer, p) < ends[p]
            ]
            if not behind:
                return
            assert time.monotonic() < deadline, f"not consumed within {timeout} s: {behind}"
            await asyncio.sleep(0.05)

    async def settle(self, kql: str, *, quiet: float = 1.5, timeout: float = 30.0) -> Any:
        """Wait until the log is consumed, then until ``kql`` answers the same for ``quiet``
        seconds (longer than analytics' tick, whose detectors fire on time rather than on
        events); returns those rows."""
        await self.wait_consumed(timeout)
        deadline = time.monotonic() + timeout
        rows = await self.service.query(kql)
        while True:
            await asyncio.sleep(quiet)
            again = await self.service.query(kql)
            if again == rows:
                return rows
            assert time.monotonic() < deadline, f"{kql} did not settle within {timeout} s"
            rows = again

    async def wait_for(
        self,
        kql: str,
        done: Callable[[list[dict[str, Any]]], bool],
        *,
        timeout: float = 30.0,
        every: float = 0.25,
    ) -> list[dict[str, Any]]:
        """Poll ``kql`` until ``done(rows)`` is true; returns those rows (fails at ``timeout``)."""
        deadline = time.monotonic() + timeout
        while True:
            rows = await self.service.query(kql)
            if done(rows):
                return rows
            assert time.monotonic() < deadline, f"gave up after {timeout} s on: {kql}\n{rows}"
            await asyncio.sleep(every)


async def rewind(data_dir: Path, consumer: str) -> None:
    """Move ``consumer``'s positions back to the start of the log (the system is stopped)."""
    log = await SqliteLog.open(data_dir / "log.db")
    try:
        for partition in range(log.partitions):
            await log.commit(consumer, partition, 0)
    finally:
        await log.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def running(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RunningSystem]:
    """One system for the module (starting one costs seconds); stopped at the end."""
    data_dir = tmp_path_factory.mktemp("e2e") / "data"
    data_dir.mkdir()
    (data_dir / "demo-feed.json").write_bytes(orjson.dumps(scenario_indicators()))
    (data_dir / "analytics.yaml").write_text(ANALYTICS_YAML, encoding="utf-8")
    running = RunningSystem(data_dir)
    await running.start()
    try:
        yield running
    finally:
        await running.stop()
