"""What a simulated device's agent does with events before they leave: aggregation windows.

ASC agents send ProcessCreate, ProcessTerminate and ConnectionCreate aggregated by default: one
event per distinct payload per window (PT1H), with ``HitCount`` and the first and last time
seen in ``ExtraDetails``, process ids zeroed and the source port blanked (reference §1.6). Every
other event is sent as it happens. :class:`SimAgent` does the same in simulated time, with no
I/O: the runner and :func:`schedule` (for replays) both use it, so a replay sees exactly what a
live run sends.

Windows are aligned to multiples of the interval since the Unix epoch, so every device and
every scenario on a device share them.

>>> from datetime import UTC, datetime, timedelta
>>> from iotsec.simulate.benign import benign_events
>>> from iotsec.simulate.fleet import build_fleet
>>> device = build_fleet(1, seed=1).devices[0]
>>> start = datetime(2024, 5, 6, 9, 0, tzinfo=UTC)
>>> sent = schedule(device, benign_events(device, start, start + timedelta(hours=2)))
>>> all(t.at >= t.event.timestamp_utc for t in sent)
True
"""

from __future__ import annotations

import uuid
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from iotsec.schema import (
    ConnectionCreate,
    ConnectionCreateEvent,
    Event,
    ProcessCreate,
    ProcessCreateEvent,
    ProcessTerminate,
    ProcessTerminateEvent,
)
from iotsec.simulate.events import TimedEvent
from iotsec.simulate.fleet import SimDevice

__all__ = ["AGGREGATED_EVENTS", "DEFAULT_AGGREGATION_INTERVAL", "SimAgent", "schedule"]

#: The events ASC agents aggregate, by wire name.
AGGREGATED_EVENTS = frozenset({"ProcessCreate", "ProcessTerminate", "ConnectionCreate"})
#: ASC's default ``aggregationInterval``.
DEFAULT_AGGREGATION_INTERVAL = timedelta(hours=1)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Aggregated event ids are derived from their first hit's id, so they are reproducible too.
_AGGREGATED_IDS = uuid.UUID("5b0b8f4e-3c1f-4e55-9a43-6a7f1d2f9c11")
_Row = ProcessCreate | ProcessTerminate | ConnectionCreate


def _key(row: _Row) -> Hashable:
    """What makes two rows one aggregated event (the documented ASC keys, reference §1.6)."""
    if isinstance(row, ProcessCreate):
        return ("P", row.executable, row.command_line, row.user_id, row.user_name)
    if isinstance(row, ConnectionCreate):
        port = row.local_port if row.direction == "In" else row.remote_port
        return (
            "C",
            row.executable,
            row.command_line,
            row.user_id,
            row.direction,
            row.protocol,
            row.local_address,
            row.remote_address,
            port,
        )
    return ("T", row.executable, row.exit_status)


def _utc_text(when: datetime) -> str:
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass(slots=True)
class _Bucket:
    first: Event
    row: _Row
    last: Event
    hits: int

    def aggregated(self) -> Event:
        changes: dict[str, Any] = {"process_id": 0}
        if isinstance(self.row, ProcessCreate):
            changes["parent_process_id"] = 0
        elif isinstance(self.row, ConnectionCreate):
            if self.row.direction == "In":
                changes["remote_port"] = ""
            else:
                changes["local_port"] = None
        changes["extra_details"] = {
            **self.row.extra_details,
            "HitCount": str(self.hits),
            "StartTimeLocal": self.first.timestamp_local.isoformat(),
            "StartTimeUtc": _utc_text(self.first.timestamp_utc),
            "EndTimeLocal": self.last.timestamp_local.isoformat(),
            "EndTimeUtc": _utc_text(self.last.timestamp_utc),
        }
        row = msgspec.structs.replace(self.row, **changes)
        fields: dict[str, Any] = {
            "id": str(uuid.uuid5(_AGGREGATED_IDS, self.first.id)),
            "timestamp_local": self.first.timestamp_local,
            "timestamp_utc": self.first.timestamp_utc,
            "payload": (row,),
        }
        if isinstance(row, ProcessCreate):
            return ProcessCreateEvent(**fields)
        if isinstance(row, ConnectionCreate):
            return ConnectionCreateEvent(**fields)
        return ProcessTerminateEvent(**fields)


class SimAgent:
    """Turns what happened on a device into what its agent sends, and when.

    Feed events with :meth:`observe` as they happen (in time order); :meth:`due` returns what
    is sent by a given time, and :meth:`flush` everything held (as an agent does when it stops).
    """

    def __init__(
        self, device: SimDevice, *, interval: timedelta = DEFAULT_AGGREGATION_INTERVAL
    ) -> None:
        if interval <= timedelta(0):
            raise ValueError(f"the aggregation interval must be positive, not {interval}")
        self._aggregate = device.aggregation
        self._interval = interval
        self._ready: list[TimedEvent] = []
        self._windows: dict[int, dict[Hashable, _Bucket]] = {}

    def observe(self, event: Event) -> None:
        """Take an event that has just happened."""
        if not self._aggregate or event.name not in AGGREGATED_EVENTS:
            self._ready.append(TimedEvent(event.timestamp_utc, event))
            return
        window = self._windows.setdefault(self._window_of(event.timestamp_utc), {})
        for payload_row in event.payload:
            row: _Row = payload_row  # type: ignore[assignment]  # the name check above
            key = _key(row)
            bucket = window.get(key)
            if bucket is None:
                window[key] = _Bucket(event, row, event, 1)
            else:
                bucket.hits += 1
                bucket.last = event

    def due(self, now: datetime) -> list[TimedEvent]:
        """Everything sent by ``now``: plain events, and windows that have closed."""
        out = [t for t in self._ready if t.at <= now]
        self._ready = [t for t in self._ready if t.at > now]
        for index in sorted(self._windows):
            end = _EPOCH + (index + 1) * self._interval
            if end <= now:
                out.extend(
                    TimedEvent(end, b.aggregated()) for b in self._windows.pop(index).values()
                )
        out.sort(key=lambda t: t.at)
        return out

    def flush(self, now: datetime) -> list[TimedEvent]:
        """Everything held, open windows cut short at ``now`` (the agent is stopping)."""
        out = self._ready
        self._ready = []
        for index in sorted(self._windows):
            end = min(now, _EPOCH + (index + 1) * self._interval)
            out.extend(TimedEvent(end, b.aggregated()) for b in self._windows[index].values())
        self._windows.clear()
        out.sort(key=lambda t: t.at)
        return out

    def _window_of(self, when: datetime) -> int:
        return (when - _EPOCH) // self._interval


def schedule(
    device: SimDevice,
    events: Iterable[Event],
    *,
    interval: timedelta = DEFAULT_AGGREGATION_INTERVAL,
) -> list[TimedEvent]:
    """What ``device``'s agent sends for ``events``, and when, every window left to close."""
    agent = SimAgent(device, interval=interval)
    last: datetime | None = None
    for event in sorted(events, key=lambda e: e.timestamp_utc):
        agent.observe(event)
        last = event.timestamp_utc
    if last is None:
        return []
    return agent.due(last + interval)
