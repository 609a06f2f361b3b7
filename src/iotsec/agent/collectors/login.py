"""The Login collector: successful and failed logins, each reported once.

Sources, by preference: auditd's log (USER_LOGIN/USER_AUTH) when it exists and can be read,
else wtmp (successes) and btmp (failures); plus the first text log that exists (auth.log,
secure, busybox's messages), or the systemd journal when there is none.

Each file is tailed: the collector keeps its inode and offset, so a call returns only what was
appended since the previous one. A rotated file (new inode) is finished from its renamed
sibling (``auth.log.1``, ``secure-20240303``) before the new file is read from its start; a
truncated file is read again from its start. The first call establishes the positions without
replaying history, unless ``replay_history`` is set. The journal is resumed by cursor.

The same login seen by two sources (btmp and auth.log, USER_AUTH and auth.log) is reported
once: two records from different sources merge when they agree on result, user and address and
lie within a second (or share a process id and lie within a few seconds: PAM logs before its
failure delay, auditd after it). Each source's record merges at most once, so three failed
passwords stay three failed logins.

Problems that did not stop the collection (an unreadable audit log, a malformed line) are kept
in :attr:`LoginCollector.errors` for the agent to send as Diagnostics.
"""

from __future__ import annotations

import ipaddress
import os
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, tzinfo
from pathlib import PurePosixPath

from iotsec.agent.accounts import Accounts
from iotsec.agent.collectors.authlog import (
    AuthRecord,
    parse_audit_line,
    parse_journal_line,
    parse_syslog_line,
)
from iotsec.agent.collectors.base import CollectorSpec
from iotsec.agent.collectors.utmp import RECORD_SIZE, UtmpRecord, UtmpType, parse_utmp
from iotsec.agent.errors import AgentError, HostReadError, ParseError
from iotsec.agent.hostroot import HostRoot
from iotsec.schema import Event, Login, LoginEvent
from iotsec.schema.payloads import LoginResult

__all__ = ["LOGIN_SPEC", "LoginCollector", "LoginConfig", "LoginSighting", "merge_logins"]

LOGIN_SPEC = CollectorSpec(
    name="Login",
    event_type="Security",
    category="Triggered",
    default_priority="High",
    description="Logins and failed logins: auditd, wtmp/btmp, auth.log/secure or the journal",
)

# syslog collapses identical lines; expanding "repeated 10^6 times" must not exhaust memory.
_MAX_REPEAT = 100


@dataclass(frozen=True, slots=True)
class LoginConfig:
    """Where the Login collector looks, and how it reads."""

    replay_history: bool = False
    audit_log: str = "/var/log/audit/audit.log"
    wtmp: str = "/var/log/wtmp"
    btmp: str = "/var/log/btmp"
    text_logs: tuple[str, ...] = ("/var/log/auth.log", "/var/log/secure", "/var/log/messages")
    use_journal: bool = True
    #: Zone of syslog's year-less local timestamps; None is the system's.
    local_tz: tzinfo | None = None
    #: At most this much of one file is read per call; the rest waits for the next call.
    max_read_bytes: int = 4 * 1024 * 1024
    dedupe_window: timedelta = timedelta(seconds=1)
    same_process_window: timedelta = timedelta(seconds=5)


@dataclass(frozen=True, slots=True)
class _Position:
    """Where a tailed file was left: its inode (None: it did not exist yet) and offset."""

    inode: int | None
    offset: int


