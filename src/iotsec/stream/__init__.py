"""The durable log between the hub and analytics: append, read from an offset, positions.

The hub appends each accepted device message and acknowledges it only once ``append`` returned,
so an acknowledged message is on disk. Analytics and the workspace read each partition from
their committed position: delivery is at least once. ``SqliteLog`` is the embedded default;
``MemoryLog`` is the fake for unit tests; both satisfy ``DurableLog``.
"""

from iotsec.stream.errors import InvalidRequest, LogClosed, LogError, RecordInvalid, StreamError
from iotsec.stream.log import DEFAULT_READ_LIMIT, DurableLog
from iotsec.stream.memory import MemoryLog
from iotsec.stream.record import Entry, Headers, Record, partition_for
from iotsec.stream.sqlite import SqliteLog

__all__ = [
    "DEFAULT_READ_LIMIT",
    "DurableLog",
    "Entry",
    "Headers",
    "InvalidRequest",
    "LogClosed",
    "LogError",
    "MemoryLog",
    "Record",
    "RecordInvalid",
    "SqliteLog",
    "StreamError",
    "partition_for",
]
