"""The durable on-device queue (real SQLite files in a temp dir) and the reconnect backoff."""

from __future__ import annotations

import doctest
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest

from iotsec.agent import queue as queue_module
from iotsec.agent.errors import QueueError
from iotsec.agent.queue import Backoff, Batch, DurableQueue, QueueCounts, message_overhead
from iotsec.schema import (
    ConnectionCreate,
    ConnectionCreateEvent,
    Event,
    MessageInvalid,
    ProcessCreate,
    ProcessCreateEvent,
)
from iotsec.sdk import build_security_messages

T0 = datetime(2024, 3, 1, 12, 0, 0, tzinfo=UTC)
AGENT_ID = "b97faf0a-0f57-471f-9dab-46a8e1764946"
ROOT = Path(__file__).resolve().parents[2]


def event(n: int, *, padding: int = 0) -> ProcessCreateEvent:
    row = ProcessCreate(
        executable="/usr/bin/worker",
        process_id=n,
        parent_process_id=1,
        user_id="0",
        command_line=f"seq-{n} " + "x" * padding,
    )
    return ProcessCreateEvent.create([row], at=T0, event_id=f"00000000-0000-0000-0000-{n:012d}")


def size_of(ev: Event) -> int:
    return len(msgspec.json.encode(ev))


def seqs(batch: Batch) -> list[int]:
    return [int(e.payload[0].command_line.split()[0][4:]) for e in batch.events]  # type: ignore[union-attr]


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "queue.db"


@pytest.fixture
def queue(path: Path) -> Iterator[DurableQueue]:
    with DurableQueue(path) as q:
        yield q


def test_doctests() -> None:
    assert doctest.testmod(queue_module).failed == 0


# --- order, batches and acks ------------------------------------------------------------------


def test_high_drains_before_low_and_each_oldest_first(queue: DurableQueue) -> None:
    queue.push([event(1), event(2)], "Low")
    queue.push([event(3), event(4)], "High")
    queue.push([event(5)], "Low")
    batch = queue.next_batch(204_800)
    assert seqs(batch) == [3, 4, 1, 2, 5]
    assert batch.queues == ("High", "High", "Low", "Low", "Low")
    assert batch.priority == "High"
    # The low timer sends with Low first and High as padding, as the ASC agents do.
    low_first = queue.next_batch(204_800, prefer="Low")
    assert seqs(low_first) == [1, 2, 5, 3, 4]
    assert low_first.priority == "Low"


def test_a_batch_makes_exactly_one_message_of_the_predicted_size(queue: DurableQueue) -> None:
    queue.push([event(n, padding=n * 7) for n in range(40)], "Low")
    queue.push([event(n, padding=n * 3) for n in range(100, 120)], "High")
    limit = 8192
    sent: list[int] = []
    while batch := queue.next_batch(limit):
        [message] = build_security_messages(batch.events, agent_id=AGENT_ID, max_bytes=limit)
        assert len(message.body) == batch.message_bytes <= limit
        remaining = queue.next_batch(262_144)
        if len(remaining) > len(batch):  # the next event would not have fitted
            following = remaining.events[len(batch)]
            assert batch.message_bytes + 1 + size_of(following) > limit
        sent.extend(seqs(batch))
        queue.ack(batch)
    # Each queue in order; Low events pad messages whose next High event does not fit.
    assert [n for n in sent if n >= 100] == list(range(100, 120))
    assert [n for n in sent if n < 100] == list(range(40))


def test_message_overhead_depends_on_the_agent_version(queue: DurableQueue) -> None:
    queue.push([event(1), event(2)], "High")
    for version in ("1.0.0", "10.20.30-beta+build.7"):
        batch = queue.next_batch(262_144, agent_version=version)
        [message] = build_security_messages(batch.events, agent_id=AGENT_ID, agent_version=version)
        assert len(message.body) == batch.message_bytes
        assert batch.message_bytes == message_overhead(version) + 2 * size_of(event(1)) + 1
    assert message_overhead("10.20.30-beta+build.7") > message_overhead("1.0.0")


