"""The simulated agent: aggregation windows as the ASC agents keep them."""

from __future__ import annotations

import dataclasses
import random
from datetime import timedelta

from iotsec.schema import Event, ProcessCreateEvent, aggregation_of
from iotsec.simulate import Fleet, SimAgent, SimDevice, benign_events, schedule
from iotsec.simulate.events import Proc, login, process_create
from tests.simulate.conftest import START, by_kind, row


def _runs(fleet: Fleet, count: int, gap: timedelta) -> tuple[SimDevice, list[ProcessCreateEvent]]:
    """``count`` runs of the same command, ``gap`` apart, from START."""
    device = by_kind(fleet)["gateway"]
    proc = Proc(4000, 1, "/usr/bin/run-parts", "run-parts --report /etc/cron.hourly", "root", "0")
    rng = random.Random(1)
    events = [
        process_create(dataclasses.replace(proc, pid=4000 + n), START + n * gap, device, rng)
        for n in range(count)
    ]
    return device, events


def _hits(event: Event) -> int:
    aggregation = aggregation_of(event)
    assert aggregation is not None
    return aggregation.hit_count


def test_identical_processes_become_one_event_when_the_window_closes(fleet: Fleet) -> None:
    device, events = _runs(fleet, 5, timedelta(minutes=10))
    sent = schedule(device, events)
    assert len(sent) == 1
    timed = sent[0]
    assert timed.at == START + timedelta(hours=1)  # the window's end, not the first hit
    assert timed.event.timestamp_utc == START  # stamped with the first hit
    aggregation = aggregation_of(timed.event)
    assert aggregation is not None and aggregation.hit_count == 5
    assert aggregation.end_utc == START + timedelta(minutes=40)
    fields = row(timed.event)
    assert fields["ProcessId"] == 0 and fields["ParentProcessId"] == 0
    assert fields["CommandLine"] == "run-parts --report /etc/cron.hourly"


def test_windows_split_on_the_hour_and_flush_cuts_the_open_one(fleet: Fleet) -> None:
    device, events = _runs(fleet, 8, timedelta(minutes=15))  # 00:00 .. 01:45
    agent = SimAgent(device)
    for event in events:
        agent.observe(event)
    closed = agent.due(START + timedelta(hours=1, minutes=50))
    assert [_hits(t.event) for t in closed] == [4]
    flushed = agent.flush(START + timedelta(hours=1, minutes=50))
    assert [t.at for t in flushed] == [START + timedelta(hours=1, minutes=50)]
    assert _hits(flushed[0].event) == 4
    assert agent.flush(START + timedelta(hours=3)) == []


def test_logins_and_snapshots_go_out_as_they_happen(fleet: Fleet) -> None:
    device = by_kind(fleet)["sensor-hub"]
    event = login(
        START,
        device,
        random.Random(1),
        pid=10,
        user="pi",
        uid="1000",
        result="Fail",
        operation="PAM:authentication",
        executable="/usr/sbin/sshd",
        remote_address="10.10.0.21",
    )
    assert [(t.at, t.event) for t in schedule(device, [event])] == [(START, event)]


def test_a_device_that_does_not_aggregate_sends_everything_as_it_happens(fleet: Fleet) -> None:
    device = dataclasses.replace(by_kind(fleet)["camera"], aggregation=False)
    events = benign_events(device, START, START + timedelta(hours=1), seed=1)
    sent = schedule(device, events)
    assert [t.event for t in sent] == events
    assert all(t.at == t.event.timestamp_utc for t in sent)


def test_aggregated_ids_are_reproducible(fleet: Fleet) -> None:
    device = by_kind(fleet)["edge-controller"]
    events = benign_events(device, START, START + timedelta(hours=2), seed=1)
    assert schedule(device, events) == schedule(device, events)
    ids = [t.event.id for t in schedule(device, events)]
    assert len(ids) == len(set(ids))
