"""The on-device queue: events waiting to be sent, in SQLite, through restarts and kills.

The classic ASC agents cached events in memory (reference §4.3) and lost them on a restart;
this queue keeps them in one SQLite file, in WAL mode with ``synchronous=FULL``. FULL, not
NORMAL: with NORMAL a WAL commit survives a killed process but not a power cut, and devices
lose power far more often than servers do; FULL costs one fsync per ``push`` (one transaction
for the whole batch of events), which collectors make every few seconds at most.

Semantics:

- ``push(events, priority)`` returns once the events are on disk, one row per event holding
  its canonical JSON (the bytes the message will carry), so sizes are exact;
- the queue holds at most ``max_bytes`` of event JSON (``maxLocalCacheSizeInBytes``); when a
  push would exceed it, the oldest Low events go first, and the oldest High events only when
  High events still do not fit; an event larger than the whole cache is dropped on arrival;
- ``next_batch`` peeks the events for one message: the preferred queue (High) first, then
  the other, each oldest first, stopping at the first event that no longer fits; it is a
  peek, so a batch that is never acked comes back on the next call, and after a restart
  (at-least-once, one consumer);
- ``ack(batch)`` deletes the batch; ids are never reused, so an acked event never returns;
- collected and dropped counts per queue are kept in the same file, so a restart does not
  reset them; ``take_counts`` reads and resets them for DroppedEventsStatistics.

>>> import tempfile
>>> from iotsec.schema import ListeningPorts, ListeningPortsEvent
>>> event = ListeningPortsEvent.create([ListeningPorts(protocol="TCP", local_port="22")])
>>> with tempfile.TemporaryDirectory() as tmp, DurableQueue(f"{tmp}/q.db") as queue:
...     queue.push([event], "High")
...     batch = queue.next_batch(204_800)
...     queue.ack(batch)
...     len(batch), len(queue.next_batch(204_800)), queue.counts()[0]
0
(1, 0, QueueCounts(queue='High', collected=1, dropped=0))
"""

from __future__ import annotations

import functools
import random
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Literal, Self

import msgspec

from iotsec.agent.errors import QueueError
from iotsec.schema import (
    Event,
    ListeningPorts,
    ListeningPortsEvent,
    MessageInvalid,
    SecurityMessage,
    decode_event,
    encode_message,
)

__all__ = [
    "Backoff",
    "Batch",
    "DurableQueue",
    "QueueCounts",
    "QueueDepth",
    "QueueName",
    "message_overhead",
]

QueueName = Literal["High", "Low"]
_RANK: dict[QueueName, int] = {"High": 0, "Low": 1}
_NAMES: tuple[QueueName, QueueName] = ("High", "Low")
_SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- AUTOINCREMENT: an acked id is never handed out again
    queue INTEGER NOT NULL,                -- 0 High, 1 Low
    size INTEGER NOT NULL,
    body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_queue ON events (queue, id);
CREATE TABLE IF NOT EXISTS queues (
    queue INTEGER PRIMARY KEY,
    events INTEGER NOT NULL DEFAULT 0,
    bytes INTEGER NOT NULL DEFAULT 0,
    collected INTEGER NOT NULL DEFAULT 0,
    dropped INTEGER NOT NULL DEFAULT 0
);
INSERT OR IGNORE INTO queues (queue) VALUES (0), (1);
-- Depth kept by triggers, so it is right whoever deletes a row and never needs a scan.
CREATE TRIGGER IF NOT EXISTS events_in AFTER INSERT ON events BEGIN
    UPDATE queues SET events = events + 1, bytes = bytes + NEW.size WHERE queue = NEW.queue;
END;
CREATE TRIGGER IF NOT EXISTS events_out AFTER DELETE ON events BEGIN
    UPDATE queues SET events = events - 1, bytes = bytes - OLD.size WHERE queue = OLD.queue;