def test_an_acked_event_is_never_returned_again(queue: DurableQueue) -> None:
    queue.push([event(1)], "High")
    first = queue.next_batch(204_800)
    assert first.ids == queue.next_batch(204_800).ids  # unacked: a peek returns it again
    queue.ack(first)
    assert len(queue.next_batch(204_800)) == 0
    queue.push([event(2)], "High")
    # The queue was empty, yet the new event does not reuse the acked id, so a late or
    # repeated ack of the old batch cannot delete it.
    queue.ack(first)
    again = queue.next_batch(204_800)
    assert seqs(again) == [2]
    assert again.ids[0] > first.ids[0]
    queue.ack(again)
    queue.ack(again)
    queue.ack(Batch())
    assert queue.depth().events == 0


def test_restart_keeps_unacked_events_and_counts(path: Path) -> None:
    with DurableQueue(path, max_bytes=20_000) as q:
        q.push([event(n) for n in range(3)], "High")
        q.push([event(n) for n in range(10, 100)], "Low")
        sent = q.next_batch(204_800)
        counts = q.counts()
        depth = q.depth()
        assert counts[1].dropped > 0
    with DurableQueue(path, max_bytes=20_000) as q:
        again = q.next_batch(204_800)
        assert again.ids == sent.ids
        assert again.events == sent.events
        assert q.counts() == counts
        assert q.depth() == depth


def test_counts_are_taken_and_reset_per_period(queue: DurableQueue) -> None:
    queue.push([event(1), event(2)], "High")
    queue.push([event(3)], "Low")
    assert queue.take_counts() == (
        QueueCounts("High", collected=2, dropped=0),
        QueueCounts("Low", collected=1, dropped=0),
    )
    assert queue.counts() == (QueueCounts("High", 0, 0), QueueCounts("Low", 0, 0))
    assert queue.depth().events == 3  # taking counts sends nothing


def test_depth_tracks_events_and_bytes(queue: DurableQueue) -> None:
    queue.push([event(1), event(2)], "High")
    queue.push([event(3)], "Low")
    depth = queue.depth()
    assert (depth.high_events, depth.low_events, depth.events) == (2, 1, 3)
    assert depth.high_bytes == 2 * size_of(event(1))
    assert depth.bytes == 3 * size_of(event(1))
    queue.ack(queue.next_batch(204_800))
    assert queue.depth().bytes == 0


def test_events_are_stored_in_canonical_form(queue: DurableQueue) -> None:
    # A lower-case protocol and a C-agent integer port are normalized before they are sized.
    row = ConnectionCreate(
        remote_address="10.0.0.1",
        remote_port=0,
        direction="In",
        protocol="tcp",
        process_id=1,
        executable="/usr/sbin/sshd",
    )
    queue.push([ConnectionCreateEvent.create([row], at=T0)], "Low")
    [stored] = queue.next_batch(204_800).events
    assert stored.payload[0].protocol == "TCP"  # type: ignore[union-attr]
    assert stored.payload[0].remote_port == ""  # type: ignore[union-attr]


def test_an_invalid_event_is_refused_and_nothing_is_stored(queue: DurableQueue) -> None:
    bad = ConnectionCreate(
        remote_address="not-an-ip",
        remote_port="1",
        direction="Out",
        protocol="TCP",
        process_id=1,
        executable="/bin/nc",
    )
    with pytest.raises(MessageInvalid) as caught:
        queue.push([event(1), ConnectionCreateEvent.create([bad], at=T0)], "High")
    assert caught.value.issues[0].path == "Events[1].Payload[0].RemoteAddress"
    assert queue.depth().events == 0
    assert queue.counts()[0].collected == 0


# --- the size cap -----------------------------------------------------------------------------


