"""ConnectionCreate: TCP connections made and accepted, and connected UDP flows, with their process.

A thread polls the host's socket tables (/proc/net/{tcp,tcp6,udp,udp6}) every ``interval``
seconds and reports each connection once, when it first appears. A TCP socket counts from
ESTABLISHED through its closing states, TIME_WAIT included, so a short connection this host
closed first is still seen for a minute after (without its process: the kernel has already
let go of the socket's owner). A connection that opens and closes between two polls and leaves
no TIME_WAIT here is missed; auditd's connect/accept records would catch it, at a much higher
cost, and are not used.

The TCP tables are costly to read (the kernel walks its whole connection hash table: about
2 ms per table on a 24 GB host), so a poll reads them only when the kernel's ActiveOpens or
PassiveOpens counters (/proc/net/snmp) moved, or a handshake was in progress, or a minute of
polls went by; the UDP tables are cheap and read every time.

Direction is ``In`` when the local port is one this host listens on (bound, for UDP), else
``Out``. Connections with a loopback peer are not reported. The process is found by matching
the socket's inode against /proc/<pid>/fd links, only for new sockets, searching first the
processes that owned connections recently.

>>> CONNECTION_CREATE_SPEC.default_priority
'Low'
"""

from __future__ import annotations

import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from iotsec.agent.collectors.base import CollectorSpec
from iotsec.agent.collectors.process import EventBuffer
from iotsec.agent.collectors.procfs import (
    TCP_TABLES,
    UDP_TABLES,
    ByteOrder,
    SocketEntry,
    TcpOpens,
    TcpState,
    TransportProtocol,
    display_address,
    is_loopback,
    list_pids,
    read_process,
    read_sockets,
    read_tcp_opens,
    socket_owners,
)
from iotsec.agent.errors import AgentError
from iotsec.agent.hostroot import HostRoot
from iotsec.schema import Event
from iotsec.schema.events import ConnectionCreateEvent
from iotsec.schema.payloads import ConnectionCreate

__all__ = [
    "CONNECTION_CREATE_SPEC",
    "ConnectionCreateCollector",
    "SocketOwner",
    "connection_create_collector",
    "is_connection",
]

CONNECTION_CREATE_SPEC = CollectorSpec(
    name="ConnectionCreate",
    event_type="Security",
    category="Triggered",
    default_priority="Low",
    description="TCP connections to and from the device and connected UDP flows, with process.",
)

# States a TCP socket reaches only after the handshake completed.
_CONNECTED_TCP = frozenset(
    {
        TcpState.ESTABLISHED,
        TcpState.FIN_WAIT1,
        TcpState.FIN_WAIT2,
        TcpState.TIME_WAIT,
        TcpState.CLOSE_WAIT,
        TcpState.LAST_ACK,
        TcpState.CLOSING,
    }
)
_HANDSHAKE = frozenset({TcpState.SYN_SENT, TcpState.SYN_RECV})
# Pids that owned sockets lately are searched first: servers accept, clients reconnect.
_HOT_PIDS = 64
# The TCP tables are read at least this often even when the counters stand still.
_TCP_REREAD_POLLS = 60


def is_connection(entry: SocketEntry) -> bool:
    """True for a connected socket with a remote peer that is not loopback."""
    if entry.remote_port == 0 or entry.remote_address.is_unspecified:
        return False
    if entry.protocol == "tcp":
        connected = entry.state in _CONNECTED_TCP
    else:
        connected = entry.state == TcpState.ESTABLISHED
    return connected and not is_loopback(entry.remote_address)


@dataclass(frozen=True, slots=True)
class SocketOwner:
    """The process holding a socket."""

    pid: int
    executable: str
    command_line: str


_Key = tuple[str, str, int, str, int]


def _key(entry: SocketEntry) -> _Key:
    return (
        entry.protocol,
        str(entry.local_address),
        entry.local_port,
        str(entry.remote_address),
        entry.remote_port,
    )


def _utc_now() -> datetime:
    return datetime.now(UTC)


