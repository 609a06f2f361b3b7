"""The durable log protocol: what the hub appends to and analytics reads from.

A log has ``partitions`` partitions; a record goes to ``partition_for(record.key, partitions)``,
so one device's records stay in order. Offsets are per partition, dense and start at 0. A
consumer commits the next offset it will read, and reads from its position after a restart:
delivery is at least once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from iotsec.stream.errors import InvalidRequest, RecordInvalid
from iotsec.stream.record import Entry, Record

__all__ = [
    "DEFAULT_READ_LIMIT",
    "DurableLog",
    "check_commit",
    "check_consumer",
    "check_partition",
    "check_partitions",
    "check_read",
    "check_records",
]

#: How many entries ``read`` returns when the caller does not say.
DEFAULT_READ_LIMIT = 1000


@runtime_checkable
class DurableLog(Protocol):
    """A partitioned, append-only log of records, with consumer positions."""

    @property
    def partitions(self) -> int:
        """How many partitions the log has (fixed when it is created)."""

    async def append(self, records: Sequence[Record]) -> list[tuple[int, int]]:
        """Append ``records`` atomically; returns (partition, offset) of each, once durable."""

    async def read(
        self, partition: int, offset: int, limit: int = DEFAULT_READ_LIMIT
    ) -> list[Entry]:
        """Up to ``limit`` entries of ``partition`` from ``offset`` on, in offset order."""

    async def end_offset(self, partition: int) -> int:
        """The offset the next record appended to ``partition`` will get."""

    async def commit(self, consumer: str, partition: int, offset: int) -> None:
        """Record that ``consumer`` will read ``partition`` from ``offset`` next."""

    async def position(self, consumer: str, partition: int) -> int:
        """The offset ``consumer`` committed for ``partition``, or 0 if it never did."""

    async def close(self) -> None:
        """Finish pending appends and release the log (idempotent)."""


def check_partitions(partitions: int) -> None:
    """Raise ``InvalidRequest`` unless a log would have at least one partition."""
    if partitions < 1:
        raise InvalidRequest(f"a log needs at least 1 partition, not {partitions}")


def check_partition(partition: int, partitions: int) -> None:
    """Raise ``InvalidRequest`` unless ``0 <= partition < partitions``."""
    if not 0 <= partition < partitions:
        raise InvalidRequest(f"partition {partition} is not in 0..{partitions - 1}")


def check_read(partition: int, partitions: int, offset: int, limit: int) -> None:
    """Raise ``InvalidRequest`` for a bad partition, a negative offset or a limit below 1."""
    check_partition(partition, partitions)
    if offset < 0:
        raise InvalidRequest(f"offset must be at least 0, not {offset}")
    if limit < 1:
        raise InvalidRequest(f"limit must be at least 1, not {limit}")


def check_commit(consumer: str, partition: int, offset: int, end: int) -> None:
    """Raise ``InvalidRequest`` unless ``consumer`` is named and ``0 <= offset <= end``."""
    check_consumer(consumer)
    if not 0 <= offset <= end:
        raise InvalidRequest(
            f"{consumer} cannot commit offset {offset} of partition {partition}:"
            f" it is not in 0..{end} (the end of the partition)"
        )


def check_consumer(consumer: str) -> None:
    """Raise ``InvalidRequest`` unless ``consumer`` is a non-empty string."""
    if not isinstance(consumer, str) or not consumer:
        raise InvalidRequest(f"consumer must be a non-empty string, not {consumer!r}")


def check_records(records: Sequence[Record]) -> int:
    """Raise ``RecordInvalid`` if any item is not a ``Record``; else the bodies' total bytes."""
    size = 0
    for record in records:
        if not isinstance(record, Record):
            raise RecordInvalid("type", f"expected a Record, not {type(record).__name__}")
        size += len(record.body)
    return size