@dataclass
class _Tail:
    """Reads what was appended to one host file since the last call, in whole units."""

    path: str
    #: Bytes per unit: a utmp record; None for newline-terminated lines.
    unit: int | None = None
    position: _Position | None = None

    def read(self, host: HostRoot, *, replay: bool, limit: int) -> list[tuple[str, int, bytes]]:
        """Whole new units as (file, its offset, data) chunks; the partial last unit waits."""
        chunks: list[tuple[str, int, bytes]] = []
        try:
            # Opened through the host's path mapping, to seek instead of reading it all.
            with open(host.path(self.path), "rb") as handle:
                stat = os.fstat(handle.fileno())
                if self.position is None:
                    start = 0 if replay else self._whole(stat.st_size)
                    self.position = _Position(stat.st_ino, start)
                    if not replay:
                        return chunks
                if self.position.inode != stat.st_ino:
                    if self.position.inode is not None:
                        chunks += self._finish_rotated(host, self.position)
                    self.position = _Position(stat.st_ino, 0)
                elif stat.st_size < self.position.offset:
                    self.position = _Position(stat.st_ino, 0)
                handle.seek(self.position.offset)
                data = handle.read(limit)
        except FileNotFoundError:
            if self.position is None:
                self.position = _Position(None, 0)
            return chunks
        except OSError as exc:
            raise HostReadError(self.path, exc.strerror or str(exc)) from exc
        whole = self._whole_data(data)
        if not whole and len(data) == limit:
            whole = limit  # a line longer than the limit would stall the tail: take it cut
        if whole:
            chunks.append((self.path, self.position.offset, data[:whole]))
            self.position = _Position(self.position.inode, self.position.offset + whole)
        return chunks

    def _whole(self, size: int) -> int:
        return size - size % self.unit if self.unit else size

    def _whole_data(self, data: bytes) -> int:
        if self.unit:
            return len(data) - len(data) % self.unit
        return data.rfind(b"\n") + 1

    def _finish_rotated(self, host: HostRoot, old: _Position) -> list[tuple[str, int, bytes]]:
        # logrotate renames the file next to itself (auth.log.1, secure-20240303) and we find
        # it by inode; a compressed sibling is a different inode and is not ours to read.
        parent = str(PurePosixPath(self.path).parent)
        name = PurePosixPath(self.path).name
        for entry in host.listdir(parent):
            if not entry.startswith(name) or entry == name:
                continue
            sibling = f"{parent.rstrip('/')}/{entry}"
            try:
                if host.stat(sibling).st_ino != old.inode:
                    continue
                with open(host.path(sibling), "rb") as handle:
                    handle.seek(old.offset)
                    return [(sibling, old.offset, handle.read())]
            except (OSError, HostReadError):
                continue
        return []


@dataclass(frozen=True, slots=True)
class LoginSighting:
    """A login record and the file it came from."""

    record: AuthRecord
    source: str


def _merge_key_origin(record: AuthRecord) -> str:
    # sshd logs "Invalid user" at connect and "Failed password for invalid user" after the
    # attempt: two lines of one source for one login, so they count as different origins.
    return f"{record.origin}:notice" if record.operation == "sshd:invalid-user" else record.origin


def _same_address(a: str | None, b: str | None) -> bool:
    return a is None or b is None or _ip_text(a) == _ip_text(b)


def _ip_text(address: str) -> str:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    mapped = getattr(ip, "ipv4_mapped", None)
    return str(mapped or ip)


@dataclass
class _Seen:
    record: AuthRecord
    origins: set[str]


@dataclass
class _Merger:
    """Remembers recent logins, so one seen in two sources (or two calls) is reported once."""

    window: timedelta
    process_window: timedelta
    recent: deque[_Seen] = field(default_factory=lambda: deque(maxlen=1024))

    def admit(self, record: AuthRecord) -> bool:
        """True for a new login; False when it is another source's view of a recent one."""
        origin = _merge_key_origin(record)
        best: _Seen | None = None
        best_gap: timedelta | None = None
        for seen in self.recent:
            if origin in seen.origins or not self._same(seen.record, record):
                continue
            gap = abs(seen.record.time - record.time)
            if best_gap is None or gap < best_gap:
                best, best_gap = seen, gap
        if best is not None:
            best.origins.add(origin)
            return False
        self.recent.append(_Seen(record, {origin}))
        return True

    def _same(self, a: AuthRecord, b: AuthRecord) -> bool:
        if a.result != b.result or not _same_address(a.address, b.address):
            return False
        if a.user is not None and b.user is not None and a.user != b.user:
            return False
        gap = abs(a.time - b.time)
        same_process = a.pid is not None and a.pid == b.pid
        return gap <= self.window or (same_process and gap <= self.process_window)


