"""The agent's loops driven step by step: a fake clock, fake collectors and the in-memory transport.

Each test starts a real Agent (real durable queue, aggregator, twin handling, worker threads)
with ``MemoryTransport`` as the hub, then calls ``collect_step`` and ``link_step`` as the loops
would, moving the clock in between, and reads what the "hub" got.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from iotsec.agent.clock import FakeClock
from iotsec.agent.collectors import COLLECTORS, CollectorFactory, CollectorSpec, spec_of
from iotsec.agent.config import OBJECT_NAME, AgentConfiguration, apply_twin
from iotsec.agent.hostroot import FakeHostRoot, HostRoot
from iotsec.agent.queue import Backoff, DurableQueue
from iotsec.agent.runner import Agent, AgentOptions
from iotsec.agent.selfmon import SelfMonitor
from iotsec.agent.state import StateDir
from iotsec.schema import (
    Event,
    ListeningPorts,
    ListeningPortsEvent,
    Login,
    LoginEvent,
    ProcessCreate,
    ProcessCreateEvent,
    aggregation_of,
    decode_message,
)
from iotsec.sdk import ConnectionString, MemoryTransport, RejectedError, SdkError, TransportError

HIGH = 420.0  # the default highPriorityMessageFrequency, PT7M
LOW = 5 * 3600.0


@dataclass
class FakeCollector:
    """A collector whose next events the test decides."""

    spec: CollectorSpec
    make: Callable[[datetime], list[Event]]
    calls: int = 0
    closed: bool = False
    errors: list[Any] = field(default_factory=list)

    def collect(self, now: datetime) -> Sequence[Event]:
        self.calls += 1
        return self.make(now)

    def close(self) -> None:
        self.closed = True


class Fakes:
    """The fake collectors and what they will return next."""

    def __init__(self) -> None:
        self.logins: list[str] = []
        self.processes: list[str] = []
        self.ports = ["22"]
        self.built: dict[str, FakeCollector] = {}

    def _login(self, now: datetime) -> list[Event]:
        users, self.logins = self.logins, []
        return [
            LoginEvent.create(
                [
                    Login(
                        process_id=7,
                        operation="PAM",
                        executable="/usr/sbin/sshd",
                        result="Fail",
                        user_name=user,
                    )
                ],
                at=now,
            )
            for user in users
        ]

    def _process(self, now: datetime) -> list[Event]:
        lines, self.processes = self.processes, []
        return [
            ProcessCreateEvent.create(
                [
                    ProcessCreate(
                        executable="/bin/true",
                        process_id=100 + i,
                        parent_process_id=1,
                        user_id="0",
                        command_line=line,
                    )
                ],
                at=now,
            )
            for i, line in enumerate(lines)
        ]

    def _ports(self, now: datetime) -> list[Event]:
        rows = [ListeningPorts(protocol="TCP", local_port=port) for port in self.ports]
        return [ListeningPortsEvent.create(rows, at=now)]

    def registry(self) -> dict[str, CollectorFactory]:
        def factory(name: str, make: Callable[[datetime], list[Event]]) -> CollectorFactory:
            def build(_host: HostRoot) -> FakeCollector:
                self.built[name] = FakeCollector(spec_of(name), make)
                return self.built[name]

            return build

        return {
            "Login": factory("Login", self._login),
            "ProcessCreate": factory("ProcessCreate", self._process),
            "ListeningPorts": factory("ListeningPorts", self._ports),
        }


@dataclass
class Rig:
    agent: Agent
    transport: MemoryTransport
    clock: FakeClock
    fakes: Fakes
    state: StateDir

    async def step(self, seconds: float = 0.0) -> None:
        """Move the clock, then run one pass of each loop (the link's may fail)."""
        self.clock.advance(seconds)
        await self.agent.collect_step()
        await self.agent.link_step()

    def events(self) -> list[Event]:
        return [e for m in self.transport.sent for e in decode_message(m.body).message.events]

    def names(self) -> list[str]:
        return [e.name for e in self.events()]


def twin(**properties: Any) -> dict[str, Any]:
    return {OBJECT_NAME: {name: {"value": value} for name, value in properties.items()}}


def quiet_monitor(clock: FakeClock) -> SelfMonitor:
    return SelfMonitor(clock=clock.monotonic, cpu_seconds=lambda: 0.0, rss_bytes=lambda: 1)


@pytest.fixture
async def make_rig(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    agents: list[Agent] = []

    async def make(
        *,
        desired: dict[str, Any] | None = None,
        base: AgentConfiguration | None = None,
        identity: str | None = None,
        transport: MemoryTransport | None = None,
        state_name: str = "state",
        start: bool = True,
        poll_every: dict[str, float] | None = None,
    ) -> Rig:
        poll_every = poll_every or {}
        clock = FakeClock()
        fakes = Fakes()
        link = transport or MemoryTransport(desired=desired)
        state = StateDir.open(tmp_path / state_name)
        agent = Agent(
            link,
            state,
            host=FakeHostRoot.build(tmp_path / "host"),
            base_config=base,
            identity=ConnectionString.parse(identity) if identity else None,
            collectors=fakes.registry(),
            clock=clock,
            options=AgentOptions(
                backoff=Backoff(base=0.01, cap=0.04, rand=lambda: 0.5), poll_every=poll_every
            ),
            monitor=quiet_monitor(clock),
        )
        if start:
            await agent.start()
            agents.append(agent)
        return Rig(agent, link, clock, fakes, state)

    yield make
    for agent in agents:
        await agent.shutdown()


@pytest.fixture
async def rig(make_rig: Callable[..., Any]) -> AsyncIterator[Rig]:
    yield await make_rig()


async def test_first_pass_sends_the_snapshot_and_a_heartbeat_marked_high(rig: Rig) -> None:
    await rig.step()
    [message] = rig.transport.sent
    assert message.properties == {"MessagePriority": "High"}
    assert message.is_security_message
    names = rig.names()
    assert sorted(names) == ["DroppedEventsStatistics", "ListeningPorts", "MessageStatistics"]
    [heartbeat] = [e for e in rig.events() if e.name == "MessageStatistics"]
    details = heartbeat.payload[0].extra_details
    assert details["HeartbeatIntervalSeconds"] == "420"
    assert {"AgentCpuPercent", "AgentRssBytes", "QueuedEvents"} <= details.keys()
    decoded = decode_message(message.body).message
    assert decoded.agent_id == rig.agent.agent_id


async def test_high_events_wait_for_the_next_high_send(rig: Rig) -> None:
    await rig.step()
    sent = len(rig.transport.sent)
    rig.fakes.logins.append("pi")  # High
    await rig.step(1.0)
    await rig.step(HIGH - 10.0)
    assert len(rig.transport.sent) == sent  # nothing due yet
    await rig.step(10.0)
    assert "Login" in rig.names()
    assert rig.transport.sent[-1].properties["MessagePriority"] == "High"


async def test_low_events_pad_the_next_message_or_go_at_the_low_frequency(
    make_rig: Callable[..., Any],
) -> None:
    # High every 5 h and Low every hour (a Conflict the agent reports, and keeps).
    rig = await make_rig(
        desired=twin(
            highPriorityMessageFrequency="PT5H",
            lowPriorityMessageFrequency="PT1H",
            aggregationIntervalProcessCreate="PT10M",
        )
    )
    await rig.step()
    assert "ConfigurationError" in rig.names()
    sent = len(rig.transport.sent)
    rig.fakes.processes.append("true one")  # Low, aggregated for ten minutes
    await rig.step(1.0)
    await rig.step(600.0)  # the window ends: queued, but no send is due
    assert len(rig.transport.sent) == sent
    await rig.step(3000.0)  # an hour after the first send
    [process] = [e for e in rig.events() if e.name == "ProcessCreate"]
    aggregation = aggregation_of(process)
    assert aggregation is not None and aggregation.hit_count == 1
    assert rig.transport.sent[-1].properties["MessagePriority"] == "Low"


async def test_a_heartbeat_goes_every_high_frequency_with_nothing_else_to_send(rig: Rig) -> None:
    await rig.step()
    for _ in range(3):
        await rig.step(HIGH)
    heartbeats = [e for e in rig.events() if e.name == "MessageStatistics"]
    assert len(heartbeats) == 4
    # Each counts the messages of the period before it: the first heartbeat's message, then one
    # message (the previous heartbeat's) per period.
    assert [h.payload[0].messages_sent for h in heartbeats] == [0, 1, 1, 1]


async def test_off_means_the_collector_is_never_started(make_rig: Callable[..., Any]) -> None:
    rig = await make_rig(desired=twin(eventPriorityLogin="Off"))
    await rig.step()
    assert "Login" not in rig.fakes.built
    assert {"ProcessCreate", "ListeningPorts"} <= rig.fakes.built.keys()
    assert rig.transport.reported[OBJECT_NAME]["eventPriorityLogin"] == {"value": "Off"}


async def test_a_failed_send_keeps_the_batch_and_nothing_acked_is_sent_again(rig: Rig) -> None:
    await rig.step()
    rig.fakes.logins += ["a", "b"]
    rig.transport.fail_next(TransportError("reset"))
    rig.clock.advance(HIGH)
    await rig.agent.collect_step()
    with pytest.raises(SdkError):
        await rig.agent.link_step()
    assert rig.agent.queue.depth().events >= 2
    await rig.agent.link_step()  # the link loop retries after its backoff
    ids = [e.id for e in rig.events()]
    assert len(ids) == len(set(ids))
    assert sorted(e.payload[0].user_name for e in rig.events() if e.name == "Login") == ["a", "b"]
    assert rig.agent.queue.depth().events == 0


async def test_the_link_loop_backs_off_and_comes_back_with_a_fresh_heartbeat(rig: Rig) -> None:
    await rig.step()
    first = len(rig.transport.sent)
    rig.transport.fail_next(TransportError("down"), times=3)
    rig.clock.advance(HIGH)  # a high send is due, and fails three times
    task = asyncio.create_task(rig.agent._link_loop())
    try:
        for _ in range(300):
            await asyncio.sleep(0.01)
            if len(rig.transport.sent) >= first + 2:
                break
    finally:
        rig.agent.stop()
        await task
    heartbeats = [e for e in rig.events() if e.name == "MessageStatistics"][1:]
    # The one queued when the send failed, then a fresh one as soon as the link is back.
    assert len(heartbeats) == 2
    assert heartbeats[0].payload[0].total_failed == 0
    assert heartbeats[1].payload[0].total_failed >= 1
    assert rig.transport.connect_count >= 2


async def test_twin_desired_applied_reported_and_a_bad_value_keeps_the_last_good(
    rig: Rig,
) -> None:
    await rig.step()
    await rig.transport.push_desired(twin(snapshotFrequency="PT1M"))
    await rig.step()
    assert rig.agent.config.snapshot_frequency == timedelta(minutes=1)
    assert rig.transport.reported[OBJECT_NAME]["snapshotFrequency"] == {"value": "PT1M"}
    await rig.transport.push_desired(twin(snapshotFrequency="soon"))
    await rig.step(HIGH)  # ConfigurationError is operational: it rides with the next High send
    assert rig.agent.config.snapshot_frequency == timedelta(minutes=1)
    [error] = [e for e in rig.events() if e.name == "ConfigurationError"]
    row = error.payload[0]
    assert (row.configuration_name, row.error_type, row.used_configuration) == (
        "snapshotFrequency",
        "TypeMismatch",
        "PT1M",
    )
    assert rig.transport.reported[OBJECT_NAME]["snapshotFrequency"] == {"value": "PT1M"}


async def test_a_patch_that_leaves_the_configuration_alone_changes_nothing(rig: Rig) -> None:
    await rig.step()
    before = rig.transport.reported["$version"]
    await rig.transport.push_desired({"someOtherModuleSetting": 1})
    await rig.step()
    assert rig.transport.reported["$version"] == before


async def test_the_twin_configuration_survives_a_restart_without_the_hub(
    make_rig: Callable[..., Any],
) -> None:
    first = await make_rig(desired=twin(snapshotFrequency="PT2M", eventPriorityLogin="Off"))
    await first.step()
    await first.agent.shutdown()
    offline = MemoryTransport()
    offline.fail_next(TransportError("hub down"), times=10)
    second = await make_rig(transport=offline)
    assert second.agent.config.snapshot_frequency == timedelta(minutes=2)
    assert second.agent.config.priority("Login") == "Off"
    assert second.agent.agent_id == first.agent.agent_id


async def test_shutdown_flushes_the_aggregator_into_the_queue(rig: Rig, tmp_path: Path) -> None:
    await rig.step()
    rig.fakes.processes += ["job --x", "job --x", "job --y"]
    rig.clock.advance(1.0)
    await rig.agent.collect_step()
    await rig.agent.shutdown()
    with DurableQueue(tmp_path / "state" / "queue.db") as queue:
        batch = queue.next_batch(204_800, prefer="Low")
    processes = [e for e in batch.events if e.name == "ProcessCreate"]
    hits = sorted(aggregation_of(e).hit_count for e in processes)  # type: ignore[union-attr]
    assert hits == [1, 2]


async def test_a_device_connection_string_works_and_is_warned_about(
    make_rig: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    rig = await make_rig(identity="HostName=hub.example;DeviceId=dev1;SharedAccessKey=a2V5")
    await rig.step()
    assert "compete" in caplog.text
    [diagnostic] = [e for e in rig.events() if e.name == "Diagnostic"]
    assert "compete" in diagnostic.payload[0].message
    assert diagnostic.payload[0].severity == "Warning"
    assert "a2V5" not in caplog.text


async def test_over_the_cap_drops_are_counted_in_dropped_events_statistics(
    make_rig: Callable[..., Any],
) -> None:
    rig = await make_rig(
        desired=twin(
            maxLocalCacheSizeInBytes=8192,
            maxMessageSizeInBytes=8192,
            aggregationEnabledProcessCreate=False,
            snapshotFrequency="PT1M",
        )
    )
    await rig.step()
    rig.transport.fail_next(TransportError("down"), times=1000)
    rig.fakes.processes += [f"/bin/true marker-{i:03d}" for i in range(100)]
    await rig.agent.collect_step()
    assert rig.agent.queue.depth().bytes <= 8192
    rig.transport._failures.clear()  # the hub is back
    for _ in range(3):
        rig.clock.advance(60.0)
        await rig.agent.collect_step()  # each snapshot period: DroppedEventsStatistics
        for _ in range(10):
            await rig.agent.link_step()
            rig.clock.advance(LOW)
    markers = [e for e in rig.events() if e.name == "ProcessCreate"]
    stats = [e for e in rig.events() if e.name == "DroppedEventsStatistics"]
    dropped_low = sum(r.dropped_events for e in stats for r in e.payload if r.queue == "Low")
    assert dropped_low > 0
    assert len(markers) + dropped_low >= 100  # every marker arrived or was counted as dropped


async def test_a_message_the_hub_refuses_for_good_is_dropped_and_counted(rig: Rig) -> None:
    await rig.step()
    rig.fakes.logins.append("x")
    rig.transport.fail_next(RejectedError("schema"))
    await rig.step(HIGH)
    assert rig.agent.queue.depth().events == 0
    assert rig.agent.sender.refused["High"] >= 1
    await rig.step(LOW)  # the Diagnostic (Low) saying so goes with the next Low send
    [diagnostic] = [e for e in rig.events() if e.name == "Diagnostic"]
    assert "the hub refused a message" in diagnostic.payload[0].message
    assert diagnostic.payload[0].severity == "Error"


async def test_over_budget_polling_slows_down_more_and_more_then_recovers(rig: Rig) -> None:
    cpu = [0.0]
    rig.agent._monitor = SelfMonitor(
        clock=rig.clock.monotonic, cpu_seconds=lambda: cpu[0], rss_bytes=lambda: 1
    )
    await rig.step()
    calls = rig.fakes.built["Login"].calls
    factors = []
    for _ in range(30):
        cpu[0] += 0.04  # 4% of a core: twice the 2% budget, whatever the polling does
        await rig.step(1.0)
        factors.append(rig.agent.backoff_factor)
    # Sampled every 10 s: each sample over budget doubles the stretch.
    assert (factors[9], factors[19], factors[29]) == (2.0, 4.0, 8.0)
    assert rig.fakes.built["Login"].calls - calls < 20  # 30 s at 1 s would be 30 calls
    await rig.step(HIGH)  # idle meanwhile: one sample under budget halves the stretch
    heartbeat = [e for e in rig.events() if e.name == "MessageStatistics"][-1]
    assert heartbeat.payload[0].extra_details["AgentBackoffFactor"] == "4"
    for _ in range(60):  # idle again: the stretch at most halves per sample, back to none
        await rig.step(1.0)
    assert rig.agent.backoff_factor == 1.0


async def test_collectors_that_read_the_host_when_called_are_called_less_often(
    make_rig: Callable[..., Any],
) -> None:
    rig = await make_rig(poll_every={"Login": 10.0})
    await rig.step()
    for _ in range(30):
        await rig.step(1.0)
    assert rig.fakes.built["Login"].calls == 4  # at 0, 10, 20 and 30 s
    assert rig.fakes.built["ProcessCreate"].calls == 31  # every tick


def test_by_default_the_agent_runs_every_collector_and_reads_logins_every_10_s() -> None:
    from iotsec.agent import runner  # noqa: PLC0415

    assert runner.COLLECTORS is COLLECTORS
    assert AgentOptions().poll_every == {"Login": 10.0}
    assert apply_twin(AgentConfiguration.default(), None).errors == ()
