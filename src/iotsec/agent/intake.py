"""From the collectors into the durable queue: collect, aggregate, route by priority, push.

:class:`Intake` is the worker-thread half of the agent's collection loop (the timers are the
runner's): one :meth:`Intake.step` takes a new configuration if there is one, drains the
triggered collectors through the :class:`~iotsec.agent.aggregate.Aggregator`, flushes the
aggregation windows that ended, runs the periodic collectors when a snapshot is due, and pushes
everything into the :class:`~iotsec.agent.queue.DurableQueue`, each event in the queue its
priority names (``Off``: not at all). Only one thread calls it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from iotsec.agent.aggregate import Aggregator
from iotsec.agent.collection import Collection, lane_of
from iotsec.agent.config import AgentConfiguration
from iotsec.agent.queue import DurableQueue, QueueCounts, QueueName
from iotsec.agent.stats import dropped_events_statistics_event
from iotsec.schema import Event, MessageInvalid
from iotsec.schema.payloads import DiagnosticSeverity

__all__ = ["Intake", "StepPlan"]

log = logging.getLogger("iotsec.agent")


@dataclass(frozen=True, slots=True)
class StepPlan:
    """What one step does, as the runner's timers decided."""

    #: A new configuration to take first (the twin changed, or the polling stretch did).
    config: AgentConfiguration | None = None
    #: Events made elsewhere (ConfigurationError, Diagnostic) to queue with the rest.
    pending: tuple[Event, ...] = ()
    triggered: bool = False
    snapshot: bool = False
    #: Polling intervals are stretched by this factor (the agent is over its budget).
    factor: float = 1.0
    #: Problems met elsewhere, as (severity, source, message), to send as Diagnostics.
    notes: tuple[tuple[DiagnosticSeverity, str, str], ...] = ()


class Intake:
    """Collectors, aggregator and queue, driven one step at a time from one thread.

    Args:
        collection: the running collectors.
        aggregator: collapses identical process and connection events.
        queue: where events wait to be sent.
        config: the configuration in force until a step brings another.
        now: wall time for event stamps; ``time``: the same as unix seconds.
    """

    def __init__(
        self,
        collection: Collection,
        aggregator: Aggregator,
        queue: DurableQueue,
        config: AgentConfiguration,
        *,
        now: Callable[[], datetime],
        time: Callable[[], float],
    ) -> None:
        self.collection = collection
        self._aggregator = aggregator
        self._queue = queue
        self._config = config
        self._now = now
        self._time = time

    def step(self, plan: StepPlan) -> bool:
        """Do ``plan``; True when more than one message's worth waits in the queue."""
        events = list(plan.pending)
        if plan.config is not None:
            events += self._configure(plan.config, plan.factor)
        for severity, source, message in plan.notes:
            events += self.collection.diagnostic(severity, source, message)
        config = self._config
        at = self._now()
        if plan.triggered:
            for event in self.collection.collect("Triggered", at):
                events += self._aggregator.add(event)
        events += self._aggregator.flush(self._time())
        if plan.snapshot:
            events += self.collection.start_missing()
            events += self.collection.collect("Periodic", at)
        pushed = self.push(events)
        return pushed > 0 and self._queue.depth().bytes > config.max_message_size_in_bytes

    def flush(self, pending: Sequence[Event] = ()) -> None:
        """Queue ``pending`` and every open aggregation window (at shutdown)."""
        self.push([*pending, *self._aggregator.flush_all()])

    def push(self, events: Sequence[Event]) -> int:
        """Queue ``events`` by priority (Off: not at all); returns how many were offered."""
        lanes: dict[QueueName, list[Event]] = {"High": [], "Low": []}
        for event in events:
            lane = lane_of(self._config, event.name)
            if lane is not None:
                lanes[lane].append(event)
        for lane, batch in lanes.items():
            if not batch:
                continue
            try:
                self._queue.push(batch, lane)
            except MessageInvalid:
                # One bad event (a collector bug) must not cost the others their place.
                for event in batch:
                    try:
                        self._queue.push([event], lane)
                    except MessageInvalid as exc:
                        log.error("dropping an invalid %s event: %s", event.name, exc)
        return sum(map(len, lanes.values()))

    def _configure(self, config: AgentConfiguration, factor: float) -> list[Event]:
        self._config = config
        events = self._aggregator.configure(config)
        if config.max_local_cache_size_in_bytes != self._queue.max_bytes:
            self._queue.resize(config.max_local_cache_size_in_bytes)
        events += self.collection.configure(config)
        self.collection.stretch(factor)
        return events

    def dropped_statistics(self, refused: dict[QueueName, int]) -> Event:
        """A DroppedEventsStatistics event for the period that ends now (counts are reset).

        ``refused`` counts the events of messages the hub refused for good, by queue. Events
        the collectors' own buffers lost were seen but never queued: collected and dropped.
        """
        lost = self.collection.take_dropped()
        counts = [
            QueueCounts(
                c.queue,
                collected=c.collected + lost[c.queue],
                dropped=c.dropped + lost[c.queue] + refused[c.queue],
            )
            for c in self._queue.take_counts()
        ]
        return dropped_events_statistics_event(counts, at=self._now())
