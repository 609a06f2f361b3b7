"""Linux ``/proc``: pure parsers for socket tables and process files, and readers over HostRoot.

The parsers take text (or bytes) and return typed frozen values; they raise only
:class:`~iotsec.agent.errors.ParseError`. The readers go through a
:class:`~iotsec.agent.hostroot.HostRoot` and tolerate processes that vanish mid-read: a process
that is gone reads as ``None``, one that is half gone (a zombie) as a partial snapshot.

>>> header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt\\n"
>>> line = "0: 0100007F:0CEA 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 4711\\n"
>>> sock = parse_net_sockets(header + line, "tcp")[0]
>>> (str(sock.local_address), sock.local_port, sock.state_name, sock.inode, sock.is_listening)
('127.0.0.1', 3306, 'LISTEN', 4711, True)
>>> stat = parse_stat("42 (tmux: server) S 1 42 42 0 -1 4194560 " + "0 " * 12 + "9876 0 0")
>>> (stat.pid, stat.comm, stat.ppid, stat.start_ticks)
(42, 'tmux: server', 1, 9876)
>>> parse_cmdline(b"/usr/bin/python3\\x00-m\\x00http.server\\x00")
('/usr/bin/python3', '-m', 'http.server')
"""

from __future__ import annotations

import enum
import ipaddress
import os
import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Literal

from iotsec.agent.errors import HostReadError, ParseError
from iotsec.agent.hostroot import HostRoot

