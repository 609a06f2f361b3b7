"""The Linux process-events connector: a netlink socket on which the kernel reports processes.

Every fork, exec and exit of the host arrives as one datagram, in real time.

Wire format (all integers in host byte order, include/uapi/linux/{netlink,connector,cn_proc}.h)::

    nlmsghdr   len u32, type u16 (NLMSG_DONE), flags u16, seq u32, port id u32     16 bytes
    cn_msg     idx u32 (CN_IDX_PROC), val u32 (CN_VAL_PROC), seq u32, ack u32,
               len u16, flags u16                                                20 bytes
    proc_event what u32, cpu u32, timestamp_ns u64, then one of
               FORK  parent pid, parent tgid, child pid, child tgid
               EXEC  pid, tgid
               EXIT  pid, tgid, exit code (a wait status), exit signal, parent pid, parent tgid
               NONE  err (the acknowledgement of a LISTEN or IGNORE request)

The kernel numbers the events it sends per CPU, so a gap in the numbers counts lost events.
By default a socket filter (classic BPF) runs in the kernel and passes only what the agent
needs: execs, exits of processes (not of threads) and acknowledgements. Forks and the events
of threads never wake the agent, which then costs about 40% less per process started; the
process tracker learns a new process's parent at its exec instead. The filtered events leave
gaps in the numbers too, so with the filter only the gaps across a buffer overrun are counted
as lost (an upper bound: they include filtered events).

Parsing and encoding are pure functions (:func:`parse_datagram`, :func:`encode_datagram`);
:class:`ProcConnector` owns the socket and :class:`ConnectorListener` the thread that reads it.
:class:`FakeProcConnector` replays encoded datagrams through a socket pair, for tests.

>>> exit_event = ExitEvent(pid=7, tgid=7, exit_code=3 << 8, exit_signal=17, seq=5)
>>> parse_datagram(encode_datagram([exit_event])) == [exit_event]
True
>>> (exit_event.status, exit_event.signal)
(3, None)
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import secrets
import select
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from iotsec.agent.errors import AgentError, HostReadError, ParseError

__all__ = [
    "CN_IDX_PROC",
    "CN_VAL_PROC",
    "NETLINK_CONNECTOR",
    "PROC_CN_MCAST_IGNORE",
    "PROC_CN_MCAST_LISTEN",
    "AckEvent",
    "ConnectorListener",
    "ExecEvent",
    "ExitEvent",
    "FakeProcConnector",
    "ForkEvent",
    "OtherEvent",
    "ProcConnector",
    "ProcEvent",
    "encode_datagram",
    "mcast_request",
    "parse_datagram",
]

NETLINK_CONNECTOR = 11
CN_IDX_PROC = 1
CN_VAL_PROC = 1
PROC_CN_MCAST_LISTEN = 1
PROC_CN_MCAST_IGNORE = 2

_NLMSG_DONE = 3
_PROC_EVENT_NONE = 0x00000000
_PROC_EVENT_FORK = 0x00000001
_PROC_EVENT_EXEC = 0x00000002
_PROC_EVENT_EXIT = 0x80000000

_NLMSGHDR = struct.Struct("=IHHII")
_CN_MSG = struct.Struct("=IIIIHH")
_EVENT_HEADER = struct.Struct("=IIQ")
_FORK = struct.Struct("=IIII")
_EXEC = struct.Struct("=II")
_EXIT = struct.Struct("=IIII")
_EXIT_PARENT = struct.Struct("=II")
_ACK = struct.Struct("=I")
# struct proc_event's union is 24 bytes (the largest member, comm, is pid + tgid + 16 bytes).
_EVENT_DATA_SIZE = 24
_RECEIVE_SIZE = 64 * 1024
_NO_CPU = 0xFFFFFFFF
_SO_RCVBUFFORCE = 33  # asm-generic/socket.h; the socket module does not name it
_SO_ATTACH_FILTER = 26  # asm-generic/socket.h; the socket module does not name it either
_SOCK_FILTER = struct.Struct("=HBBI")  # struct sock_filter: code, jump if true, if false, k
_SOCK_FPROG = struct.Struct("@HP")  # struct sock_fprog: length, pointer to the program
# Offsets in a datagram: nlmsghdr (16) + cn_msg (20) = 36 to proc_event.what; event data at 52.
_WHAT_AT = _NLMSGHDR.size + _CN_MSG.size
_DATA_AT = _WHAT_AT + _EVENT_HEADER.size


@dataclass(frozen=True, slots=True, kw_only=True)
class _Header:
    seq: int = 0  # cn_msg sequence: per CPU, +1 per event, so a gap means lost events
    cpu: int = 0
    timestamp_ns: int = 0  # CLOCK_MONOTONIC


@dataclass(frozen=True, slots=True, kw_only=True)
class ForkEvent(_Header):
    """A task was cloned; ``child_pid != child_tgid`` for a new thread."""

    parent_pid: int
    parent_tgid: int
    child_pid: int
    child_tgid: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecEvent(_Header):
    """A process replaced its image with execve()."""

    pid: int
    tgid: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ExitEvent(_Header):
    """A task exited; ``exit_code`` is its wait status (code << 8 | killing signal), and
    ``exit_signal`` the signal its parent is sent (SIGCHLD), not the one that killed it."""

    pid: int
    tgid: int
    exit_code: int
    exit_signal: int
    parent_pid: int | None = None  # printed since Linux 4.18
    parent_tgid: int | None = None

    @property
    def status(self) -> int:
        """The exit status a shell shows: the exit code, or 128 + the signal that killed it."""
        signal = self.exit_code & 0x7F
        return 128 + signal if signal else (self.exit_code >> 8) & 0xFF

    @property
    def signal(self) -> int | None:
        """The signal that killed the process, or None when it exited."""
        return self.exit_code & 0x7F or None


@dataclass(frozen=True, slots=True, kw_only=True)
class AckEvent(_Header):
    """The kernel's answer to a LISTEN/IGNORE request; ``err`` is an errno (0 is success)."""

    err: int
    ack: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class OtherEvent(_Header):
    """An event this agent does not use (uid, gid, sid, ptrace, comm, coredump)."""

    what: int
    data: bytes = bytes(_EVENT_DATA_SIZE)


