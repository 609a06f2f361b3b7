"""The values the durable log stores and returns, and the partition of a key.

>>> record = Record(key="dev-1", kind="d2c", body=b"{}", headers={"protocol": "mqtt"},
...                 timestamp=1717000000.0)
>>> record.header("protocol"), partition_for("dev-1", 8)
('mqtt', 6)
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from iotsec.stream.errors import InvalidRequest, RecordInvalid

__all__ = ["Entry", "Headers", "Record", "partition_for"]

#: Header pairs, sorted by name, each name once.
Headers = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True, init=False)
class Record:
    """One message on the log: ``key`` is the partition key (the device id), ``kind`` its type.

    ``headers`` are kept as name-sorted pairs, so two records with the same headers are equal
    whatever order the headers were given in. ``timestamp`` is seconds since the epoch, from the
    caller's clock.

    Raises:
        RecordInvalid: an empty key or kind, a body that is not bytes, a header that is not a
            string pair or is given twice, or a timestamp that is not a finite number.
    """

    key: str
    kind: str
    body: bytes
    headers: Headers
    timestamp: float

    def __init__(
        self,
        key: str,
        kind: str,
        body: bytes,
        headers: Mapping[str, str] | Iterable[tuple[str, str]],
        timestamp: float,
    ) -> None:
        for name, value in (("key", key), ("kind", kind)):
            if not isinstance(value, str) or not value:
                raise RecordInvalid(name, f"must be a non-empty string, not {value!r}")
        if not isinstance(body, bytes):
            raise RecordInvalid("body", f"must be bytes, not {type(body).__name__}")
        if isinstance(timestamp, bool) or not isinstance(timestamp, int | float):
            raise RecordInvalid("timestamp", f"must be a number, not {type(timestamp).__name__}")
        if not math.isfinite(timestamp):
            raise RecordInvalid("timestamp", f"must be finite, not {timestamp!r}")
        object.__setattr__(self, "key", key)
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "body", body)
        object.__setattr__(self, "headers", _headers(headers))
        object.__setattr__(self, "timestamp", float(timestamp))

    def header(self, name: str, default: str | None = None) -> str | None:
        """The value of header ``name``, or ``default`` when there is none."""
        for candidate, value in self.headers:
            if candidate == name:
                return value
        return default


@dataclass(frozen=True, slots=True)
class Entry:
    """A record as read back: where it is on the log, and what it is."""

    partition: int
    offset: int
    record: Record


def partition_for(key: str, partitions: int) -> int:
    """The partition of ``key``: CRC-32 of its UTF-8 bytes modulo ``partitions``.

    CRC-32 (``zlib.crc32``) is fixed by its standard, unlike ``hash()``, which is salted per
    process, so a key maps to the same partition in every process, run and version. The
    records of one device thus stay in one partition, in order.
    """
    if partitions < 1:
        raise InvalidRequest(f"partitions must be at least 1, not {partitions}")
    return zlib.crc32(key.encode("utf-8")) % partitions


def _headers(headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> Headers:
    if type(headers) is dict and all(
        type(name) is str and type(value) is str for name, value in headers.items()
    ):
        return tuple(sorted(headers.items()))  # the common case: a dict's names are unique
    pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
    seen: set[str] = set()
    for pair in pairs:
        if not (
            isinstance(pair, tuple)
            and len(pair) == 2
            and isinstance(pair[0], str)
            and isinstance(pair[1], str)
        ):
            raise RecordInvalid("headers", f"each header must be a (str, str) pair, not {pair!r}")
        if pair[0] in seen:
            raise RecordInvalid("headers", f"header {pair[0]!r} is given twice")
        seen.add(pair[0])
    return tuple(sorted(pairs))
