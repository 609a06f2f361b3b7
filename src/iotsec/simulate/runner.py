"""Run a simulated fleet against a real hub: register, connect, send, inject, summarize.

Simulated time runs ``speed`` times faster than real time from ``start``. Every ``tick`` real
seconds each device takes what happened on it since the last tick (its benign life, and any
scenario injected into it), lets its :class:`~iotsec.simulate.agent.SimAgent` aggregate, and
sends what is due as security messages, packed as an agent packs them (in order, as few
messages as fit in 256 KB). When the run stops (``duration`` reached, or :meth:`Simulation.stop`)
each agent flushes what it holds, as a real agent does when it shuts down.

Registration goes through a :class:`Registrar` (the CLI's talks to the service API) and
connecting through a client factory, so this module needs neither the CLI nor a network in
tests: give it ``AsyncDeviceClient(MemoryTransport())`` clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from iotsec.schema import Event
from iotsec.sdk import AsyncDeviceClient, SdkError
from iotsec.simulate._random import rng_for
from iotsec.simulate.agent import SimAgent
from iotsec.simulate.benign import BenignActivity, Cadence
from iotsec.simulate.errors import NoDeviceConnected
from iotsec.simulate.fleet import Fleet, SimDevice
from iotsec.simulate.scenarios import SCENARIOS, expand_scenarios, run_scenario

__all__ = [
    "Injection",
    "InjectionResult",
    "Registrar",
    "Registration",
    "SimClock",
    "Simulation",
    "SimulationConfig",
    "Summary",
    "plan_injections",
    "register_fleet",
]

Progress = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class Registration:
    """A device ready to connect: its security module's connection string (never shown)."""

    device_id: str
    connection_string: str = field(repr=False)
    #: What had to be created: ``("device", "module")``, ``("module",)``, or nothing (reused).
    created: tuple[str, ...] = ()


class Registrar(Protocol):
    """Makes sure a simulated device and its ``azureiotsecurity`` module exist on the hub."""

    def register(self, device: SimDevice) -> Registration:
        """Create what is missing, set the twin's group and tags, return the credentials."""
        ...


def register_fleet(
    fleet: Fleet, registrar: Registrar, on_progress: Progress
) -> dict[str, Registration]:
    """Register every device of ``fleet``, saying what was created and what was reused."""
    done: dict[str, Registration] = {}
    for device in fleet:
        registration = registrar.register(device)
        done[device.device_id] = registration
        what = " and ".join(registration.created) if registration.created else "nothing"
        verb = "created" if registration.created else "reused"
        on_progress(
            f"{verb} {device.device_id} ({device.kind}, group {device.group}; created {what})"
        )
    created = sum(1 for r in done.values() if "device" in r.created)
    on_progress(f"{len(done)} devices ready: {created} created, {len(done) - created} reused")
    return done


