"""A real hub on loopback (restartable on the same ports) and ``iotsec agent run`` as a process.

The agent runs as root on this machine with the live host (netlink proc connector, /proc,
nft) and fast frequencies from its local file, so each test sees in seconds what a device
sees in minutes. What the hub received is read from its durable log.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from iotsec.agent.config import OBJECT_NAME
from iotsec.hub.errors import IdentityNotFound
from iotsec.hub.server import HubServer
from iotsec.hub.settings import HubSettings
from iotsec.schema import Event, decode_message

DEVICE = "edge-1"
MODULE = "azureiotsecurity"

#: Fast settings for tests, in the twin's form (the local file may hold them).
FAST: dict[str, Any] = {
    "highPriorityMessageFrequency": "PT1S",
    "lowPriorityMessageFrequency": "PT1S",
    "snapshotFrequency": "PT1H",
    "aggregationIntervalProcessCreate": "PT1S",
    "aggregationIntervalConnectionCreate": "PT1S",
    "aggregationIntervalProcessTerminate": "PT1S",
    # The whole machine's process exits are noise here, and cost the agent time.
    "eventPriorityProcessTerminate": "Off",
    "eventPriorityOSBaseline": "Off",
}

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the agent reads the live host as root")


@dataclass(frozen=True, slots=True)
class Received:
    """One event the hub received, with the message's application properties."""

    event: Event
    properties: dict[str, str]


@dataclass
class Hub:
    """A HubServer on 127.0.0.1 that can be stopped and started again on the same ports."""

    data_dir: Path
    server: HubServer | None = None
    mqtt_port: int = 0
    https_port: int = 0

    async def start(self) -> None:
        settings = HubSettings(
            data_dir=self.data_dir,
            hub_name="agent-hub",
            mqtt_port=self.mqtt_port,
            https_port=self.https_port,
            local_agent=False,
        )
        self.server = HubServer(settings)
        await self.server.start()
        self.mqtt_port, self.https_port = self.server.mqtt_port, self.server.https_port

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()
            self.server = None

    @property
    def running(self) -> HubServer:
        assert self.server is not None, "the hub is stopped"
        return self.server

    @property
    def ca_file(self) -> Path:
        assert self.running.pki.ca is not None
        return self.running.pki.ca

    def module_connection_string(self, device_id: str = DEVICE) -> str:
        registry = self.running.registry
        try:
            registry.get_device(device_id)
        except IdentityNotFound:
            registry.create_device(device_id)
        module = registry.get_module(device_id, MODULE)
        assert module.keys is not None
        return (
            f"HostName=localhost;DeviceId={device_id};ModuleId={MODULE};"
            f"SharedAccessKey={module.keys.primary}"
        )

    async def received(self) -> list[Received]:
        """Every security event in the durable log, oldest first."""
        log = self.running.log
        found: list[Received] = []
        for partition in range(log.partitions):
            offset = 0
            while batch := await log.read(partition, offset, 1000):
                for entry in batch:
                    if entry.record.kind != "security":
                        continue
                    properties = {
                        name.removeprefix("app."): value
                        for name, value in entry.record.headers
                        if name.startswith("app.")
                    }
                    for event in decode_message(entry.record.body).message.events:
                        found.append(Received(event, properties))
                offset = batch[-1].offset + 1
        return found

    async def events(self, name: str) -> list[Event]:
        return [r.event for r in await self.received() if r.event.name == name]

    async def wait_for(
        self,
        name: str,
        predicate: Callable[[Event], bool] = lambda _e: True,
        *,
        timeout: float = 15.0,
        agent: AgentProcess | None = None,
    ) -> Event:
        """The first ``name`` event matching ``predicate``, waiting up to ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            for event in await self.events(name):
                if predicate(event):
                    return event
            if agent is not None:
                agent.check_alive()
            if time.monotonic() > deadline:
                got = sorted({r.event.name for r in await self.received()})
                got += [repr(e.payload) for e in await self.events(name)][:10]
                log = agent.log_problems() if agent is not None else ""
                raise AssertionError(
                    f"no matching {name} at the hub within {timeout} s; it has {got}\n{log}"
                )
            await asyncio.sleep(0.2)


@dataclass
class AgentProcess:
    """``iotsec agent run`` in a child process, with its local file and state dir."""

    hub: Hub
    workdir: Path
    settings: dict[str, Any] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    @property
    def state_dir(self) -> Path:
        return self.workdir / "state"

    @property
    def log_file(self) -> Path:
        return self.workdir / "agent.log"

    def write_config(self) -> Path:
        """The local file (written once: a restart while the hub is down reuses it)."""
        config = self.workdir / "agent.json"
        if config.exists():
            return config
        (self.workdir / "cs.txt").write_text(self.hub.module_connection_string())
        os.chmod(self.workdir / "cs.txt", 0o600)
        body = {
            "connectionStringFile": "cs.txt",
            "caFile": str(self.hub.ca_file),
            "stateDir": "state",
            OBJECT_NAME: {name: {"value": value} for name, value in self.settings.items()},
        }
        config.write_text(json.dumps(body))
        return config

    def start(self, *extra: str) -> None:
        config = self.write_config()
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "iotsec",
                    "agent",
                    "run",
                    "--config",
                    str(config),
                    "--port",
                    str(self.hub.mqtt_port),
                    "--log-level",
                    "DEBUG",
                    # Fast frequencies and DEBUG logs cost more than a device's budget; these
                    # tests are not about the budget (tests/agent/test_runner.py is).
                    "--cpu-budget",
                    "100",
                    "--memory-budget",
                    "512",
                    *extra,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def check_alive(self) -> None:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(
                f"the agent exited ({self.process.returncode}):\n{self.log_tail()}"
            )

    def stop(self) -> int:
        """SIGTERM, as systemd stops it; returns the exit status."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise AssertionError(f"the agent ignored SIGTERM:\n{self.log_tail()}") from None
        return self.process.returncode

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_file.exists():
            return ""
        return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])

    def log_problems(self) -> str:
        """The agent's log without the MQTT packet trace: what it did and what went wrong."""
        lines = [line for line in self.log_text().splitlines() if " DEBUG iotsec.sdk" not in line]
        return "\n".join(lines[-60:])

    def log_text(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[Hub]:
    running = Hub(tmp_path / "hub")
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


@pytest.fixture
def agent_process(hub: Hub, tmp_path: Path) -> Iterator[Callable[..., AgentProcess]]:
    started: list[AgentProcess] = []

    def make(**settings: Any) -> AgentProcess:
        workdir = tmp_path / f"agent-{len(started)}"
        workdir.mkdir()
        agent = AgentProcess(hub, workdir, {**FAST, **settings})
        started.append(agent)
        return agent

    yield make
    for agent in started:
        if agent.process is not None and agent.process.poll() is None:
            agent.process.kill()
            agent.process.wait()
