"""A device's ordinary life in simulated time: snapshots, jobs, daemons' traffic, admin logins.

:class:`BenignActivity` generates what happens on one device from its agent's start (the
origin) on; ask it for any time range, in any pieces, and the same seed gives the same events
(each hour is generated from its own seeded stream, so pieces never shift each other).

What a device does:

- at the origin and then every ``Cadence.snapshot``: SystemInformation, LocalUsers,
  ListeningPorts, FirewallConfiguration (deny-by-default INPUT and OUTPUT with the rules its
  services need; a permissive device has Allow policies and no rules) and OSBaseline (the
  checks the device fails, the same ones every time);
- every ``Cadence.statistics``: MessageStatistics and DroppedEventsStatistics (the agent's
  health, and the "still alive" signal: the 2019 schema has no heartbeat);
- its cron jobs and timers (``/bin/sh -c`` and the program, with their connections and exits);
- its daemons' connections: NTP polls, DNS lookups, broker and PLC reconnects, and peers that
  connect in (the NVR, Prometheus);
- in local working hours, now and then, an administrator's SSH session from the site's
  workstation on the management network: key-based mostly, sometimes by password, rarely
  with one mistyped password first, then a login shell and a few ``systemctl status`` /
  ``journalctl`` commands.

Nothing here looks like an attack: no downloads piped to a shell, no listeners spawning
shells, no failed-login runs (at most one failure, then a success from the same workstation),
no local console logins, no logins or connections from outside the site except to package
mirrors and the firmware CDN, and every day looks like the one before it.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from iotsec.schema import (
    DroppedEventsStatistics,
    DroppedEventsStatisticsEvent,
    Event,
    MessageStatistics,
    MessageStatisticsEvent,
)
from iotsec.simulate._random import rng_for
from iotsec.simulate.agent import schedule
from iotsec.simulate.events import (
    Proc,
    TimedEvent,
    connection,
    ephemeral_port,
    login,
    make_event,
    process_create,
    process_terminate,
)
from iotsec.simulate.fleet import Fleet, SimDevice
from iotsec.simulate.profile import Chatter, Job
from iotsec.simulate.snapshots import snapshot_events

__all__ = ["HIGH_PRIORITY_EVENTS", "BenignActivity", "Cadence", "benign_day", "benign_events"]

#: Events on the agent's High queue by default; the rest go Low (reference §3.3).
HIGH_PRIORITY_EVENTS = frozenset({"Login", "ListeningPorts", "LocalUsers"})

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_HOUR = timedelta(hours=1)
_WORKING_HOURS = range(8, 18)
_SEND_WINDOW = timedelta(minutes=7)  # the agent's default high-priority send interval


@dataclass(frozen=True, slots=True)
class Cadence:
    """How often the simulated agents send snapshots and their own statistics.

    ASC's default snapshot period is 13 hours; the demo fleet's agents are configured for an
    hour, so recommendations show up and follow changes quickly.
    """

    snapshot: timedelta = timedelta(hours=1)
    statistics: timedelta = timedelta(hours=1)

    def __post_init__(self) -> None:
        if self.snapshot <= timedelta(0) or self.statistics <= timedelta(0):
            raise ValueError("snapshot and statistics periods must be positive")


def _aware(when: datetime, what: str) -> datetime:
    if when.tzinfo is None:
        raise ValueError(f"{what} must be timezone-aware, got {when.isoformat()}")
    return when.astimezone(UTC)


class BenignActivity:
    """The benign activity of ``device`` from ``origin`` (its agent's start) on."""

    def __init__(
        self, device: SimDevice, origin: datetime, *, seed: int = 0, cadence: Cadence = Cadence()
    ) -> None:
        self.device = device
        self.origin = _aware(origin, "origin").replace(microsecond=0)
        self._seed = seed
        self._cadence = cadence
        boot = rng_for(seed, device.device_id, "boot", self.origin.isoformat())
        self._first_snapshot = self.origin + timedelta(seconds=boot.randint(5, 90))
        self._hours: dict[int, list[Event]] = {}

    def between(self, start: datetime, end: datetime) -> list[Event]:
        """Every event with a timestamp in ``[start, end)`` (none before the origin), in order."""
        start = max(_aware(start, "start"), self.origin)
        end = _aware(end, "end")
        if end <= start:
            return []
        events = self._activity(start, end)
        events.extend(self._statistics(start, end))
        events.sort(key=lambda e: e.timestamp_utc)
        return events

    def _activity(self, start: datetime, end: datetime) -> list[Event]:
        events = list(self._snapshots(start, end))
        first = (start - _EPOCH) // _HOUR - 1  # a session may run into the next hour
        last = (end - timedelta(microseconds=1) - _EPOCH) // _HOUR
        for slot in range(first, last + 1):
            events.extend(e for e in self._hour(slot) if start <= e.timestamp_utc < end)
        for old in [s for s in self._hours if s < first - 1]:
            del self._hours[old]
        return events

    # -- periodic ----------------------------------------------------------------------------

    def _ticks(self, first: datetime, period: timedelta, start: datetime, end: datetime) -> range:
        low = max(0, math.ceil((start - first) / period))
        high = max(low, math.ceil((end - first) / period))
        return range(low, high)

    def _snapshots(self, start: datetime, end: datetime) -> Iterable[Event]:
        period = self._cadence.snapshot
        # A snapshot is five events a second apart: ask for a little earlier to get them all.
        for k in self._ticks(self._first_snapshot, period, start - timedelta(seconds=5), end):
            at = self._first_snapshot + k * period
            rng = rng_for(self._seed, self.device.device_id, "snapshot", self.origin, k)
            for event in snapshot_events(self.device, at, rng):
                if start <= event.timestamp_utc < end:
                    yield event

    def _statistics(self, start: datetime, end: datetime) -> Iterable[Event]:
        period = self._cadence.statistics
        first = self._first_snapshot + timedelta(seconds=30)
        for k in self._ticks(first, period, start - timedelta(seconds=1), end):
            if k == 0:
                continue  # the first report comes a period after the agent started
            at = first + k * period
            rng = rng_for(self._seed, self.device.device_id, "statistics", self.origin, k)
            seen = self._activity(max(self.origin, at - period), at)
            high = [e for e in seen if e.name in HIGH_PRIORITY_EVENTS]
            low = len(seen) - len(high)
            windows = {(e.timestamp_utc - _EPOCH) // _SEND_WINDOW for e in high}
            sent = len(windows) + max(1, math.ceil(low / 100))
            events: list[Event] = [
                make_event(
                    MessageStatisticsEvent,
                    [
                        MessageStatistics(
                            messages_sent=sent,
                            messages_under_4kb=sent - low // 100,
                            total_failed=0,
                        )
                    ],
                    at,
                    self.device,
                    rng,
                ),
                make_event(
                    DroppedEventsStatisticsEvent,
                    [
                        DroppedEventsStatistics(
                            queue="High", collected_events=len(high), dropped_events=0
                        ),
                        DroppedEventsStatistics(
                            queue="Low", collected_events=low, dropped_events=0
                        ),
                    ],
                    at + timedelta(seconds=1),
                    self.device,
                    rng,
                ),
            ]
            yield from (e for e in events if start <= e.timestamp_utc < end)

    # -- triggered ---------------------------------------------------------------------------

    def _hour(self, slot: int) -> list[Event]:
        cached = self._hours.get(slot)
        if cached is not None:
            return cached
        rng = rng_for(self._seed, self.device.device_id, "hour", slot)
        begin = _EPOCH + slot * _HOUR
        events: list[Event] = []
        for job in self.device.profile.jobs:
            for at in _occurrences(job, begin, self.device):
                events.extend(self._job_run(job, at + timedelta(seconds=rng.randint(0, 1)), rng))
        for chatter in self.device.profile.chatter:
            count = int(chatter.per_hour)
            count += rng.random() < chatter.per_hour - count
            for offset in sorted(rng.randrange(3600) for _ in range(count)):
                events.append(self._chatter(chatter, begin + timedelta(seconds=offset), rng))
        local = begin.astimezone(self.device.tz)
        rate = self.device.profile.logins.sessions_per_day / len(_WORKING_HOURS)
        if local.weekday() >= 5:
            rate /= 4
        if local.hour in _WORKING_HOURS and rng.random() < rate:
            events.extend(self._session(begin + timedelta(seconds=rng.randrange(2700)), rng))
        self._hours[slot] = events
        return events

    def _proc(self, pid: int, ppid: int, executable: str, command_line: str, user: str) -> Proc:
        return Proc(pid, ppid, executable, command_line, user, self.device.profile.uid(user))

    def _job_run(self, job: Job, at: datetime, rng: random.Random) -> list[Event]:
        device = self.device
        parent = device.daemon_pid(job.launcher) if job.launcher else 1
        base = device.pid_at(at)
        procs: list[Proc] = []
        for i, step in enumerate(job.steps):
            procs.append(self._proc(base + i, parent, step.executable, step.command_line, job.user))
            parent = base + i
        events: list[Event] = [process_create(p, at, device, rng) for p in procs]
        for i, (address, port, protocol) in enumerate(job.connects, start=1):
            events.append(
                connection(
                    procs[-1],
                    at + timedelta(seconds=i),
                    device,
                    rng,
                    direction="Out",
                    remote=(address, port),
                    local_port=ephemeral_port(rng),
                    protocol=protocol,
                )
            )
        done = at + timedelta(seconds=job.seconds + rng.randint(0, 1))
        events.extend(process_terminate(p, done, device, rng) for p in reversed(procs))
        return events

    def _chatter(self, chatter: Chatter, at: datetime, rng: random.Random) -> Event:
        service = self.device.profile.service(chatter.service)
        proc = self._proc(
            self.device.daemon_pid(service.name),
            1,
            service.executable,
            service.command_line,
            service.user,
        )
        if chatter.direction == "Out":
            remote: tuple[str, int | str] = (chatter.address, chatter.port)
            local: int | str = ephemeral_port(rng)
        else:
            remote, local = (chatter.address, ephemeral_port(rng)), chatter.port
        return connection(
            proc,
            at,
            self.device,
            rng,
            direction=chatter.direction,
            remote=remote,
            local_port=local,
            protocol=chatter.protocol,
        )

    def _session(self, at: datetime, rng: random.Random) -> list[Event]:
        device, profile = self.device, self.device.profile
        habits = profile.logins
        daemon = profile.service(habits.daemon)
        listener = self._proc(
            device.daemon_pid(daemon.name), 1, daemon.executable, daemon.command_line, daemon.user
        )
        source = device.site.admin_workstation
        user = rng.choice(habits.admins)
        uid = profile.uid(user)
        password = rng.random() < habits.password_share
        typo = password and rng.random() < habits.typo_share
        pid = device.pid_at(at) + rng.randint(3, 9)

        def auth(offset: int, result: str, operation: str) -> Event:
            return login(
                at + timedelta(seconds=offset),
                device,
                rng,
                pid=pid,
                user=user,
                uid=uid,
                result=result,
                operation=operation,
                executable=daemon.executable,
                remote_address=source,
            )

        events: list[Event] = [
            connection(
                listener,
                at,
                device,
                rng,
                direction="In",
                remote=(source, ephemeral_port(rng)),
                local_port=22,
            )
        ]
        if daemon.executable == "/usr/sbin/sshd":  # OpenSSH re-executes itself per connection
            reexec = self._proc(
                pid, listener.pid, daemon.executable, "/usr/sbin/sshd -D -R", "root"
            )
            events.append(process_create(reexec, at, device, rng))
        if typo:
            events.append(auth(4, "Fail", "PAM:authentication"))
        if password:
            events.append(auth(9 if typo else 5, "Success", "PAM:authentication"))
        events.append(auth(10 if typo else 6, "Success", "login"))
        shell = self._proc(
            pid + 2, pid + 1, habits.shell.executable, habits.shell.command_line, user
        )
        cursor = at + timedelta(seconds=12)
        events.append(process_create(shell, cursor, device, rng))
        chosen = rng.sample(habits.commands, rng.randint(1, min(3, len(habits.commands))))
        for i, step in enumerate(chosen, start=3):
            cursor += timedelta(seconds=rng.randint(20, 180))
            proc = self._proc(pid + i, shell.pid, step.executable, step.command_line, user)
            events.append(process_create(proc, cursor, device, rng))
            ended = cursor + timedelta(seconds=rng.randint(1, 3))
            events.append(process_terminate(proc, ended, device, rng))
        cursor += timedelta(seconds=rng.randint(30, 240))
        events.append(process_terminate(shell, cursor, device, rng))
        return events


def _occurrences(job: Job, begin: datetime, device: SimDevice) -> list[datetime]:
    """When ``job`` runs in the hour from ``begin``: ``at`` into each period, local time."""
    base = _EPOCH - device.site.utc_offset + job.at
    k = math.ceil((begin - base) / job.every)
    out: list[datetime] = []
    while (when := base + k * job.every) < begin + _HOUR:
        out.append(when)
        k += 1
    return out


def benign_events(
    device: SimDevice,
    start: datetime,
    end: datetime,
    *,
    seed: int = 0,
    cadence: Cadence = Cadence(),
) -> list[Event]:
    """What happens on ``device`` from ``start`` (its agent's start) to ``end``, in order."""
    return BenignActivity(device, start, seed=seed, cadence=cadence).between(start, end)


def benign_day(
    fleet: Fleet,
    start: datetime,
    *,
    hours: float = 24,
    seed: int | None = None,
    cadence: Cadence = Cadence(),
) -> dict[str, list[TimedEvent]]:
    """A benign day of ``fleet`` from ``start``: per device, what its agent sends, and when.

    Aggregated events are sent when their window closes, which may be after the day ends.
    ``seed`` defaults to the fleet's.

    >>> from iotsec.simulate.fleet import build_fleet
    >>> day = benign_day(build_fleet(2, seed=3), datetime(2024, 5, 6, tzinfo=UTC), hours=2)
    >>> sorted(day) == sorted(d.device_id for d in build_fleet(2, seed=3))
    True
    """
    end = start + timedelta(hours=hours)
    chosen = fleet.seed if seed is None else seed
    return {
        device.device_id: schedule(
            device, benign_events(device, start, end, seed=chosen, cadence=cadence)
        )
        for device in fleet
    }
