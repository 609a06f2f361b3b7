"""Aggregation of ProcessCreate, ConnectionCreate and ProcessTerminate events, on a fake clock."""

from __future__ import annotations

import doctest
import itertools
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgspec
import pytest

from iotsec.agent import aggregate as aggregate_module
from iotsec.agent.aggregate import Aggregator
from iotsec.agent.config import AgentConfiguration
from iotsec.schema import (
    Aggregation,
    ConnectionCreate,
    ConnectionCreateEvent,
    Event,
    Login,
    LoginEvent,
    ProcessCreate,
    ProcessCreateEvent,
    ProcessTerminate,
    ProcessTerminateEvent,
    aggregation_of,
    decode_event,
    decode_message,
)
from iotsec.sdk import build_security_messages
from tests.msschema import validate_with_microsoft_schema

T0 = datetime(2024, 3, 1, 12, 0, 0, tzinfo=UTC)
AGENT_ID = "b97faf0a-0f57-471f-9dab-46a8e1764946"
PLUS_TWO = timezone(timedelta(hours=2))


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def ids() -> Any:
    counter = itertools.count()
    return lambda: f"00000000-0000-0000-0000-{next(counter):012d}"


def aggregator(
    config: AgentConfiguration | None = None, **kwargs: Any
) -> tuple[Aggregator, FakeClock]:
    clock = FakeClock()
    agg = Aggregator(config or AgentConfiguration.default(), clock=clock, new_id=ids(), **kwargs)
    return agg, clock


def started(
    pid: int = 100,
    *,
    at: datetime = T0,
    command_line: str = "ls -l",
    user_id: str = "0",
    details: dict[str, str] | None = None,
) -> ProcessCreateEvent:
    row = ProcessCreate(
        executable="/bin/ls",
        process_id=pid,
        parent_process_id=pid - 1,
        user_id=user_id,
        user_name="root",
        command_line=command_line,
        extra_details=details or {},
    )
    event = ProcessCreateEvent.create([row], at=at)
    # A device two hours east of UTC (Event.create would use this machine's zone).
    return msgspec.structs.replace(event, timestamp_local=at.astimezone(PLUS_TWO))


def connected(
    direction: str,
    *,
    local_port: str = "40000",
    remote_port: str = "443",
    pid: int = 7,
    at: datetime = T0,
) -> ConnectionCreateEvent:
    row = ConnectionCreate(
        remote_address="10.0.0.9",
        remote_port=remote_port,
        local_address="10.0.0.2",
        local_port=local_port,
        direction=direction,  # type: ignore[arg-type]
        protocol="TCP",
        process_id=pid,
        executable="/usr/bin/curl",
        user_id="1000",
        command_line="curl https://example.net",
    )
    return ConnectionCreateEvent.create([row], at=at)


def ended(exit_status: int, pid: int = 5) -> ProcessTerminateEvent:
    row = ProcessTerminate(executable="/bin/false", process_id=pid, exit_status=exit_status)
    return ProcessTerminateEvent.create([row], at=T0)


def hits(events: list[Event]) -> list[tuple[str, int]]:
    found = []
    for event in events:
        agg = aggregation_of(event)
        assert agg is not None
        found.append((event.name, agg.hit_count))
    return found


def test_doctests() -> None:
    assert doctest.testmod(aggregate_module).failed == 0


# --- windows ----------------------------------------------------------------------------------


def test_a_window_is_exactly_the_interval_from_its_first_event() -> None:
    agg, clock = aggregator()
    assert agg.next_deadline() is None
    clock.now = 1000.0
    assert agg.add(started(1)) == []
    clock.now = 1010.0
    assert agg.add(started(2, at=T0 + timedelta(seconds=10))) == []
    assert agg.add(started(3, command_line="ls -a")) == []
    assert len(agg) == 2
    assert agg.next_deadline() == 4600.0
    assert agg.flush(4599.999) == []
    out = agg.flush(4600.0)
    assert hits(out) == [("ProcessCreate", 2), ("ProcessCreate", 1)]
    assert len(agg) == 0
    assert agg.next_deadline() is None
    assert agg.flush(10_000.0) == []
    # The next event opens the next window, from the clock at that moment.
    clock.now = 5000.0
    agg.add(started(4))
    assert agg.next_deadline() == 8600.0
    clock.now = 8600.0
    assert hits(agg.flush()) == [("ProcessCreate", 1)]


