"""The workspace's consumer of the durable log: read, map to Arrow, insert, then commit.

``Batcher`` is the I/O-free core that decides when a micro-batch is due: at ``max_rows`` rows,
or ``max_delay`` seconds after its first pending entry, whichever comes first. ``LogIngest`` is
the thin async shell: it reads its partitions from their positions, maps entries with
``RowBuilder``, appends the tables to the store, and only then commits the new positions. A crash
between insert and commit re-reads those entries; the store's keys make the second insert a
no-op (at least once delivery, exactly-once rows).

``log_ingest_workers`` splits the partitions among several ``LogIngest`` workers, each
appending in its own store lane, so ingest uses every core. The hub puts all of a device's
messages in one partition, so every copy of an event comes through one worker, which is what
the store's idempotency check needs.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import pyarrow as pa  # type: ignore[import-untyped]  # pyarrow ships no type hints

from iotsec.stream import DurableLog
from iotsec.workspace.rows import HubIdentity, RowBuilder

__all__ = ["CONSUMER", "Appender", "BatchPolicy", "Batcher", "LogIngest", "log_ingest_workers"]

#: The consumer name whose positions the workspace commits.
CONSUMER = "workspace"


class Appender(Protocol):
    """What ingest needs of the store."""

    def append(self, table: str, data: pa.Table, *, lane: int = 0) -> int:
        """Insert ``data`` into ``table``, skipping known keys; returns new rows.

        Appends in one ``lane`` are serialized; every copy of an event uses the same lane.
        """


@dataclass(frozen=True, slots=True)
class BatchPolicy:
    """When a micro-batch is flushed: ``max_rows`` rows or ``max_delay`` seconds."""

    # Under load a batch fills before max_delay: 50k rows cost a DuckDB insert about 30% less
    # CPU per row than 10k (its fixed cost is spread further); idle, max_delay decides.
    max_rows: int = 50_000
    max_delay: float = 1.0
    read_limit: int = 1000
    idle_poll: float = 0.05

    def __post_init__(self) -> None:
        if self.max_rows < 1 or self.read_limit < 1:
            raise ValueError("max_rows and read_limit must be at least 1")
        if self.max_delay <= 0 or self.idle_poll <= 0:
            raise ValueError("max_delay and idle_poll must be positive")


class Batcher:
    """Counts what is pending and says when to flush (no I/O, clock passed in).

    >>> b = Batcher(BatchPolicy(max_rows=3, max_delay=1.0))
    >>> b.pending(entries=1, rows=2, now=10.0); b.due(10.5)
    False
    >>> b.due(11.0)
    True
    >>> b.pending(entries=1, rows=1, now=10.6); b.due(10.6)
    True
    """

    def __init__(self, policy: BatchPolicy) -> None:
        self.policy = policy
        self.rows = 0
        self.entries = 0
        self.since: float | None = None

    def pending(self, *, entries: int, rows: int, now: float) -> None:
        """Note ``entries`` read, giving ``rows`` rows, at ``now``."""
        if entries and self.since is None:
            self.since = now
        self.entries += entries
        self.rows += rows

    def due(self, now: float) -> bool:
        """Whether the pending batch should be flushed at ``now``."""
        if self.rows >= self.policy.max_rows:
            return True
        return self.since is not None and now - self.since >= self.policy.max_delay

    def wait(self, now: float) -> float:
        """How long to sleep when the log has nothing new: until due, at most ``idle_poll``."""
        if self.since is None:
            return self.policy.idle_poll
        return max(0.0, min(self.policy.idle_poll, self.since + self.policy.max_delay - now))

    def flushed(self) -> None:
        """Start a new batch."""
        self.rows = self.entries = 0
        self.since = None


class LogIngest:
    """Feeds the workspace tables from the durable log (consumer ``workspace``).

    It reads ``partitions`` (default: all) and appends in store lane ``lane``.
    """

    def __init__(
        self,
        log: DurableLog,
        store: Appender,
        hub: HubIdentity,
        *,
        policy: BatchPolicy = BatchPolicy(),
        clock: Callable[[], float] = time.monotonic,
        consumer: str = CONSUMER,
        partitions: Sequence[int] | None = None,
        lane: int = 0,
    ) -> None:
        self._log = log
        self._partitions = list(range(log.partitions) if partitions is None else partitions)
        if not self._partitions:
            raise ValueError("a LogIngest needs at least one partition")
        self._lane = lane
        self._store = store
        self._builder = RowBuilder(hub)
        self._batcher = Batcher(policy)
        self._clock = clock
        self._consumer = consumer
        self._next: dict[int, int] | None = None
        self._committed: dict[int, int] = {}
        self.inserted = 0

    @property
    def partitions(self) -> list[int]:
        """The log partitions this ingest reads."""
        return list(self._partitions)

    async def poll(self) -> int:
        """Read one round of every partition; flush if a batch is due. Returns entries read."""
        if self._next is None:
            self._committed = {
                p: await self._log.position(self._consumer, p) for p in self._partitions
            }
            self._next = dict(self._committed)
        read = 0
        for partition, offset in list(self._next.items()):
            entries = await self._log.read(partition, offset, self._batcher.policy.read_limit)
            if not entries:
                continue
            rows = self._builder.add_all(entries)
            self._next[partition] = entries[-1].offset + 1
            self._batcher.pending(entries=len(entries), rows=rows, now=self._clock())
            read += len(entries)
            if self._batcher.due(self._clock()):
                await self.flush()
        if self._batcher.due(self._clock()):
            await self.flush()
        return read

    async def flush(self) -> int:
        """Insert the pending rows, then commit the positions they came from; returns new rows."""
        tables = self._builder.build()
        inserted = 0
        try:
            for name, table in tables.items():
                inserted += await asyncio.to_thread(
                    functools.partial(self._store.append, name, table, lane=self._lane)
                )
            for partition, offset in (self._next or {}).items():
                if offset != self._committed[partition]:
                    await self._log.commit(self._consumer, partition, offset)
                    self._committed[partition] = offset
        except BaseException:
            # Start again from the committed positions: the rows of this batch come back.
            self._next = None
            raise
        finally:
            self._batcher.flushed()
        self.inserted += inserted
        return inserted

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until ``stop`` is set, then flush what is pending."""
        while not stop.is_set():
            if await self.poll():
                continue
            try:
                await asyncio.wait_for(stop.wait(), self._batcher.wait(self._clock()))
            except TimeoutError:
                continue  # nothing new yet: poll again
        if self._batcher.entries:
            await self.flush()


def log_ingest_workers(
    log: DurableLog,
    store: Appender,
    hub: HubIdentity,
    *,
    workers: int,
    policy: BatchPolicy = BatchPolicy(),
    consumer: str = CONSUMER,
) -> list[LogIngest]:
    """``workers`` ingests (at most one per partition), worker ``i`` reading the partitions
    ``p`` with ``p % workers == i`` and appending in lane ``i``.

    >>> from iotsec.stream import MemoryLog
    >>> from iotsec.workspace.store import WorkspaceStore
    >>> hub = HubIdentity("/subscriptions/0/resourceGroups/rg/providers/"
    ...                   "Microsoft.Devices/IotHubs/h")
    >>> log, store = MemoryLog(partitions=4), WorkspaceStore(None)
    >>> ingests = log_ingest_workers(log, store, hub, workers=2)
    >>> [i.partitions for i in ingests]
    [[0, 2], [1, 3]]
    >>> store.close()
    """
    count = max(1, min(workers, log.partitions))
    return [
        LogIngest(
            log,
            store,
            hub,
            policy=policy,
            consumer=consumer,
            partitions=range(i, log.partitions, count),
            lane=i,
        )
        for i in range(count)
    ]
