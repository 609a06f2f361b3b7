"""The collectors the agent runs now, what they return, and what went wrong, as events.

:class:`Collection` starts the registered collectors whose priority is not Off (an Off event is
not collected at all) and stops those turned Off; it runs the triggered ones or the periodic
ones on demand and returns their events, with the agent's own activity filtered out
(:class:`SelfFilter`). Whatever went wrong (a collector that cannot start, cannot read the
host, or reports partial errors) comes back as Diagnostic events, rate-limited by
:class:`DiagnosticLimiter` so a broken source does not flood the queue.

Collectors are driven from one thread (the runner's collection worker); nothing here is async.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import msgspec

from iotsec.agent.collectors import COLLECTORS, Collector, CollectorFactory
from iotsec.agent.config import AgentConfiguration
from iotsec.agent.errors import AgentError, HostReadError, ParseError
from iotsec.agent.hostroot import HostRoot
from iotsec.agent.stats import diagnostic_event
from iotsec.schema import ConnectionCreateEvent, Event, ProcessCreateEvent
from iotsec.schema.payloads import DiagnosticSeverity

__all__ = ["POLL_EVERY", "Collection", "DiagnosticLimiter", "SelfFilter", "lane_of"]

log = logging.getLogger("iotsec.agent")

Lane = Literal["High", "Low"]
#: Operational events ride in the High queue (sent first), as the C agent's operational queue.
OPERATIONAL_EVENTS = frozenset(
    {"ConfigurationError", "DroppedEventsStatistics", "MessageStatistics"}
)


#: Triggered collectors that read the host when called (the others buffer what their own
#: thread sees, and are drained every tick), and how often to call them, in seconds. Login
#: tails files and, without auth.log, runs journalctl: every second would cost the device
#: more than every other collector together; ASC's agents looked every two minutes.
POLL_EVERY: dict[str, float] = {"Login": 10.0}


def lane_of(config: AgentConfiguration, event_name: str) -> Lane | None:
    """The queue an event goes to under ``config``, or None when its priority is Off.

    Operational events follow the C agent (reference §3.2 ``eventPriorityOperational``): Off
    turns them off, and any other value puts them in the operational lane, sent first in every
    message, which here is the High queue.

    >>> config = AgentConfiguration.default()
    >>> [lane_of(config, name) for name in ("Login", "ProcessCreate", "MessageStatistics")]
    ['High', 'Low', 'High']
    """
    priority = config.priority(event_name)
    if priority == "Off":
        return None
    if event_name in OPERATIONAL_EVENTS:
        return "High"
    return priority


@dataclass(frozen=True, slots=True)
class SelfFilter:
    """Drops the agent's own activity: its processes and its connection to the hub.

    The process source already ignores the agent's descendants on a live host; this catches
    the rest: connections owned by the agent's pid, and connections to the hub's address and
    port whose owner is already gone (TIME_WAIT after a reconnect).
    """

    pid: int
    hub_addresses: frozenset[str] = frozenset()
    hub_port: int | None = None

    def apply(self, event: Event) -> Event | None:
        """``event`` without the agent's own rows, or None when none is left."""
        rows: tuple[object, ...]
        if isinstance(event, ConnectionCreateEvent):
            rows = tuple(r for r in event.payload if not self._own_connection(r))
        elif isinstance(event, ProcessCreateEvent):
            rows = tuple(
                r for r in event.payload if self.pid not in (r.process_id, r.parent_process_id)
            )
        else:
            return event
        if len(rows) == len(event.payload):
            return event
        return msgspec.structs.replace(event, payload=rows) if rows else None

    def _own_connection(self, row: object) -> bool:
        process_id = getattr(row, "process_id", None)
        if process_id == self.pid:
            return True
        return (
            self.hub_port is not None
            and getattr(row, "remote_port", None) == str(self.hub_port)
            and getattr(row, "remote_address", None) in self.hub_addresses
        )


class DiagnosticLimiter:
    """Lets one Diagnostic per (source, message) through per ``interval`` seconds.

    What it holds back is counted and reported with the next one let through
    (``ExtraDetails["Repeated"]``). At most ``capacity`` distinct messages are remembered.
    """

    def __init__(
        self, clock: Callable[[], float], *, interval: float = 3600.0, capacity: int = 256
    ) -> None:
        self._clock = clock
        self._interval = interval
        self._capacity = capacity
        self._seen: OrderedDict[tuple[str, str], tuple[float, int]] = OrderedDict()

    def admit(self, source: str, message: str) -> int | None:
        """None to hold the message back, else how many copies were held back before it."""
        key = (source, message)
        now = self._clock()
        last = self._seen.get(key)
        if last is not None and now - last[0] < self._interval:
            self._seen[key] = (last[0], last[1] + 1)
            return None
        self._seen[key] = (now, 0)
        self._seen.move_to_end(key)
        while len(self._seen) > self._capacity:
            self._seen.popitem(last=False)
        return last[1] if last is not None else 0