class SimClock:
    """Simulated time: ``start`` plus the real seconds since the clock started, times ``speed``."""

    def __init__(
        self, start: datetime, speed: float, *, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        if start.tzinfo is None:
            raise ValueError(f"the simulated start must be timezone-aware: {start.isoformat()}")
        if speed <= 0:
            raise ValueError(f"speed must be positive, not {speed}")
        self.start = start.astimezone(UTC).replace(microsecond=0)
        self.speed = speed
        self._monotonic = monotonic
        self._origin = monotonic()

    def elapsed(self) -> float:
        """Real seconds since the clock started."""
        return self._monotonic() - self._origin

    def at(self, real_seconds: float) -> datetime:
        """The simulated time ``real_seconds`` after the start."""
        return self.start + timedelta(seconds=real_seconds * self.speed)

    def now(self) -> datetime:
        """The simulated time now."""
        return self.at(self.elapsed())


@dataclass(frozen=True, slots=True)
class Injection:
    """A scenario to play on a device at a simulated time."""

    scenario: str
    device_id: str
    at: datetime


def plan_injections(
    fleet: Fleet,
    scenarios: Sequence[str],
    start: datetime,
    *,
    seed: int = 0,
    span: timedelta | None = None,
) -> tuple[Injection, ...]:
    """Spread ``scenarios`` (``all`` expanded) over the fleet, one device each in turn.

    The first starts ten simulated minutes in (or a fifth into a shorter ``span``), the others
    follow ten minutes apart (closer in a short span), so all start in the first half.

    Raises:
        UnknownScenario: a name that is not a scenario.
    """
    names = expand_scenarios(scenarios)
    if not names:
        return ()
    devices = list(fleet.devices)
    rng_for(seed, "injections").shuffle(devices)
    lead = step = timedelta(minutes=10)
    if span is not None:
        lead = min(lead, span / 5)
        step = min(step, (span / 2 - lead) / len(names)) if span / 2 > lead else timedelta(0)
    return tuple(
        Injection(name, devices[i % len(devices)].device_id, start + lead + i * step)
        for i, name in enumerate(names)
    )


@dataclass(frozen=True, slots=True)
class SimulationConfig:
    """How a simulation runs."""

    #: Simulated seconds per real second.
    speed: float = 60.0
    #: Real seconds to run; None runs until :meth:`Simulation.stop`.
    duration: float | None = None
    #: Real seconds between sends.
    tick: float = 1.0
    seed: int = 0
    cadence: Cadence = field(default_factory=Cadence)

    def __post_init__(self) -> None:
        if self.speed <= 0:
            raise ValueError(f"speed must be positive, not {self.speed}")
        if self.tick <= 0:
            raise ValueError(f"tick must be positive, not {self.tick}")
        if self.duration is not None and self.duration <= 0:
            raise ValueError(f"duration must be positive, not {self.duration}")


@dataclass(frozen=True, slots=True)
class InjectionResult:
    """How much of an injected scenario happened before the run stopped."""

    injection: Injection
    expected_alerts: frozenset[str]
    events: int
    played: int
    facts: dict[str, str]


@dataclass(frozen=True, slots=True)
class Summary:
    """What a run did."""

    devices: int
    connected: int
    start: datetime
    end: datetime
    real_seconds: float
    speed: float
    messages: int
    events: int
    failed_events: int
    injections: tuple[InjectionResult, ...]

    def lines(self) -> list[str]:
        """The summary as text lines."""
        minutes = (self.end - self.start).total_seconds() / 60
        out = [
            f"simulated {self.devices} devices ({self.connected} connected) from "
            f"{_text(self.start)} to {_text(self.end)}: {minutes:.0f} simulated minutes "
            f"in {self.real_seconds:.1f} s at {self.speed:g}x",
            f"sent {self.events} events in {self.messages} security messages"
            + (f"; {self.failed_events} events failed to send" if self.failed_events else ""),
        ]
        for result in self.injections:
            injection = result.injection
            out.append(
                f"scenario {injection.scenario} on {injection.device_id} at "
                f"{_text(injection.at)}: {result.played}/{result.events} events played; "
                f"expected alerts: {', '.join(sorted(result.expected_alerts))}"
            )
        return out


def _text(when: datetime) -> str:
    return when.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


@dataclass(slots=True)
class _Injected:
    """An injected scenario and how many of its events have happened so far."""

    injection: Injection
    expected: frozenset[str]
    events: int
    facts: dict[str, str]
    played: int = 0


@dataclass(slots=True)
class _Device:
    """One device's run state."""

    device: SimDevice
    client: AsyncDeviceClient
    benign: BenignActivity
    agent: SimAgent
    fed: datetime
    #: Scenario events yet to happen, in time order, with the injection they belong to.
    scenario_events: list[tuple[Event, _Injected]] = field(default_factory=list)
    failed: bool = False


class Simulation:
    """A fleet sending benign traffic and injected scenarios to a hub, in compressed time."""

    def __init__(
        self,
        fleet: Fleet,
        clients: Mapping[str, AsyncDeviceClient],
        *,
        start: datetime,
        config: SimulationConfig = SimulationConfig(),
        injections: Sequence[Injection] = (),
        on_progress: Progress = lambda _line: None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        for injection in injections:
            fleet.device(injection.device_id)  # KeyError early for a device not in the fleet
        self._fleet = fleet
        self._clients = dict(clients)
        self._start = start
        self._config = config
        self._pending = sorted(injections, key=lambda i: i.at)
        self._progress = on_progress
        self._monotonic = monotonic
        self._stop = asyncio.Event()
        self._injected: list[_Injected] = []
        self._messages = self._events = self._failed = 0

    def stop(self) -> None:
        """Ask the run to stop after the current tick (safe from a signal handler)."""
        self._stop.set()

    async def run(self) -> Summary:
        """Connect, send until the duration or :meth:`stop`, flush, close; return the summary.

        Raises:
            NoDeviceConnected: not one device could connect.
        """
        config = self._config
        try:
            devices = await self._connect()
            clock = SimClock(self._start, config.speed, monotonic=self._monotonic)
            while True:
                elapsed = clock.elapsed()
                done = config.duration is not None and elapsed >= config.duration
                if done or self._stop.is_set():
                    break
                await self._tick(devices, clock.now(), final=False)
                wait = config.tick
                if config.duration is not None:
                    wait = min(wait, config.duration - clock.elapsed())
                if wait > 0:
                    with contextlib.suppress(TimeoutError):  # the tick passed: next one
                        await asyncio.wait_for(self._stop.wait(), timeout=wait)
            elapsed = clock.elapsed()
            if config.duration is not None:
                elapsed = min(elapsed, config.duration)
            end = clock.at(elapsed)
            await self._tick(devices, end, final=True)
        finally:
            await asyncio.gather(*(c.close() for c in self._clients.values()))
        return Summary(
            devices=len(self._fleet),
            connected=len(devices),
            start=clock.start,
            end=end,
            real_seconds=elapsed,
            speed=config.speed,
            messages=self._messages,
            events=self._events,
            failed_events=self._failed,
            injections=tuple(
                InjectionResult(i.injection, i.expected, i.events, i.played, i.facts)
                for i in self._injected
            ),
        )

    async def _connect(self) -> list[_Device]:
        chosen = [d for d in self._fleet if d.device_id in self._clients]
        outcomes = await asyncio.gather(
            *(self._clients[d.device_id].connect() for d in chosen), return_exceptions=True
        )
        devices: list[_Device] = []
        first_error: BaseException | None = None
        start = self._start.astimezone(UTC).replace(microsecond=0)
        for device, outcome in zip(chosen, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                if not isinstance(outcome, SdkError):
                    raise outcome
                first_error = first_error or outcome
                self._progress(f"{device.device_id}: cannot connect: {outcome}")
                continue
            devices.append(
                _Device(
                    device=device,
                    client=self._clients[device.device_id],
                    benign=BenignActivity(
                        device, start, seed=self._config.seed, cadence=self._config.cadence
                    ),
                    agent=SimAgent(device),
                    fed=start,
                )
            )
        if not devices:
            raise NoDeviceConnected(f"no simulated device could connect: {first_error}")
        self._progress(f"{len(devices)} of {len(chosen)} devices connected")
        return devices

    def _inject(self, devices: list[_Device], now: datetime) -> None:
        by_id = {d.device.device_id: d for d in devices}
        while self._pending and self._pending[0].at <= now:
            injection = self._pending.pop(0)
            state = by_id.get(injection.device_id)
            if state is None:
                continue  # its device did not connect
            run = run_scenario(
                injection.scenario, state.device, injection.at, seed=self._config.seed
            )
            injected = _Injected(injection, run.expected_alerts, len(run.activity), run.facts)
            self._injected.append(injected)
            state.scenario_events.extend((event, injected) for event in run.activity)
            state.scenario_events.sort(key=lambda pair: pair[0].timestamp_utc)
            self._progress(
                f"injecting {injection.scenario} on {injection.device_id} at {_text(injection.at)}"
                f" ({SCENARIOS[injection.scenario].summary})"
            )

    async def _tick(self, devices: list[_Device], now: datetime, *, final: bool) -> None:
        self._inject(devices, now)
        batches = [self._due(state, now, final=final) for state in devices]
        await asyncio.gather(
            *(self._send(state, batch) for state, batch in zip(devices, batches, strict=True))
        )

    def _due(self, state: _Device, now: datetime, *, final: bool) -> list[Event]:
        happened = state.benign.between(state.fed, now)
        while state.scenario_events and state.scenario_events[0][0].timestamp_utc < now:
            event, injected = state.scenario_events.pop(0)
            injected.played += 1
            happened.append(event)
        happened.sort(key=lambda e: e.timestamp_utc)
        for event in happened:
            state.agent.observe(event)
        state.fed = max(state.fed, now)
        timed = state.agent.flush(now) if final else state.agent.due(now)
        return [t.event for t in timed]

    async def _send(self, state: _Device, events: list[Event]) -> None:
        if not events:
            return
        try:
            messages = await state.client.send_security_message(events)
        except SdkError as exc:
            self._failed += len(events)
            if not state.failed:
                state.failed = True
                self._progress(f"{state.device.device_id}: sending failed: {exc}")
            return
        self._messages += len(messages)
        self._events += len(events)
