"""What every alert output shares: the filter, the queue, retries with backoff, the counters.

An output is an ``AlertSink`` whose ``write_alerts`` only queues (it never waits on the
network); workers on the output's event loop deliver each alert with ``attempt``, retrying
transient failures with exponential backoff and jitter. An alert that still fails is counted and
its ``OutputError`` kept for operators (``status()``); the pipeline never sees an exception.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar, Generic, TypeVar

from iotsec.analytics.alerts import STATUSES, Alert, AlertStatus
from iotsec.analytics.detection import Severity
from iotsec.analytics.errors import OutputError
from iotsec.analytics.outputs.queue import DeliveryQueue

__all__ = [
    "SEVERITY_RANK",
    "AlertFilter",
    "Backoff",
    "OutputConfigError",
    "OutputStatus",
    "QueuedOutput",
    "TransientFailure",
]

log = logging.getLogger("iotsec.analytics.outputs")

SEVERITY_RANK: dict[str, int] = {"Informational": 0, "Low": 1, "Medium": 2, "High": 3}

Sleep = Callable[[float], Awaitable[None]]
#: What an output prepares once per alert for all its attempts (a body, an encoded message).
P = TypeVar("P")


class OutputConfigError(OutputError):
    """An output configuration that cannot be used (a bad URL, a short secret, a bad port)."""


class TransientFailure(OutputError):
    """A delivery attempt that failed in a way worth retrying (5xx, 429, timeout, reset)."""

    def __init__(self, output: str, reason: str, *, retry_after: float | None = None) -> None:
        super().__init__(output, reason)
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with jitter: attempt n waits up to ``initial * multiplier**n``.

    ``jitter`` is the fraction of that delay taken off at random (0: none, 1: "full jitter"),
    so many outputs retrying at once spread out.

    >>> Backoff(initial=1.0, multiplier=2.0, maximum=5.0, jitter=0.0).delay(3, random.Random(0))
    5.0
    """

    initial: float = 0.5
    maximum: float = 30.0
    multiplier: float = 2.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if not (0 < self.initial <= self.maximum) or self.multiplier < 1:
            raise OutputConfigError("backoff", "need 0 < initial <= maximum and multiplier >= 1")
        if not 0 <= self.jitter <= 1:
            raise OutputConfigError("backoff", "jitter must be between 0 and 1")

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (0-based)."""
        base = min(self.maximum, self.initial * self.multiplier ** min(attempt, 64))
        return base * (1.0 - self.jitter * rng.random())


@dataclass(frozen=True, slots=True)
class AlertFilter:
    """Which alerts an output sends: a minimum severity and the statuses (Active by default).

    Dismissed alerts stay quiet: their repeats update the workspace, not the pagers.
    """

    min_severity: Severity = "Informational"
    statuses: tuple[AlertStatus, ...] = ("Active",)

    def __post_init__(self) -> None:
        if self.min_severity not in SEVERITY_RANK:
            raise OutputConfigError("filter", f"unknown severity {self.min_severity!r}")
        unknown = [s for s in self.statuses if s not in STATUSES]
        if unknown:
            raise OutputConfigError("filter", f"unknown status {unknown[0]!r}")

    def accepts(self, alert: Alert) -> bool:
        """True when ``alert`` should be sent."""
        return (
            SEVERITY_RANK[alert.severity] >= SEVERITY_RANK[self.min_severity]
            and alert.status in self.statuses
        )


@dataclass(frozen=True, slots=True)
class OutputStatus:
    """An output's counters, for operators: what went, what failed and why, what was dropped."""

    name: str
    kind: str
    #: Alerts waiting, and being delivered now.
    queued: int
    in_flight: int
    sent: int
    #: Alerts that failed after their retries (or at once, for a permanent refusal).
    failed: int
    #: Alerts pushed out of a full queue, or still queued when the output closed.
    dropped: int
    #: Alert updates that replaced a waiting copy of the same alert.
    coalesced: int
    #: Alerts the filter did not send (severity, status).
    filtered: int
    retries: int
    last_error: str | None = None
    last_error_time: float | None = None
    last_sent_time: float | None = None


