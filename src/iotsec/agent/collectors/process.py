"""ProcessCreate and ProcessTerminate: one process-event source per host, two thin collectors.

A :class:`ProcessEventSource` watches a host's processes once and hands each start and exit
to the collectors that subscribed, through bounded buffers that count what they drop. It has
two backends:

* the netlink proc connector (:mod:`.proc_connector`), on a live host where it can be opened
  (see ProcConnector.open): every exec and exit, as it happens. /proc/<pid> (exe, cmdline
  and status: ``read_exec``) is read the moment the exec is reported, so even a process that
  lives a few milliseconds is
  reported with its executable and command line; one already gone is reported with what is
  known (its comm, its parent) and ``ExtraDetails.Partial``.
* polling /proc (the fallback, and what fixture hosts use): the pid sets of two polls are
  diffed. A process that starts and exits between two polls is missed, an exec that keeps the
  pid (a shell's ``exec``) is missed, and exit statuses are unknown.

The agent's own commands (``nft``, ``iptables-save``) are noise: the source drops every
process that descends from the pids it is told to exclude (by default, on a live host, the
agent itself).

>>> ProcessCreateCollector.spec.name, ProcessTerminateCollector.spec.category
('ProcessCreate', 'Triggered')
"""

from __future__ import annotations

import os
import threading
import weakref
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Generic, Literal, TypeVar

from iotsec.agent.accounts import Accounts
from iotsec.agent.collectors.base import CollectorSpec
from iotsec.agent.collectors.proc_connector import (
    ConnectorListener,
    ExecEvent,
    ExitEvent,
    ForkEvent,
    ProcConnector,
    ProcEvent,
)
from iotsec.agent.collectors.procfs import (
    ProcessSnapshot,
    list_pids,
    read_exec,
    read_process,
    read_processes,
)
from iotsec.agent.errors import AgentError, HostReadError
from iotsec.agent.hostroot import HostRoot
from iotsec.schema import Event
from iotsec.schema.events import ProcessCreateEvent, ProcessTerminateEvent
from iotsec.schema.payloads import ProcessCreate, ProcessTerminate

__all__ = [
    "PROCESS_CREATE_SPEC",
    "PROCESS_TERMINATE_SPEC",
    "Backend",
    "EventBuffer",
    "ProcessCreateCollector",
    "ProcessEventSource",
    "ProcessExit",
    "ProcessStart",
    "ProcessTerminateCollector",
    "ProcessTracker",
    "process_create_collector",
    "process_terminate_collector",
    "shared_process_source",
]

PROCESS_CREATE_SPEC = CollectorSpec(
    name="ProcessCreate",
    event_type="Security",
    category="Triggered",
    default_priority="Low",
    description="Processes started (exec), with executable, command line, parent and user.",
)
PROCESS_TERMINATE_SPEC = CollectorSpec(
    name="ProcessTerminate",
    event_type="Security",
    category="Triggered",
    default_priority="Low",
    description="Processes ended, with executable and exit status.",
)

Backend = Literal["auto", "netlink", "poll"]
Clock = Callable[[], datetime]
_T = TypeVar("_T")
# Remembered processes (for exits and parents); past this the least recently seen go.
_KNOWN_CAPACITY = 32768
# Names of uids missing from /etc/passwd are looked up again at most this often.
_ACCOUNTS_REFRESH = timedelta(minutes=1)


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class ProcessStart:
    """A process started (an exec). ``details`` become the row's ExtraDetails."""

    pid: int
    ppid: int
    executable: str
    command_line: str
    uid: int | None
    at: datetime
    details: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ProcessExit:
    """A process ended; ``status`` is None when the backend cannot know it (polling)."""

    pid: int
    executable: str
    status: int | None
    signal: int | None
    at: datetime
    details: Mapping[str, str] = field(default_factory=dict)


