"""The stream processor: read the durable log, enrich, detect, write, then commit.

``AnalyticsPipeline`` is the thin async shell. It reads the partitions it owns from its
consumer positions, turns entries into observations (``Enricher``), hands each batch to a
``Processor`` (detectors, the alert lifecycle and the sinks, built by the composition root), and
commits the new positions only after the processor returned, that is after the results are
written: delivery is at least once, and the lifecycle's stable alert ids make a replay
idempotent.

The log is partitioned by device (``iotsec.stream.partition_for``), and every detector keeps
its state per device, so several pipelines, each owning a disjoint set of partitions, can share
the work; the embedded default runs one pipeline that owns them all.

Enriching and processing run in a worker thread, never on the event loop (which, in ``iotsec
up``, also serves the devices), and a batch read from the log goes through the processor in
chunks of about ``PipelinePolicy.chunk`` observations: the observations of a few entries live
at a time, so they die young instead of filling the garbage collector's oldest generation.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from iotsec.analytics.enrich import Enricher
from iotsec.analytics.observation import Observation
from iotsec.stream import DurableLog, Entry

__all__ = ["CONSUMER", "AnalyticsPipeline", "PipelinePolicy", "Processor"]

log = logging.getLogger("iotsec.analytics.pipeline")

#: The consumer name whose positions the analytics pipeline commits.
CONSUMER = "analytics"


class Processor(Protocol):
    """Runs the detectors over a batch and writes what they found, durably, before returning."""

    def process(self, observations: Sequence[Observation], now: datetime) -> None:
        """Detect over ``observations`` (in log order) and write alerts and recommendations."""
        ...

    def tick(self, now: datetime) -> None:
        """Time-driven work: silent devices, window expiry, recommendation evaluation."""
        ...


@dataclass(frozen=True, slots=True)
class PipelinePolicy:
    """How much to read per partition at a time, how often to tick, how long to idle."""

    read_limit: int = 2000
    tick_every: float = 1.0
    idle_poll: float = 0.05
    #: Observations handed to the processor at a time (a batch's entries are never split).
    chunk: int = 1000

    def __post_init__(self) -> None:
        if self.read_limit < 1 or self.chunk < 1:
            raise ValueError("read_limit and chunk must be at least 1")
        if self.tick_every <= 0 or self.idle_poll <= 0:
            raise ValueError("tick_every and idle_poll must be positive")


class AnalyticsPipeline:
    """Consumes the durable log (consumer ``analytics``) for the partitions it owns."""

    def __init__(
        self,
        log: DurableLog,
        enricher: Enricher,
        processor: Processor,
        *,
        partitions: Sequence[int] | None = None,
        policy: PipelinePolicy = PipelinePolicy(),
        clock: Callable[[], float] = time.time,
        consumer: str = CONSUMER,
    ) -> None:
        self._log = log
        self._enricher = enricher
        self._processor = processor
        self._partitions = (
            list(partitions) if partitions is not None else list(range(log.partitions))
        )
        bad = [p for p in self._partitions if not 0 <= p < log.partitions]
        if bad:
            raise ValueError(f"the log has no partition {bad[0]}")
        self._policy = policy
        self._clock = clock
        self._consumer = consumer
        self._next: dict[int, int] | None = None
        self._last_tick = 0.0
        #: Entries and observations processed so far.
        self.entries = 0
        self.observations = 0

    async def poll(self) -> int:
        """Read one round of the owned partitions and process it; returns entries read."""
        if self._next is None:
            self._next = {p: await self._log.position(self._consumer, p) for p in self._partitions}
        read = 0
        for partition in self._partitions:
            offset = self._next[partition]
            entries = await self._log.read(partition, offset, self._policy.read_limit)
            if not entries:
                continue
            now = datetime.fromtimestamp(self._clock(), UTC)
            try:
                observed = await asyncio.to_thread(self._process, entries, now)
            except BaseException:
                self._next = None  # re-read from the committed positions
                raise
            new_offset = entries[-1].offset + 1
            await self._log.commit(self._consumer, partition, new_offset)
            self._next[partition] = new_offset
            read += len(entries)
            self.entries += len(entries)
            self.observations += observed
        await self._maybe_tick()
        return read

    def _process(self, entries: Sequence[Entry], now: datetime) -> int:
        """Enrich ``entries`` and process them, a chunk at a time; returns the observations."""
        chunk: list[Observation] = []
        done = 0
        for entry in entries:
            chunk.extend(self._enricher.observations(entry))
            if len(chunk) >= self._policy.chunk:
                self._processor.process(chunk, now)
                done += len(chunk)
                chunk = []
        if chunk or not done:
            self._processor.process(chunk, now)
        return done + len(chunk)

    async def _maybe_tick(self) -> None:
        now = self._clock()
        if now - self._last_tick >= self._policy.tick_every:
            self._last_tick = now
            await asyncio.to_thread(self._processor.tick, datetime.fromtimestamp(now, UTC))

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until ``stop`` is set; an error is logged and retried, never fatal."""
        while not stop.is_set():
            try:
                if await self.poll():
                    continue
            except Exception:
                # A failed batch is re-read from the committed positions after a pause; the
                # operator sees why in the log.
                log.exception("analytics batch failed; retrying from the committed position")
                await _pause(stop, 1.0)
                continue
            await _pause(stop, self._policy.idle_poll)


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        return