__all__ = [
    "SOCKET_TABLES",
    "TCP_TABLES",
    "UDP_TABLES",
    "ByteOrder",
    "IPAddress",
    "ProcStat",
    "ProcStatus",
    "ProcessSnapshot",
    "SocketEntry",
    "Table",
    "TcpOpens",
    "TcpState",
    "TransportProtocol",
    "display_address",
    "is_loopback",
    "list_pids",
    "parse_cmdline",
    "parse_net_sockets",
    "parse_socket_link",
    "parse_stat",
    "parse_status",
    "parse_tcp_opens",
    "read_exec",
    "read_process",
    "read_processes",
    "read_sockets",
    "read_tcp_opens",
    "socket_owners",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
TransportProtocol = Literal["tcp", "udp"]
ByteOrder = Literal["little", "big"]

Table = tuple[str, TransportProtocol]
#: The socket tables a collector reads, with the transport each holds.
TCP_TABLES: tuple[Table, ...] = (("/proc/net/tcp", "tcp"), ("/proc/net/tcp6", "tcp"))
UDP_TABLES: tuple[Table, ...] = (("/proc/net/udp", "udp"), ("/proc/net/udp6", "udp"))
SOCKET_TABLES: tuple[Table, ...] = TCP_TABLES + UDP_TABLES

# int(x, 16) also takes "0x", "_", signs, spaces and non-ASCII digits; the kernel prints none.
_HEX = re.compile(r"[0-9A-Fa-f]+")
_SOCKET_LINK = re.compile(r"socket:\[([0-9]+)\]")
# PF_KTHREAD in the stat flags field: kernel threads have no executable and no command line.
_PF_KTHREAD = 0x00200000
# The fields after "(comm)" up to starttime (field 22), which every kernel since 2.6 prints.
_STAT_MIN_FIELDS = 20
_STAT_EXIT_CODE = 49  # field 52, since Linux 3.5
# Socket tables are read until the kernel says the end: see _read_table.
_TABLE_READ_SIZE = 256 * 1024


class TcpState(enum.IntEnum):
    """Socket states as /proc/net prints them (include/net/tcp_states.h)."""

    ESTABLISHED = 1
    SYN_SENT = 2
    SYN_RECV = 3
    FIN_WAIT1 = 4
    FIN_WAIT2 = 5
    TIME_WAIT = 6
    CLOSE = 7
    CLOSE_WAIT = 8
    LAST_ACK = 9
    LISTEN = 10
    CLOSING = 11
    NEW_SYN_RECV = 12
    BOUND_INACTIVE = 13


@dataclass(frozen=True, slots=True)
class SocketEntry:
    """One line of /proc/net/{tcp,tcp6,udp,udp6}. ``state`` may be a state newer than TcpState."""

    protocol: TransportProtocol
    local_address: IPAddress
    local_port: int
    remote_address: IPAddress
    remote_port: int
    state: int
    uid: int
    inode: int

    @property
    def state_name(self) -> str:
        """The state's kernel name, e.g. ``ESTABLISHED``."""
        try:
            return TcpState(self.state).name
        except ValueError:
            return f"UNKNOWN_{self.state}"

    @property
    def is_listening(self) -> bool:
        """A TCP socket in LISTEN, or a bound UDP socket with no remote end."""
        if self.protocol == "tcp":
            return self.state == TcpState.LISTEN
        return self.state == TcpState.CLOSE and self.remote_port == 0


@dataclass(frozen=True, slots=True)
class ProcStat:
    """The fields of /proc/<pid>/stat that collectors use."""

    pid: int
    comm: str
    state: str
    ppid: int
    flags: int
    start_ticks: int
    exit_code: int | None = None

    @property
    def is_kernel_thread(self) -> bool:
        """True for kernel threads, which have no executable."""
        return bool(self.flags & _PF_KTHREAD)


@dataclass(frozen=True, slots=True)
class ProcStatus:
    """The ids of /proc/<pid>/status: real and effective uid, the parent pid if printed, and
    the name and state (``parse_status`` with ``names``)."""

    uid: int
    euid: int
    ppid: int | None = None
    name: str | None = None
    state: str | None = None


@dataclass(frozen=True, slots=True)
class ProcessSnapshot:
    """What could be read of one process; ``exe`` and ``uid`` are None when unreadable."""

    pid: int
    ppid: int
    comm: str
    state: str
    start_ticks: int | None  # None when read at exec, from status (see read_exec)
    exe: str | None
    args: tuple[str, ...]
    uid: int | None
    euid: int | None
    is_kernel_thread: bool = False

    @property
    def command_line(self) -> str:
        """The arguments joined by spaces, as the ASC agents report them."""
        return " ".join(self.args)

    @property
    def missing(self) -> tuple[str, ...]:
        """Names of the parts that could not be read (a zombie has lost exe and cmdline)."""
        gaps = []
        if self.exe is None:
            gaps.append("exe")
        if not self.args:
            gaps.append("cmdline")
        if self.uid is None:
            gaps.append("uid")
        return tuple(gaps)


@dataclass(frozen=True, slots=True)
class TcpOpens:
    """The kernel's running counts of TCP connections opened (connect) and accepted."""

    active: int
    passive: int


def _hex(value: str, source: str, line: int, what: str) -> int:
    if not _HEX.fullmatch(value):
        raise ParseError(source, f"{what} is not hexadecimal: {value!r}", line=line)
    return int(value, 16)


def _dec(value: str, source: str, line: int | None, what: str) -> int:
    # isdigit() alone also takes other scripts' digits; ASCII ones are exactly 0-9.
    if not (value.isascii() and value.isdigit()):
        raise ParseError(source, f"{what} is not a decimal number: {value!r}", line=line)
    return int(value)


def _address(text: str, source: str, line: int, byteorder: ByteOrder) -> tuple[IPAddress, int]:
    host, sep, port = text.partition(":")
    if not sep or len(port) != 4:
        raise ParseError(source, f"expected ADDRESS:PORT in hex, got {text!r}", line=line)
    if len(host) not in (8, 32):
        raise ParseError(source, f"address must be 8 or 32 hex digits, got {len(host)}", line=line)
    packed = _hex(host, source, line, "address").to_bytes(len(host) // 2, "big")
    # The kernel prints the address as native 32-bit words (network-order bytes read as an
    # integer), so on little-endian hosts each word is byte-reversed; ports are plain numbers.
    if byteorder == "little":
        packed = b"".join(packed[i : i + 4][::-1] for i in range(0, len(packed), 4))
    address: IPAddress = (
        ipaddress.IPv4Address(packed) if len(packed) == 4 else ipaddress.IPv6Address(packed)
    )
    return address, _hex(port, source, line, "port")


def parse_net_sockets(
    text: str,
    protocol: TransportProtocol,
    *,
    source: str | None = None,
    byteorder: ByteOrder = "little",
) -> list[SocketEntry]:
    """Every socket of a /proc/net/{tcp,tcp6,udp,udp6} table.

    ``byteorder`` is the host's (``sys.byteorder``): the kernel prints addresses as native
    32-bit words, so a big-endian MIPS device prints 127.0.0.1 as ``7F000001``.
    """
    where = source or f"/proc/net/{protocol}"
    entries = []
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields or fields[0] == "sl":
            continue
        if len(fields) < 10:
            raise ParseError(where, f"expected at least 10 fields, got {len(fields)}", line=number)
        local, local_port = _address(fields[1], where, number, byteorder)
        remote, remote_port = _address(fields[2], where, number, byteorder)
        if local.version != remote.version:
            raise ParseError(where, "local and remote address families differ", line=number)
        if len(fields[3]) != 2:
            raise ParseError(where, f"state must be 2 hex digits, got {fields[3]!r}", line=number)
        entries.append(
            SocketEntry(
                protocol=protocol,
                local_address=local,
                local_port=local_port,
                remote_address=remote,
                remote_port=remote_port,
                state=_hex(fields[3], where, number, "state"),
                uid=_dec(fields[7], where, number, "uid"),
                inode=_dec(fields[9], where, number, "inode"),
            )
        )
    return entries


def parse_stat(text: str, source: str = "/proc/<pid>/stat") -> ProcStat:
    """The pid, comm, state, ppid, flags, start time and exit code of a /proc/<pid>/stat line."""
    # comm is up to 15 bytes of anything but NUL, ")" and newlines included: it ends at the
    # last ")".
    opening = text.find(" (")
    closing = text.rfind(")")
    if opening < 0 or closing < opening:
        raise ParseError(source, "expected 'PID (COMM) ...'")
    pid = _dec(text[:opening], source, None, "pid")
    fields = text[closing + 1 :].split()
    if len(fields) < _STAT_MIN_FIELDS:
        raise ParseError(
            source, f"expected at least {_STAT_MIN_FIELDS} fields after comm, got {len(fields)}"
        )
    if len(fields[0]) != 1:
        raise ParseError(source, f"state must be one character, got {fields[0]!r}")
    exit_code = None
    if len(fields) > _STAT_EXIT_CODE:
        exit_code = _dec(fields[_STAT_EXIT_CODE], source, None, "exit_code")
    return ProcStat(
        pid=pid,
        comm=text[opening + 2 : closing],
        state=fields[0],
        ppid=_dec(fields[1], source, None, "ppid"),
        flags=_dec(fields[6], source, None, "flags"),
        start_ticks=_dec(fields[19], source, None, "starttime"),
        exit_code=exit_code,
    )


def parse_status(
    text: str, source: str = "/proc/<pid>/status", *, names: bool = False
) -> ProcStatus:
    """The real and effective uid (and PPid) of a /proc/<pid>/status file; with ``names``
    also the Name (unescaped) and the State letter.

    It is read at every exec, so only the lines it needs are looked at.

    >>> parse_status("Name:\\tsu\\nPPid:\\t41\\nUid:\\t1000\\t0\\t0\\t0\\n")
    ProcStatus(uid=1000, euid=0, ppid=41, name=None, state=None)
    >>> text = "Name:\\ta\\\\\\\\b\\\\nc\\nState:\\tS (sleeping)\\nUid:\\t0\\t0\\t0\\t0\\n"
    >>> parse_status(text, names=True)
    ProcStatus(uid=0, euid=0, ppid=None, name='a\\\\b\\nc', state='S')
    """
    uid_line = _status_line(text, "Uid")
    if uid_line is None:
        raise ParseError(source, "no Uid line")
    number, value = uid_line
    parts = value.split()
    if len(parts) != 4:
        raise ParseError(source, f"Uid needs 4 ids, got {len(parts)}", line=number)
    uids = [_dec(part, source, number, "uid") for part in parts]
    ppid_line = _status_line(text, "PPid")
    ppid = None
    if ppid_line is not None:
        ppid = _dec(ppid_line[1].strip(), source, ppid_line[0], "PPid")
    if not names:
        return ProcStatus(uid=uids[0], euid=uids[1], ppid=ppid)
    name_line = _status_line(text, "Name")
    state_line = _status_line(text, "State")
    if name_line is None or state_line is None:
        raise ParseError(source, f"no {'Name' if name_line is None else 'State'} line")
    state = state_line[1].strip()[:1]
    if not state:
        raise ParseError(source, "State is empty", line=state_line[0])
    name = name_line[1].removeprefix("\t")
    return ProcStatus(
        uid=uids[0],
        euid=uids[1],
        ppid=ppid,
        name=_unescape_name(name) if "\\" in name else name,
        state=state,
    )


def _unescape_name(name: str) -> str:
    # The kernel escapes exactly two characters of a status Name: newline and backslash.
    out, index = [], 0
    while index < len(name):
        char = name[index]
        if char == "\\" and index + 1 < len(name) and name[index + 1] in "n\\":
            out.append("\n" if name[index + 1] == "n" else "\\")
            index += 2
        else:
            out.append(char)
            index += 1
    return "".join(out)


def _status_line(text: str, key: str) -> tuple[int, str] | None:
    # The first "key:" line of a status file: its line number and what follows the colon.
    start = 0 if text.startswith(key + ":") else text.find("\n" + key + ":") + 1
    if start == 0 and not text.startswith(key + ":"):
        return None
    end = text.find("\n", start)
    line = text[start : end if end >= 0 else len(text)]
    return text.count("\n", 0, start) + 1, line[len(key) + 1 :]


def parse_tcp_opens(text: str, source: str = "/proc/net/snmp") -> TcpOpens:
    """ActiveOpens and PassiveOpens from /proc/net/snmp (IPv4 and IPv6 alike)."""
    rows = [
        (n, line.split()[1:])
        for n, line in enumerate(text.splitlines(), 1)
        if line.startswith("Tcp:")
    ]
    if len(rows) != 2:
        raise ParseError(source, f"expected a Tcp header and a Tcp value line, got {len(rows)}")
    (_, names), (line, values) = rows
    fields = dict(zip(names, values, strict=False))
    try:
        active, passive = fields["ActiveOpens"], fields["PassiveOpens"]
    except KeyError as exc:
        raise ParseError(source, f"no {exc.args[0]} counter", line=line) from None
    return TcpOpens(
        active=_dec(active, source, line, "ActiveOpens"),
        passive=_dec(passive, source, line, "PassiveOpens"),
    )


def parse_cmdline(data: bytes) -> tuple[str, ...]:
    """The arguments of /proc/<pid>/cmdline (NUL-separated); empty for zombies and kthreads."""
    # A process that rewrote its title (nginx, sshd) pads with NULs and may use spaces instead.
    trimmed = data.rstrip(b"\x00")
    if not trimmed:
        return ()
    return tuple(part.decode("utf-8", errors="replace") for part in trimmed.split(b"\x00"))


def parse_socket_link(target: str) -> int | None:
    """The inode of an fd link target ``socket:[12345]``, or None for any other file."""
    match = _SOCKET_LINK.fullmatch(target)
    return int(match.group(1)) if match else None


def display_address(address: IPAddress) -> str:
    """The address as reported: IPv4-mapped IPv6 (``::ffff:10.0.0.1``) shown as IPv4."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def is_loopback(address: IPAddress) -> bool:
    """True for 127.0.0.0/8, ::1 and IPv4-mapped 127.x addresses."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def list_pids(host: HostRoot) -> list[int]:
    """Process ids under /proc, ascending."""
    return sorted(int(name) for name in host.listdir("/proc") if name.isascii() and name.isdigit())


def _read_table(host: HostRoot, host_path: str) -> bytes:
    # Every walk of /proc/net/tcp crosses the kernel's whole established-socket hash table
    # (2 ms on a 24 GB host). The kernel hands the table out about one page (some 26 sockets)
    # per read() whatever the size asked, so reading stops only at the empty read that marks
    # its end; each read resumes the walk where the previous one stopped.
    try:
        fd = os.open(host.path(host_path), os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise HostReadError(host_path, exc.strerror or str(exc)) from exc
    try:
        chunks = []
        while chunk := os.read(fd, _TABLE_READ_SIZE):
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError as exc:
        raise HostReadError(host_path, exc.strerror or str(exc)) from exc
    finally:
        os.close(fd)


def read_sockets(
    host: HostRoot,
    *,
    byteorder: ByteOrder = "little",
    tables: Iterable[Table] = SOCKET_TABLES,
) -> list[SocketEntry]:
    """Every socket of the host's tables; a table the kernel lacks (no IPv6) reads as empty."""
    entries: list[SocketEntry] = []
    for path, protocol in tables:
        try:
            text = _read_table(host, path).decode("ascii", errors="replace")
        except HostReadError:
            if host.exists(path):
                raise
            continue
        entries.extend(parse_net_sockets(text, protocol, source=path, byteorder=byteorder))
    return entries


def read_tcp_opens(host: HostRoot) -> TcpOpens | None:
    """The host's TCP open counters, or None when /proc/net/snmp is missing."""
    if not host.exists("/proc/net/snmp"):
        return None
    return parse_tcp_opens(host.read_text("/proc/net/snmp"))


def _read_optional(host: HostRoot, path: str) -> bytes | None:
    try:
        return host.read_bytes(path)
    except HostReadError:
        return None


def _read_image(host: HostRoot, base: str) -> tuple[str | None, bytes | None]:
    # exe and cmdline are read first: they vanish when the process exits, stat and status
    # only when it is reaped. exe is unreadable for a process that is gone, a zombie, a kernel
    # thread, or another user's process when the agent is not root.
    try:
        exe: str | None = host.readlink(f"{base}/exe")
    except HostReadError:
        exe = None
    return exe, _read_optional(host, f"{base}/cmdline")


def read_process(host: HostRoot, pid: int) -> ProcessSnapshot | None:
    """A snapshot of process ``pid``: None when it is gone, partial when parts are unreadable."""
    base = f"/proc/{pid}"
    exe, raw_cmdline = _read_image(host, base)
    raw_stat = _read_optional(host, f"{base}/stat")
    if raw_stat is None:
        return None
    stat = parse_stat(raw_stat.decode("utf-8", errors="replace"), f"{base}/stat")
    raw_status = _read_optional(host, f"{base}/status")
    status = (
        parse_status(raw_status.decode("utf-8", errors="replace"), f"{base}/status")
        if raw_status is not None
        else None
    )
    return ProcessSnapshot(
        pid=stat.pid,
        ppid=stat.ppid,
        comm=stat.comm,
        state=stat.state,
        start_ticks=stat.start_ticks,
        exe=exe,
        args=parse_cmdline(raw_cmdline) if raw_cmdline is not None else (),
        uid=status.uid if status is not None else None,
        euid=status.euid if status is not None else None,
        is_kernel_thread=stat.is_kernel_thread,
    )


def read_exec(host: HostRoot, pid: int) -> ProcessSnapshot | None:
    """A snapshot of process ``pid`` just after its exec: None when it is gone.

    An exec is the agent's hottest path, so it reads three files, not four: exe, cmdline and
    status, which has the parent, the name and the ids (stat adds only what an exec'd process
    does not need: a process that exec'd is never a kernel thread, and its start time is the
    event's). ``comm`` is status's Name, unescaped; ``start_ticks`` is None.
    """
    base = f"/proc/{pid}"
    exe, raw_cmdline = _read_image(host, base)
    raw_status = _read_optional(host, f"{base}/status")
    if raw_status is None:
        return None
    status = parse_status(
        raw_status.decode("utf-8", errors="replace"), f"{base}/status", names=True
    )
    if status.ppid is None:
        raise ParseError(f"{base}/status", "no PPid line")
    return ProcessSnapshot(
        pid=pid,
        ppid=status.ppid,
        comm=status.name or "",
        state=status.state or "",
        start_ticks=None,
        exe=exe,
        args=parse_cmdline(raw_cmdline) if raw_cmdline is not None else (),
        uid=status.uid,
        euid=status.euid,
    )


def read_processes(host: HostRoot) -> list[ProcessSnapshot]:
    """A snapshot of every process, by pid; processes that vanish meanwhile are left out."""
    snaps = (read_process(host, pid) for pid in list_pids(host))
    return [snap for snap in snaps if snap is not None]


def socket_owners(
    host: HostRoot,
    inodes: Collection[int],
    *,
    candidates: Iterable[int] | None = None,
) -> dict[int, int]:
    """Map socket inodes to the pid holding them, by reading /proc/<pid>/fd links.

    ``candidates`` orders the pids to search (default: every pid, newest first, since a fresh
    connection is most often made by a fresh process); the search stops once every inode is
    found. A socket shared after fork maps to the first holder found. Processes that vanish
    or cannot be read are skipped.
    """
    wanted = set(inodes)
    owners: dict[int, int] = {}
    if not wanted:
        return owners
    order = candidates if candidates is not None else reversed(list_pids(host))
    # Hot path (thousands of links): plain strings under the host's /proc instead of one
    # HostRoot call per link, which halves the cost. Unreadable entries are skipped either way.
    proc = os.fspath(host.path("/proc"))
    for pid in order:
        fd_dir = f"{proc}/{pid}/fd"
        try:
            names = os.listdir(fd_dir)
        except OSError:
            continue
        for name in names:
            try:
                target = os.readlink(f"{fd_dir}/{name}")
            except OSError:
                continue
            inode = parse_socket_link(target)
            if inode in wanted:
                owners[inode] = pid
                wanted.discard(inode)
        if not wanted:
            break
    return owners