ProcEvent = ForkEvent | ExecEvent | ExitEvent | AckEvent | OtherEvent


# The data each event this agent reads must carry (at least).
_NEEDED = {
    _PROC_EVENT_NONE: _ACK,
    _PROC_EVENT_FORK: _FORK,
    _PROC_EVENT_EXEC: _EXEC,
    _PROC_EVENT_EXIT: _EXIT,
}


def _parse_event(payload: bytes, seq: int, ack: int) -> ProcEvent:
    # Runs for every exec and exit on the host: offsets into the payload, no copies.
    if len(payload) < _EVENT_HEADER.size:
        raise ParseError("proc connector", f"event of {len(payload)} bytes is shorter than 16")
    what, cpu, timestamp_ns = _EVENT_HEADER.unpack_from(payload)
    at, size = _EVENT_HEADER.size, len(payload) - _EVENT_HEADER.size
    needed = _NEEDED.get(what)
    if needed is not None and size < needed.size:
        raise ParseError("proc connector", f"event {what:#x} has {size} bytes of data")
    if what == _PROC_EVENT_EXEC:
        pid, tgid = _EXEC.unpack_from(payload, at)
        return ExecEvent(pid=pid, tgid=tgid, seq=seq, cpu=cpu, timestamp_ns=timestamp_ns)
    if what == _PROC_EVENT_EXIT:
        pid, tgid, code, signal = _EXIT.unpack_from(payload, at)
        parent: tuple[int | None, int | None] = (None, None)
        if size >= _EXIT.size + _EXIT_PARENT.size:
            parent = _EXIT_PARENT.unpack_from(payload, at + _EXIT.size)
        return ExitEvent(
            pid=pid,
            tgid=tgid,
            exit_code=code,
            exit_signal=signal,
            parent_pid=parent[0],
            parent_tgid=parent[1],
            seq=seq,
            cpu=cpu,
            timestamp_ns=timestamp_ns,
        )
    if what == _PROC_EVENT_FORK:
        ppid, ptgid, cpid, ctgid = _FORK.unpack_from(payload, at)
        return ForkEvent(
            parent_pid=ppid,
            parent_tgid=ptgid,
            child_pid=cpid,
            child_tgid=ctgid,
            seq=seq,
            cpu=cpu,
            timestamp_ns=timestamp_ns,
        )
    if what == _PROC_EVENT_NONE:
        err = _ACK.unpack_from(payload, at)[0]
        return AckEvent(err=err, ack=ack, seq=seq, cpu=cpu, timestamp_ns=timestamp_ns)
    return OtherEvent(
        what=what, data=bytes(payload[at:]), seq=seq, cpu=cpu, timestamp_ns=timestamp_ns
    )


