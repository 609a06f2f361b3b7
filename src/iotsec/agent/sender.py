"""Draining the durable queue into security messages, acknowledged one by one.

Each message is one :meth:`DurableQueue.next_batch` (a peek): the preferred queue's oldest
events first, padded from the other queue up to ``maxMessageSizeInBytes``, as both ASC agents
compose messages. It carries the application property ``MessagePriority`` (the queue the send
was for, as the C# agent sets it) and ``HubResourceId`` when the twin sets one. The batch is
acked, and so deleted, only after the hub acknowledged the message (MQTT PUBACK, HTTP 2xx);
when sending fails the batch stays and comes back on the next try.

A message the hub refuses for good (``RejectedError``: retrying cannot help) is dropped and
counted, never retried forever; everything else propagates to the runner, which reconnects
with backoff.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from iotsec.agent.config import AgentConfiguration
from iotsec.agent.queue import Batch, DurableQueue, QueueName
from iotsec.agent.stats import MessageCounts
from iotsec.sdk import AsyncDeviceClient, RejectedError, build_security_messages

__all__ = ["Offload", "Sender"]

log = logging.getLogger("iotsec.agent")

#: Runs a blocking queue call off the event loop (on a worker thread, in the agent).
Offload = Callable[[Callable[[], Any]], Awaitable[Any]]


async def _inline(call: Callable[[], Any]) -> Any:
    return call()


class Sender:
    """Sends the queue's events to the hub (see the module docstring).

    Args:
        client: the connected device client (its own retries off: the runner backs off).
        queue: the durable queue.
        agent_id, agent_version: the message envelope's.
        offload: how blocking queue calls are run (default: inline, for tests).
        max_messages: messages sent per ``drain`` call at most, so one call never runs long.
    """

    def __init__(
        self,
        client: AsyncDeviceClient,
        queue: DurableQueue,
        *,
        agent_id: str,
        agent_version: str,
        offload: Offload = _inline,
        max_messages: int = 64,
    ) -> None:
        self._client = client
        self._queue = queue
        self._agent_id = agent_id
        self._agent_version = agent_version
        self._offload = offload
        self._max_messages = max_messages
        self.counts = MessageCounts()
        #: Events dropped because the hub refused their message for good, by queue.
        self.refused: dict[QueueName, int] = {"High": 0, "Low": 0}
        self._refusals: list[str] = []

    def take_counts(self) -> MessageCounts:
        """The message counts of the period that ends now; a new period starts at zero."""
        counts, self.counts = self.counts, MessageCounts()
        return counts

    def take_refusals(self) -> list[str]:
        """Why messages were refused since the last call (for the runner's Diagnostics)."""
        refusals, self._refusals = self._refusals, []
        return refusals

    def take_refused(self) -> dict[QueueName, int]:
        """Events dropped on refusal since the last call, by queue."""
        refused, self.refused = self.refused, {"High": 0, "Low": 0}
        return refused

    async def drain(
        self, prefer: QueueName, config: AgentConfiguration, *, while_over: int | None = None
    ) -> int:
        """Send messages while the ``prefer`` queue has events; returns how many were sent.

        With ``while_over``, send instead while more than that many bytes wait in total (the
        ASC rule that a full message goes out at once, whatever the timers say).

        Raises:
            SdkError: sending failed (not refused); the unsent batch stays in the queue.
            QueueError: the queue's storage failed.
        """
        sent = 0
        while sent < self._max_messages:
            if while_over is not None:
                depth = await self._offload(self._queue.depth)
                if depth.bytes <= while_over:
                    break
            batch = await self._offload(
                lambda: self._queue.next_batch(
                    config.max_message_size_in_bytes,
                    agent_version=self._agent_version,
                    prefer=prefer,
                )
            )
            if not batch.events or (while_over is None and prefer not in batch.queues):
                break  # nothing left, or only padding from the other queue
            await self.send(batch, config)
            sent += 1
        return sent

    async def send(self, batch: Batch, config: AgentConfiguration) -> None:
        """Send ``batch`` as one message and ack it once the hub has it.

        Raises:
            SdkError: sending failed (not refused); the batch stays in the queue.
        """
        properties: dict[str, str] = {"MessagePriority": batch.priority or "Low"}
        if config.hub_resource_id:
            properties["HubResourceId"] = config.hub_resource_id
        try:
            messages = build_security_messages(
                batch.events,
                agent_id=self._agent_id,
                agent_version=self._agent_version,
                max_bytes=config.max_message_size_in_bytes,
            )
            for message in messages:
                await self._client.send_message(dataclasses.replace(message, properties=properties))
        except RejectedError as exc:
            self.counts = self.counts.failed()
            for queue_name in batch.queues:
                self.refused[queue_name] += 1
            self._refusals.append(f"the hub refused a message of {len(batch)} events: {exc}")
            log.error("dropping %d events the hub refused: %s", len(batch), exc)
            await self._offload(lambda: self._queue.ack(batch))
            return
        except BaseException:
            self.counts = self.counts.failed()
            raise
        for message in messages:
            self.counts = self.counts.sent(len(message.body))
        await self._offload(lambda: self._queue.ack(batch))
