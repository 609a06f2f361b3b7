"""``SqliteLog``: the embedded durable log, one SQLite file in WAL mode with group commit.

>>> import asyncio, tempfile
>>> from pathlib import Path
>>> async def demo(path: Path) -> list[Entry]:
...     async with await SqliteLog.open(path, partitions=4) as log:
...         [(partition, offset)] = await log.append([Record("dev-1", "d2c", b"hi", {}, 0.0)])
...         return await log.read(partition, offset)
>>> with tempfile.TemporaryDirectory() as tmp:
...     [entry] = asyncio.run(demo(Path(tmp) / "log.db"))
>>> entry.partition, entry.offset, entry.record.body
(2, 0, b'hi')

Threads: one writer thread owns the write connection and commits appends in groups (see
``iotsec.stream._writer``); one reader thread owns a second connection, which WAL lets read
while the writer writes. The event loop never touches the disk. One process owns a log file
for writing: offsets are handed out in memory, so a second writing process is refused by the
unique (partition, offset) index (a ``LogError``), never silently merged.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Self, TypeVar

from iotsec.stream import _sql
from iotsec.stream._writer import MAX_BATCH_BYTES, MAX_BATCH_RECORDS, Append, Commit, Writer
from iotsec.stream.errors import InvalidRequest, LogClosed, LogError
from iotsec.stream.log import (
    DEFAULT_READ_LIMIT,
    check_commit,
    check_consumer,
    check_partition,
    check_partitions,
    check_read,
    check_records,
)
from iotsec.stream.record import Entry, Record

__all__ = ["SqliteLog"]

_T = TypeVar("_T")


class SqliteLog:
    """A ``DurableLog`` in one SQLite file; create it with ``await SqliteLog.open(path)``.

    ``append`` returns once its records are committed with ``synchronous=FULL``: on disk, and
    surviving kill -9 and power loss. Appends made at the same time share one transaction (up
    to ``max_batch_records`` records or ``max_batch_bytes`` body bytes), so throughput grows
    with concurrency. One ``append`` is atomic: all its records are written, or none.
    Cancelling an ``append`` does not withdraw it. The log belongs to the event loop that
    opened it.
    """

    def __init__(
        self, writer: Writer, reader: sqlite3.Connection, pool: ThreadPoolExecutor
    ) -> None:
        """Use ``SqliteLog.open``; this only assembles the opened parts."""
        self._writer = writer
        self._reader = reader
        self._pool = pool
        self._closed = False

    @classmethod
    async def open(
        cls,
        path: Path,
        *,
        partitions: int = 8,
        max_batch_records: int = MAX_BATCH_RECORDS,
        max_batch_bytes: int = MAX_BATCH_BYTES,
    ) -> Self:
        """Open the log at ``path``, creating it if needed, and recover each partition's end.

        Raises:
            LogError: the file cannot be opened or created, is not a log, or was created with
                another partition count (the path is on the error).
        """
        check_partitions(partitions)
        caps = {"max_batch_records": max_batch_records, "max_batch_bytes": max_batch_bytes}
        for name, cap in caps.items():
            if cap < 1:
                raise InvalidRequest(f"{name} must be at least 1, not {cap}")
        path = Path(path)
        writer = Writer(path, partitions, max_records=max_batch_records, max_bytes=max_batch_bytes)
        await asyncio.wrap_future(writer.start())
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="iotsec-log-reader")
        loop = asyncio.get_running_loop()
        try:
            reader = await loop.run_in_executor(pool, _connect_reader, path)
        except LogError:
            await asyncio.wrap_future(writer.stop())
            pool.shutdown(wait=False)
            raise
        return cls(writer, reader, pool)

    async def __aenter__(self) -> Self:
        """The log itself; ``async with`` closes it."""
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the log."""
        await self.close()

    @property
    def partitions(self) -> int:
        """How many partitions the log has (fixed when the file was created)."""
        return self._writer.partitions

    @property
    def path(self) -> Path:
        """The log's SQLite file."""
        return self._writer.path

    @property
    def transactions(self) -> int:
        """How many write transactions were committed since open (to observe group commit)."""
        return self._writer.transactions

    async def append(self, records: Sequence[Record]) -> list[tuple[int, int]]:
        """Append ``records`` in one transaction; returns (partition, offset) of each, durable.

        Raises:
            LogClosed: the log is closed.
            LogError: the write failed; none of ``records`` was written.
        """
        self._check_open()
        size = check_records(records)
        if not records:
            return []
        future: asyncio.Future[list[tuple[int, int]]] = asyncio.get_running_loop().create_future()
        self._writer.submit(Append(list(records), size, future))
        return await future

    async def read(
        self, partition: int, offset: int, limit: int = DEFAULT_READ_LIMIT
    ) -> list[Entry]:
        """Up to ``limit`` committed entries of ``partition`` from ``offset`` on."""
        self._check_open()
        check_read(partition, self.partitions, offset, limit)
        return await self._in_reader(_sql.read_entries, partition, offset, limit, self.path)

    async def end_offset(self, partition: int) -> int:
        """One past the last durable offset of ``partition`` (appends in flight not counted)."""
        self._check_open()
        check_partition(partition, self.partitions)
        return self._writer.committed[partition]

    async def commit(self, consumer: str, partition: int, offset: int) -> None:
        """Durably record that ``consumer`` reads ``partition`` from ``offset`` next."""
        self._check_open()
        check_partition(partition, self.partitions)
        # The end is checked again, exactly, by the writer thread (see _writer._transact): an
        # offset past the end seen here may be one an append has just made readable.
        check_commit(consumer, partition, offset, max(offset, self._writer.committed[partition]))
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._writer.submit(Commit(consumer, partition, offset, future))
        await future

    async def position(self, consumer: str, partition: int) -> int:
        """The committed offset of ``consumer`` in ``partition``, or 0 if it never committed."""
        self._check_open()
        check_consumer(consumer)
        check_partition(partition, self.partitions)
        return await self._in_reader(_sql.read_position, consumer, partition)

    async def close(self) -> None:
        """Write every append already made, then close the file (idempotent)."""
        if self._closed:
            return
        self._closed = True
        await asyncio.wrap_future(self._writer.stop())
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._pool, self._reader.close)
        self._pool.shutdown(wait=False)

    def _check_open(self) -> None:
        if self._closed:
            raise LogClosed("the log is closed", path=self.path)

    async def _in_reader(self, fn: Callable[..., _T], *args: object) -> _T:
        """Run ``fn(reader, *args)`` on the reader thread, translating SQLite errors."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, fn, self._reader, *args)
        except (sqlite3.Error, OSError) as exc:
            raise _sql.translate(exc, "cannot read", self.path) from exc


def _connect_reader(path: Path) -> sqlite3.Connection:
    try:
        return _sql.connect(path, readonly=True)
    except (sqlite3.Error, OSError) as exc:
        raise _sql.translate(exc, "cannot open the log for reading", path) from exc