def parse_datagram(data: bytes) -> list[ProcEvent]:
    """Every process event in one netlink datagram; other netlink messages are skipped.

    Raises ParseError (only) when a header's length does not fit the datagram.
    """
    events: list[ProcEvent] = []
    offset = 0
    while len(data) - offset >= _NLMSGHDR.size:
        length, kind, _, _, _ = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size or offset + length > len(data):
            raise ParseError("proc connector", f"netlink message length {length} at {offset}")
        body = data[offset + _NLMSGHDR.size : offset + length]
        offset += (length + 3) & ~3  # NLMSG_ALIGN
        if kind != _NLMSG_DONE or len(body) < _CN_MSG.size:
            continue
        idx, val, seq, ack, size, _ = _CN_MSG.unpack_from(body)
        if (idx, val) != (CN_IDX_PROC, CN_VAL_PROC):
            continue
        if _CN_MSG.size + size > len(body):
            raise ParseError("proc connector", f"connector payload of {size} bytes overruns")
        events.append(_parse_event(body[_CN_MSG.size : _CN_MSG.size + size], seq, ack))
    return events


def _event_body(event: ProcEvent) -> tuple[int, bytes]:
    # The kernel always sends the whole 24-byte union, zero-padded.
    if isinstance(event, ForkEvent):
        data = _FORK.pack(event.parent_pid, event.parent_tgid, event.child_pid, event.child_tgid)
        return _PROC_EVENT_FORK, data.ljust(_EVENT_DATA_SIZE, b"\0")
    if isinstance(event, ExecEvent):
        return _PROC_EVENT_EXEC, _EXEC.pack(event.pid, event.tgid).ljust(_EVENT_DATA_SIZE, b"\0")
    if isinstance(event, ExitEvent):
        data = _EXIT.pack(event.pid, event.tgid, event.exit_code, event.exit_signal)
        if event.parent_pid is not None and event.parent_tgid is not None:
            data += _EXIT_PARENT.pack(event.parent_pid, event.parent_tgid)
        return _PROC_EVENT_EXIT, data
    if isinstance(event, AckEvent):
        return _PROC_EVENT_NONE, _ACK.pack(event.err).ljust(_EVENT_DATA_SIZE, b"\0")
    return event.what, event.data


def _netlink_message(payload: bytes, *, seq: int, ack: int, port_id: int) -> bytes:
    cn = _CN_MSG.pack(CN_IDX_PROC, CN_VAL_PROC, seq, ack, len(payload), 0) + payload
    message = _NLMSGHDR.pack(_NLMSGHDR.size + len(cn), _NLMSG_DONE, 0, seq, port_id) + cn
    return message + bytes(-len(message) % 4)


