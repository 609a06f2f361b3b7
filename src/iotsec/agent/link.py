"""The agent's side of the hub connection: the twin in, reported properties and the queue out.

:class:`Link` runs the link loop of the agent (see :mod:`iotsec.agent.runner`). Each pass
(:meth:`Link.step`) reads the twin when it must (at start, after a failure, and every
``twin_refresh`` seconds at a high-priority send), writes the reported properties when the
configuration changed, and sends what is due: the High queue every
``highPriorityMessageFrequency``, the Low queue every ``lowPriorityMessageFrequency`` (both at
once at start), and whatever waits beyond one message's worth. A failed pass keeps everything
in the queue; the loop retries after a jittered exponential backoff while collection goes on.

DroppedEventsStatistics is made here too, at the first high-priority send of each snapshot
period, so that it goes out at once rather than waiting (and perhaps being evicted) in a full
cache. The heartbeat is made here: a MessageStatistics event queued (High) just before each
high-priority send, with the agent's own CPU and memory, the queue depth and
``HeartbeatIntervalSeconds``. Only one waits in the queue at a time, so a long outage does not
fill the cache with heartbeats; when the link comes back a fresh one goes out at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from iotsec.agent.clock import Clock
from iotsec.agent.collection import lane_of
from iotsec.agent.config import AgentConfiguration, ConfigOutcome, reported_properties
from iotsec.agent.errors import QueueError
from iotsec.agent.queue import Backoff, DurableQueue, QueueName
from iotsec.agent.selfmon import SelfMonitor
from iotsec.agent.sender import Offload, Sender
from iotsec.agent.stats import message_statistics_event
from iotsec.agent.twinsync import TwinState
from iotsec.schema import Event
from iotsec.sdk import AsyncDeviceClient, SdkError, ThrottledError

__all__ = ["Link"]

log = logging.getLogger("iotsec.agent")

_NEVER = float("-inf")


class Link:
    """The twin and the sends, over one device client (see the module docstring).

    Args:
        client: the device client, its own retries off.
        twin: the desired document and the configuration in force.
        sender: drains the queue into messages.
        queue: the durable queue (for the heartbeat).
        clock: wall and monotonic time.
        monitor: the agent's self-monitor (for the heartbeat's figures).
        backoff: delays between failed passes.
        twin_refresh: seconds between twin reads made just in case.
        adopt: puts a twin outcome in force (the runner's side: collectors, events, state).
        offload: runs blocking queue calls off the event loop.
        statistics: makes the DroppedEventsStatistics event of the period ending now, given
            the events the hub refused, by queue.
        backoff_factor: how much slower than configured the agent polls now.
    """

    def __init__(
        self,
        client: AsyncDeviceClient,
        twin: TwinState,
        sender: Sender,
        queue: DurableQueue,
        *,
        clock: Clock,
        monitor: SelfMonitor,
        backoff: Backoff,
        twin_refresh: float,
        adopt: Callable[[ConfigOutcome], None],
        offload: Offload,
        statistics: Callable[[dict[QueueName, int]], Awaitable[Event]],
        backoff_factor: Callable[[], float] = lambda: 1.0,
    ) -> None:
        self._client = client
        self._twin = twin
        self.sender = sender
        self._queue = queue
        self._clock = clock
        self._monitor = monitor
        self._backoff = backoff
        self._twin_refresh = twin_refresh
        self._adopt = adopt
        self._offload = offload
        self._statistics = statistics
        self._backoff_factor = backoff_factor
        self._started = clock.monotonic()
        #: Set to make the loop pass at once (a pushed twin patch, a full queue, a stop).
        self.wake = asyncio.Event()
        self.twin_stale = True
        self.reported_dirty = True
        self.last_send: dict[QueueName, float] = {"High": _NEVER, "Low": _NEVER}
        self._last_twin = _NEVER
        self._last_statistics = _NEVER
        self._heartbeat_queued = False

    @property
    def config(self) -> AgentConfiguration:
        """The configuration in force."""
        return self._twin.config

    async def run(self, stop: asyncio.Event) -> None:
        """Pass after pass until ``stop`` is set; failures back off, never end the loop."""
        attempt = 0
        while not stop.is_set():
            try:
                await self.step()
            except (SdkError, QueueError) as exc:
                delay = self._backoff.delay(attempt)
                if isinstance(exc, ThrottledError) and exc.retry_after is not None:
                    delay = max(delay, exc.retry_after)
                log.warning("link to the hub failed: %s; retrying in %.1f s", exc, delay)
                attempt += 1
                self.twin_stale = True  # pushes are lost while the link is down
            else:
                if attempt:
                    log.info("link to the hub is back")
                    self.last_send["High"] = _NEVER  # a fresh heartbeat says so at once
                    attempt = 0
                    continue
                delay = self._until_next_send()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), delay)
            self.wake.clear()

    async def step(self) -> None:
        """One pass: the twin, the reported properties, and the sends that are due.

        Raises:
            SdkError: the hub could not be reached or refused us; nothing unsent was lost.
            QueueError: the queue's storage failed.
        """
        if self.twin_stale:
            await self.sync_twin()
        if self.reported_dirty:
            await self._client.patch_reported(reported_properties(self.config))
            self.reported_dirty = False
        now = self._clock.monotonic()
        config = self.config
        if now - self.last_send["High"] >= config.high_priority_message_frequency.total_seconds():
            await self._queue_statistics(config, now)
            await self._queue_heartbeat(config)
            await self.sender.drain("High", config)
            self._heartbeat_queued = False
            self.last_send["High"] = now
            # Read the twin again now and then: a push is lost if the link dropped meanwhile.
            self.twin_stale = now - self._last_twin >= self._twin_refresh
        if now - self.last_send["Low"] >= config.low_priority_message_frequency.total_seconds():
            await self.sender.drain("Low", config)
            self.last_send["Low"] = now
        await self.sender.drain("High", config, while_over=config.max_message_size_in_bytes)

    async def sync_twin(self) -> None:
        """Read the whole twin and apply its desired configuration object if it changed."""
        twin = await self._client.get_twin()
        desired = twin.get("desired")
        outcome = self._twin.replace(desired if isinstance(desired, dict) else {})
        if outcome is not None:
            self._adopt(outcome)
            self.reported_dirty = True
        self.twin_stale = False
        self._last_twin = self._clock.monotonic()

    async def on_desired(self, patch: dict[str, Any]) -> None:
        """A desired patch the hub pushed: apply it, and report at the next pass (now)."""
        outcome = self._twin.patch(patch)
        if outcome is not None:
            self._adopt(outcome)
            self.reported_dirty = True
            self.wake.set()

    async def _queue_statistics(self, config: AgentConfiguration, now: float) -> None:
        # Made right before a send, at most once per snapshot period, and not while the hub
        # is unreachable beyond the first attempt: counts wait in the queue's file meanwhile,
        # so a long outage neither fills the cache with statistics nor loses them to eviction.
        period = config.snapshot_frequency.total_seconds()
        if now - self._last_statistics < period:
            return
        if lane_of(config, "DroppedEventsStatistics") is None:
            return
        event = await self._statistics(self.sender.take_refused())
        await self._offload(lambda: self._queue.push([event], "High"))
        self._last_statistics = now

    async def _queue_heartbeat(self, config: AgentConfiguration) -> None:
        if self._heartbeat_queued or lane_of(config, "MessageStatistics") is None:
            return
        depth = await self._offload(self._queue.depth)
        details = {
            **self._monitor.as_extra_details(),
            "AgentBackoffFactor": f"{self._backoff_factor():g}",
            "HeartbeatIntervalSeconds": str(
                int(config.high_priority_message_frequency.total_seconds())
            ),
            "AgentUptimeSeconds": str(int(self._clock.monotonic() - self._started)),
            "QueuedEvents": str(depth.events),
            "QueuedBytes": str(depth.bytes),
        }
        counts = self.sender.take_counts()
        event = message_statistics_event(counts, at=self._clock.now(), extra_details=details)
        await self._offload(lambda: self._queue.push([event], "High"))
        self._heartbeat_queued = True

    def _until_next_send(self) -> float:
        config = self.config
        due = [
            self.last_send["High"] + config.high_priority_message_frequency.total_seconds(),
            self.last_send["Low"] + config.low_priority_message_frequency.total_seconds(),
        ]
        return max(0.0, min(due) - self._clock.monotonic())
