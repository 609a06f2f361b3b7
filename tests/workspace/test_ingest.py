"""Ingest from the durable log: micro-batches, commit after insert, idempotence."""

from __future__ import annotations

import asyncio

import pyarrow as pa  # type: ignore[import-untyped]  # pyarrow ships no type hints
import pytest

from iotsec.stream import MemoryLog
from iotsec.workspace.ingest import (
    CONSUMER,
    Batcher,
    BatchPolicy,
    LogIngest,
    log_ingest_workers,
)
from iotsec.workspace.store import WorkspaceStore
from tests.workspace.samples import HUB, every_event, security_record


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_batcher_is_due_by_size() -> None:
    batcher = Batcher(BatchPolicy(max_rows=10, max_delay=1.0))
    assert not batcher.due(0.0)
    batcher.pending(entries=3, rows=9, now=0.0)
    assert not batcher.due(0.1)
    batcher.pending(entries=1, rows=1, now=0.2)
    assert batcher.due(0.2)
    batcher.flushed()
    assert not batcher.due(5.0) and batcher.rows == 0


def test_batcher_is_due_by_time_since_the_first_pending_entry() -> None:
    batcher = Batcher(BatchPolicy(max_rows=10_000, max_delay=1.0, idle_poll=0.05))
    assert batcher.wait(0.0) == 0.05
    batcher.pending(entries=1, rows=0, now=10.0)  # entries without rows still need a commit
    batcher.pending(entries=1, rows=5, now=10.5)
    assert not batcher.due(10.99)
    assert batcher.wait(10.98) == pytest.approx(0.02)
    assert batcher.due(11.0)


async def test_ingest_flushes_by_time_with_an_injected_clock(store: WorkspaceStore) -> None:
    log = MemoryLog(partitions=2)
    await log.append([security_record(every_event())])
    clock = Clock()
    ingest = LogIngest(log, store, HUB, policy=BatchPolicy(max_delay=1.0), clock=clock)
    assert await ingest.poll() == 1
    assert store.count("SecurityIoTRawEvent") == 0
    clock.now += 0.5
    await ingest.poll()
    assert store.count("SecurityIoTRawEvent") == 0
    clock.now += 0.5
    await ingest.poll()
    assert store.count("SecurityIoTRawEvent") == 15
    positions = [await log.position(CONSUMER, p) for p in range(2)]
    assert sum(positions) == 1


async def test_ingest_flushes_by_size(store: WorkspaceStore) -> None:
    log = MemoryLog(partitions=1)
    await log.append([security_record(every_event(), device=f"d{i}") for i in range(3)])
    ingest = LogIngest(
        log, store, HUB, policy=BatchPolicy(max_rows=20, read_limit=2), clock=Clock()
    )
    await ingest.poll()  # reads 2 entries = 30 rows: over 20, so flushed at once
    assert store.count("SecurityIoTRawEvent") == 30
    assert await log.position(CONSUMER, 0) == 2


async def test_the_same_entries_twice_give_one_row_each(store: WorkspaceStore) -> None:
    record = security_record(every_event())
    log = MemoryLog(partitions=1)
    await log.append([record, record])  # a device resent its message
    stop = asyncio.Event()
    ingest = LogIngest(log, store, HUB, policy=BatchPolicy(max_delay=0.01))
    task = asyncio.create_task(ingest.run(stop))
    for _ in range(200):
        if await log.position(CONSUMER, 0) == 2:
            break
        await asyncio.sleep(0.01)
    stop.set()
    await task
    assert store.count("SecurityIoTRawEvent") == 15
    assert ingest.inserted == 15


class FailingCommitLog(MemoryLog):
    """A log whose first commit fails: the crash between insert and commit."""

    def __init__(self) -> None:
        super().__init__(partitions=1)
        self.fail = True

    async def commit(self, consumer: str, partition: int, offset: int) -> None:
        if self.fail:
            self.fail = False
            raise OSError("disk went away")
        await super().commit(consumer, partition, offset)


async def test_positions_are_committed_only_after_the_insert(store: WorkspaceStore) -> None:
    log = FailingCommitLog()
    await log.append([security_record(every_event())])
    clock = Clock()
    ingest = LogIngest(log, store, HUB, policy=BatchPolicy(max_rows=1), clock=clock)
    with pytest.raises(OSError, match="disk went away"):
        await ingest.poll()
    assert store.count("SecurityIoTRawEvent") == 15  # inserted...
    assert await log.position(CONSUMER, 0) == 0  # ...but not committed
    await ingest.poll()  # re-reads from the committed position
    assert await log.position(CONSUMER, 0) == 1
    assert store.count("SecurityIoTRawEvent") == 15


class FailingStore:
    """A store whose append fails: nothing may be committed."""

    def append(self, table: str, data: pa.Table, *, lane: int = 0) -> int:
        raise RuntimeError(f"cannot write {table}")


async def test_a_failed_insert_commits_nothing() -> None:
    log = MemoryLog(partitions=1)
    await log.append([security_record(every_event())])
    ingest = LogIngest(log, FailingStore(), HUB, policy=BatchPolicy(max_rows=1))
    with pytest.raises(RuntimeError):
        await ingest.poll()
    assert await log.position(CONSUMER, 0) == 0


async def test_run_flushes_what_is_pending_when_stopped(store: WorkspaceStore) -> None:
    log = MemoryLog(partitions=4)
    await log.append([security_record(every_event(), device=f"d{i}") for i in range(4)])
    stop = asyncio.Event()
    stop.set()
    ingest = LogIngest(log, store, HUB, policy=BatchPolicy(max_delay=60))
    await ingest.poll()
    await ingest.run(stop)
    assert store.count("SecurityIoTRawEvent") == 60


async def test_ingest_workers_split_the_partitions_and_keep_one_row_per_event(
    store: WorkspaceStore,
) -> None:
    log = MemoryLog(partitions=4)
    records = [security_record(every_event(), device=f"d{i}") for i in range(12)]
    await log.append(records)
    workers = log_ingest_workers(log, store, HUB, workers=2, policy=BatchPolicy(max_rows=20))
    assert [w.partitions for w in workers] == [[0, 2], [1, 3]]
    await asyncio.gather(*(w.poll() for w in workers))
    await asyncio.gather(*(w.flush() for w in workers))
    assert store.count("SecurityIoTRawEvent") == 12 * 15
    for partition in range(4):
        assert await log.position(CONSUMER, partition) == len(await log.read(partition, 0, 100))
    # The hub redelivers (a device resends): the copies go to the same partition, so the same
    # worker and lane, and are recognised.
    await log.append(records)
    await asyncio.gather(*(w.poll() for w in workers))
    await asyncio.gather(*(w.flush() for w in workers))
    assert store.count("SecurityIoTRawEvent") == 12 * 15
    assert sum(w.inserted for w in workers) == 12 * 15


def test_more_workers_than_partitions_gives_one_per_partition(store: WorkspaceStore) -> None:
    workers = log_ingest_workers(MemoryLog(partitions=2), store, HUB, workers=8)
    assert [(w.partitions, w._lane) for w in workers] == [([0], 0), ([1], 1)]
    with pytest.raises(ValueError, match="partition"):
        LogIngest(MemoryLog(partitions=2), store, HUB, partitions=[])