class Collection:
    """The running collectors of one host (see the module docstring).

    Args:
        host: the host the collectors read.
        now: wall time, for the Diagnostic events' stamps.
        limiter: rate limit for Diagnostics.
        self_filter: what to drop from the collectors' events.
        factories: the registry (default: every collector).
        monotonic: monotonic seconds, for ``poll_every``.
        poll_every: seconds between calls of the collectors named (default ``POLL_EVERY``).
    """

    def __init__(
        self,
        host: HostRoot,
        *,
        now: Callable[[], datetime],
        limiter: DiagnosticLimiter,
        self_filter: SelfFilter,
        factories: Mapping[str, CollectorFactory] = COLLECTORS,
        monotonic: Callable[[], float] | None = None,
        poll_every: Mapping[str, float] = POLL_EVERY,
    ) -> None:
        self.host = host
        self._monotonic = monotonic
        self._poll_every = poll_every
        self._polled: dict[str, float] = {}
        self._factor = 1.0
        self._now = now
        self._limiter = limiter
        self._filter = self_filter
        self._factories = factories
        self._active: dict[str, Collector] = {}
        self._wanted: set[str] = set()
        self._base_intervals: dict[str, float] = {}
        self._drops_reported: dict[str, int] = {}
        self._config = AgentConfiguration.default()

    @property
    def active(self) -> tuple[str, ...]:
        """Names of the collectors running now."""
        return tuple(self._active)

    def configure(self, config: AgentConfiguration) -> list[Event]:
        """Run exactly the collectors ``config`` does not turn Off; returns Diagnostics."""
        self._config = config
        self._wanted = {name for name in self._factories if config.priority(name) != "Off"}
        for name in [n for n in self._active if n not in self._wanted]:
            self._close(name)
        return self.start_missing()

    def start_missing(self) -> list[Event]:
        """Start wanted collectors that are not running (again, if they failed before)."""
        diagnostics: list[Event] = []
        for name in sorted(self._wanted - self._active.keys()):
            try:
                collector = self._factories[name](self.host)
            except (HostReadError, ParseError) as exc:
                diagnostics += self._diagnose("Warning", name, f"cannot start: {exc}")
                continue
            self._active[name] = collector
            interval = getattr(collector, "interval", None)
            if isinstance(interval, int | float):
                self._base_intervals[name] = float(interval)
            log.debug("started collector %s", name)
        return diagnostics

    def stretch(self, factor: float) -> None:
        """Poll ``factor`` times less often (the agent is over its CPU or memory budget)."""
        self._factor = factor
        for name, base in self._base_intervals.items():
            collector = self._active.get(name)
            if collector is not None:
                collector.interval = base * factor  # type: ignore[attr-defined]  # checked at start

    def collect(self, category: Literal["Triggered", "Periodic"], now: datetime) -> list[Event]:
        """Events (and Diagnostics) from every running collector of ``category``."""
        events: list[Event] = []
        for name, collector in list(self._active.items()):
            if collector.spec.category != category or not self._poll_due(name):
                continue
            try:
                found = collector.collect(now)
            except (HostReadError, ParseError) as exc:
                events += self._diagnose("Warning", name, str(exc))
                found = ()
            for event in found:
                kept = self._filter.apply(event)
                if kept is not None:
                    events.append(kept)
            for error in _partial_errors(collector):
                events += self._diagnose("Warning", name, str(error))
        return events

    def _poll_due(self, name: str) -> bool:
        every = self._poll_every.get(name)
        if every is None or self._monotonic is None:
            return True
        now = self._monotonic()
        last = self._polled.get(name)
        if last is not None and now - last < every * self._factor:
            return False
        self._polled[name] = now
        return True

    def take_dropped(self) -> dict[Lane, int]:
        """Events the collectors' own buffers dropped since the last call, by queue."""
        dropped: dict[Lane, int] = {"High": 0, "Low": 0}
        for name, collector in self._active.items():
            total = getattr(collector, "dropped", 0)
            if not isinstance(total, int):
                continue
            delta = total - self._drops_reported.get(name, 0)
            self._drops_reported[name] = total
            lane = lane_of(self._config, name)
            if delta > 0 and lane is not None:
                dropped[lane] += delta
        return dropped

    def diagnostic(self, severity: DiagnosticSeverity, source: str, message: str) -> list[Event]:
        """A rate-limited Diagnostic from the agent itself (``source`` names the part)."""
        return self._diagnose(severity, source, message)

    def close(self) -> None:
        """Stop every collector."""
        for name in list(self._active):
            self._close(name)

    def _close(self, name: str) -> None:
        collector = self._active.pop(name)
        self._base_intervals.pop(name, None)
        self._drops_reported.pop(name, None)
        self._polled.pop(name, None)
        try:
            collector.close()
        except AgentError as exc:
            log.warning("collector %s did not close cleanly: %s", name, exc)
        log.debug("stopped collector %s", name)

    def _diagnose(self, severity: DiagnosticSeverity, source: str, message: str) -> list[Event]:
        held = self._limiter.admit(source, message)
        if held is None:
            return []
        log.warning("%s: %s", source, message)
        if self._config.priority("Diagnostic") == "Off":
            return []
        details = {"Source": source}
        if held:
            details["Repeated"] = str(held)
        return [diagnostic_event(severity, message, at=self._now(), extra_details=details)]


def _partial_errors(collector: Collector) -> Iterable[AgentError]:
    # Collectors that read part of the host keep what they could not read in ``errors``.
    errors = getattr(collector, "errors", ())
    return [e for e in errors if isinstance(e, AgentError)] if isinstance(errors, list) else []
