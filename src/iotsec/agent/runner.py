"""The agent: collectors into the aggregator and the durable queue, the queue to the hub.

Two loops share the event loop. The **collection loop** wakes every ``tick`` (one second):
it drains the triggered collectors (ProcessCreate, ConnectionCreate, Login...) into the
:class:`~iotsec.agent.aggregate.Aggregator`, flushes the aggregation windows that ended, runs
the periodic collectors every ``snapshotFrequency`` (and once at start), and pushes what came
out into the :class:`~iotsec.agent.queue.DurableQueue`, each event in the queue of its
priority. That work is :class:`~iotsec.agent.intake.Intake`'s, on one worker thread, so a slow
snapshot never blocks the connection; the runner keeps the timers. The **link loop**
connects as the security module, applies the twin, writes the reported properties, and drains
the queue: High every ``highPriorityMessageFrequency``, Low every
``lowPriorityMessageFrequency``, and at once whenever more than a message's worth waits. A
failure keeps the batch in the queue and the loop reconnects with jittered exponential backoff
(:class:`~iotsec.agent.queue.Backoff`).

The link loop is :class:`~iotsec.agent.link.Link`, which also makes the heartbeat: a
MessageStatistics event at every high-priority send (and right after the link comes back), so
the hub hears from a healthy agent at least every ``highPriorityMessageFrequency`` even when
nothing else happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import socket
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from iotsec import __version__
from iotsec.agent.aggregate import Aggregator
from iotsec.agent.clock import Clock, SystemClock
from iotsec.agent.collection import (
    POLL_EVERY,
    Collection,
    DiagnosticLimiter,
    SelfFilter,
)
from iotsec.agent.collectors import COLLECTORS, CollectorFactory
from iotsec.agent.config import AgentConfiguration, ConfigOutcome
from iotsec.agent.errors import AgentError, QueueError
from iotsec.agent.hostroot import HostRoot
from iotsec.agent.intake import Intake, StepPlan
from iotsec.agent.link import Link
from iotsec.agent.queue import Backoff, DurableQueue, QueueName
from iotsec.agent.selfmon import Budget, SelfMonitor
from iotsec.agent.sender import Sender
from iotsec.agent.state import StateDir
from iotsec.agent.stats import configuration_error_event
from iotsec.agent.twinsync import TwinState
from iotsec.schema import Event
from iotsec.schema.payloads import DiagnosticSeverity
from iotsec.sdk import (
    AsyncDeviceClient,
    ConnectionString,
    NotSupportedError,
    RetryPolicy,
    SdkError,
    Transport,
)

__all__ = ["SECURITY_MODULE", "Agent", "AgentOptions"]

log = logging.getLogger("iotsec.agent")

#: The module identity the agent connects as (reference §3.1).
SECURITY_MODULE = "azureiotsecurity"
_T = TypeVar("_T")
_NEVER = float("-inf")
_SLACK = 0.01


@dataclass(frozen=True, slots=True)
class AgentOptions:
    """How the agent runs, apart from the twin configuration."""

    #: Triggered collectors are drained this often (seconds).
    tick: float = 1.0
    #: The agent samples its own CPU and memory this often (seconds).
    selfmon_interval: float = 10.0
    #: How long the start waits for the twin before going on with the local configuration.
    twin_timeout: float = 10.0
    #: How long a send in flight at shutdown may take before it is abandoned (it is resent).
    shutdown_grace: float = 5.0
    #: The twin is read again at the first high-priority send this long after the last read,
    #: in case a desired update was pushed while the connection was silently re-established.
    twin_refresh: float = 300.0
    budget: Budget = field(default_factory=Budget)
    backoff: Backoff = field(default_factory=lambda: Backoff(base=1.0, cap=300.0))
    #: The same Diagnostic is sent at most once per this many seconds.
    diagnostic_interval: float = 3600.0
    #: Triggered collectors that read the host when called, and how often (seconds).
    poll_every: Mapping[str, float] = field(default_factory=lambda: dict(POLL_EVERY))
    #: Over budget, polling slows down by up to this factor.
    max_backoff: float = 8.0


class Agent:
    """The device security agent (see the module docstring).

    Args:
        transport: the connection to the hub (MQTT or HTTPS; ``MemoryTransport`` in tests).
        state: the state directory (queue, agent id, last twin configuration).
        host: the host the collectors read.
        base_config: the configuration before the twin (defaults or the local file's).
        identity: the connection string, for the identity warning and the hub's address.
        hub_port: the port the transport connects to (to recognise the agent's own link).
        agent_id: the AgentId (default: the one kept in ``state``).
        collectors: the collector registry.
        clock: wall and monotonic time.
        monitor: the self-monitor (default: this process against ``options.budget``).
    """

    def __init__(
        self,
        transport: Transport,
        state: StateDir,
        *,
        host: HostRoot,
        base_config: AgentConfiguration | None = None,
        identity: ConnectionString | None = None,
        hub_port: int | None = None,
        agent_id: str | None = None,
        collectors: Mapping[str, CollectorFactory] = COLLECTORS,
        clock: Clock | None = None,
        options: AgentOptions | None = None,
        monitor: SelfMonitor | None = None,
    ) -> None:
        self.options = options or AgentOptions()
        self.state = state
        self.host = host
        self.clock: Clock = clock or SystemClock()
        self.identity = identity
        self._hub_port = hub_port
        self._collectors = collectors
        self.agent_id = state.agent_id(agent_id)
        self._twin = TwinState(base_config or AgentConfiguration.default())
        self._config = self._twin.config
        self._client = AsyncDeviceClient(
            transport,
            retry=RetryPolicy.never(),  # the link loop backs off itself, and keeps collecting
            clock=self.clock.monotonic,
            agent_id=self.agent_id,
            agent_version=__version__,
        )
        self._monitor = monitor or SelfMonitor(self.options.budget, clock=self.clock.monotonic)
        self._aggregator = Aggregator(self._config, clock=self.clock.time)
        self._collect_pool = ThreadPoolExecutor(1, thread_name_prefix="iotsec-collect")
        self._send_pool = ThreadPoolExecutor(1, thread_name_prefix="iotsec-send")
        self._queue: DurableQueue | None = None
        self._link: Link | None = None
        self._intake: Intake | None = None
        self._pending_config: AgentConfiguration | None = self._config
        self._pending_events: list[Event] = []
        self._notes: list[tuple[DiagnosticSeverity, str, str]] = []
        self._factor = 1.0
        self._cpu_factor = 1.0
        self._last = {"triggered": _NEVER, "snapshot": _NEVER, "selfmon": _NEVER}
        self._stop = asyncio.Event()
        self._collected = asyncio.Event()

    # --- lifecycle -------------------------------------------------------------------------

    @property
    def config(self) -> AgentConfiguration:
        """The configuration in force."""
        return self._config

    @property
    def queue(self) -> DurableQueue:
        """The durable queue (after ``start``)."""
        if self._queue is None:
            raise RuntimeError("the agent has not started")
        return self._queue

    async def run(self) -> None:
        """Start, run both loops until :meth:`stop`, then shut down gracefully."""
        await self.start()
        loops = [
            asyncio.create_task(self._collect_loop(), name="iotsec-agent-collect"),
            asyncio.create_task(self._link_loop(), name="iotsec-agent-link"),
        ]
        stopped = asyncio.create_task(self._stop.wait())
        try:
            await asyncio.wait([*loops, stopped], return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.stop()
            await asyncio.wait([loops[0]], timeout=None)
            _done, pending = await asyncio.wait([loops[1]], timeout=self.options.shutdown_grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*loops, stopped, return_exceptions=True)
            await self.shutdown()
        for task in loops:
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]  # checked just above

    def stop(self) -> None:
        """Ask the loops to finish (safe from a signal handler on the loop)."""
        self._stop.set()
        if self._link is not None:
            self._link.wake.set()

    async def start(self) -> None:
        """Open the queue, restore the saved twin configuration and try the twin once.

        Raises:
            QueueError: the queue cannot be opened.
            AgentConfigError: the state directory cannot be used.
        """
        # The first span starts now, not at import: starting up is not what the budget limits.
        self._sample_self(act=False)
        self._queue = DurableQueue(
            self.state.queue_path, max_bytes=self._config.max_local_cache_size_in_bytes
        )
        sender = Sender(
            self._client,
            self._queue,
            agent_id=self.agent_id,
            agent_version=__version__,
            offload=self._in_send_pool,
        )
        collection = Collection(
            self.host,
            now=self.clock.now,
            limiter=DiagnosticLimiter(
                self.clock.monotonic, interval=self.options.diagnostic_interval
            ),
            self_filter=SelfFilter(os.getpid(), *await self._hub_endpoint()),
            factories=self._collectors,
            monotonic=self.clock.monotonic,
            poll_every=self.options.poll_every,
        )
        self._intake = Intake(
            collection,
            self._aggregator,
            self._queue,
            self._config,
            now=self.clock.now,
            time=self.clock.time,
        )
        self._link = Link(
            self._client,
            self._twin,
            sender,
            self._queue,
            clock=self.clock,
            monitor=self._monitor,
            backoff=self.options.backoff,
            twin_refresh=self.options.twin_refresh,
            adopt=self._adopt,
            offload=self._in_send_pool,
            statistics=self._dropped_statistics,
            backoff_factor=lambda: self._factor,
        )
        self._warn_about_identity()
        saved = self._load_saved_twin()
        outcome = self._twin.restore(*saved) if saved else self._twin.replace({})
        if outcome is not None:
            self._adopt(outcome, save=False)
        try:
            self._client.on_desired(self._link.on_desired)
        except NotSupportedError:
            log.info("this transport cannot push twin updates; the twin is polled instead")
        try:
            await asyncio.wait_for(self._link.sync_twin(), self.options.twin_timeout)
        except (SdkError, TimeoutError) as exc:
            log.warning("no twin at start (%s); running with the local configuration", exc)

    async def shutdown(self) -> None:
        """Flush the aggregator into the queue, stop the collectors, close the link and queue."""
        queue, intake = self._queue, self._intake
        if queue is None or intake is None:
            return
        pending, self._pending_events = self._pending_events, []

        def flush() -> None:
            intake.flush(pending)
            intake.collection.close()

        try:
            await self._in_collect_pool(flush)
        finally:
            self._collect_pool.shutdown(wait=True)
            self._send_pool.shutdown(wait=True)
            await self._client.close()
            queue.close()
            self._queue = None

    # --- the collection loop ----------------------------------------------------------------

    async def _collect_loop(self) -> None:
        while not self._stop.is_set():
            try:
                await self.collect_step()
            except QueueError as exc:
                log.error("cannot queue events: %s", exc)
            await self._pause(self.options.tick, self._stop)

    async def collect_step(self) -> None:
        """One pass of the collection loop: whatever is due now."""
        now = self.clock.monotonic()
        if now - self._last["selfmon"] >= self.options.selfmon_interval:
            self._sample_self()
        # Snapshots are not stretched: they cost little, and their period is the operator's.
        snapshot_period = self._config.snapshot_frequency.total_seconds()
        refusals: list[tuple[DiagnosticSeverity, str, str]] = [
            ("Error", "hub", why) for why in self.sender.take_refusals()
        ]
        plan = StepPlan(
            config=self._pending_config,
            pending=tuple(self._pending_events),
            notes=(*self._notes, *refusals),
            triggered=self._due("triggered", self.options.tick * self._factor, now),
            snapshot=self._due("snapshot", snapshot_period, now),
            factor=self._factor,
        )
        self._pending_config, self._pending_events, self._notes = None, [], []
        full = await self._in_collect_pool(lambda: self.intake.step(plan))
        self._collected.set()
        if full:
            self.link.wake.set()

    def _sample_self(self, *, act: bool = True) -> None:
        self._last["selfmon"] = self.clock.monotonic()
        try:
            usage = self._monitor.sample()
        except AgentError as exc:
            log.warning("cannot measure the agent's own use: %s", exc)
            return
        if not act:
            return
        budget = self._monitor.budget
        cpu = usage.cpu_percent / budget.cpu_percent
        # Integral on CPU, not proportional: part of the cost (process events) comes as it
        # comes, so the stretch keeps growing while over budget until the polling part has
        # given enough back, and shrinks (at most halving per sample) once under it. Memory
        # does not shrink by polling slower: over its budget, the stretch is only its ratio.
        self._cpu_factor = min(
            self.options.max_backoff,
            max(1.0, self._cpu_factor * (cpu if cpu > 1.0 else max(cpu, 0.5))),
        )
        factor = max(self._cpu_factor, usage.rss_bytes / budget.rss_bytes)
        factor = round(min(self.options.max_backoff, max(1.0, factor)), 2)
        if factor == self._factor:
            return
        if factor > self._factor:
            log.warning(
                "agent over budget (CPU %.2f%%, RSS %d MB): polling %.2f times slower",
                usage.cpu_percent,
                usage.rss_bytes // 2**20,
                factor,
            )
        else:
            log.info("agent within budget: polling %.2f times slower than configured", factor)
        self._factor = factor
        self._pending_config = self._pending_config or self._config  # re-applies the stretch

    @property
    def backoff_factor(self) -> float:
        """How much slower than configured the agent polls now (1.0: not at all)."""
        return self._factor

    # --- the twin ---------------------------------------------------------------------------

    def _adopt(self, outcome: ConfigOutcome, *, save: bool = True) -> None:
        """Put a twin outcome in force: config, ConfigurationError events, reported, saved."""
        if outcome.errors:
            for row in outcome.errors:
                log.warning(
                    "configuration %s: %s (%s)",
                    row.configuration_name,
                    row.message,
                    row.error_type,
                )
            event = configuration_error_event(outcome.errors, at=self.clock.now())
            if event is not None:
                self._pending_events.append(event)
        if outcome.changed:
            log.info("configuration changed: %s", ", ".join(sorted(outcome.changed)))
        self._config = outcome.config
        self._pending_config = outcome.config
        if save:
            try:
                self.state.save_desired(self._twin.section, version=self._twin.version)
            except AgentError as exc:
                log.warning("cannot keep the twin configuration for the next start: %s", exc)

    def _load_saved_twin(self) -> tuple[Any, int | None] | None:
        try:
            return self.state.load_desired()
        except AgentError as exc:
            log.warning("ignoring the saved twin configuration: %s", exc)
            return None

    # --- helpers ----------------------------------------------------------------------------

    @property
    def link(self) -> Link:
        """The hub side: twin, reported properties, sends (after ``start``)."""
        if self._link is None:
            raise RuntimeError("the agent has not started")
        return self._link

    @property
    def sender(self) -> Sender:
        """Drains the queue into messages (after ``start``)."""
        return self.link.sender

    async def link_step(self) -> None:
        """One pass of the link loop (see :meth:`Link.step`)."""
        await self.link.step()

    async def _dropped_statistics(self, refused: dict[QueueName, int]) -> Event:
        # On the collection thread: it owns the collectors whose own drops are counted too.
        return await self._in_collect_pool(lambda: self.intake.dropped_statistics(refused))

    async def _link_loop(self) -> None:
        await self._pause(None, self._collected)  # the first snapshot goes with the first send
        await self.link.run(self._stop)

    @property
    def intake(self) -> Intake:
        """Collectors, aggregator and queue (after ``start``)."""
        if self._intake is None:
            raise RuntimeError("the agent has not started")
        return self._intake

    def _due(self, name: str, period: float, now: float) -> bool:
        # A pause may end a hair early; without the slack a tick would skip a whole period.
        if now - self._last[name] < period - _SLACK:
            return False
        self._last[name] = now
        return True

    async def _in_collect_pool(self, call: Callable[[], _T]) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._collect_pool, call)

    async def _in_send_pool(self, call: Callable[[], _T]) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._send_pool, call)

    async def _pause(self, seconds: float | None, event: asyncio.Event) -> None:
        """Wait ``seconds`` (None: for ever) or until ``event`` is set."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), seconds)

    async def _hub_endpoint(self) -> tuple[frozenset[str], int | None]:
        if self.identity is None or self._hub_port is None:
            return frozenset(), None
        host, port = self.identity.connect_host, self._hub_port

        def resolve() -> frozenset[str]:
            found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            return frozenset(str(ipaddress.ip_address(info[4][0])) for info in found)

        try:
            addresses = await asyncio.wait_for(asyncio.to_thread(resolve), 5.0)
        except (OSError, ValueError, TimeoutError) as exc:
            log.info("cannot resolve %s to recognise the agent's own link: %s", host, exc)
            addresses = frozenset()
        return addresses, port

    def _warn_about_identity(self) -> None:
        if self.identity is None:
            return
        if self.identity.module_id is None:
            message = (
                f"connected as the device {self.identity.device_id} itself, not as its "
                f"security module {SECURITY_MODULE}: the agent and the device's own "
                "application will compete for the device's one connection (the hub keeps "
                "only the newest); use the module connection string"
            )
        elif self.identity.module_id != SECURITY_MODULE:
            message = (
                f"connected as module {self.identity.module_id}, not {SECURITY_MODULE}: "
                "the twin configuration is read from that module's twin"
            )
        else:
            return
        self._notes.append(("Warning", "identity", message))  # logged as it is queued
