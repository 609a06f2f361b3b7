"""Fixtures of the durable log tests: every implementation, opened fresh in a temp dir."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from iotsec.stream import DurableLog, MemoryLog, Record, SqliteLog

PARTITIONS = 4

Opener = Callable[[Path], Awaitable[DurableLog]]


async def _memory(_: Path) -> DurableLog:
    return MemoryLog(partitions=PARTITIONS)


async def _sqlite(tmp: Path) -> DurableLog:
    return await SqliteLog.open(tmp / "log.db", partitions=PARTITIONS)


IMPLEMENTATIONS: dict[str, Opener] = {"memory": _memory, "sqlite": _sqlite}


@pytest.fixture(params=sorted(IMPLEMENTATIONS))
async def log(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[DurableLog]:
    """A fresh, empty log of ``PARTITIONS`` partitions, of each implementation in turn."""
    opened = await IMPLEMENTATIONS[request.param](tmp_path)
    yield opened
    await opened.close()


def record(key: str = "dev-1", body: bytes = b"x", **headers: str) -> Record:
    """A d2c record with a fixed timestamp."""
    return Record(key=key, kind="d2c", body=body, headers=headers, timestamp=1717000000.5)