def encode_datagram(events: Iterable[ProcEvent], *, port_id: int = 0) -> bytes:
    """The datagram the kernel would send for ``events`` (the inverse of parse_datagram)."""
    parts = []
    for event in events:
        what, data = _event_body(event)
        payload = _EVENT_HEADER.pack(what, event.cpu, event.timestamp_ns) + data
        ack = event.ack if isinstance(event, AckEvent) else 0
        parts.append(_netlink_message(payload, seq=event.seq, ack=ack, port_id=port_id))
    return b"".join(parts)


def mcast_request(op: int, *, seq: int = 0, ack: int = 0, port_id: int = 0) -> bytes:
    """A PROC_CN_MCAST_LISTEN or PROC_CN_MCAST_IGNORE request; the kernel acks with ack + 1."""
    return _netlink_message(struct.pack("=I", op), seq=seq, ack=ack, port_id=port_id)


class ProcConnector:
    """A socket that receives process events; :meth:`open` subscribes to the kernel's.

    ``lost`` counts events the kernel numbered but this socket never received (gaps in the
    per-CPU sequence numbers; with the kernel filter, ``filtered``, only the gaps across an
    overrun), ``overruns`` the times the kernel said the buffer overflowed, ``malformed`` the
    datagrams that did not parse.
    """

    def __init__(
        self,
        sock: socket.socket,
        *,
        pending: Sequence[ProcEvent] = (),
        filtered: bool = False,
    ) -> None:
        self._sock = sock
        self._pending = list(pending)
        self._closed = False
        self.filtered = filtered
        self._last_seq: dict[int, int] = {}
        # With the filter: the CPUs whose next gap is still to be counted after an overrun.
        self._gap_owed: set[int] | None = None
        self.overruns = 0
        self.lost = 0
        self.malformed = 0
        self.last_error: ParseError | None = None

    @classmethod
    def open(
        cls,
        *,
        ack_timeout: float = 0.5,
        receive_buffer: int = 1 << 20,
        kernel_filter: bool = True,
    ) -> ProcConnector:
        """Subscribe to the kernel's process events; HostReadError says why it is unavailable.

        With ``kernel_filter`` (and a kernel that takes socket filters), only execs, process
        exits and acknowledgements reach the socket (see the module's text).

        It is unavailable when the kernel lacks CONFIG_PROC_EVENTS (socket() fails), without
        CAP_NET_ADMIN before Linux 6.6 (the LISTEN request is answered with EPERM), and in a
        container with its own PID or user namespace, where the kernel ignores the request
        silently: that shows as no acknowledgement within ``ack_timeout`` seconds.
        """
        what = "netlink proc connector"
        try:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_CONNECTOR)
        except OSError as exc:
            raise HostReadError(what, f"socket: {exc.strerror or exc}") from exc
        try:
            _grow_buffer(sock, receive_buffer)
            sock.bind((0, CN_IDX_PROC))  # port id 0: the kernel picks a unique one
            filtered = kernel_filter and _attach_filter(sock)  # before any event is queued
            ack = secrets.randbits(31)
            port_id = sock.getsockname()[0]
            sock.send(mcast_request(PROC_CN_MCAST_LISTEN, seq=0, ack=ack, port_id=port_id))
            early = _await_ack(sock, ack + 1, ack_timeout)
        except OSError as exc:
            sock.close()
            raise HostReadError(what, exc.strerror or str(exc)) from exc
        except (HostReadError, ParseError):
            sock.close()
            raise
        return cls(sock, pending=early, filtered=filtered)

    def fileno(self) -> int:
        """The socket's descriptor, for poll()."""
        return self._sock.fileno()

    def receive(self, batch: int = 64) -> list[ProcEvent]:
        """The events of the next datagram (blocks) and of up to ``batch`` more already queued.

        A burst is read at once so that the exec at its end is looked at before that process
        is gone. A datagram that does not parse is counted in ``malformed`` (the error kept in
        ``last_error``); an overrun is counted in ``overruns``.
        """
        events, self._pending = self._pending, []
        flags = socket.MSG_DONTWAIT if events else 0
        for _ in range(batch):
            try:
                data = self._sock.recv(_RECEIVE_SIZE, flags)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise HostReadError("netlink proc connector", exc.strerror or str(exc)) from exc
                self._note_overrun()
                continue
            flags = socket.MSG_DONTWAIT
            try:
                events.extend(parse_datagram(data))
            except ParseError as exc:
                self.malformed += 1
                self.last_error = exc
        for event in events:
            self._count_gap(event)
        return events

    def _note_overrun(self) -> None:
        self.overruns += 1
        if self.filtered:
            self._gap_owed = set(self._last_seq)  # a CPU not seen yet has no gap to count

    def _count_gap(self, event: ProcEvent) -> None:
        # Kernels before 6.4 send acks with cpu -1 and the requester's seq: outside the count.
        if event.cpu == _NO_CPU:
            return
        last = self._last_seq.get(event.cpu)
        self._last_seq[event.cpu] = event.seq
        if self.filtered:
            # Filtered events leave gaps too: only the gap across an overrun is counted.
            if self._gap_owed is None or event.cpu not in self._gap_owed:
                return
            self._gap_owed.discard(event.cpu)
        if last is not None:
            gap = (event.seq - last - 1) % (1 << 32)
            if gap < (1 << 31):  # a larger "gap" is a reordering, not a loss
                self.lost += gap

    def close(self) -> None:
        """Unsubscribe and close the socket (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self._sock.family == socket.AF_NETLINK:
            # The kernel counts listeners and only builds events while the count is positive.
            with contextlib.suppress(OSError):  # closing anyway
                self._sock.send(mcast_request(PROC_CN_MCAST_IGNORE))
        self._sock.close()


def _grow_buffer(sock: socket.socket, size: int) -> None:
    # A burst of forks must not overflow the default ~200 KB buffer; FORCE needs CAP_NET_ADMIN.
    try:
        sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, size)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)


def kernel_filter(byteorder: Literal["little", "big"] = sys.byteorder) -> bytes:
    """The classic BPF program: pass acks, execs and exits of thread-group leaders, drop the rest.

    BPF loads words in network (big-endian) order and the kernel writes the event in host
    order, so on a little-endian host the constants are compared byte-swapped (and the exit's
    pid and tgid, compared with each other, are swapped alike).

    >>> len(kernel_filter()) // 8  # instructions
    10
    """

    def word(value: int) -> int:
        return int.from_bytes(value.to_bytes(4, byteorder), "big")

    ld_w_abs, jeq_k, jeq_x, tax, ret_k = 0x20, 0x15, 0x1D, 0x07, 0x06
    program = [
        (ld_w_abs, 0, 0, _WHAT_AT),  # 0: A = what
        (jeq_k, 6, 0, word(_PROC_EVENT_EXEC)),  # 1: exec -> 8 (pass)
        (jeq_k, 5, 0, word(_PROC_EVENT_NONE)),  # 2: ack -> 8 (pass)
        (jeq_k, 0, 5, word(_PROC_EVENT_EXIT)),  # 3: exit -> 4, anything else -> 9 (drop)
        (ld_w_abs, 0, 0, _DATA_AT + 4),  # 4: A = tgid
        (tax, 0, 0, 0),  # 5: X = A
        (ld_w_abs, 0, 0, _DATA_AT),  # 6: A = pid
        (jeq_x, 0, 1, 0),  # 7: pid == tgid (a process, not a thread) -> 8, else 9
        (ret_k, 0, 0, 0xFFFFFFFF),  # 8: pass the whole datagram
        (ret_k, 0, 0, 0),  # 9: drop it
    ]
    return b"".join(_SOCK_FILTER.pack(*instruction) for instruction in program)


def _attach_filter(sock: socket.socket) -> bool:
    # The kernel copies the program during setsockopt, so the buffer need only live until then.
    program = ctypes.create_string_buffer(kernel_filter())
    fprog = _SOCK_FPROG.pack(len(program.raw) // _SOCK_FILTER.size, ctypes.addressof(program))
    try:
        sock.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_FILTER, fprog)
    except OSError:
        return False  # no CONFIG_BPF: every event comes, and gaps are counted exactly
    return True


def _await_ack(sock: socket.socket, ack: int, timeout: float) -> list[ProcEvent]:
    # Acks are multicast to every listener; ours carries our ack number + 1 (the kernel
    # overwrites seq since 6.4). Events that arrive first are kept: the subscription is live.
    deadline = time.monotonic() + timeout
    early: list[ProcEvent] = []
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([sock], [], [], left)
        if not ready:
            break
        for event in parse_datagram(sock.recv(_RECEIVE_SIZE)):
            if isinstance(event, AckEvent) and event.ack == ack:
                if event.err:
                    raise HostReadError("netlink proc connector", os.strerror(event.err))
                return early
            if not isinstance(event, AckEvent):
                early.append(event)
    raise HostReadError(
        "netlink proc connector",
        f"no acknowledgement within {timeout:g} s (a container's own PID or user namespace?)",
    )


class FakeProcConnector(ProcConnector):
    """A connector fed by the test: :meth:`push` sends datagrams through a socket pair."""

    def __init__(self, *, filtered: bool = False) -> None:
        ours, self._feed = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        super().__init__(ours, filtered=filtered)

    def overrun(self) -> None:
        """What the kernel's ENOBUFS (a full receive buffer) does to the counts."""
        self._note_overrun()

    def push(self, *events: ProcEvent) -> None:
        """Deliver ``events`` as one datagram."""
        self._feed.send(encode_datagram(events))

    def push_raw(self, data: bytes) -> None:
        """Deliver arbitrary bytes as one datagram."""
        self._feed.send(data)

    def close(self) -> None:
        super().close()
        self._feed.close()