def test_each_event_type_has_its_own_window_and_interval() -> None:
    config = AgentConfiguration(aggregation_interval_connection_create=timedelta(minutes=10))
    agg, clock = aggregator(config)
    agg.add(started())
    clock.now = 1800.0
    agg.add(connected("Out"))
    assert agg.next_deadline() == 2400.0
    assert hits(agg.flush(2400.0)) == [("ConnectionCreate", 1)]
    assert agg.next_deadline() == 3600.0
    assert hits(agg.flush(3600.0)) == [("ProcessCreate", 1)]


def test_flush_all_emits_everything_at_once() -> None:
    agg, _ = aggregator()
    agg.add(started())
    agg.add(connected("In"))
    agg.add(ended(1))
    agg.add(ended(1))
    assert hits(agg.flush_all()) == [
        ("ProcessCreate", 1),
        ("ConnectionCreate", 1),
        ("ProcessTerminate", 2),
    ]
    assert len(agg) == 0
    assert agg.flush_all() == []


def test_other_events_and_disabled_types_pass_straight_through() -> None:
    config = AgentConfiguration(aggregation_enabled_process_create=False)
    agg, _ = aggregator(config)
    login = LoginEvent.create(
        [
            Login(
                process_id=1,
                operation="ssh",
                executable="/usr/sbin/sshd",
                result="Fail",
                user_name="pi",
            )
        ],
        at=T0,
    )
    assert agg.add(login) == [login]
    event = started()
    assert agg.add(event) == [event]
    assert len(agg) == 0


def test_reconfiguring_flushes_disabled_types_and_moves_deadlines() -> None:
    agg, clock = aggregator()
    agg.add(started())
    agg.add(connected("Out"))
    shorter = AgentConfiguration(
        aggregation_interval_process_create=timedelta(minutes=5),
        aggregation_enabled_connection_create=False,
    )
    assert hits(agg.configure(shorter)) == [("ConnectionCreate", 1)]
    assert agg.next_deadline() == 300.0
    clock.now = 300.0
    assert hits(agg.flush()) == [("ProcessCreate", 1)]


def test_memory_is_bounded_and_overflow_emits_the_oldest_early() -> None:
    agg, _ = aggregator(max_keys=2)
    agg.add(started(1, command_line="a"))
    agg.add(started(2, command_line="a"))
    agg.add(connected("Out"))
    out = agg.add(started(3, command_line="b"))
    assert hits(out) == [("ProcessCreate", 2)]
    assert out[0].payload[0].command_line == "a"  # type: ignore[union-attr]
    assert len(agg) == 2
    # Identical events still aggregate at the cap without pushing anything out.
    assert agg.add(started(4, command_line="b")) == []
    assert hits(agg.flush_all()) == [("ProcessCreate", 2), ("ConnectionCreate", 1)]


def test_max_keys_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_keys"):
        Aggregator(AgentConfiguration.default(), max_keys=0)


# --- what counts as identical -----------------------------------------------------------------


def test_process_create_ignores_pids_but_not_command_line_user_or_hash() -> None:
    agg, _ = aggregator()
    for event in (
        started(1),
        started(2),
        started(3, command_line="ls -a"),
        started(4, user_id="1000"),
        started(5, details={"Hash": "aa"}),
        started(6, details={"Hash": "bb"}),
        started(7, details={"Hash": "bb"}),
    ):
        agg.add(event)
    out = agg.flush_all()
    assert [aggregation_of(e).hit_count for e in out] == [2, 1, 1, 1, 2]  # type: ignore[union-attr]
    row = out[0].payload[0]
    assert isinstance(row, ProcessCreate)
    assert (row.process_id, row.parent_process_id) == (0, 0)
    assert out[3].payload[0].extra_details["Hash"] == "aa"


def test_outbound_connections_ignore_the_local_port() -> None:
    agg, _ = aggregator()
    agg.add(connected("Out", local_port="40001", pid=1))
    agg.add(connected("Out", local_port="40002", pid=2))
    agg.add(connected("Out", remote_port="80"))
    out = agg.flush_all()
    assert [aggregation_of(e).hit_count for e in out] == [2, 1]  # type: ignore[union-attr]
    row = out[0].payload[0]
    assert isinstance(row, ConnectionCreate)
    assert (row.process_id, row.local_port, row.remote_port) == (0, None, "443")


