"""The one writer thread of ``SqliteLog``, and its group commit.

Appends and position commits from any number of coroutines go into one queue. The writer takes
everything queued (up to a cap), writes it in one transaction, and only then resolves the
callers' futures, on their event loops. While one transaction is being fsynced the next batch
fills up, so throughput grows with the number of concurrent appenders and nobody waits for a
timer. ``take_batch`` is the I/O-free part: which queued items go into the next transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iotsec.stream import _sql
from iotsec.stream.errors import InvalidRequest, LogError
from iotsec.stream.log import check_commit
from iotsec.stream.record import Record, partition_for

__all__ = ["MAX_BATCH_BYTES", "MAX_BATCH_RECORDS", "Append", "Commit", "Writer", "take_batch"]

#: At most this many records go into one transaction (unless one append alone has more).
MAX_BATCH_RECORDS = 1000
#: At most this many body bytes go into one transaction (unless one append alone has more).
MAX_BATCH_BYTES = 4 * 1024 * 1024

Acks = list[tuple[int, int]]


@dataclass(slots=True)
class Append:
    """Queued records of one ``append`` call; they are written in one transaction, in order."""

    records: Sequence[Record]
    size: int
    future: asyncio.Future[Acks]

    @property
    def count(self) -> int:
        """How many records this item writes."""
        return len(self.records)


@dataclass(slots=True)
class Commit:
    """A queued consumer position."""

    consumer: str
    partition: int
    offset: int
    future: asyncio.Future[None]
    size = 0
    count = 1


class _Stop:
    """Queued by ``Writer.stop``: write what came before, then close."""

    size = 0
    count = 0


Item = Append | Commit | _Stop
_STOP = _Stop()


def take_batch(
    first: Item, more: Callable[[], Item | None], max_records: int, max_bytes: int
) -> tuple[list[Append | Commit], Item | None]:
    """The items for one transaction, starting with ``first``, and the item that did not fit.

    ``more`` returns the next queued item, or None when the queue is empty. Items are taken
    until the queue is empty, the stop marker comes, or the next item would take the batch over
    ``max_records`` or ``max_bytes``; that item is returned to start the next batch. The first
    item is always taken, so an append larger than the caps is written alone, never split.
    """
    if isinstance(first, _Stop):
        return [], first
    batch: list[Append | Commit] = [first]
    records, size = first.count, first.size
    while (item := more()) is not None:
        records += item.count
        size += item.size
        if isinstance(item, _Stop) or records > max_records or size > max_bytes:
            return batch, item
        batch.append(item)
    return batch, None


class Writer:
    """The thread that owns the write connection; ``committed`` is each partition's end."""

    def __init__(self, path: Path, partitions: int, *, max_records: int, max_bytes: int) -> None:
        self.path = path
        self.partitions = partitions
        #: The end offset of each partition as committed; written only by the writer thread,
        #: after the commit and before the appenders hear of it (a list item store is atomic).
        self.committed = [0] * partitions
        #: Transactions committed since open, for tests and benchmarks.
        self.transactions = 0
        self._max_records = max_records
        self._max_bytes = max_bytes
        self._queue: queue.SimpleQueue[Item] = queue.SimpleQueue()
        self._ready: Future[None] = Future()
        self._done: Future[None] = Future()
        # A daemon thread, so a log that was never closed cannot hang interpreter exit. That
        # loses nothing acknowledged: an append is acknowledged only after its commit.
        self._thread = threading.Thread(target=self._run, name="iotsec-log-writer", daemon=True)

    def start(self) -> Future[None]:
        """Start the thread; the future is done once the file is open and offsets recovered."""
        self._thread.start()
        return self._ready

    def submit(self, item: Append | Commit) -> None:
        """Queue ``item``; its future resolves once it is committed (or failed)."""
        self._queue.put(item)

    def stop(self) -> Future[None]:
        """Write everything queued so far, then close; the future is done when closed."""
        self._queue.put(_STOP)
        return self._done

    def _run(self) -> None:
        try:
            conn = _sql.connect(self.path)
        except (sqlite3.Error, OSError) as exc:
            self._fail_start(_sql.translate(exc, "cannot open the log", self.path))
            return
        except LogError as exc:
            self._fail_start(exc)
            return
        try:
            self._serve(conn)
        finally:
            conn.close()
            self._done.set_result(None)

    def _fail_start(self, error: LogError) -> None:
        self._ready.set_exception(error)
        self._done.set_result(None)

    def _serve(self, conn: sqlite3.Connection) -> None:
        try:
            _sql.ensure_schema(conn, self.path, self.partitions)
            self.committed = _sql.next_offsets(conn, self.partitions)
        except (sqlite3.Error, OSError) as exc:
            self._ready.set_exception(_sql.translate(exc, "cannot open the log", self.path))
            return
        except LogError as exc:
            self._ready.set_exception(exc)
            return
        self._ready.set_result(None)
        carry: Item | None = None
        while True:
            first = carry if carry is not None else self._queue.get()
            batch, carry = take_batch(first, self._next, self._max_records, self._max_bytes)
            if batch:
                self._write(conn, batch)
            if isinstance(carry, _Stop):
                return

    def _next(self) -> Item | None:
        try:
            return self._queue.get_nowait()
        except queue.Empty:
            return None

    def _write(self, conn: sqlite3.Connection, batch: list[Append | Commit]) -> None:
        try:
            ends, acks = self._transact(conn, batch)
        except (sqlite3.Error, OSError) as exc:
            error = _sql.translate(exc, "cannot append", self.path)
            if isinstance(exc, sqlite3.IntegrityError):
                error = LogError(
                    f"cannot append: an offset is taken ({exc}); does another process write"
                    " to this log?",
                    path=self.path,
                )
                error.__cause__ = exc
            _rollback(conn, error)
            _settle([(item.future, error) for item in batch])
            return
        except Exception as exc:  # a bug: it must reach the callers, not kill the only writer
            _rollback(conn, exc)
            _settle([(item.future, exc) for item in batch])
            return
        for partition, end in enumerate(ends):
            self.committed[partition] = end
        self.transactions += 1
        _settle([(item.future, ack) for item, ack in zip(batch, acks, strict=True)])

    def _transact(
        self, conn: sqlite3.Connection, batch: list[Append | Commit]
    ) -> tuple[list[int], list[Acks | InvalidRequest | None]]:
        """Write ``batch`` in one transaction; the new ends and each item's acks."""
        ends = list(self.committed)
        rows: list[_sql.Row] = []
        positions: list[tuple[str, int, int]] = []
        acks: list[Acks | InvalidRequest | None] = []
        for item in batch:
            if isinstance(item, Commit):
                # Checked here, not only by the caller: readers see an append's rows as soon
                # as it commits, a moment before this thread moves ``committed``, so a quick
                # consumer may commit past the end the caller saw. Here the end is exact.
                try:
                    check_commit(item.consumer, item.partition, item.offset, ends[item.partition])
                except InvalidRequest as exc:
                    acks.append(exc)
                    continue
                positions.append((item.consumer, item.partition, item.offset))
                acks.append(None)
                continue
            mine = []
            for record in item.records:
                partition = partition_for(record.key, self.partitions)
                mine.append((partition, ends[partition]))
                rows.append(_sql.row_of(partition, ends[partition], record))
                ends[partition] += 1
            acks.append(mine)
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(_sql.INSERT_RECORD, rows)
        conn.executemany(_sql.INSERT_POSITION, positions)
        conn.execute("COMMIT")
        return ends, acks


def _rollback(conn: sqlite3.Connection, error: Exception) -> None:
    """Roll back a failed transaction; a failing rollback is noted on ``error``, not hidden."""
    try:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
    except sqlite3.Error as exc:
        error.add_note(f"the rollback failed too: {exc}")


def _settle(outcomes: Sequence[tuple[asyncio.Future[Any], object]]) -> None:
    """Resolve futures from the writer thread: one wake-up per event loop per batch."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], object]]] = {}
    for future, outcome in outcomes:
        by_loop.setdefault(future.get_loop(), []).append((future, outcome))
    for loop, settled in by_loop.items():
        # A closed loop has nobody left waiting for the outcome.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_resolve, settled)


def _resolve(settled: list[tuple[asyncio.Future[Any], object]]) -> None:
    for future, outcome in settled:
        if future.done():  # the appender was cancelled; the append stands (at least once)
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)