END;
"""
_encoder = msgspec.json.Encoder()


@functools.lru_cache(maxsize=8)
def message_overhead(agent_version: str = "1.0.0") -> int:
    """Bytes a security message adds around its events (the envelope), for this agent version.

    A message of events ``e1..en`` is ``message_overhead() + sum(len(ei)) + (n - 1)`` bytes.
    """
    sample = ListeningPortsEvent.create(
        [ListeningPorts(protocol="TCP", local_port="1")],
        event_id="00000000-0000-0000-0000-000000000000",
    )
    message = SecurityMessage(
        agent_version=agent_version,
        agent_id="00000000-0000-0000-0000-000000000000",
        events=(sample,),
    )
    return len(encode_message(message)) - len(_encoder.encode(sample))


@dataclass(frozen=True, slots=True)
class QueueCounts:
    """Events collected into and dropped from one queue since the counts were last taken."""

    queue: QueueName
    collected: int
    dropped: int


@dataclass(frozen=True, slots=True)
class QueueDepth:
    """Events and bytes waiting in each queue."""

    high_events: int
    high_bytes: int
    low_events: int
    low_bytes: int

    @property
    def events(self) -> int:
        """Events waiting in both queues."""
        return self.high_events + self.low_events

    @property
    def bytes(self) -> int:
        """Bytes of event JSON waiting in both queues."""
        return self.high_bytes + self.low_bytes


@dataclass(frozen=True, slots=True)
class Batch:
    """Events for one message, oldest first within each queue; ack it once the hub has it."""

    ids: tuple[int, ...] = ()
    events: tuple[Event, ...] = ()
    queues: tuple[QueueName, ...] = ()
    #: Size of the security message built from ``events`` with ``build_security_messages``.
    message_bytes: int = 0
    #: Rows dropped while the batch was read: too big for any message, or no longer decodable.
    discarded: int = 0

    def __len__(self) -> int:
        return len(self.events)

    @property
    def priority(self) -> QueueName | None:
        """The queue the message is sent for (its first event's), for ``MessagePriority``."""
        return self.queues[0] if self.queues else None


@dataclass(frozen=True, slots=True)
class Backoff:
    """Reconnect delays: exponential, capped, with full jitter (AWS architecture blog style).

    The delay before retry ``attempt`` (0-based) is uniform in ``[0, min(cap, base * factor **
    attempt))``; ``rand`` returns a float in [0, 1) and is injected so tests are exact.

    >>> Backoff(base=1.0, cap=60.0, rand=lambda: 0.5).delay(3)
    4.0
    """

    base: float = 1.0
    cap: float = 300.0
    factor: float = 2.0
    # Jitter only spreads reconnects over time; it guards nothing, so random.random will do.
    rand: Callable[[], float] = field(default=random.random, compare=False)

    def __post_init__(self) -> None:
        if not (0 < self.base <= self.cap) or self.factor < 1:
            raise ValueError(f"need 0 < base <= cap and factor >= 1, got {self}")

    def ceiling(self, attempt: int) -> float:
        """The largest delay retry ``attempt`` may get."""
        try:
            return min(self.cap, self.base * self.factor ** max(attempt, 0))
        except OverflowError:
            return self.cap

    def delay(self, attempt: int) -> float:
        """A jittered delay, in seconds, before retry ``attempt``."""
        return self.rand() * self.ceiling(attempt)

    def delays(self) -> Iterator[float]:
        """Delays for attempts 0, 1, 2, ... without end."""
        attempt = 0
        while True:
            yield self.delay(attempt)
            attempt += 1


class DurableQueue:
    """Events waiting to be sent, in an SQLite file at ``path`` (see the module docstring).

    Safe to share between threads (calls are serialized); one process should own the file.

    Raises:
        QueueError: the file cannot be opened, is not a queue, or is corrupt; any later
            storage failure is raised as QueueError too, naming the path.
    """

    def __init__(self, path: str | Path, *, max_bytes: int = 2_560_000) -> None:
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be positive, got {max_bytes}")
        self._path = str(path)
        self._max_bytes = max_bytes
        self._lock = threading.Lock()
        self._db = self._open()

    @property
    def path(self) -> str:
        """The SQLite file."""
        return self._path

    @property
    def max_bytes(self) -> int:
        """The cap on the event JSON held (``maxLocalCacheSizeInBytes``)."""
        return self._max_bytes

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the file; the queue cannot be used afterwards."""
        with self._lock:
            self._db.close()

    def resize(self, max_bytes: int) -> int:
        """Set a new cap; evicts (Low first) down to it and returns how many events went."""
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be positive, got {max_bytes}")
        self._max_bytes = max_bytes
        with self._transaction() as db:
            return self._evict(db, high_may_go=True)

    def push(self, events: Iterable[Event], priority: QueueName) -> int:
        """Store ``events`` in the ``priority`` queue; returns how many events were dropped.

        Dropped events are those evicted to make room (possibly some just pushed) and any
        single event larger than the whole cache. Returns once the events are on disk.

        Raises:
            MessageInvalid: an event the hub would refuse; nothing is stored.
            QueueError: the storage failed; nothing is stored.
        """
        rank = _RANK[priority]
        bodies = [_canonical_body(event, index) for index, event in enumerate(events)]
        if not bodies:
            return 0
        kept = [(rank, len(body), body) for body in bodies if len(body) <= self._max_bytes]
        too_big = len(bodies) - len(kept)
        with self._transaction() as db:
            db.executemany("INSERT INTO events (queue, size, body) VALUES (?, ?, ?)", kept)
            db.execute(
                "UPDATE queues SET collected = collected + ?, dropped = dropped + ? "
                "WHERE queue = ?",
                (len(bodies), too_big, rank),
            )
            return too_big + self._evict(db, high_may_go=priority == "High")

    def next_batch(
        self,
        max_message_bytes: int,
        *,
        agent_version: str = "1.0.0",
        prefer: QueueName = "High",
    ) -> Batch:
        """The events for the next message of at most ``max_message_bytes`` (a peek).

        ``prefer`` goes first and the other queue pads the message, as the ASC agents do.
        Events too large for any message of that size are dropped and counted.

        Raises:
            QueueError: the storage failed.
        """
        overhead = message_overhead(agent_version)
        order = (prefer, _NAMES[1 - _RANK[prefer]])
        ids: list[int] = []
        events: list[Event] = []
        queues: list[QueueName] = []
        discard: list[tuple[int, int]] = []  # (id, queue)
        size = overhead
        with self._transaction() as db:
            for name in order:
                rank = _RANK[name]
                rows = db.execute(
                    "SELECT id, size, body FROM events WHERE queue = ? ORDER BY id", (rank,)
                )
                for row_id, row_size, body in rows:
                    if overhead + row_size > max_message_bytes:
                        discard.append((row_id, rank))
                        continue
                    separator = 1 if events else 0
                    if size + separator + row_size > max_message_bytes:
                        break
                    try:
                        event = decode_event(body)
                    except MessageInvalid:
                        discard.append((row_id, rank))
                        continue
                    ids.append(row_id)
                    events.append(event)
                    queues.append(name)
                    size += separator + row_size
                rows.close()
            for row_id, rank in discard:
                db.execute("DELETE FROM events WHERE id = ?", (row_id,))
                db.execute("UPDATE queues SET dropped = dropped + 1 WHERE queue = ?", (rank,))
        return Batch(
            ids=tuple(ids),
            events=tuple(events),
            queues=tuple(queues),
            message_bytes=size if events else 0,
            discarded=len(discard),
        )

    def ack(self, batch: Batch) -> None:
        """Delete ``batch``'s events: the hub has them. Acking twice is harmless.

        Raises:
            QueueError: the storage failed; the events stay and will be sent again.
        """
        if not batch.ids:
            return
        with self._transaction() as db:
            db.executemany("DELETE FROM events WHERE id = ?", [(i,) for i in batch.ids])

    def depth(self) -> QueueDepth:
        """Events and bytes waiting now."""
        with self._transaction() as db:
            rows = {
                queue: (events, size)
                for queue, events, size in db.execute("SELECT queue, events, bytes FROM queues")
            }
        return QueueDepth(*rows[0], *rows[1])

    def counts(self) -> tuple[QueueCounts, QueueCounts]:
        """Collected and dropped counts of High and Low since they were last taken."""
        with self._transaction() as db:
            return self._counts(db)

    def take_counts(self) -> tuple[QueueCounts, QueueCounts]:
        """The counts, reset to zero in the same transaction (one reporting period ends)."""
        with self._transaction() as db:
            counts = self._counts(db)
            db.execute("UPDATE queues SET collected = 0, dropped = 0")
            return counts

    # --- storage ---------------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        try:
            db = sqlite3.connect(
                self._path, isolation_level=None, check_same_thread=False, timeout=10.0
            )
        except sqlite3.Error as exc:
            raise QueueError(self._path, f"cannot open: {exc}") from None
        try:
            mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise QueueError(self._path, f"cannot use WAL journaling (got {mode!r})")
            db.execute("PRAGMA synchronous = FULL")
            # Keep the WAL file from growing past a few MB between checkpoints.
            db.execute("PRAGMA journal_size_limit = 4194304")
            check = [row[0] for row in db.execute("PRAGMA quick_check")]
            if check != ["ok"]:
                raise QueueError(self._path, "corrupt: " + "; ".join(map(str, check[:3])))
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, _SCHEMA_VERSION):
                raise QueueError(
                    self._path, f"written by a newer agent (format {version}, this reads 1)"
                )
            # One script, one transaction: executescript() commits whatever was open before it.
            db.executescript(
                f"BEGIN IMMEDIATE;\n{_SCHEMA}\nPRAGMA user_version = {_SCHEMA_VERSION};\nCOMMIT;"
            )
        except sqlite3.Error as exc:
            db.close()
            raise QueueError(self._path, f"cannot use as a queue: {exc}") from None
        except QueueError:
            db.close()
            raise
        return db

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            db = self._db
            try:
                db.execute("BEGIN IMMEDIATE")
                try:
                    yield db
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")
            except sqlite3.ProgrammingError as exc:
                raise QueueError(self._path, f"closed or misused: {exc}") from None
            except sqlite3.Error as exc:
                raise QueueError(self._path, str(exc)) from None

    def _evict(self, db: sqlite3.Connection, *, high_may_go: bool) -> int:
        """Delete the oldest events until the queue fits its cap: Low first, then High."""
        evicted = 0
        for rank in (1, 0):
            excess = self._bytes(db) - self._max_bytes
            if excess <= 0:
                break
            if rank == 0 and not high_may_go:
                break
            freed = 0
            count = 0
            last = None
            rows = db.execute("SELECT id, size FROM events WHERE queue = ? ORDER BY id", (rank,))
            for row_id, size in rows:
                freed += size
                count += 1
                last = row_id
                if freed >= excess:
                    break
            rows.close()
            if last is None:
                continue
            db.execute("DELETE FROM events WHERE queue = ? AND id <= ?", (rank, last))
            db.execute("UPDATE queues SET dropped = dropped + ? WHERE queue = ?", (count, rank))
            evicted += count
        return evicted

    @staticmethod
    def _bytes(db: sqlite3.Connection) -> int:
        return int(db.execute("SELECT SUM(bytes) FROM queues").fetchone()[0])

    @staticmethod
    def _counts(db: sqlite3.Connection) -> tuple[QueueCounts, QueueCounts]:
        rows = {
            queue: (collected, dropped)
            for queue, collected, dropped in db.execute(
                "SELECT queue, collected, dropped FROM queues"
            )
        }
        return (
            QueueCounts("High", *rows[0]),
            QueueCounts("Low", *rows[1]),
        )


def _canonical_body(event: Event, index: int) -> bytes:
    """``event``'s JSON as the message will carry it: decoded once by the schema's codec.

    ``build_security_messages`` canonicalizes the same way, so the size stored is the size sent.
    """
    return _encoder.encode(decode_event(_encoder.encode(event), index=index))
