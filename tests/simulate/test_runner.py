"""The runner over the SDK's in-memory transport: what a live run sends, and its summary."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import pytest

from iotsec.schema import SECURITY_INTERFACE_ID, Event, decode_message
from iotsec.sdk import AsyncDeviceClient, AuthError, MemoryTransport, RetryPolicy
from iotsec.simulate import (
    Fleet,
    Injection,
    NoDeviceConnected,
    Registration,
    SimClock,
    SimDevice,
    Simulation,
    SimulationConfig,
    build_fleet,
    plan_injections,
    register_fleet,
)
from tests.simulate.conftest import START, row


def _clients(fleet: Fleet) -> dict[str, tuple[AsyncDeviceClient, MemoryTransport]]:
    out = {}
    for device in fleet:
        transport = MemoryTransport()
        client = AsyncDeviceClient(transport, agent_id=device.agent_id, retry=RetryPolicy.never())
        out[device.device_id] = (client, transport)
    return out


def _received(transport: MemoryTransport) -> list[Event]:
    events: list[Event] = []
    for message in transport.sent:
        assert message.interface_id == SECURITY_INTERFACE_ID
        events.extend(decode_message(message.body).message.events)
    return events


def test_the_clock_runs_speed_times_faster() -> None:
    now = [100.0]
    clock = SimClock(START, 60, monotonic=lambda: now[0])
    assert clock.now() == START
    now[0] = 102.5
    assert clock.now() == START + timedelta(minutes=2, seconds=30)
    assert clock.elapsed() == 2.5
    with pytest.raises(ValueError, match="positive"):
        SimClock(START, 0)
    with pytest.raises(ValueError, match="timezone-aware"):
        SimClock(START.replace(tzinfo=None), 1)


def test_injections_are_spread_over_devices_and_the_first_half() -> None:
    fleet = build_fleet(4, seed=1)
    plan = plan_injections(fleet, ["all"], START, seed=1, span=timedelta(hours=2))
    assert [i.scenario for i in plan] == [
        "bruteforce",
        "reverse-shell",
        "miner",
        "ti-connection",
        "download-exec",
        "firewall-off",
    ]
    assert len({i.device_id for i in plan[:4]}) == 4
    assert plan[0].at == START + timedelta(minutes=10)
    assert all(START < i.at <= START + timedelta(hours=1) for i in plan)
    assert plan == plan_injections(fleet, ["all"], START, seed=1, span=timedelta(hours=2))
    short = plan_injections(fleet, ["miner"], START, span=timedelta(minutes=20))
    assert short[0].at == START + timedelta(minutes=4)
    assert plan_injections(fleet, [], START) == ()


def test_registering_reports_what_was_created_and_hides_keys() -> None:
    fleet = build_fleet(2, seed=1)

    class Registrar:
        def register(self, device: SimDevice) -> Registration:
            created = ("device", "module") if device.index == 1 else ()
            return Registration(device.device_id, "HostName=h;SharedAccessKey=c2VjcmV0", created)

    lines: list[str] = []
    done = register_fleet(fleet, Registrar(), lines.append)
    assert set(done) == {d.device_id for d in fleet}
    assert lines[0].startswith(f"created {fleet.devices[0].device_id} (")
    assert "created device and module" in lines[0]
    assert lines[1].startswith(f"reused {fleet.devices[1].device_id}")
    assert lines[2] == "2 devices ready: 1 created, 1 reused"
    assert "c2VjcmV0" not in repr(done) and "c2VjcmV0" not in "".join(lines)


async def test_a_run_sends_benign_traffic_and_the_injected_scenario() -> None:
    fleet = build_fleet(3, seed=2)
    pairs = _clients(fleet)
    victim = fleet.devices[1].device_id
    injection = Injection("bruteforce", victim, START + timedelta(minutes=5))
    lines: list[str] = []
    simulation = Simulation(
        fleet,
        {d: c for d, (c, _) in pairs.items()},
        start=START,
        config=SimulationConfig(speed=7200, duration=0.6, tick=0.1, seed=2),
        injections=[injection],
        on_progress=lines.append,
    )
    summary = await simulation.run()
    assert summary.connected == summary.devices == 3
    assert summary.start == START
    assert summary.end == START + timedelta(hours=1, minutes=12)  # 0.6 s at 7200x
    received = {d: _received(t) for d, (_, t) in pairs.items()}
    assert summary.events == sum(map(len, received.values()))
    assert summary.messages == sum(len(t.sent) for _, t in pairs.values())
    assert summary.failed_events == 0
    for device in fleet:
        events = received[device.device_id]
        names = {e.name for e in events}
        assert {"SystemInformation", "ListeningPorts", "ProcessCreate"} <= names
        assert all(START <= e.timestamp_utc <= summary.end for e in events)
        ids = [e.id for e in events]
        assert len(ids) == len(set(ids))
        transport = pairs[device.device_id][1]
        agents = {decode_message(m.body).message.agent_id for m in transport.sent}
        assert agents == {device.agent_id}
    (result,) = summary.injections
    assert result.played == result.events == 95
    logins = [row(e) for e in received[victim] if e.name == "Login"]
    attacker = [r for r in logins if r["RemoteAddress"] == result.facts["attacker"]]
    assert [r["Result"] for r in attacker].count("Fail") == 30
    assert any(f"injecting bruteforce on {victim}" in line for line in lines)
    assert summary.lines()[0].startswith("simulated 3 devices (3 connected)")
    assert "95/95 events played" in summary.lines()[-1]


async def test_stop_ends_a_run_without_a_duration() -> None:
    fleet = build_fleet(1, seed=3)
    pairs = _clients(fleet)
    simulation = Simulation(
        fleet,
        {d: c for d, (c, _) in pairs.items()},
        start=START,
        config=SimulationConfig(speed=600, tick=0.05),
    )
    began = time.monotonic()
    task = asyncio.create_task(simulation.run())
    await asyncio.sleep(0.3)
    simulation.stop()
    summary = await asyncio.wait_for(task, timeout=5)
    assert time.monotonic() - began < 3
    assert summary.events > 0  # at least the first snapshot, flushed at the stop
    (_, transport) = pairs[fleet.devices[0].device_id]
    assert transport.connected is False  # closed


async def test_devices_that_cannot_connect_are_left_out() -> None:
    fleet = build_fleet(2, seed=4)
    pairs = _clients(fleet)
    pairs[fleet.devices[0].device_id][1].fail_next(AuthError("bad key", status=401))
    lines: list[str] = []
    simulation = Simulation(
        fleet,
        {d: c for d, (c, _) in pairs.items()},
        start=START,
        config=SimulationConfig(speed=600, duration=0.2, tick=0.05),
        on_progress=lines.append,
    )
    summary = await simulation.run()
    assert summary.connected == 1
    assert any("cannot connect" in line and "bad key" in line for line in lines)


async def test_no_device_connected_is_an_error() -> None:
    fleet = build_fleet(1, seed=5)
    pairs = _clients(fleet)
    for _, transport in pairs.values():
        transport.fail_next(AuthError("bad key", status=401))
    simulation = Simulation(
        fleet,
        {d: c for d, (c, _) in pairs.items()},
        start=START,
        config=SimulationConfig(duration=1),
    )
    with pytest.raises(NoDeviceConnected, match="bad key"):
        await simulation.run()


async def test_failed_sends_are_counted_and_reported_once() -> None:
    fleet = build_fleet(1, seed=6)
    pairs = _clients(fleet)
    (_, transport) = pairs[fleet.devices[0].device_id]
    lines: list[str] = []
    simulation = Simulation(
        fleet,
        {d: c for d, (c, _) in pairs.items()},
        start=START,
        config=SimulationConfig(speed=600, duration=0.3, tick=0.05),
        on_progress=lines.append,
    )

    original = transport.connect

    async def connect_then_break() -> None:
        await original()
        transport.fail_next(AuthError("revoked", status=401), times=1000)

    transport.connect = connect_then_break  # type: ignore[method-assign]
    summary = await simulation.run()
    assert summary.failed_events > 0 and summary.events == 0
    assert sum("sending failed" in line for line in lines) == 1


def test_bad_configurations_are_refused() -> None:
    for bad in ({"speed": 0}, {"tick": -1}, {"duration": 0}):
        with pytest.raises(ValueError, match="positive"):
            SimulationConfig(**bad)  # type: ignore[arg-type]
    fleet = build_fleet(1)
    with pytest.raises(KeyError):
        Simulation(fleet, {}, start=START, injections=[Injection("miner", "nope", START)])
