"""The twin drives the running agent; the queue carries events across a hub outage and a restart."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from iotsec.agent.config import OBJECT_NAME
from iotsec.schema import Event, aggregation_of
from tests.agent.e2e.conftest import DEVICE, MODULE, AgentProcess, Hub

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the agent reads the live host as root")


def set_desired(hub: Hub, properties: dict[str, Any]) -> None:
    """Patch the module twin's desired configuration and push it, as the service API does."""
    patch = {OBJECT_NAME: {name: {"value": value} for name, value in properties.items()}}
    server = hub.running
    twin = server.registry.patch_desired(DEVICE, MODULE, patch)
    server.mqtt.notify_desired(DEVICE, MODULE, {**patch, "$version": twin.desired_version})


def reported(hub: Hub, name: str) -> Any:
    section = hub.running.registry.get_twin(DEVICE, MODULE).reported.get(OBJECT_NAME, {})
    return section.get(name, {}).get("value")


async def eventually(condition: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.1)


async def test_a_desired_change_is_applied_and_reported_and_a_bad_one_keeps_the_last_good(
    hub: Hub, agent_process: Callable[..., AgentProcess]
) -> None:
    agent = agent_process(snapshotFrequency="PT1H")
    agent.start()
    await hub.wait_for("ListeningPorts", agent=agent)  # the snapshot taken at start
    await eventually(lambda: reported(hub, "snapshotFrequency") == "PT1H", "reported PT1H")

    set_desired(hub, {"snapshotFrequency": "PT1S"})
    await eventually(lambda: reported(hub, "snapshotFrequency") == "PT1S", "reported PT1S")
    # Applied, not only reported: snapshots now come every second.
    before = len(await hub.events("ListeningPorts"))
    await asyncio.sleep(3.5)
    assert len(await hub.events("ListeningPorts")) >= before + 2

    set_desired(hub, {"snapshotFrequency": "every second"})
    error = await hub.wait_for(
        "ConfigurationError",
        lambda e: e.payload[0].configuration_name == "snapshotFrequency",
        agent=agent,
    )
    row = error.payload[0]
    assert (row.error_type, row.used_configuration) == ("TypeMismatch", "PT1S")
    assert "every second" in row.message
    assert reported(hub, "snapshotFrequency") == "PT1S"
    before = len(await hub.events("ListeningPorts"))
    await asyncio.sleep(3.5)
    assert len(await hub.events("ListeningPorts")) >= before + 2  # still every second
    assert agent.stop() == 0


def marker_program(tmp_path: Path) -> tuple[str, Path]:
    """A copy of sleep with a unique name: its processes are recognisable at the hub."""
    marker = f"ioff{secrets.token_hex(4)}"
    program = tmp_path / marker
    shutil.copy(shutil.which("sleep") or "/bin/sleep", program)
    return marker, program


def spawn(program: Path, count: int, first: int = 0) -> None:
    """``count`` marker processes, each with its own command line, 25 at a time.

    Each lives 200 ms, so the agent reads its /proc entry even on a loaded machine (the race
    with a 1 ms process is the short-process test's subject, not this one's).
    """
    for start in range(first, first + count, 25):
        batch = [
            subprocess.Popen([str(program), f"0.2{i:03d}"])
            for i in range(start, min(start + 25, first + count))
        ]
        for process in batch:
            assert process.wait() == 0


async def agent_ready(agent: AgentProcess, starts: int) -> None:
    """Wait until the agent has started its process collector ``starts`` times (no hub needed)."""
    await eventually(
        lambda: agent.log_text().count("started collector ProcessCreate") >= starts,
        "the agent started",
    )


def hits(events: list[Event], marker: str) -> int:
    """Processes the hub heard of: ProcessCreate events are aggregated, so add the hit counts."""
    total = 0
    for event in events:
        if marker in event.payload[0].executable:
            aggregation = aggregation_of(event)
            total += aggregation.hit_count if aggregation is not None else 1
    return total


async def test_every_event_under_the_cap_arrives_after_an_outage_and_a_restart(
    hub: Hub, agent_process: Callable[..., AgentProcess], tmp_path: Path
) -> None:
    marker, program = marker_program(tmp_path)
    agent = agent_process()
    agent.start()
    await hub.wait_for("MessageStatistics", agent=agent)
    await hub.stop()

    spawn(program, 20)
    await asyncio.sleep(2.5)  # collected, aggregated (PT1S) and queued
    assert agent.stop() == 0  # SIGTERM: what is held is flushed into the queue
    agent.start()
    await agent_ready(agent, starts=2)
    spawn(program, 20, first=20)
    await asyncio.sleep(2.5)

    await hub.start()  # same ports: the agent reconnects on its own
    await eventually_async(lambda: hub_hits(hub, marker), 40, timeout=120.0, agent=agent)
    events = [e for e in await hub.events("ProcessCreate") if marker in e.payload[0].executable]
    assert hits(events, marker) == 40  # all of them, none twice
    assert len({e.id for e in events}) == len(events)
    assert agent.stop() == 0


async def hub_hits(hub: Hub, marker: str) -> int:
    return hits(await hub.events("ProcessCreate"), marker)


async def eventually_async(
    count: Callable[[], Any], expected: int, *, timeout: float, agent: AgentProcess
) -> None:
    deadline = time.monotonic() + timeout
    seen = 0
    while (seen := await count()) < expected:
        agent.check_alive()
        if time.monotonic() > deadline:
            raise AssertionError(f"{seen} of {expected} within {timeout} s\n{agent.log_tail()}")
        await asyncio.sleep(0.25)


async def test_over_the_cap_the_drops_are_counted_in_dropped_events_statistics(
    hub: Hub, agent_process: Callable[..., AgentProcess], tmp_path: Path
) -> None:
    marker, program = marker_program(tmp_path)
    # A cache of one 8 KB message; snapshots every second carry DroppedEventsStatistics;
    # the other snapshots are off, so nothing but the markers competes for the cache.
    agent = agent_process(
        maxLocalCacheSizeInBytes=8192,
        maxMessageSizeInBytes=8192,
        aggregationEnabledProcessCreate=False,
        snapshotFrequency="PT1S",
        eventPriorityListeningPorts="Off",
        eventPriorityLocalUsers="Off",
        eventPriorityFirewallConfiguration="Off",
        eventPrioritySystemInformation="Off",
    )
    agent.start()
    await hub.wait_for("MessageStatistics", agent=agent)
    await hub.stop()
    total = 150
    spawn(program, total)
    await asyncio.sleep(2.0)
    await hub.start()

    async def accounted() -> int:
        received = [
            e for e in await hub.events("ProcessCreate") if marker in e.payload[0].executable
        ]
        stats = await hub.events("DroppedEventsStatistics")
        dropped = sum(r.dropped_events for e in stats for r in e.payload if r.queue == "Low")
        return len(received) + dropped if dropped else 0

    # Every marker either arrived or was counted as dropped (other processes of this machine
    # are dropped too, so the count can only be higher).
    await eventually_async(accounted, total, timeout=120.0, agent=agent)
    received = [e for e in await hub.events("ProcessCreate") if marker in e.payload[0].executable]
    assert len(received) < total, "the cap did not drop anything: the test proves nothing"
    # An event is dropped only after it was collected (in that period or an earlier one).
    rows = [r for e in await hub.events("DroppedEventsStatistics") for r in e.payload]
    for queue in ("High", "Low"):
        collected = sum(r.collected_events for r in rows if r.queue == queue)
        assert sum(r.dropped_events for r in rows if r.queue == queue) <= collected
    assert agent.stop() == 0