def merge_logins(
    sightings: Sequence[LoginSighting],
    *,
    window: timedelta = timedelta(seconds=1),
    process_window: timedelta = timedelta(seconds=5),
) -> list[LoginSighting]:
    """The distinct logins among ``sightings``, in time order (first sighting of each kept)."""
    merger = _Merger(window, process_window)
    ordered = sorted(sightings, key=lambda s: s.record.time)
    return [s for s in ordered if merger.admit(s.record)]


def _utmp_login(record: UtmpRecord, result: LoginResult, origin: str) -> AuthRecord | None:
    if not record.user:
        return None
    remote = record.address or record.host or None
    # utmp does not name the program; a remote host or an "ssh:" line means sshd.
    via_ssh = bool(record.host) or record.line.startswith("ssh")
    return AuthRecord(
        time=record.time,
        result=result,
        user=record.user,
        operation="login",
        executable="/usr/sbin/sshd" if via_ssh else "/bin/login",
        origin=origin,
        address=remote,
        pid=record.pid or None,
        terminal=record.line or None,
    )


class LoginCollector:
    """Reports logins since the previous call (Triggered/Security, default priority High)."""

    spec = LOGIN_SPEC

    def __init__(self, host: HostRoot, config: LoginConfig | None = None) -> None:
        self.host = host
        self.config = config if config is not None else LoginConfig()
        self.errors: list[AgentError] = []
        self._tails: dict[str, _Tail] = {}
        self._journal_cursor: str | None = None
        self._journal_started = False
        self._merger = _Merger(self.config.dedupe_window, self.config.same_process_window)
        self._accounts: Accounts | None = None

    def collect(self, now: datetime) -> Sequence[Event]:
        """One Login event per new login, stamped with the login's own time."""
        self.errors = []
        sightings: list[LoginSighting] = []
        self._accounts = None
        if not self._read_audit(sightings):
            self._read_utmp(self.config.wtmp, "Success", "wtmp", sightings)
            self._read_utmp(self.config.btmp, "Fail", "btmp", sightings)
        text_log = next((p for p in self.config.text_logs if self.host.exists(p)), None)
        if text_log is not None:
            self._read_lines(text_log, sightings, self._syslog_parser(now))
        elif self.config.use_journal and self.host.commands.available("journalctl"):
            self._read_journal(sightings)
        sightings.sort(key=lambda s: s.record.time)
        events: list[Event] = []
        for sighting in sightings:
            if self._merger.admit(sighting.record):
                row = self._row(sighting)
                events.append(LoginEvent.create([row], at=sighting.record.time))
        return events

    def close(self) -> None:
        """Nothing to release: files are opened per call."""

    def _tail(self, path: str, unit: int | None = None) -> _Tail:
        return self._tails.setdefault(path, _Tail(path, unit))

    def _chunks(self, tail: _Tail) -> list[tuple[str, int, bytes]]:
        return tail.read(
            self.host, replay=self.config.replay_history, limit=self.config.max_read_bytes
        )

    def _read_audit(self, out: list[LoginSighting]) -> bool:
        path = self.config.audit_log
        if not self.host.exists(path):
            return False
        try:
            self._read_lines(path, out, _audit_parser, strict=True)
        except HostReadError as exc:
            self.errors.append(exc)
            return False
        return True

    def _read_utmp(
        self, path: str, result: LoginResult, origin: str, out: list[LoginSighting]
    ) -> None:
        try:
            chunks = self._chunks(self._tail(path, RECORD_SIZE))
        except HostReadError as exc:
            self.errors.append(exc)
            return
        for source, offset, data in chunks:
            try:
                parsed = parse_utmp(data, source=source, offset=offset)
            except ParseError as exc:
                self.errors.append(exc)
                continue
            if parsed.tail:
                self.errors.append(
                    ParseError(source, f"{parsed.tail} trailing bytes are not a whole record")
                )
            for record in parsed.records:
                if origin == "wtmp" and record.type != UtmpType.USER_PROCESS:
                    continue
                login = _utmp_login(record, result, origin)
                if login is not None:
                    out.append(LoginSighting(login, source))

    def _syslog_parser(self, now: datetime) -> Callable[[str, str, int], AuthRecord | None]:
        tz = self.config.local_tz

        def parse(text: str, source: str, line: int) -> AuthRecord | None:
            return parse_syslog_line(text, now=now, tz=tz, source=source, line=line)

        return parse

    def _read_lines(
        self,
        path: str,
        out: list[LoginSighting],
        parse: Callable[[str, str, int], AuthRecord | None],
        *,
        strict: bool = False,
    ) -> None:
        try:
            chunks = self._chunks(self._tail(path))
        except HostReadError as exc:
            if strict:
                raise
            self.errors.append(exc)
            return
        for source, offset, data in chunks:
            # Line numbers count from where this read started, which the error names.
            where = source if offset == 0 else f"{source} (from byte {offset})"
            # split("\n"), not splitlines(): auditd's ENRICHED records hold a \x1d separator.
            for number, text in enumerate(data.decode("utf-8", "replace").split("\n"), 1):
                if not text.strip():
                    continue
                try:
                    record = parse(text, where, number)
                except ParseError as exc:
                    self.errors.append(exc)
                    continue
                if record is not None:
                    for _ in range(min(max(record.count, 1), _MAX_REPEAT)):
                        out.append(LoginSighting(replace(record, count=1), source))

    def _read_journal(self, out: list[LoginSighting]) -> None:
        argv = ["journalctl", "-o", "json", "--no-pager", "-q"]
        first = not self._journal_started
        if self._journal_cursor is not None:
            argv += ["--after-cursor", self._journal_cursor]
        elif first and not self.config.replay_history:
            argv += ["-n", "1"]
        argv += ["SYSLOG_FACILITY=4", "SYSLOG_FACILITY=10"]
        try:
            done = self.host.run(argv)
        except HostReadError as exc:
            self.errors.append(exc)
            return
        if done.returncode != 0:
            reason = done.stderr.strip() or f"exit status {done.returncode}"
            self.errors.append(HostReadError(" ".join(argv), reason))
            return
        self._journal_started = True
        for number, text in enumerate(done.stdout.split("\n"), 1):
            if not text.strip():
                continue
            try:
                entry = parse_journal_line(text, line=number)
            except ParseError as exc:
                self.errors.append(exc)
                continue
            if entry.cursor is not None:
                self._journal_cursor = entry.cursor
            if entry.record is not None and not (first and not self.config.replay_history):
                out.append(LoginSighting(entry.record, "journal"))

    def _user_name(self, record: AuthRecord) -> str | None:
        if record.user is not None or record.user_id is None:
            return record.user
        if self._accounts is None:
            try:
                self._accounts = Accounts(self.host)
            except (HostReadError, ParseError) as exc:
                self.errors.append(exc)
                return None
        return self._accounts.user_name(int(record.user_id))

    def _row(self, sighting: LoginSighting) -> Login:
        record = sighting.record
        details = {"Source": sighting.source}
        if record.terminal:
            details["Terminal"] = record.terminal
        if record.service:
            details["Service"] = record.service
        address = record.address
        if address is not None and not _is_ip(address):
            # sshd with UseDNS logs host names; the schema's RemoteAddress is an IP.
            details["RemoteHost"], address = address, None
        user_name = self._user_name(record)
        if user_name is None and record.user_id is None:
            user_name = "(unknown)"
        return Login(
            process_id=record.pid or 0,
            operation=record.operation,
            executable=record.executable,
            result=record.result,
            user_id=record.user_id,
            user_name=user_name,
            remote_address=_ip_text(address) if address else None,
            remote_port=record.port,
            extra_details=details,
        )


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _audit_parser(text: str, source: str, line: int) -> AuthRecord | None:
    return parse_audit_line(text, source=source, line=line)