class QueuedOutput(Generic[P]):
    """The shared shell of an output: ``write_alerts`` queues, workers deliver with retries.

    Subclasses implement ``prepare`` (once per alert: encode it) and ``attempt`` (one try;
    raise ``TransientFailure`` to retry, any other ``OutputError`` to give up), and may override
    ``open``/``shutdown`` for clients and connections.
    """

    kind: ClassVar[str] = "output"

    def __init__(
        self,
        name: str,
        *,
        queue_size: int,
        attempts: int,
        backoff: Backoff,
        alert_filter: AlertFilter,
        concurrency: int = 1,
        clock: Callable[[], float] = time.time,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        if attempts < 1 or concurrency < 1:
            raise OutputConfigError(name, "attempts and concurrency must be at least 1")
        self.name = name
        self.attempts = attempts
        self.backoff = backoff
        self.filter = alert_filter
        self.concurrency = concurrency
        self.clock = clock
        self._sleep = sleep
        self._rng = rng if rng is not None else random.Random()  # noqa: S311 - jitter, not secrets
        self._queue = DeliveryQueue(queue_size)
        self._workers: list[asyncio.Task[None]] = []
        self.sent = 0
        self.failed = 0
        self.retries = 0
        self.filtered = 0
        self._abandoned = 0
        self.last_error: OutputError | None = None
        self._last_error_time: float | None = None
        self._last_sent_time: float | None = None

    # -- the sink ------------------------------------------------------------------------------

    def write_alerts(self, alerts: Sequence[Alert]) -> int:
        """Queue the alerts this output sends; returns how many were queued. Never blocks."""
        wanted = [alert for alert in alerts if self.filter.accepts(alert)]
        self.filtered += len(alerts) - len(wanted)
        return self._queue.put(wanted) if wanted else 0

    # -- running -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Open connections (if any) and start the workers on the running loop.

        Raises:
            OutputConfigError: a file the output needs (a CA, a client certificate) is unusable.
        """
        if self._workers:
            return
        self._queue.bind(asyncio.get_running_loop())
        await self.open()
        loop = asyncio.get_running_loop()
        self._workers = [
            loop.create_task(self._work(), name=f"{self.kind}:{self.name}:{n}")
            for n in range(self.concurrency)
        ]

    async def drain(self, timeout: float) -> bool:
        """Wait until nothing is queued or in delivery, at most ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not self._queue.idle():
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    async def close(self, timeout: float = 5.0) -> None:
        """Deliver what is queued for up to ``timeout`` seconds, then stop; the rest is counted
        as dropped and logged."""
        interrupted = 0
        if self._workers:
            await self.drain(timeout)
            interrupted = self._queue.in_flight  # their delivery is cut short below
            for worker in self._workers:
                worker.cancel()
            for worker in self._workers:
                with contextlib.suppress(asyncio.CancelledError):
                    await worker
            self._workers = []
        left = interrupted + len(self._queue.take_all())
        if left:
            self._abandoned += left
            log.warning("%s %s closed with %d alerts undelivered", self.kind, self.name, left)
        await self.shutdown()

    def status(self) -> OutputStatus:
        """The counters now."""
        return OutputStatus(
            name=self.name,
            kind=self.kind,
            queued=self._queue.waiting,
            in_flight=self._queue.in_flight,
            sent=self.sent,
            failed=self.failed,
            dropped=self._queue.dropped + self._abandoned,
            coalesced=self._queue.coalesced,
            filtered=self.filtered,
            retries=self.retries,
            last_error=None if self.last_error is None else str(self.last_error),
            last_error_time=self._last_error_time,
            last_sent_time=self._last_sent_time,
        )

    # -- for subclasses ------------------------------------------------------------------------

    async def open(self) -> None:
        """Prepare to deliver (clients, sockets); called by ``start``."""

    async def shutdown(self) -> None:
        """Release what ``open`` made; called by ``close``."""

    def prepare(self, alert: Alert) -> P:
        """What every attempt to deliver ``alert`` sends (encoded once)."""
        raise NotImplementedError

    async def attempt(self, alert: Alert, prepared: P) -> None:
        """Deliver once; raise ``TransientFailure`` to retry, another ``OutputError`` to stop."""
        raise NotImplementedError

    # -- internals -----------------------------------------------------------------------------

    async def _work(self) -> None:
        while True:
            alert = await self._queue.get()
            try:
                await self._deliver(alert)
            finally:
                self._queue.done(alert)

    async def _deliver(self, alert: Alert) -> None:
        error: OutputError | None = None
        try:
            prepared = self.prepare(alert)
        except Exception as exc:  # an alert that cannot be encoded must not stop the worker
            log.exception("%s %s: cannot encode alert %s", self.kind, self.name, alert.alert_id)
            self._give_up(alert, OutputError(self.name, f"cannot encode: {type(exc).__name__}"))
            return
        for attempt in range(self.attempts):
            try:
                await self.attempt(alert, prepared)
            except TransientFailure as exc:
                error = exc
                if attempt + 1 < self.attempts:
                    self.retries += 1
                    delay = self.backoff.delay(attempt, self._rng)
                    if exc.retry_after is not None:
                        delay = max(delay, min(exc.retry_after, self.backoff.maximum))
                    await self._sleep(delay)
                continue
            except OutputError as exc:
                error = exc
                break
            except Exception as exc:  # a bug in an output must not stop its worker
                log.exception("%s %s: unexpected error delivering an alert", self.kind, self.name)
                error = OutputError(self.name, f"internal error: {type(exc).__name__}")
                break
            self.sent += 1
            self._last_sent_time = self.clock()
            return
        assert error is not None
        self._give_up(alert, error)

    def _give_up(self, alert: Alert, error: OutputError) -> None:
        self.failed += 1
        self.last_error = error
        self._last_error_time = self.clock()
        log.warning(
            "%s %s gave up on alert %s: %s", self.kind, self.name, alert.alert_id, error.reason
        )