def test_a_full_queue_evicts_the_oldest_low_events_first(path: Path) -> None:
    size = size_of(event(1))
    with DurableQueue(path, max_bytes=size * 4) as q:
        q.push([event(1), event(2)], "High")
        q.push([event(3), event(4)], "Low")
        assert q.push([event(5)], "Low") == 1  # the oldest Low goes
        assert seqs(q.next_batch(204_800)) == [1, 2, 4, 5]
        assert q.push([event(6), event(7)], "High") == 2  # Low goes before older High
        assert seqs(q.next_batch(204_800)) == [1, 2, 6, 7]
        assert q.push([event(8)], "High") == 1  # no Low left: the oldest High goes
        assert seqs(q.next_batch(204_800)) == [2, 6, 7, 8]
        # A Low push never evicts High: with no Low room, the new Low event is the one dropped.
        assert q.push([event(9)], "Low") == 1
        assert seqs(q.next_batch(204_800)) == [2, 6, 7, 8]
        assert q.counts() == (
            QueueCounts("High", collected=5, dropped=1),
            QueueCounts("Low", collected=4, dropped=4),
        )
        assert q.depth().bytes <= q.max_bytes


def test_one_push_larger_than_the_cap_keeps_its_newest_events(path: Path) -> None:
    size = size_of(event(1))
    with DurableQueue(path, max_bytes=size * 3) as q:
        assert q.push([event(n) for n in range(10)], "Low") == 7
        assert seqs(q.next_batch(204_800)) == [7, 8, 9]
        assert q.counts()[1] == QueueCounts("Low", collected=10, dropped=7)


def test_an_event_larger_than_the_cache_is_dropped_on_arrival(path: Path) -> None:
    with DurableQueue(path, max_bytes=2_000) as q:
        q.push([event(1)], "High")
        assert q.push([event(2, padding=5_000), event(3)], "High") == 1
        assert seqs(q.next_batch(204_800)) == [1, 3]
        assert q.counts()[0] == QueueCounts("High", collected=3, dropped=1)


def test_resizing_evicts_down_to_the_new_cap(path: Path) -> None:
    size = size_of(event(1))
    with DurableQueue(path, max_bytes=size * 10) as q:
        q.push([event(1), event(2)], "High")
        q.push([event(3), event(4)], "Low")
        assert q.resize(size * 2) == 2
        assert seqs(q.next_batch(204_800)) == [1, 2]
        assert q.resize(size) == 1
        assert seqs(q.next_batch(204_800)) == [2]
        assert q.max_bytes == size


def test_events_too_big_for_any_message_are_dropped_when_read(queue: DurableQueue) -> None:
    queue.push([event(1), event(2, padding=9_000), event(3)], "Low")
    batch = queue.next_batch(8192)
    assert seqs(batch) == [1, 3]
    assert batch.discarded == 1
    assert queue.counts()[1].dropped == 1
    assert queue.depth().events == 2


# --- storage failures -------------------------------------------------------------------------


def test_a_file_that_is_not_a_database_is_a_queue_error(path: Path) -> None:
    path.write_bytes(b"this is not an SQLite database, just some bytes" * 100)
    with pytest.raises(QueueError) as caught:
        DurableQueue(path)
    assert caught.value.path == str(path)
    assert str(path) in str(caught.value)


def test_a_corrupted_page_is_a_queue_error(path: Path) -> None:
    with DurableQueue(path, max_bytes=10_000_000) as q:
        q.push([event(n, padding=200) for n in range(500)], "Low")
    assert not Path(f"{path}-wal").exists() or Path(f"{path}-wal").stat().st_size == 0
    data = bytearray(path.read_bytes())
    assert len(data) > 16 * 4096
    data[8 * 4096 : 12 * 4096] = os.urandom(4 * 4096)
    path.write_bytes(bytes(data))
    # The integrity check on opening notices, before any event is handed out.
    with pytest.raises(QueueError) as caught:
        DurableQueue(path)
    assert caught.value.path == str(path)
    assert "corrupt" in caught.value.reason or "malformed" in caught.value.reason