class EventBuffer(Generic[_T]):
    """A bounded FIFO from a producer thread to ``collect()``: when full, new items are dropped
    and counted (as the ASC C agent drops new events), never buffered without bound."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be positive, got {capacity}")
        self.capacity = capacity
        self._items: deque[_T] = deque()
        self._lock = threading.Lock()
        self._dropped = 0

    def put(self, item: _T) -> bool:
        """Add ``item``; False (and counted) when the buffer is full."""
        with self._lock:
            if len(self._items) >= self.capacity:
                self._dropped += 1
                return False
            self._items.append(item)
            return True

    def drain(self) -> list[_T]:
        """Everything buffered, oldest first, leaving the buffer empty."""
        with self._lock:
            items = list(self._items)
            self._items.clear()
            return items

    @property
    def dropped(self) -> int:
        """Items dropped since creation (a running total)."""
        return self._dropped

    def __len__(self) -> int:
        return len(self._items)


@dataclass(slots=True)
class _Known:
    exe: str | None
    comm: str
    uid: int | None
    ppid: int
    reported: bool  # its start was reported, or it ran when tracking began


class ProcessTracker:
    """Turns fork, exec and exit into :class:`ProcessStart` and :class:`ProcessExit`.

    It remembers each live process's executable (an exit no longer has one to read) and
    parent, and which processes descend from the excluded roots. One thread drives it; only
    :meth:`exclude` may be called from another.

    ``forks_reported`` is False behind the connector's kernel filter, which drops forks: a
    process's parent is then learned at its exec, and the exit of a process never seen (a
    fork that did not exec) is not reported. A process already reaped when its exec is read
    has left nothing in /proc, not even its parent: its start is held until its exit (already
    queued, since a process exits before it is reaped) says who the parent was.
    """

    def __init__(
        self,
        read: Callable[[int], ProcessSnapshot | None],
        *,
        clock: Clock = _utc_now,
        exclude_descendants_of: Iterable[int] = (),
        capacity: int = _KNOWN_CAPACITY,
        forks_reported: bool = True,
    ) -> None:
        self._read = read
        self.forks_reported = forks_reported
        self._unread: OrderedDict[int, datetime] = OrderedDict()
        self._clock = clock
        self._capacity = capacity
        self._known: OrderedDict[int, _Known] = OrderedDict()
        self._roots = set(exclude_descendants_of)
        self._excluded = set(self._roots)

    def exclude(self, pid: int) -> None:
        """Drop ``pid`` and every process it starts from now on."""
        # Single set operations are atomic under the GIL, so the owning thread sees either state.
        self._roots.add(pid)
        self._excluded.add(pid)

    def is_excluded(self, pid: int) -> bool:
        """True when ``pid`` is an excluded root or descends from one."""
        return pid in self._excluded

    def seed(self, snapshots: Iterable[ProcessSnapshot]) -> None:
        """Remember the processes running when tracking begins (their exits are reported)."""
        parents: dict[int, int] = {}
        for snap in snapshots:
            parents[snap.pid] = snap.ppid
            self._remember(
                snap.pid,
                _Known(snap.exe, snap.comm, snap.uid, snap.ppid, not snap.is_kernel_thread),
            )
        for pid in parents:
            chain = pid
            for _ in range(len(parents)):
                if chain in self._roots:
                    self._excluded.add(pid)
                    break
                if chain not in parents:
                    break
                chain = parents[chain]

    def activities(self, event: ProcEvent) -> list[ProcessStart | ProcessExit]:
        """What ``event`` means: usually one start or exit or nothing, and with a held start
        (see the class's text) the start and then the exit."""
        if isinstance(event, ExitEvent) and event.pid == event.tgid and event.tgid in self._unread:
            at = self._unread.pop(event.tgid)
            parent = event.parent_tgid if event.parent_tgid is not None else 0
            if parent in self._excluded:
                return []  # a child of an excluded process: neither its start nor its exit
            start = self._started(event.tgid, None, _Known(None, "", None, parent, False), at=at)
            end = self.vanished(event.tgid, event.status, event.signal)
            return [start] if end is None else [start, end]
        activity = self.handle(event)
        held: list[ProcessStart | ProcessExit] = []
        while len(self._unread) > self._capacity:  # their exits were lost: no parent to wait for
            pid, at = self._unread.popitem(last=False)
            held.append(self._started(pid, None, None, at=at))
        return held if activity is None else [*held, activity]

    def handle(self, event: ProcEvent) -> ProcessStart | ProcessExit | None:
        """The start or exit ``event`` means, if any (threads and forks alone mean none)."""
        if isinstance(event, ForkEvent):
            self._forked(event)
        elif isinstance(event, ExecEvent):
            return self._executed(event.tgid)
        elif isinstance(event, ExitEvent) and event.pid == event.tgid:
            return self.vanished(event.tgid, event.status, event.signal)
        return None

    def appeared(self, snap: ProcessSnapshot) -> ProcessStart | None:
        """A process found by polling: its start, unless excluded or a kernel thread."""
        if snap.ppid in self._excluded:
            self._excluded.add(snap.pid)
            return None
        if snap.is_kernel_thread:
            self._remember(snap.pid, _Known(None, snap.comm, snap.uid, snap.ppid, False))
            return None
        return self._started(snap.pid, snap, None)

    def vanished(
        self, pid: int, status: int | None = None, signal: int | None = None
    ) -> ProcessExit | None:
        """The exit of ``pid``, unless excluded or a process whose start was not reported."""
        known = self._known.pop(pid, None)
        if pid in self._excluded:
            if pid not in self._roots:
                self._excluded.discard(pid)
            return None
        if known is not None and not known.reported:
            return None  # a fork that never exec'd, or a kernel thread
        if known is None and not self.forks_reported:
            return None  # a fork that never exec'd, unseen behind the kernel filter
        details = {"Signal": str(signal)} if signal is not None else {}
        if status is None:
            details["ExitStatus"] = "unknown"
        if known is not None and known.exe is not None:
            return ProcessExit(pid, known.exe, status, signal, self._clock(), details)
        details.update(Partial="true", Missing="exe")
        comm = known.comm if known is not None else ""
        if comm:
            details["Comm"] = comm
        return ProcessExit(pid, comm, status, signal, self._clock(), details)

    def _remember(self, pid: int, known: _Known) -> None:
        self._known[pid] = known
        self._known.move_to_end(pid)
        while len(self._known) > self._capacity:
            self._known.popitem(last=False)

    def _forked(self, event: ForkEvent) -> None:
        if event.child_pid != event.child_tgid:
            return  # a new thread
        child, parent = event.child_tgid, event.parent_tgid
        if parent in self._excluded:
            self._excluded.add(child)
        base = self._known.get(parent) or _Known(None, "", None, 0, False)
        # Until it execs, the child runs its parent's image.
        self._remember(child, _Known(base.exe, base.comm, base.uid, parent, False))

    def _executed(self, pid: int) -> ProcessStart | None:
        if pid in self._excluded:
            return None
        snap = self._read(pid)
        if snap is not None and snap.ppid in self._excluded:
            self._excluded.add(pid)  # its fork was not seen (kernel filter): its parent says
            return None
        before = self._known.get(pid)
        if snap is None and before is None and not self.forks_reported:
            self._unread[pid] = self._clock()  # its exit will say who its parent was
            return None
        return self._started(pid, snap, before)

    def _started(
        self,
        pid: int,
        snap: ProcessSnapshot | None,
        before: _Known | None,
        *,
        at: datetime | None = None,
    ) -> ProcessStart:
        details: dict[str, str] = {}
        if snap is not None:
            ppid, comm, uid, exe = snap.ppid, snap.comm, snap.uid, snap.exe
            missing = list(snap.missing)
            if snap.euid is not None and snap.euid != snap.uid:
                details["EffectiveUserId"] = str(snap.euid)
        else:
            ppid = before.ppid if before else 0
            comm, uid, exe = "", None, None
            missing = ["exe", "cmdline", "uid"]
        parent = self._known.get(ppid)
        if uid is None and parent is not None and parent.uid is not None:
            uid = parent.uid
            details["UserIdFrom"] = "parent"
        if snap is not None and snap.args:
            command_line = snap.command_line
        else:
            # Gone before it could be read: its comm is all that is left. (An exec with an
            # empty argv, as in CVE-2021-4034, keeps its exe and reports an empty line.)
            command_line = comm if exe is None else ""
        if missing:
            details["Partial"] = "true"
            details["Missing"] = ",".join(missing)
            if comm:
                details["Comm"] = comm
            if parent is not None and parent.exe:
                details["ParentExecutable"] = parent.exe
        self._remember(pid, _Known(exe, comm, uid, ppid, True))
        return ProcessStart(
            pid=pid,
            ppid=ppid,
            executable=exe if exe is not None else comm,
            command_line=command_line,
            uid=uid,
            at=self._clock() if at is None else at,
            details=details,
        )


class ProcessEventSource:
    """Process starts and exits of one host, fanned out to subscribed buffers.

    ``backend="auto"`` uses the proc connector on a live host when it can be opened and polls
    /proc otherwise; :attr:`unavailable` then says why the connector was not used. Polling runs
    on a thread when ``background`` (default: on a live host), else on each :meth:`pump`.
    The source starts with its first subscriber and stops when the last one leaves.
    """

    def __init__(
        self,
        host: HostRoot,
        *,
        backend: Backend = "auto",
        poll_interval: float = 1.0,
        background: bool | None = None,
        exclude_descendants_of: Iterable[int] = (),
        buffer_size: int = 2048,
        clock: Clock = _utc_now,
        connector: ProcConnector | None = None,
    ) -> None:
        self.host = host
        self.backend: Backend = backend
        self.poll_interval = poll_interval
        self.background = host.is_live if background is None else background
        self.buffer_size = buffer_size
        self.unavailable: str | None = None
        self.tracker = ProcessTracker(
            lambda pid: read_exec(host, pid),
            clock=clock,
            exclude_descendants_of=exclude_descendants_of,
        )
        self._connector = connector
        self._listener: ConnectorListener | None = None
        self._poller: _Poller | None = None
        self._starts: list[EventBuffer[ProcessStart]] = []
        self._exits: list[EventBuffer[ProcessExit]] = []
        self._lock = threading.Lock()
        self.closed = False

    def subscribe_starts(self) -> EventBuffer[ProcessStart]:
        """A new buffer that receives every process start from now on."""
        buffer: EventBuffer[ProcessStart] = EventBuffer(self.buffer_size)
        with self._lock:
            self._ensure_started()
            self._starts = [*self._starts, buffer]
        return buffer

    def subscribe_exits(self) -> EventBuffer[ProcessExit]:
        """A new buffer that receives every process exit from now on."""
        buffer: EventBuffer[ProcessExit] = EventBuffer(self.buffer_size)
        with self._lock:
            self._ensure_started()
            self._exits = [*self._exits, buffer]
        return buffer

    def unsubscribe(self, buffer: EventBuffer[Any]) -> None:
        """Stop feeding ``buffer``; the last one out closes the source."""
        with self._lock:
            self._starts = [b for b in self._starts if b is not buffer]
            self._exits = [b for b in self._exits if b is not buffer]
            if not self._starts and not self._exits:
                self._stop()

    def exclude(self, pid: int) -> None:
        """Stop reporting ``pid`` and everything it starts."""
        self.tracker.exclude(pid)

    @property
    def lost(self) -> int:
        """Events the kernel sent that the connector socket lost (0 when polling)."""
        return self._listener.connector.lost if self._listener is not None else 0

    def pump(self) -> None:
        """Poll now when polling in the foreground; raise HostReadError if the source failed."""
        if self._listener is not None and self._listener.failure is not None:
            failure = self._listener.failure
            reason = failure.reason if isinstance(failure, HostReadError) else repr(failure)
            raise HostReadError("netlink proc connector", f"listener stopped: {reason}")
        if self._poller is not None and not self.background:
            with self._lock:
                self._poller.poll()
        if self._poller is not None and self._poller.failure is not None:
            raise self._poller.failure

    def close(self) -> None:
        """Stop watching (idempotent); subscribers get nothing more."""
        with self._lock:
            self._stop()

    def _emit(self, activity: ProcessStart | ProcessExit | None) -> None:
        # Subscriber lists are replaced, never changed in place: iterating them needs no lock.
        if isinstance(activity, ProcessStart):
            for starts in self._starts:
                starts.put(activity)
        elif activity is not None:
            for exits in self._exits:
                exits.put(activity)

    def _on_events(self, events: Sequence[ProcEvent]) -> None:
        for event in events:
            for activity in self.tracker.activities(event):
                self._emit(activity)

    def _ensure_started(self) -> None:
        if self.closed:
            raise HostReadError("process events", "the source is closed")
        if self._listener is None and self._poller is None:
            self._start()

    def _start(self) -> None:
        connector = self._open_connector() if self.backend != "poll" else None
        if connector is None:
            self._poller = _Poller(self.host, self.tracker, self._emit)
            if self.background:
                self._poller.start(self.poll_interval)
            return
        try:
            # Subscribed first and seeded second: nothing starts unseen in between, and the
            # socket buffers events until the listener runs.
            self.tracker.seed(read_processes(self.host))
        except AgentError:
            connector.close()
            raise
        self.tracker.forks_reported = not connector.filtered
        self._listener = ConnectorListener(connector, self._on_events)
        self._listener.start()

    def _open_connector(self) -> ProcConnector | None:
        if self._connector is not None:
            return self._connector
        if self.backend == "auto" and not self.host.is_live:
            self.unavailable = "the host is not live (a fixture tree has no kernel)"
            return None
        try:
            return ProcConnector.open()
        except HostReadError as exc:
            if self.backend == "netlink":
                raise
            self.unavailable = str(exc)
            return None

    def _stop(self) -> None:
        self.closed = True
        if self._listener is not None:
            self._listener.stop()
            self._listener = None
        if self._poller is not None:
            self._poller.stop()
            self._poller = None


class _Poller:
    """Diffs /proc's pid set at each poll (the fallback backend)."""

    def __init__(
        self,
        host: HostRoot,
        tracker: ProcessTracker,
        emit: Callable[[ProcessStart | ProcessExit | None], None],
    ) -> None:
        self._host = host
        self._tracker = tracker
        self._emit = emit
        snaps = read_processes(host)
        tracker.seed(snaps)
        self._pids = {snap.pid for snap in snaps}
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.failure: AgentError | None = None

    def poll(self) -> None:
        pids = set(list_pids(self._host))
        for pid in sorted(pids - self._pids):
            snap = read_process(self._host, pid)
            if snap is not None:
                self._emit(self._tracker.appeared(snap))
        for pid in sorted(self._pids - pids):
            self._emit(self._tracker.vanished(pid))
        self._pids = pids

    def start(self, interval: float) -> None:
        self._thread = threading.Thread(
            target=self._run, args=(interval,), name="iotsec-process-poll", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(5.0)

    def _run(self, interval: float) -> None:
        while not self._stopping.wait(interval):
            try:
                self.poll()
            except AgentError as exc:
                self.failure = exc  # reported by the next collect(); polling goes on
            else:
                self.failure = None


_SHARED: weakref.WeakKeyDictionary[HostRoot, ProcessEventSource] = weakref.WeakKeyDictionary()
_SHARED_LOCK = threading.Lock()


def shared_process_source(host: HostRoot) -> ProcessEventSource:
    """The one source of ``host``, so that both collectors share one netlink socket.

    Built on first use with the agent's defaults: on a live host it excludes the agent's own
    process and everything it runs.
    """
    with _SHARED_LOCK:
        source = _SHARED.get(host)
        if source is None or source.closed:
            source = ProcessEventSource(
                host, exclude_descendants_of=(os.getpid(),) if host.is_live else ()
            )
            _SHARED[host] = source
        return source


class _UserNames:
    """uid to user name through Accounts, re-read at most once a minute when a uid is missing."""

    def __init__(self, host: HostRoot) -> None:
        self._host = host
        self._accounts: Accounts | None = None
        self._checked: datetime | None = None
        #: Why names could not be read (names are then left out; events still flow).
        self.error: AgentError | None = None

    def name(self, uid: int | None, now: datetime) -> str | None:
        if uid is None:
            return None
        name = self._accounts.user_name(uid) if self._accounts is not None else None
        if name is None and (self._checked is None or now - self._checked >= _ACCOUNTS_REFRESH):
            self._checked = now
            try:
                if self._accounts is None:
                    self._accounts = Accounts(self._host)
                else:
                    self._accounts.refresh()
                self.error = None
            except AgentError as exc:
                self.error = exc
            name = self._accounts.user_name(uid) if self._accounts is not None else None
        return name


class _ProcessCollector(Generic[_T]):
    """One subscription to a source; subclasses turn what it delivers into events."""

    spec: ClassVar[CollectorSpec]

    def __init__(self, source: ProcessEventSource, buffer: EventBuffer[_T]) -> None:
        self.source = source
        self._buffer = buffer

    @property
    def dropped(self) -> int:
        """Events lost so far: buffer overflow plus events the kernel socket lost."""
        return self._buffer.dropped + self.source.lost

    def collect(self, now: datetime) -> Sequence[Event]:
        self.source.pump()
        return [self._event(item, now) for item in self._buffer.drain()]

    def close(self) -> None:
        self.source.unsubscribe(self._buffer)

    def _event(self, item: _T, now: datetime) -> Event:
        raise NotImplementedError


class ProcessCreateCollector(_ProcessCollector[ProcessStart]):
    """ProcessCreate events, one per process started, timed when the source saw it."""

    spec = PROCESS_CREATE_SPEC

    def __init__(self, source: ProcessEventSource) -> None:
        super().__init__(source, source.subscribe_starts())
        self._names = _UserNames(source.host)

    def _event(self, item: ProcessStart, now: datetime) -> Event:
        row = ProcessCreate(
            executable=item.executable,
            process_id=item.pid,
            parent_process_id=item.ppid,
            user_id=str(item.uid) if item.uid is not None else "",
            user_name=self._names.name(item.uid, now),
            command_line=item.command_line,
            extra_details=dict(item.details),
        )
        return ProcessCreateEvent.create([row], at=item.at)


class ProcessTerminateCollector(_ProcessCollector[ProcessExit]):
    """ProcessTerminate events, one per process ended; ExitStatus -1 when unknown (polling)."""

    spec = PROCESS_TERMINATE_SPEC

    def __init__(self, source: ProcessEventSource) -> None:
        super().__init__(source, source.subscribe_exits())

    def _event(self, item: ProcessExit, now: datetime) -> Event:
        row = ProcessTerminate(
            executable=item.executable,
            process_id=item.pid,
            exit_status=item.status if item.status is not None else -1,
            extra_details=dict(item.details),
        )
        return ProcessTerminateEvent.create([row], at=item.at)


def process_create_collector(host: HostRoot) -> ProcessCreateCollector:
    """Registry factory: ProcessCreate over the host's shared process source."""
    return ProcessCreateCollector(shared_process_source(host))


def process_terminate_collector(host: HostRoot) -> ProcessTerminateCollector:
    """Registry factory: ProcessTerminate over the host's shared process source."""
    return ProcessTerminateCollector(shared_process_source(host))