def test_inbound_connections_ignore_the_remote_port() -> None:
    agg, _ = aggregator()
    agg.add(connected("In", local_port="22", remote_port="50001"))
    agg.add(connected("In", local_port="22", remote_port="50002"))
    agg.add(connected("In", local_port="2222", remote_port="50002"))
    out = agg.flush_all()
    assert [aggregation_of(e).hit_count for e in out] == [2, 1]  # type: ignore[union-attr]
    row = out[0].payload[0]
    assert isinstance(row, ConnectionCreate)
    assert (row.process_id, row.local_port, row.remote_port) == (0, "22", "")


def test_process_terminate_keys_on_executable_and_exit_status() -> None:
    agg, _ = aggregator()
    for event in (ended(0, pid=1), ended(0, pid=2), ended(1, pid=3)):
        agg.add(event)
    out = agg.flush_all()
    assert [aggregation_of(e).hit_count for e in out] == [2, 1]  # type: ignore[union-attr]
    assert out[0].payload[0].process_id == 0  # type: ignore[union-attr]


def test_rows_of_one_event_aggregate_separately() -> None:
    agg, _ = aggregator()
    rows = [started(pid).payload[0] for pid in (1, 2)] + [started(3, command_line="x").payload[0]]
    agg.add(ProcessCreateEvent.create(rows, at=T0))
    assert [aggregation_of(e).hit_count for e in agg.flush_all()] == [2, 1]  # type: ignore[union-attr]


def test_an_aggregate_added_again_keeps_its_count() -> None:
    first, _ = aggregator()
    first.add(started(1))
    first.add(started(2))
    [once] = first.flush_all()
    second, _ = aggregator()
    second.add(once)
    second.add(started(3))
    [twice] = second.flush_all()
    assert aggregation_of(twice).hit_count == 3  # type: ignore[union-attr]


# --- the aggregated event on the wire ---------------------------------------------------------


def test_the_window_is_first_and_last_hit_whatever_the_arrival_order() -> None:
    agg, _ = aggregator()
    agg.add(started(1, at=T0 + timedelta(minutes=5)))
    agg.add(started(2, at=T0 + timedelta(minutes=9, microseconds=250)))
    agg.add(started(3, at=T0))
    [event] = agg.flush_all()
    assert event.category == "Triggered"
    assert event.timestamp_utc == T0
    assert event.timestamp_local.utcoffset() == timedelta(hours=2)
    assert aggregation_of(event) == Aggregation(
        hit_count=3, start_utc=T0, end_utc=T0 + timedelta(minutes=9, microseconds=250)
    )
    details = event.payload[0].extra_details
    assert details == {
        "HitCount": "3",
        "StartTimeLocal": "2024-03-01T14:00:00+02:00",
        "StartTimeUtc": "2024-03-01T12:00:00Z",
        "EndTimeLocal": "2024-03-01T14:09:00.000250+02:00",
        "EndTimeUtc": "2024-03-01T12:09:00.000250Z",
    }


@pytest.mark.parametrize(
    "events",
    [
        [started(1), started(2, at=T0 + timedelta(hours=1)), started(3, details={"Hash": "ab"})],
        [connected("In"), connected("In", remote_port="1"), connected("Out")],
        [ended(0), ended(0), ended(3)],
    ],
)
def test_aggregated_events_round_trip_through_the_codec(events: list[Event]) -> None:
    agg, _ = aggregator()
    for event in events:
        agg.add(event)
    out = agg.flush_all()
    for event in out:
        body = msgspec.json.encode(event)
        again = decode_event(body)
        assert aggregation_of(again) == aggregation_of(event)
        assert msgspec.json.encode(again) == body  # already canonical: decode changes nothing
    # And the message the SDK builds from them is valid, for us and for Microsoft's schema.
    [message] = build_security_messages(out, agent_id=AGENT_ID)
    decoded = decode_message(message.body).message
    assert [aggregation_of(e) for e in decoded.events] == [aggregation_of(e) for e in out]
    validate_with_microsoft_schema(json.loads(message.body))


def test_the_c_sharp_aggregated_form_decodes_to_the_same_aggregation() -> None:
    agg, _ = aggregator()
    agg.add(started(1))
    agg.add(started(2, at=T0 + timedelta(minutes=1)))
    [event] = agg.flush_all()
    wire = json.loads(msgspec.json.encode(event))
    wire["Category"] = "Aggregated"  # what the ASC agents send
    again = decode_event(json.dumps(wire))
    assert again.category == "Triggered"
    assert aggregation_of(again) == aggregation_of(event)