class ConnectorListener:
    """A thread that reads a connector and hands each batch of events to ``on_events``.

    An AgentError of the handler is counted in ``errors`` (the last kept in ``last_error``)
    and reading goes on. A socket that fails stops the thread with the HostReadError in
    :attr:`failure`; so does a bug, which Python's thread excepthook also reports.
    """

    def __init__(
        self,
        connector: ProcConnector,
        on_events: Callable[[Sequence[ProcEvent]], None],
        *,
        name: str = "iotsec-proc-connector",
    ) -> None:
        self.connector = connector
        self._on_events = on_events
        self._wake_read, self._wake_write = os.pipe()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._stopping = False
        self.errors = 0
        self.last_error: AgentError | None = None
        self.failure: BaseException | None = None

    def start(self) -> None:
        """Start reading."""
        self._thread.start()

    @property
    def running(self) -> bool:
        """True while the thread reads."""
        return self._thread.is_alive()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread and close the connector (idempotent)."""
        if self._stopping:
            return
        self._stopping = True
        os.write(self._wake_write, b"x")
        if self._thread.is_alive():
            self._thread.join(timeout)
        self.connector.close()
        os.close(self._wake_read)
        os.close(self._wake_write)

    def _run(self) -> None:
        poller = select.poll()
        poller.register(self.connector.fileno(), select.POLLIN)
        poller.register(self._wake_read, select.POLLIN)
        try:
            while not self._stopping:
                ready = {fd for fd, _ in poller.poll()}
                if self._wake_read in ready:
                    return
                try:
                    events = self.connector.receive()
                except HostReadError as exc:
                    self.failure = exc
                    return
                try:
                    if events:
                        self._on_events(events)
                except AgentError as exc:
                    self.errors += 1
                    self.last_error = exc
        except BaseException as exc:
            self.failure = exc
            raise
