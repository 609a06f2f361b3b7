"""Which collectors run, what their failures become, and what the agent leaves out of its own."""

from __future__ import annotations

import doctest
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from iotsec.agent import collection as collection_module
from iotsec.agent.collection import Collection, DiagnosticLimiter, SelfFilter, lane_of
from iotsec.agent.collectors import CollectorFactory, CollectorSpec, spec_of
from iotsec.agent.config import AgentConfiguration
from iotsec.agent.errors import HostReadError, ParseError
from iotsec.agent.hostroot import FakeHostRoot, HostRoot
from iotsec.schema import (
    ConnectionCreate,
    ConnectionCreateEvent,
    Event,
    ProcessCreate,
    ProcessCreateEvent,
)

NOW = datetime(2024, 3, 1, tzinfo=UTC)


def test_doctests() -> None:
    assert doctest.testmod(collection_module).failed == 0


def connection(pid: int, remote: str = "10.0.0.9", port: str = "443") -> ConnectionCreate:
    return ConnectionCreate(
        remote_address=remote, remote_port=port, direction="Out", protocol="TCP",
        process_id=pid, executable="/usr/bin/curl",
    )  # fmt: skip


def test_the_agent_leaves_out_its_own_connections_and_processes() -> None:
    own = SelfFilter(pid=100, hub_addresses=frozenset({"192.0.2.1"}), hub_port=8883)
    event = ConnectionCreateEvent.create(
        [connection(100), connection(0, "192.0.2.1", "8883"), connection(7)], at=NOW
    )
    kept = own.apply(event)
    assert kept is not None and [r.process_id for r in kept.payload] == [7]
    assert own.apply(ConnectionCreateEvent.create([connection(100)], at=NOW)) is None
    child = ProcessCreate(executable="/usr/sbin/nft", process_id=5, parent_process_id=100,
                          user_id="0", command_line="nft -j list ruleset")  # fmt: skip
    assert own.apply(ProcessCreateEvent.create([child], at=NOW)) is None
    other = ConnectionCreateEvent.create([connection(0, "192.0.2.1", "443")], at=NOW)
    assert own.apply(other) is other


def test_a_diagnostic_repeats_at_most_once_per_interval_and_counts_what_it_held() -> None:
    now = [0.0]
    limiter = DiagnosticLimiter(lambda: now[0], interval=60.0)
    assert limiter.admit("Login", "cannot read") == 0
    assert limiter.admit("Login", "cannot read") is None
    assert limiter.admit("Login", "something else") == 0
    now[0] = 61.0
    assert limiter.admit("Login", "cannot read") == 1


def test_operational_events_ride_high_unless_off() -> None:
    config = AgentConfiguration(event_priority_dropped_events_statistics="Low")
    assert lane_of(config, "DroppedEventsStatistics") == "High"
    off = AgentConfiguration(event_priority_message_statistics="Off")
    assert lane_of(off, "MessageStatistics") is None
    assert lane_of(config, "Diagnostic") == "Low"


@dataclass
class Scripted:
    spec: CollectorSpec
    outcome: list[Any]
    errors: list[Any] = field(default_factory=list)
    dropped: int = 0
    closed: bool = False

    def collect(self, now: datetime) -> Sequence[Event]:
        result = self.outcome.pop(0) if self.outcome else []
        if isinstance(result, Exception):
            raise result
        return list(result)

    def close(self) -> None:
        self.closed = True


def test_failures_become_diagnostics_and_off_collectors_stop(tmp_path: Path) -> None:
    built: dict[str, Scripted] = {}

    def factory(name: str, outcome: list[Any], fails: bool = False) -> CollectorFactory:
        def build(_host: HostRoot) -> Scripted:
            if fails:
                raise HostReadError("/proc", "No such file or directory")
            built[name] = Scripted(spec_of(name), outcome)
            return built[name]

        return build

    collection = Collection(
        FakeHostRoot.build(tmp_path),
        now=lambda: NOW,
        limiter=DiagnosticLimiter(lambda: 0.0),
        self_filter=SelfFilter(pid=1),
        factories={
            "Login": factory("Login", [HostReadError("/var/log/btmp", "Permission denied")]),
            "LocalUsers": factory("LocalUsers", [ParseError("/etc/passwd", "bad", line=3)]),
            "ProcessCreate": factory("ProcessCreate", [], fails=True),
        },
    )
    started = collection.configure(AgentConfiguration.default())
    assert [e.payload[0].extra_details["Source"] for e in started] == ["ProcessCreate"]
    assert set(collection.active) == {"Login", "LocalUsers"}
    triggered = collection.collect("Triggered", NOW)
    assert [e.payload[0].message for e in triggered] == [
        "cannot read /var/log/btmp: Permission denied"
    ]
    periodic = collection.collect("Periodic", NOW)
    assert "/etc/passwd:3: bad" in periodic[0].payload[0].message
    built["Login"].dropped = 5
    assert collection.take_dropped() == {"High": 5, "Low": 0}
    assert collection.take_dropped() == {"High": 0, "Low": 0}
    collection.configure(AgentConfiguration(event_priority_login="Off"))
    assert built["Login"].closed and "Login" not in collection.active
    collection.close()
    assert built["LocalUsers"].closed
