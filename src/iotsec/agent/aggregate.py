"""Event aggregation: identical process and connection events collapse into one (reference §1.6).

A busy device starts the same cron job or opens the same connection thousands of times an
hour; both ASC agents send one event per distinct payload per window instead, with a hit count
and the first and last time seen in ``ExtraDetails``. The :class:`Aggregator` does the same,
without I/O: the caller adds events as collectors return them and flushes on a timer.

What counts as identical (the documented ASC keys, reference §1.6, plus ExtraDetails):

- ProcessCreate: Executable, CommandLine, UserId, UserName;
- ConnectionCreate: Executable, CommandLine, UserId, Direction, Protocol, LocalAddress,
  RemoteAddress and the destination port (LocalPort inbound, RemotePort outbound);
- ProcessTerminate: Executable, ExitStatus;
- and, for all three, the row's ExtraDetails (minus aggregation keys), so the same path with a
  different IMA hash stays a separate event.

Process ids, parent process ids and the ephemeral source port are left out of the key and
zeroed in the aggregated row, as the ASC agents do: ProcessId and ParentProcessId become 0,
an inbound connection's RemotePort becomes "" and an outbound one's LocalPort is omitted.

Windows follow the C agent: per event type, a window opens with the first event after a flush
and lasts that type's ``aggregationInterval``; when it ends, every bucket of that type is
emitted. An aggregated event is stamped with its first hit's time and carries ``Category``
"Triggered" (the canonical wire form; the codec reads the C# agent's "Aggregated" the same way).

>>> from datetime import UTC, datetime
>>> from iotsec.agent.config import AgentConfiguration
>>> from iotsec.schema import ProcessCreate, ProcessCreateEvent, aggregation_of
>>> now = [0.0]
>>> agg = Aggregator(AgentConfiguration.default(), clock=lambda: now[0])
>>> def started(pid: int) -> ProcessCreateEvent:
...     row = ProcessCreate(executable="/bin/ls", process_id=pid, parent_process_id=1,
...                         user_id="0", command_line="ls")
...     return ProcessCreateEvent.create([row], at=datetime(2024, 1, 1, tzinfo=UTC))
>>> agg.add(started(10)) + agg.add(started(11))
[]
>>> now[0] = 3600.0
>>> [(e.category, aggregation_of(e).hit_count, e.payload[0].process_id) for e in agg.flush()]
[('Triggered', 2, 0)]
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import msgspec

from iotsec.agent.config import AgentConfiguration
from iotsec.schema import (
    ConnectionCreate,
    ConnectionCreateEvent,
    Event,
    ProcessCreate,
    ProcessCreateEvent,
    ProcessTerminate,
    ProcessTerminateEvent,
)
from iotsec.schema.events import AGGREGATION_KEYS

__all__ = ["AGGREGATED_EVENTS", "DEFAULT_MAX_KEYS", "Aggregator", "aggregation_key"]

#: The events ASC aggregates, by wire name.
AGGREGATED_EVENTS = ("ProcessCreate", "ConnectionCreate", "ProcessTerminate")
#: Distinct payloads held at once before the oldest is emitted early.
DEFAULT_MAX_KEYS = 4096

_Row = ProcessCreate | ConnectionCreate | ProcessTerminate
_AggregatedEvent = ProcessCreateEvent | ConnectionCreateEvent | ProcessTerminateEvent


def _new_id() -> str:
    return str(uuid.uuid4())


def _details_key(row: _Row) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, v) for k, v in row.extra_details.items() if k not in AGGREGATION_KEYS))


def aggregation_key(row: _Row) -> Hashable:
    """What makes two rows "identical" for aggregation (see the module docstring)."""
    if isinstance(row, ProcessCreate):
        return (row.executable, row.command_line, row.user_id, row.user_name, _details_key(row))
    if isinstance(row, ConnectionCreate):
        port = row.local_port if row.direction == "In" else row.remote_port
        return (
            row.executable,
            row.command_line,
            row.user_id,
            row.direction,
            row.protocol,
            row.local_address,
            row.remote_address,
            port,
            _details_key(row),
        )
    return (row.executable, row.exit_status, _details_key(row))


def _representative(row: _Row) -> _Row:
    """``row`` with the fields that differ between identical events zeroed or blanked."""
    details = {k: v for k, v in row.extra_details.items() if k not in AGGREGATION_KEYS}
    changes: dict[str, Any] = {"process_id": 0, "extra_details": details}
    if isinstance(row, ProcessCreate):
        changes["parent_process_id"] = 0
    elif isinstance(row, ConnectionCreate):
        if row.direction == "In":
            changes["remote_port"] = ""
        else:
            changes["local_port"] = None
    return msgspec.structs.replace(row, **changes)


def _hits(row: _Row) -> int:
    # A row that is itself an aggregate (re-added after a restart) brings its count along.
    count = row.extra_details.get("HitCount", "1")
    return int(count) if count.isascii() and count.isdigit() and int(count) > 0 else 1


@dataclass(slots=True)
class _Bucket:
    row: _Row
    hits: int
    first_local: datetime
    first_utc: datetime
    last_local: datetime
    last_utc: datetime
    serial: int  # order of creation, for emitting the oldest bucket first

    def hit(self, event: Event, count: int) -> None:
        self.hits += count
        if event.timestamp_utc < self.first_utc:
            self.first_local, self.first_utc = event.timestamp_local, event.timestamp_utc
        if event.timestamp_utc > self.last_utc:
            self.last_local, self.last_utc = event.timestamp_local, event.timestamp_utc


def _utc_text(when: datetime) -> str:
    # The codec's canonical form of an aggregation time, so decode leaves it unchanged.
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


class Aggregator:
    """Collapses identical ProcessCreate, ConnectionCreate and ProcessTerminate events.

    Args:
        config: supplies ``aggregationEnabled*`` and ``aggregationInterval*``.
        clock: unix seconds now; windows open and close by it.
        max_keys: distinct payloads held at once; a new one past the cap emits the oldest
            bucket early (memory stays bounded and nothing is dropped).
        new_id: ids for the aggregated events.
    """

    def __init__(
        self,
        config: AgentConfiguration,
        *,
        clock: Callable[[], float] = time.time,
        max_keys: int = DEFAULT_MAX_KEYS,
        new_id: Callable[[], str] = _new_id,
    ) -> None:
        if max_keys < 1:
            raise ValueError(f"max_keys must be at least 1, got {max_keys}")
        self._config = config
        self._clock = clock
        self._max_keys = max_keys
        self._new_id = new_id
        self._buckets: dict[str, dict[Hashable, _Bucket]] = {name: {} for name in AGGREGATED_EVENTS}
        self._opened: dict[str, float] = {}  # event name -> when its window opened
        self._serial = 0
        self._size = 0

    def __len__(self) -> int:
        """Distinct payloads held now."""
        return self._size

    def configure(self, config: AgentConfiguration) -> list[Event]:
        """Take new settings; returns the buckets of event types whose aggregation was turned off.

        An open window keeps its start and ends by the new interval.
        """
        self._config = config
        emitted: list[Event] = []
        for name in AGGREGATED_EVENTS:
            if not self._enabled(name):
                emitted.extend(self._emit_type(name))
        return emitted

    def add(self, event: Event) -> list[Event]:
        """Absorb ``event``; returns what must go out now.

        Events of other types, or of a type whose aggregation is off, come straight back.
        A new payload past ``max_keys`` pushes the oldest bucket out early.
        """
        name = event.name
        if name not in self._buckets or not self._enabled(name):
            return [event]
        buckets = self._buckets[name]
        emitted: list[Event] = []
        for payload_row in event.payload:
            row = cast(_Row, payload_row)  # the event name above selects one of the three
            key = aggregation_key(row)
            bucket = buckets.get(key)
            if bucket is not None:
                bucket.hit(event, _hits(row))
                continue
            if self._size >= self._max_keys:
                emitted.append(self._emit_oldest())
            if name not in self._opened:
                self._opened[name] = self._clock()
            self._serial += 1
            buckets[key] = _Bucket(
                row=_representative(row),
                hits=_hits(row),
                first_local=event.timestamp_local,
                first_utc=event.timestamp_utc,
                last_local=event.timestamp_local,
                last_utc=event.timestamp_utc,
                serial=self._serial,
            )
            self._size += 1
        return emitted

    def flush(self, now: float | None = None) -> list[Event]:
        """Emit every window that has ended by ``now`` (default: the clock)."""
        at = self._clock() if now is None else now
        emitted: list[Event] = []
        for name in AGGREGATED_EVENTS:
            deadline = self._deadline(name)
            if deadline is not None and deadline <= at:
                emitted.extend(self._emit_type(name))
        return emitted

    def flush_all(self) -> list[Event]:
        """Emit everything held, whether or not its window has ended (at shutdown)."""
        emitted: list[Event] = []
        for name in AGGREGATED_EVENTS:
            emitted.extend(self._emit_type(name))
        return emitted

    def next_deadline(self) -> float | None:
        """When the earliest open window ends (unix seconds), or None when nothing is held."""
        deadlines = [d for d in map(self._deadline, AGGREGATED_EVENTS) if d is not None]
        return min(deadlines, default=None)

    def _enabled(self, name: str) -> bool:
        setting = self._config.aggregation(name)
        return setting is not None and setting.enabled

    def _deadline(self, name: str) -> float | None:
        opened = self._opened.get(name)
        setting = self._config.aggregation(name)
        if opened is None or setting is None:
            return None
        return opened + setting.interval.total_seconds()

    def _emit_type(self, name: str) -> list[Event]:
        buckets = self._buckets[name]
        emitted: list[Event] = [self._event(name, bucket) for bucket in buckets.values()]
        self._size -= len(buckets)
        buckets.clear()
        self._opened.pop(name, None)
        return emitted

    def _emit_oldest(self) -> Event:
        name, key = min(
            ((name, next(iter(buckets))) for name, buckets in self._buckets.items() if buckets),
            key=lambda found: self._buckets[found[0]][found[1]].serial,
        )
        bucket = self._buckets[name].pop(key)
        self._size -= 1
        if not self._buckets[name]:
            self._opened.pop(name, None)
        return self._event(name, bucket)

    def _event(self, name: str, bucket: _Bucket) -> _AggregatedEvent:
        details = {
            **bucket.row.extra_details,
            "HitCount": str(bucket.hits),
            "StartTimeLocal": bucket.first_local.isoformat(),
            "StartTimeUtc": _utc_text(bucket.first_utc),
            "EndTimeLocal": bucket.last_local.isoformat(),
            "EndTimeUtc": _utc_text(bucket.last_utc),
        }
        row = msgspec.structs.replace(bucket.row, extra_details=details)
        fields: dict[str, Any] = {
            "id": self._new_id(),
            "timestamp_local": bucket.first_local,
            "timestamp_utc": bucket.first_utc,
            "payload": (row,),
        }
        if name == "ProcessCreate":
            return ProcessCreateEvent(**fields)
        if name == "ConnectionCreate":
            return ConnectionCreateEvent(**fields)
        return ProcessTerminateEvent(**fields)
