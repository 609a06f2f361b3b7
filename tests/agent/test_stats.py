"""Message and queue statistics, configuration errors and diagnostics as ASC operational events."""

from __future__ import annotations

import doctest
import json
import os
import threading
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest

from iotsec.agent import stats as stats_module
from iotsec.agent.config import AgentConfiguration, apply_twin
from iotsec.agent.queue import DurableQueue, QueueCounts
from iotsec.agent.stats import (
    MessageCounts,
    billed_blocks,
    configuration_error_event,
    diagnostic_event,
    dropped_events_statistics_event,
    message_statistics_event,
)
from iotsec.schema import Event, ListeningPorts, ListeningPortsEvent, decode_message
from iotsec.sdk import build_security_messages
from tests.msschema import validate_with_microsoft_schema

T0 = datetime(2024, 3, 1, 12, 0, 0, tzinfo=UTC)
AGENT_ID = "b97faf0a-0f57-471f-9dab-46a8e1764946"
EVENT_ID = "9c647395-b913-4997-a732-a7fe7303b649"


def sent_and_valid(event: Event) -> Event:
    """``event`` after the trip the agent gives it: packed, checked by both schemas, decoded."""
    [message] = build_security_messages([event], agent_id=AGENT_ID)
    validate_with_microsoft_schema(json.loads(message.body))
    [decoded] = decode_message(message.body).message.events
    return decoded


def test_doctests() -> None:
    assert doctest.testmod(stats_module).failed == 0


@pytest.mark.parametrize(
    ("size", "blocks"), [(0, 1), (1, 1), (4095, 1), (4096, 1), (4097, 2), (262_144, 64)]
)
def test_billing_blocks(size: int, blocks: int) -> None:
    assert billed_blocks(size) == blocks


def test_message_counts_accumulate_without_mutating() -> None:
    empty = MessageCounts()
    counts = empty.sent(4095).sent(4096).sent(204_800).failed(2)
    assert empty == MessageCounts()
    assert counts == MessageCounts(
        messages_sent=3,
        messages_under_4kb=1,  # under 4096 bytes, not the C# agent's 8 KB
        total_failed=2,
        bytes_sent=4095 + 4096 + 204_800,
        blocks_billed=1 + 1 + 50,
    )
    assert counts.under_4kb_ratio == pytest.approx(1 / 3)
    assert counts.block_utilization == pytest.approx((4095 + 4096 + 204_800) / (52 * 4096))
    assert empty.under_4kb_ratio is None
    assert empty.block_utilization is None
    with pytest.raises(ValueError, match="negative"):
        empty.sent(-1)
    with pytest.raises(ValueError, match="negative"):
        empty.failed(-1)


def test_message_statistics_event() -> None:
    counts = MessageCounts().sent(1000).sent(9000).failed()
    event = message_statistics_event(
        counts, at=T0, extra_details={"AgentCpuPercent": "0.50"}, new_id=lambda: EVENT_ID
    )
    decoded = sent_and_valid(event)
    assert decoded.name == "MessageStatistics"
    assert (decoded.category, decoded.event_type, decoded.id) == (
        "Periodic",
        "Operational",
        EVENT_ID,
    )
    [row] = decoded.payload
    assert (row.messages_sent, row.messages_under_4kb, row.total_failed) == (2, 1, 1)  # type: ignore[union-attr]
    assert row.extra_details == {
        "BytesSent": "10000",
        "BilledBlocks": "4",
        "AgentCpuPercent": "0.50",
    }


def test_dropped_events_statistics_from_the_queue(tmp_path: Path) -> None:
    event = ListeningPortsEvent.create([ListeningPorts(protocol="TCP", local_port="22")], at=T0)
    room_for_two = 2 * len(msgspec.json.encode(event))
    with DurableQueue(tmp_path / "q.db", max_bytes=room_for_two) as queue:
        queue.push([event, event], "High")
        queue.push([event], "Low")  # no room, and Low never evicts High
        counts = queue.take_counts()
    stats = sent_and_valid(dropped_events_statistics_event(counts, at=T0))
    assert [(r.queue, r.collected_events, r.dropped_events) for r in stats.payload] == [  # type: ignore[union-attr]
        ("High", 2, 0),
        ("Low", 1, 1),
    ]


def test_dropped_events_statistics_rows_in_the_given_order() -> None:
    event = dropped_events_statistics_event(
        [QueueCounts("Low", 5, 1), QueueCounts("High", 0, 0)], at=T0
    )
    assert [r.queue for r in event.payload] == ["Low", "High"]


def test_configuration_error_event_from_a_twin_outcome() -> None:
    outcome = apply_twin(
        AgentConfiguration.default(),
        {"maxMessageSizeInBytes": {"value": "big"}, "eventPriorityLogn": {"value": "Off"}},
    )
    event = configuration_error_event(outcome.errors, at=T0)
    assert event is not None
    decoded = sent_and_valid(event)
    assert (decoded.category, decoded.event_type) == ("Triggered", "Operational")
    assert decoded.payload == outcome.errors
    assert configuration_error_event((), at=T0) is None


def test_diagnostic_event_defaults_to_this_process_and_thread() -> None:
    event = diagnostic_event("Error", "twin fetch timed out", at=T0)
    [row] = sent_and_valid(event).payload
    assert (row.severity, row.message) == ("Error", "twin fetch timed out")  # type: ignore[union-attr]
    assert row.process_id == os.getpid()  # type: ignore[union-attr]
    assert row.thread_id == threading.get_native_id()  # type: ignore[union-attr]
    assert row.correlation_id is None  # type: ignore[union-attr]


def test_diagnostic_event_with_correlation_and_details() -> None:
    event = diagnostic_event(
        "Information",
        "reconnected",
        at=T0,
        correlation_id="9C647395B9134997A732A7FE7303B649",
        extra_details={"Attempt": "3"},
        process_id=1,
        thread_id=2,
    )
    [row] = sent_and_valid(event).payload
    assert row.correlation_id == EVENT_ID  # type: ignore[union-attr]
    assert row.extra_details == {"Attempt": "3"}
    with pytest.raises(ValueError, match="hexadecimal UUID"):
        diagnostic_event("Debug", "x", at=T0, correlation_id="not-a-guid")
