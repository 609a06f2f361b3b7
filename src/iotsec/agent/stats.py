"""The agent's own operational events: message and queue statistics, configuration errors,
diagnostics.

IoT Hub meters device-to-cloud messages in 4 KB blocks (reference §2.3), so a message of
4097 bytes costs two. :class:`MessageCounts` keeps what MessageStatistics reports
(MessagesSent, MessagesUnder4KB, TotalFailed) plus the bytes sent and blocks billed, which
go into its ExtraDetails. "Under 4 KB" means under 4096 bytes: the C# agent counts messages
under 8 KB under that name (reference Appendix B.11); we count what the name says.

>>> from datetime import UTC, datetime
>>> counts = MessageCounts().sent(3_000).sent(10_000).failed()
>>> event = message_statistics_event(counts, at=datetime(2024, 1, 1, tzinfo=UTC))
>>> row = event.payload[0]
>>> row.messages_sent, row.messages_under_4kb, row.total_failed, row.extra_details["BilledBlocks"]
(2, 1, 1, '4')
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from iotsec.agent.queue import QueueCounts
from iotsec.schema import (
    ConfigurationError,
    ConfigurationErrorEvent,
    Diagnostic,
    DiagnosticEvent,
    DroppedEventsStatistics,
    DroppedEventsStatisticsEvent,
    MessageStatistics,
    MessageStatisticsEvent,
)
from iotsec.schema.payloads import DiagnosticSeverity

__all__ = [
    "BILLING_BLOCK_BYTES",
    "MessageCounts",
    "billed_blocks",
    "configuration_error_event",
    "diagnostic_event",
    "dropped_events_statistics_event",
    "message_statistics_event",
]

#: The unit IoT Hub bills device-to-cloud messages in.
BILLING_BLOCK_BYTES = 4096


def _new_id() -> str:
    return str(uuid.uuid4())


def billed_blocks(size: int) -> int:
    """4 KB blocks IoT Hub bills for a message of ``size`` bytes (at least one).

    >>> billed_blocks(1), billed_blocks(4096), billed_blocks(4097)
    (1, 1, 2)
    """
    return max(1, -(-size // BILLING_BLOCK_BYTES))


@dataclass(frozen=True, slots=True)
class MessageCounts:
    """Messages sent and failed in one reporting period; each update returns a new value."""

    messages_sent: int = 0
    messages_under_4kb: int = 0
    total_failed: int = 0
    bytes_sent: int = 0
    blocks_billed: int = 0

    def sent(self, size: int) -> MessageCounts:
        """These counts plus one message of ``size`` bytes delivered."""
        if size < 0:
            raise ValueError(f"a message size is never negative, got {size}")
        return MessageCounts(
            messages_sent=self.messages_sent + 1,
            messages_under_4kb=self.messages_under_4kb + (size < BILLING_BLOCK_BYTES),
            total_failed=self.total_failed,
            bytes_sent=self.bytes_sent + size,
            blocks_billed=self.blocks_billed + billed_blocks(size),
        )

    def failed(self, count: int = 1) -> MessageCounts:
        """These counts plus ``count`` messages that could not be delivered."""
        if count < 0:
            raise ValueError(f"a failure count is never negative, got {count}")
        return MessageCounts(
            messages_sent=self.messages_sent,
            messages_under_4kb=self.messages_under_4kb,
            total_failed=self.total_failed + count,
            bytes_sent=self.bytes_sent,
            blocks_billed=self.blocks_billed,
        )

    @property
    def block_utilization(self) -> float | None:
        """Bytes sent over bytes billed (1.0 is perfect packing); None before any message."""
        if not self.blocks_billed:
            return None
        return self.bytes_sent / (self.blocks_billed * BILLING_BLOCK_BYTES)

    @property
    def under_4kb_ratio(self) -> float | None:
        """Share of messages under 4 KB; ASC recommends against 10% or more over a day."""
        if not self.messages_sent:
            return None
        return self.messages_under_4kb / self.messages_sent


def message_statistics_event(
    counts: MessageCounts,
    *,
    at: datetime,
    extra_details: Mapping[str, str] | None = None,
    new_id: Callable[[], str] = _new_id,
) -> MessageStatisticsEvent:
    """A MessageStatistics event for ``counts``; bytes and billed blocks go in ExtraDetails.

    ``extra_details`` (for example the agent's own CPU and memory use) is added to them.
    """
    details = {
        "BytesSent": str(counts.bytes_sent),
        "BilledBlocks": str(counts.blocks_billed),
        **(extra_details or {}),
    }
    row = MessageStatistics(
        messages_sent=counts.messages_sent,
        messages_under_4kb=counts.messages_under_4kb,
        total_failed=counts.total_failed,
        extra_details=details,
    )
    return MessageStatisticsEvent.create([row], at=at, event_id=new_id())


def dropped_events_statistics_event(
    counts: Iterable[QueueCounts],
    *,
    at: datetime,
    new_id: Callable[[], str] = _new_id,
) -> DroppedEventsStatisticsEvent:
    """A DroppedEventsStatistics event, one row per queue (from ``DurableQueue.take_counts``)."""
    rows = [
        DroppedEventsStatistics(
            queue=c.queue, collected_events=c.collected, dropped_events=c.dropped
        )
        for c in counts
    ]
    return DroppedEventsStatisticsEvent.create(rows, at=at, event_id=new_id())


def configuration_error_event(
    errors: Iterable[ConfigurationError],
    *,
    at: datetime,
    new_id: Callable[[], str] = _new_id,
) -> ConfigurationErrorEvent | None:
    """One ConfigurationError event for ``ConfigOutcome.errors``, or None when there are none."""
    rows = tuple(errors)
    if not rows:
        return None
    return ConfigurationErrorEvent.create(rows, at=at, event_id=new_id())


def diagnostic_event(
    severity: DiagnosticSeverity,
    message: str,
    *,
    at: datetime,
    correlation_id: str | None = None,
    extra_details: Mapping[str, str] | None = None,
    process_id: int | None = None,
    thread_id: int | None = None,
    new_id: Callable[[], str] = _new_id,
) -> DiagnosticEvent:
    """A Diagnostic event; process and thread ids default to this process and thread.

    ``correlation_id`` ties related diagnostics together (a GUID, as the schema requires).

    >>> from datetime import UTC, datetime
    >>> ev = diagnostic_event("Warning", "twin timeout", at=datetime(2024, 1, 1, tzinfo=UTC),
    ...                       process_id=7, thread_id=8)
    >>> ev.payload[0].severity, ev.payload[0].message, ev.payload[0].process_id
    ('Warning', 'twin timeout', 7)
    """
    if correlation_id is not None:
        # The schema wants the canonical 36-character form; fail here, not at the hub.
        correlation_id = str(uuid.UUID(correlation_id))
    row = Diagnostic(
        severity=severity,
        message=message,
        process_id=os.getpid() if process_id is None else process_id,
        thread_id=threading.get_native_id() if thread_id is None else thread_id,
        correlation_id=correlation_id,
        extra_details=dict(extra_details or {}),
    )
    return DiagnosticEvent.create([row], at=at, event_id=new_id())
