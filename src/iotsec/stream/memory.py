"""An in-memory durable log, shipped for unit tests of code that appends or consumes.

>>> import asyncio
>>> async def demo() -> tuple[list[tuple[int, int]], bytes, int]:
...     log = MemoryLog(partitions=4)
...     acks = await log.append([Record("dev-1", "d2c", b"hello", {}, 0.0)])
...     [entry] = await log.read(*acks[0])
...     await log.commit("analytics", entry.partition, entry.offset + 1)
...     return acks, entry.record.body, await log.position("analytics", entry.partition)
>>> asyncio.run(demo())
([(2, 0)], b'hello', 1)
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Self

from iotsec.stream.errors import LogClosed
from iotsec.stream.log import (
    DEFAULT_READ_LIMIT,
    check_commit,
    check_consumer,
    check_partition,
    check_partitions,
    check_read,
    check_records,
)
from iotsec.stream.record import Entry, Record, partition_for

__all__ = ["MemoryLog"]


class MemoryLog:
    """A ``DurableLog`` held in lists: same offsets, positions and errors, nothing on disk.

    ``appends`` counts the calls to ``append`` that stored something, for tests.
    """

    def __init__(self, *, partitions: int = 8) -> None:
        check_partitions(partitions)
        self._partitions = partitions
        self._records: list[list[Record]] = [[] for _ in range(partitions)]
        self._positions: dict[tuple[str, int], int] = {}
        self._closed = False
        self.appends = 0

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
        """How many partitions the log has."""
        return self._partitions

    async def append(self, records: Sequence[Record]) -> list[tuple[int, int]]:
        """Append ``records``; returns (partition, offset) of each."""
        self._check_open()
        check_records(records)
        acks = []
        for record in records:
            partition = partition_for(record.key, self._partitions)
            acks.append((partition, len(self._records[partition])))
            self._records[partition].append(record)
        self.appends += bool(acks)
        return acks

    async def read(
        self, partition: int, offset: int, limit: int = DEFAULT_READ_LIMIT
    ) -> list[Entry]:
        """Up to ``limit`` entries of ``partition`` from ``offset`` on."""
        self._check_open()
        check_read(partition, self._partitions, offset, limit)
        stored = self._records[partition][offset : offset + limit]
        return [Entry(partition, offset + i, record) for i, record in enumerate(stored)]

    async def end_offset(self, partition: int) -> int:
        """The offset the next record of ``partition`` will get."""
        self._check_open()
        check_partition(partition, self._partitions)
        return len(self._records[partition])

    async def commit(self, consumer: str, partition: int, offset: int) -> None:
        """Record that ``consumer`` reads ``partition`` from ``offset`` next."""
        self._check_open()
        check_partition(partition, self._partitions)
        check_commit(consumer, partition, offset, len(self._records[partition]))
        self._positions[consumer, partition] = offset

    async def position(self, consumer: str, partition: int) -> int:
        """The committed offset of ``consumer`` in ``partition``, or 0."""
        self._check_open()
        check_consumer(consumer)
        check_partition(partition, self._partitions)
        return self._positions.get((consumer, partition), 0)

    async def close(self) -> None:
        """Refuse further calls (idempotent)."""
        self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise LogClosed("the log is closed")