class ConnectionCreateCollector:
    """ConnectionCreate events, one per new connection, timed by the poll that saw it.

    Polls on a thread when ``background`` (default: on a live host), else on each
    :meth:`collect`. With ``report_existing`` the connections open at the first poll are
    reported too, marked ``ExtraDetails.SeenAtStart``.
    """

    spec = CONNECTION_CREATE_SPEC

    def __init__(
        self,
        host: HostRoot,
        *,
        interval: float = 1.0,
        background: bool | None = None,
        report_existing: bool = True,
        buffer_size: int = 2048,
        byteorder: ByteOrder | None = None,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self.host = host
        self.interval = interval
        self.background = host.is_live if background is None else background
        self.report_existing = report_existing
        self._byteorder: ByteOrder = byteorder or (
            "big" if host.is_live and sys.byteorder == "big" else "little"
        )
        self._now = clock
        self._buffer: EventBuffer[Event] = EventBuffer(buffer_size)
        self._seen: set[_Key] | None = None
        self._tcp: list[SocketEntry] | None = None
        self._opens: TcpOpens | None = None
        self._handshaking = False
        self._polls_since_tcp = 0
        #: How many polls read the TCP tables (the others found the counters unchanged).
        self.tcp_reads = 0
        self._owners: dict[int, SocketOwner | None] = {}
        self._hot: OrderedDict[int, None] = OrderedDict()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        #: The error of the last poll, raised by the next collect(); None after a good poll.
        self.failure: AgentError | None = None
        if self.background:
            self._thread = threading.Thread(
                target=self._run, name="iotsec-connection-poll", daemon=True
            )
            self._thread.start()

    @property
    def dropped(self) -> int:
        """Connection events dropped because the buffer was full (a running total)."""
        return self._buffer.dropped

    def poll(self) -> int:
        """Read the socket tables once and buffer the new connections; returns how many."""
        with self._lock:
            at = self._now()
            entries = self._tcp_entries() + read_sockets(
                self.host, byteorder=self._byteorder, tables=UDP_TABLES
            )
            listening = {(e.protocol, e.local_port) for e in entries if e.is_listening}
            current = {_key(e): e for e in entries if is_connection(e)}
            first = self._seen is None
            fresh = [e for k, e in current.items() if self._seen is None or k not in self._seen]
            self._seen = set(current)
            if first and not self.report_existing:
                fresh = []
            owners = self._resolve(fresh)
            live = {e.inode for e in current.values()}
            self._owners = {i: o for i, o in self._owners.items() if i in live}
            for entry in fresh:
                row = self._row(entry, listening, owners.get(entry.inode), seen_at_start=first)
                self._buffer.put(ConnectionCreateEvent.create([row], at=at))
            return len(fresh)

    def _tcp_entries(self) -> list[SocketEntry]:
        # Reading the TCP tables walks the kernel's whole connection hash table (most of a
        # poll's cost on a large host), so it is skipped while the kernel's counters say no
        # connection was opened or accepted since the last read. The counters are read first:
        # a connection opened meanwhile shows in the tables or moves the counters.
        opens = read_tcp_opens(self.host)
        self._polls_since_tcp += 1
        if (
            self._tcp is None
            or opens is None
            or opens != self._opens
            or self._handshaking
            or self._polls_since_tcp >= _TCP_REREAD_POLLS
        ):
            self._tcp = read_sockets(self.host, byteorder=self._byteorder, tables=TCP_TABLES)
            # A handshake in progress moves no counter when it completes: look again next time.
            self._handshaking = any(e.state in _HANDSHAKE for e in self._tcp)
            self._opens = opens
            self._polls_since_tcp = 0
            self.tcp_reads += 1
        return self._tcp

    def collect(self, now: datetime) -> Sequence[Event]:
        if not self.background:
            self.poll()
        elif self.failure is not None:
            raise self.failure
        return self._buffer.drain()

    def close(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self.poll()
            except AgentError as exc:
                self.failure = exc
            else:
                self.failure = None
            self._stopping.wait(self.interval)

    def _candidates(self) -> Iterator[int]:
        hot = list(reversed(self._hot))
        yield from hot
        # Everything else newest first: a fresh connection is most often a fresh process's.
        skip = set(hot)
        yield from (pid for pid in reversed(list_pids(self.host)) if pid not in skip)

    def _resolve(self, entries: Iterable[SocketEntry]) -> dict[int, SocketOwner | None]:
        # TIME_WAIT sockets have inode 0: no process holds them any more.
        wanted = {e.inode for e in entries if e.inode}
        unknown = wanted - self._owners.keys()
        if unknown:
            found = socket_owners(self.host, unknown, candidates=self._candidates())
            processes: dict[int, SocketOwner | None] = {}
            for inode in unknown:
                pid = found.get(inode)
                if pid is not None and pid not in processes:
                    processes[pid] = self._owner(pid)
                    self._hot[pid] = None
                    self._hot.move_to_end(pid)
                self._owners[inode] = processes.get(pid) if pid is not None else None
            while len(self._hot) > _HOT_PIDS:
                self._hot.popitem(last=False)
        return {inode: self._owners.get(inode) for inode in wanted}

    def _owner(self, pid: int) -> SocketOwner | None:
        snap = read_process(self.host, pid)
        if snap is None:
            return None
        return SocketOwner(pid, snap.exe or snap.comm, snap.command_line)

    def _row(
        self,
        entry: SocketEntry,
        listening: set[tuple[TransportProtocol, int]],
        owner: SocketOwner | None,
        *,
        seen_at_start: bool,
    ) -> ConnectionCreate:
        details: dict[str, str] = {}
        if entry.state != TcpState.ESTABLISHED:
            details["State"] = entry.state_name
        if owner is None:
            details["Partial"] = "true"
            details["Missing"] = "process"
        if seen_at_start:
            details["SeenAtStart"] = "true"
        return ConnectionCreate(
            remote_address=display_address(entry.remote_address),
            remote_port=str(entry.remote_port),
            local_address=display_address(entry.local_address),
            local_port=str(entry.local_port),
            direction="In" if (entry.protocol, entry.local_port) in listening else "Out",
            protocol=entry.protocol.upper(),
            process_id=owner.pid if owner is not None else 0,
            executable=owner.executable if owner is not None else "",
            command_line=owner.command_line if owner is not None else None,
            # A socket nobody holds (TIME_WAIT) shows uid 0, which would read as root.
            user_id=str(entry.uid) if entry.inode else None,
            extra_details=details,
        )


def connection_create_collector(host: HostRoot) -> ConnectionCreateCollector:
    """Registry factory: ConnectionCreate polling the host's socket tables every second."""
    return ConnectionCreateCollector(host)