def test_a_missing_directory_is_a_queue_error(tmp_path: Path) -> None:
    with pytest.raises(QueueError, match="cannot"):
        DurableQueue(tmp_path / "absent" / "queue.db")


def test_a_closed_queue_raises_queue_error(path: Path) -> None:
    q = DurableQueue(path)
    q.close()
    with pytest.raises(QueueError, match="closed"):
        q.push([event(1)], "High")


# --- killed mid-stream ------------------------------------------------------------------------

_WRITER = textwrap.dedent(
    """
    import sys
    from datetime import UTC, datetime
    from iotsec.agent.queue import DurableQueue
    from iotsec.schema import ProcessCreate, ProcessCreateEvent

    queue = DurableQueue(sys.argv[1], max_bytes=100_000_000)
    at = datetime(2024, 1, 1, tzinfo=UTC)
    n = 0
    while True:
        events = [
            ProcessCreateEvent.create([ProcessCreate(
                executable="/bin/x", process_id=i, parent_process_id=1, user_id="0",
                command_line=f"seq-{i}")], at=at)
            for i in range(n, n + 5)
        ]
        queue.push(events, "Low")
        n += 5
        print(n, flush=True)
    """
)


def test_kill_9_mid_stream_loses_nothing_a_push_acknowledged(path: Path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path)],
        stdout=subprocess.PIPE,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    assert child.stdout is not None
    acknowledged = 0
    deadline = time.monotonic() + 60
    try:
        while acknowledged < 1000 and time.monotonic() < deadline:
            line = child.stdout.readline()
            if not line:
                break
            acknowledged = int(line)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        # Lines already written before the kill were acknowledged too.
        for line in child.stdout.read().split():
            acknowledged = int(line)
        child.stdout.close()
        child.wait()
    assert child.returncode == -signal.SIGKILL
    assert acknowledged >= 1000, "the writer did not get going"
    with DurableQueue(path) as q:
        stored: list[int] = []
        while batch := q.next_batch(262_144):
            stored.extend(seqs(batch))
            q.ack(batch)
    # Every acknowledged event is there, in order; pushes are atomic, so any extra events
    # (pushed but not yet reported) come in whole pushes of five.
    assert stored[:acknowledged] == list(range(acknowledged))
    assert stored == list(range(len(stored)))
    assert len(stored) % 5 == 0


# --- backoff ----------------------------------------------------------------------------------


def test_backoff_is_exponential_capped_and_fully_jittered() -> None:
    top = Backoff(base=0.5, cap=10.0, rand=lambda: 0.999999)
    assert [round(top.delay(n), 3) for n in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert Backoff(rand=lambda: 0.0).delay(5) == 0.0
    assert Backoff(base=1.0, cap=300.0, rand=lambda: 0.25).delay(4) == 4.0
    assert Backoff(cap=60.0).ceiling(10_000) == 60.0  # no overflow
    assert Backoff().ceiling(-3) == 1.0
    values = iter([0.5, 0.5, 0.5])
    delays = Backoff(base=2.0, cap=100.0, rand=lambda: next(values)).delays()
    assert [next(delays) for _ in range(3)] == [1.0, 2.0, 4.0]


def test_backoff_with_the_real_random_stays_within_its_ceiling() -> None:
    backoff = Backoff(base=1.0, cap=30.0)
    for attempt in range(20):
        assert 0.0 <= backoff.delay(attempt) < backoff.ceiling(attempt)


@pytest.mark.parametrize("kwargs", [{"base": 0.0}, {"base": 10.0, "cap": 5.0}, {"factor": 0.5}])
def test_backoff_refuses_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="base"):
        Backoff(**kwargs)  # type: ignore[arg-type]
