"""Every ``DurableLog`` implementation behaves the same (the fixture runs each test on each)."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from iotsec.stream import (
    DurableLog,
    InvalidRequest,
    LogClosed,
    MemoryLog,
    Record,
    RecordInvalid,
    partition_for,
)
from tests.stream.conftest import PARTITIONS, record


def test_each_implementation_is_a_durable_log(log: DurableLog) -> None:
    assert isinstance(log, DurableLog)
    assert log.partitions == PARTITIONS


async def test_a_new_log_is_empty(log: DurableLog) -> None:
    for partition in range(PARTITIONS):
        assert await log.end_offset(partition) == 0
        assert await log.read(partition, 0) == []


async def test_append_returns_partition_and_offset_in_order(log: DurableLog) -> None:
    records = [record("dev-1", b"a"), record("dev-2", b"b"), record("dev-1", b"c")]
    acks = await log.append(records)
    p1, p2 = partition_for("dev-1", PARTITIONS), partition_for("dev-2", PARTITIONS)
    assert p1 != p2  # the test needs two partitions
    assert acks == [(p1, 0), (p2, 0), (p1, 1)]
    assert await log.append([]) == []
    assert await log.end_offset(p1) == 2
    assert await log.end_offset(p2) == 1


async def test_read_returns_the_records_as_appended(log: DurableLog) -> None:
    sent = Record("dev-1", "oplog", b"\x00\xffbody", {"protocol": "mqtt", "ip": "::1"}, 12.25)
    [(partition, offset)] = await log.append([sent])
    [entry] = await log.read(partition, offset)
    assert (entry.partition, entry.offset) == (partition, offset)
    assert entry.record == sent
    assert entry.record.header("ip") == "::1"


async def test_offsets_are_dense_per_partition(log: DurableLog) -> None:
    keys = [f"device-{i}" for i in range(40)]
    acks = []
    for key in keys:
        acks += await log.append([record(key, key.encode())])
    for partition in range(PARTITIONS):
        offsets = [offset for p, offset in acks if p == partition]
        assert offsets == list(range(len(offsets)))
        assert await log.end_offset(partition) == len(offsets)
        entries = await log.read(partition, 0)
        assert [e.offset for e in entries] == offsets
        assert all(partition_for(e.record.key, PARTITIONS) == partition for e in entries)


async def test_read_from_the_middle_with_a_limit(log: DurableLog) -> None:
    await log.append([record("dev-1", str(i).encode()) for i in range(10)])
    partition = partition_for("dev-1", PARTITIONS)
    middle = await log.read(partition, 4, limit=3)
    assert [(e.offset, e.record.body) for e in middle] == [(4, b"4"), (5, b"5"), (6, b"6")]
    assert [e.offset for e in await log.read(partition, 8)] == [8, 9]
    assert await log.read(partition, 10) == []
    assert await log.read(partition, 99) == []
    assert len(await log.read(partition, 0, limit=1)) == 1


async def test_read_default_limit_is_a_thousand(log: DurableLog) -> None:
    await log.append([record("dev-1") for _ in range(1200)])
    partition = partition_for("dev-1", PARTITIONS)
    assert len(await log.read(partition, 0)) == 1000
    assert len(await log.read(partition, 1000)) == 200


@pytest.mark.parametrize(
    ("partition", "offset", "limit"),
    [(-1, 0, 10), (PARTITIONS, 0, 10), (0, -1, 10), (0, 0, 0)],
)
async def test_bad_reads_are_refused(
    log: DurableLog, partition: int, offset: int, limit: int
) -> None:
    with pytest.raises(InvalidRequest):
        await log.read(partition, offset, limit)


async def test_consumer_positions(log: DurableLog) -> None:
    await log.append([record("dev-1") for _ in range(5)])
    partition = partition_for("dev-1", PARTITIONS)
    assert await log.position("analytics", partition) == 0
    await log.commit("analytics", partition, 3)
    await log.commit("workspace", partition, 5)
    assert await log.position("analytics", partition) == 3
    assert await log.position("workspace", partition) == 5
    assert await log.position("analytics", (partition + 1) % PARTITIONS) == 0
    await log.commit("analytics", partition, 1)  # a consumer may rewind
    assert await log.position("analytics", partition) == 1


@pytest.mark.parametrize(("consumer", "offset"), [("", 0), ("analytics", -1), ("analytics", 6)])
async def test_bad_commits_are_refused(log: DurableLog, consumer: str, offset: int) -> None:
    await log.append([record("dev-1") for _ in range(5)])
    partition = partition_for("dev-1", PARTITIONS)
    with pytest.raises(InvalidRequest):
        await log.commit(consumer, partition, offset)
    with pytest.raises(InvalidRequest):
        await log.commit("analytics", PARTITIONS, 0)
    assert await log.position("analytics", partition) == 0


async def test_many_concurrent_appenders_get_distinct_dense_offsets(log: DurableLog) -> None:
    async def appender(n: int) -> list[tuple[int, int]]:
        acks = []
        for i in range(20):
            acks += await log.append([record(f"device-{n % 37}", f"{n}:{i}".encode())])
        return acks

    results = await asyncio.gather(*(appender(n) for n in range(200)))
    acks = [ack for result in results for ack in result]
    assert len(set(acks)) == 4000
    per_partition = Counter(partition for partition, _ in acks)
    stored = {}
    for partition in range(PARTITIONS):
        assert await log.end_offset(partition) == per_partition[partition]
        offset = 0
        while entries := await log.read(partition, offset):
            stored.update({(e.partition, e.offset): e.record.body for e in entries})
            offset = entries[-1].offset + 1
    for n, result in enumerate(results):
        # Each appender's records are where it was told, in its own order.
        assert [stored[ack] for ack in result] == [f"{n}:{i}".encode() for i in range(20)]


async def test_one_append_is_contiguous_in_each_partition(log: DurableLog) -> None:
    async def batch(n: int) -> list[tuple[int, int]]:
        return await log.append([record("dev-1", f"{n}:{i}".encode()) for i in range(10)])

    for acks in await asyncio.gather(*(batch(n) for n in range(20))):
        offsets = [offset for _, offset in acks]
        assert offsets == list(range(offsets[0], offsets[0] + 10))


async def test_a_closed_log_refuses_every_call(log: DurableLog) -> None:
    await log.append([record()])
    await log.close()
    await log.close()  # idempotent
    with pytest.raises(LogClosed):
        await log.append([record()])
    with pytest.raises(LogClosed):
        await log.read(0, 0)
    with pytest.raises(LogClosed):
        await log.end_offset(0)
    with pytest.raises(LogClosed):
        await log.commit("analytics", 0, 0)
    with pytest.raises(LogClosed):
        await log.position("analytics", 0)


async def test_an_append_with_a_non_record_stores_nothing(log: DurableLog) -> None:
    with pytest.raises(RecordInvalid):
        await log.append([record("dev-1"), b"not a record"])  # type: ignore[list-item]  # on purpose
    assert await log.end_offset(partition_for("dev-1", PARTITIONS)) == 0


def test_a_memory_log_needs_a_partition() -> None:
    with pytest.raises(InvalidRequest, match="at least 1"):
        MemoryLog(partitions=0)
