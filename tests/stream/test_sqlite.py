"""What only the SQLite log does: survive a reopen, commit in groups, translate its errors."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from iotsec.stream import (
    InvalidRequest,
    LogClosed,
    LogError,
    SqliteLog,
    _sql,
    partition_for,
)
from tests.stream.conftest import PARTITIONS, record


async def test_reopen_recovers_offsets_positions_and_records(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    async with await SqliteLog.open(path, partitions=PARTITIONS) as log:
        acks = await log.append([record(f"device-{i}", str(i).encode()) for i in range(30)])
        await log.commit("analytics", acks[0][0], 2)
    async with await SqliteLog.open(path, partitions=PARTITIONS) as log:
        for partition in range(PARTITIONS):
            assert await log.end_offset(partition) == sum(p == partition for p, _ in acks)
        assert await log.position("analytics", acks[0][0]) == 2
        [(partition, offset)] = await log.append([record("device-0", b"after")])
        assert offset == sum(p == partition for p, _ in acks)
        [entry] = await log.read(*acks[0], limit=1)
        assert entry.record.body == b"0"


async def test_the_file_is_in_wal_mode_and_has_the_documented_tables(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    async with await SqliteLog.open(path) as log:
        assert log.partitions == 8
        assert log.path == path
        await log.append([record()])
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert conn.execute("SELECT part, seq, key, kind FROM records").fetchall() == [
            (partition_for("dev-1", 8), 0, "dev-1", "d2c")
        ]
    finally:
        conn.close()


async def test_concurrent_appends_share_transactions(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    async with await SqliteLog.open(path, partitions=PARTITIONS) as log:
        # Hold the write lock from another connection, so the writer blocks in its first
        # transaction while the other appends queue up: they must go in one or two more.
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        appends = [asyncio.create_task(log.append([record(f"d{i}")])) for i in range(1000)]
        await asyncio.sleep(0.05)
        assert not any(task.done() for task in appends)
        blocker.execute("ROLLBACK")
        blocker.close()
        acks = await asyncio.gather(*appends)
        assert len({ack for [ack] in acks}) == 1000
        assert log.transactions <= 3


async def test_batches_stay_under_the_record_cap(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    async with await SqliteLog.open(path, partitions=PARTITIONS, max_batch_records=100) as log:
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        appends = [asyncio.create_task(log.append([record(f"d{i}")])) for i in range(1000)]
        await asyncio.sleep(0.05)
        blocker.execute("ROLLBACK")
        blocker.close()
        await asyncio.gather(*appends)
        assert 10 <= log.transactions <= 11
        # An append larger than the cap goes alone, whole.
        acks = await log.append([record("dev-1") for _ in range(250)])
        assert [offset for _, offset in acks] == list(range(acks[0][1], acks[0][1] + 250))


async def test_close_finishes_pending_appends(tmp_path: Path) -> None:
    log = await SqliteLog.open(tmp_path / "log.db", partitions=PARTITIONS)
    appends = [asyncio.create_task(log.append([record(f"d{i}")])) for i in range(100)]
    await asyncio.sleep(0)  # let them queue
    await log.close()
    assert len({ack for [ack] in await asyncio.gather(*appends)}) == 100
    with pytest.raises(LogClosed) as caught:
        await log.append([record()])
    assert caught.value.path == tmp_path / "log.db"


async def test_a_missing_directory_is_a_log_error_with_the_path(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "log.db"
    with pytest.raises(LogError) as caught:
        await SqliteLog.open(path)
    assert caught.value.path == path
    assert str(path) in str(caught.value)
    assert isinstance(caught.value.__cause__, sqlite3.Error)


async def test_a_file_that_is_not_a_database_is_a_log_error(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    path.write_bytes(b"this is not SQLite" * 100)
    with pytest.raises(LogError, match="not a database"):
        await SqliteLog.open(path)


async def test_a_database_that_is_not_a_log_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE users (name TEXT)")
    conn.close()
    with pytest.raises(LogError, match="not an iotsec log"):
        await SqliteLog.open(path)


async def test_the_partition_count_cannot_change(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    await (await SqliteLog.open(path, partitions=4)).close()
    with pytest.raises(LogError, match="has 4 partitions, not 8"):
        await SqliteLog.open(path, partitions=8)


async def test_a_second_writer_is_refused_not_merged(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    async with await SqliteLog.open(path, partitions=PARTITIONS) as log:
        [(partition, offset)] = await log.append([record("dev-1", b"first")])
        other = sqlite3.connect(path)
        with other:
            other.execute(
                "INSERT INTO records VALUES (?, ?, 'dev-1', 'd2c', '{}', x'00', 0)",
                (partition, offset + 1),
            )
        other.close()
        with pytest.raises(LogError, match="another process") as caught:
            await log.append([record("dev-1", b"second")])
        assert isinstance(caught.value.__cause__, sqlite3.IntegrityError)
        # The failed append took no offset: other partitions carry on.
        key = next(f"d{i}" for i in range(99) if partition_for(f"d{i}", PARTITIONS) != partition)
        [(_, other_offset)] = await log.append([record(key)])
        assert other_offset == 0
        assert await log.end_offset(partition) == offset + 1


def test_connections_sync_fully(tmp_path: Path) -> None:
    # kill -9 cannot tell FULL from NORMAL (the page cache survives it); a power loss can.
    conn = _sql.connect(tmp_path / "log.db")
    try:
        assert conn.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        conn.close()


async def test_a_corrupt_row_is_a_log_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    async with await SqliteLog.open(path, partitions=PARTITIONS) as log:
        other = sqlite3.connect(path)
        with other:
            other.execute("INSERT INTO records VALUES (0, 0, 'dev-1', 'd2c', '[1]', x'00', 0)")
        other.close()
        with pytest.raises(LogError, match="corrupt record at 0/0"):
            await log.read(0, 0)


@pytest.mark.parametrize(
    "options",
    [{"partitions": 0}, {"max_batch_records": 0}, {"max_batch_bytes": 0}],
)
async def test_bad_options_are_refused(tmp_path: Path, options: dict[str, int]) -> None:
    with pytest.raises(InvalidRequest, match="at least 1"):
        await SqliteLog.open(tmp_path / "log.db", **options)
    assert not (tmp_path / "log.db").exists()


class _StaleOnce(list[int]):
    """End offsets whose first read of ``partition`` is 0: the moment before the update."""

    def __init__(self, ends: list[int], partition: int) -> None:
        super().__init__(ends)
        self.partition: int | None = partition

    def __getitem__(self, index: int) -> int:  # type: ignore[override]
        if index == self.partition:
            self.partition = None
            return 0
        return super().__getitem__(index)


async def test_a_commit_of_entries_read_just_after_their_append_is_accepted(tmp_path: Path) -> None:
    # Readers see an append's rows as soon as it commits, a moment before the writer thread
    # moves its end offsets: a consumer that read and processed them in that moment commits
    # past the end the caller sees. The writer checks the end instead, exactly.
    async with await SqliteLog.open(tmp_path / "log.db", partitions=PARTITIONS) as log:
        [(partition, _), *_] = await log.append([record("device-0", b"x")] * 3)
        log._writer.committed = _StaleOnce(log._writer.committed, partition)
        await log.commit("analytics", partition, 3)
        assert await log.position("analytics", partition) == 3
        with pytest.raises(InvalidRequest, match=r"not in 0\.\.3"):
            await log.commit("analytics", partition, 4)
