"""A real hub for end-to-end tests: HubServer on 127.0.0.1 (ports picked by the OS), TLS, SQLite."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from iotsec.hub.server import HubServer
from iotsec.hub.settings import HubSettings
from iotsec.stream import Entry


@dataclass
class RunningHub:
    """A started hub and what tests need to reach it."""

    server: HubServer
    data_dir: Path

    @property
    def ca_file(self) -> Path:
        assert self.server.pki.ca is not None
        return self.server.pki.ca

    @property
    def mqtt_port(self) -> int:
        return self.server.mqtt_port

    @property
    def https_port(self) -> int:
        return self.server.https_port

    def add_device(self, device_id: str, **kwargs: object) -> str:
        """Register a device; returns its connection string."""
        identity = self.server.registry.create_device(device_id, **kwargs)  # type: ignore[arg-type]
        assert identity.keys is not None
        return f"HostName=localhost;DeviceId={device_id};SharedAccessKey={identity.keys.primary}"

    def module_connection_string(self, device_id: str, module_id: str) -> str:
        module = self.server.registry.get_module(device_id, module_id)
        assert module.keys is not None
        return (
            f"HostName=localhost;DeviceId={device_id};ModuleId={module_id};"
            f"SharedAccessKey={module.keys.primary}"
        )

    async def entries(self, kind: str | None = None) -> list[Entry]:
        """Every durable-log entry (of ``kind``), all partitions."""
        found: list[Entry] = []
        for partition in range(self.server.log.partitions):
            offset = 0
            while True:
                batch = await self.server.log.read(partition, offset, 1000)
                if not batch:
                    break
                found.extend(e for e in batch if kind is None or e.record.kind == kind)
                offset = batch[-1].offset + 1
        return found

    async def oplog(self) -> list[dict[str, object]]:
        """Operation-log entries, decoded, oldest first (after pending appends finished)."""
        import orjson  # noqa: PLC0415

        await self.server.oplog.drain()
        entries = sorted(await self.entries("oplog"), key=lambda e: e.record.timestamp)
        return [orjson.loads(e.record.body) for e in entries]


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[RunningHub]:
    """A hub serving MQTT and HTTPS on TLS on 127.0.0.1, with its data in a temp dir."""
    settings = HubSettings(
        data_dir=tmp_path / "data",
        hub_name="test-hub",
        mqtt_port=0,
        https_port=0,
        local_agent=False,
    )
    server = HubServer(settings)
    await server.start()
    try:
        yield RunningHub(server, settings.data_dir)
    finally:
        await server.stop()
