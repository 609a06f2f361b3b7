"""Login attempts in the host's text logs, the systemd journal and the audit log.

Three readers share one message classifier:

* :func:`parse_syslog_line` reads ``/var/log/auth.log`` (Debian, Ubuntu), ``/var/log/secure``
  (RHEL) and busybox's ``/var/log/messages`` (Alpine), with traditional timestamps (no year:
  it is inferred from ``now``) or RFC 3339 ones;
* :func:`parse_journal_line` reads one line of ``journalctl -o json``;
* :func:`parse_audit_line` reads one ``USER_LOGIN``/``USER_AUTH`` record of auditd's log.

What counts as a login: sshd's ``Accepted``/``Failed``/``Invalid user`` lines; PAM
``authentication failure`` lines of every service but sshd (sshd's own lines say the same
with the port, and PAM logs them before the failure delay); PAM ``session opened`` lines of
``login`` and ``su``; busybox ``login`` lines. Sudo successes are not logins (the C agent drops
them too), sudo failures are. A line that is not a login returns None; a line that cannot be
read raises ParseError naming it.

>>> from datetime import UTC, datetime
>>> line = "Mar  3 10:15:01 edge sshd[1234]: Failed password for root from 10.0.0.7 port 52344 ssh2"
>>> record = parse_syslog_line(line, now=datetime(2024, 3, 4, tzinfo=UTC), tz=UTC)
>>> record.time.isoformat(), record.result, record.user, record.address, record.port
('2024-03-03T10:15:01+00:00', 'Fail', 'root', '10.0.0.7', '52344')
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

import msgspec

from iotsec.agent.errors import ParseError
from iotsec.schema.payloads import LoginResult

__all__ = [
    "AuthMessage",
    "AuthRecord",
    "JournalEntry",
    "parse_audit_line",
    "parse_auth_message",
    "parse_journal_line",
    "parse_syslog_line",
]

# Where a program usually lives; logs name the program, the Login schema wants a path.
_EXECUTABLES = {
    "sshd": "/usr/sbin/sshd",
    "su": "/bin/su",
    "login": "/bin/login",
    "sudo": "/usr/bin/sudo",
}
# PAM services whose opened session is a login (sshd is covered by its own Accepted line).
_SESSION_LOGINS = frozenset({"login", "su", "su-l", "remote"})
# User names that mean "no such account" in sshd, PAM and audit records.
_DIGITS = re.compile("[0-9]{1,18}")
_UNKNOWN_USERS = frozenset(
    {"", "?", "(unknown)", "(unknown user)", "(invalid user)", "UNKNOWN", "UNKNOWN USER"}
)


@dataclass(frozen=True, slots=True)
class AuthRecord:
    """One login attempt, successful or not, as a log told it.

    ``origin`` names the kind of source ("syslog", "journal", "audit:USER_AUTH", ...); the login
    collector never merges two records of the same origin. ``count`` > 1 stands for a line that
    syslog collapsed ("message repeated N times").
    """

    time: datetime
    result: LoginResult
    user: str | None
    operation: str
    executable: str
    origin: str
    address: str | None = None
    port: str | None = None
    pid: int | None = None
    user_id: str | None = None
    terminal: str | None = None
    service: str | None = None
    count: int = 1


@dataclass(frozen=True, slots=True)
class AuthMessage:
    """What a log message says about a login, before its time and process are known."""

    result: LoginResult
    user: str | None
    operation: str
    address: str | None = None
    port: str | None = None
    terminal: str | None = None
    service: str | None = None
    count: int = 1


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One journal entry: its cursor (to resume after it) and the login it holds, if any."""

    cursor: str | None
    record: AuthRecord | None


def _user(name: str | None) -> str | None:
    if name is None:
        return None
    name = name.strip()
    return None if name in _UNKNOWN_USERS else name


def _number(text: str | None) -> int | None:
    return int(text) if text and _DIGITS.fullmatch(text) else None


def _host(value: str | None) -> str | None:
    if value is None or value in ("", "?", "UNKNOWN"):
        return None
    return value


_SSHD: list[tuple[re.Pattern[str], LoginResult]] = [
    (
        re.compile(
            r"Accepted (?P<method>\S+) for (?P<user>.*?) from (?P<addr>\S+) port (?P<port>\d+)",
            re.ASCII,
        ),
        "Success",
    ),
    (
        re.compile(
            r"Failed (?P<method>\S+) for (?:invalid user )?(?P<user>.*?) "
            r"from (?P<addr>\S+) port (?P<port>\d+)",
            re.ASCII,
        ),
        "Fail",
    ),
    (
        re.compile(
            r"Invalid user (?P<user>.*?) from (?P<addr>\S+)(?: port (?P<port>\d+))?$", re.ASCII
        ),
        "Fail",
    ),
]
_REPEATED = re.compile(r"message repeated (?P<n>\d+) times: \[ ?(?P<inner>.*?) ?\]$", re.ASCII)
_PAM_FAILURE = re.compile(
    r"pam_unix\((?P<svc>[^:()]+):auth\): authentication failure;(?P<kv>.*)$", re.ASCII
)
_PAM_SESSION = re.compile(
    r"pam_unix\((?P<svc>[^:()]+):session\): session opened for user "
    r"(?P<user>[^\s(]+)(?:\(uid=(?P<uid>\d+)\))?",
    re.ASCII,
)
_PAM_KV = re.compile(r"(\w+)=(\S*)", re.ASCII)
_BUSYBOX_LOGIN = re.compile(
    r"(?:(?P<root>root) login|invalid password for '(?P<user>[^']*)')"
    r"(?: on '(?P<tty>[^']*)')?(?: from '(?P<host>[^']*)')?$",
    re.ASCII,
)


def _sshd_message(message: str) -> AuthMessage | None:
    for pattern, result in _SSHD:
        found = pattern.match(message)
        if found:
            return AuthMessage(
                result=result,
                user=_user(found["user"]),
                operation=f"sshd:{found.groupdict().get('method') or 'invalid-user'}",
                address=_host(found["addr"]),
                port=found["port"],
                service="sshd",
            )
    return None


def _pam_message(message: str) -> AuthMessage | None:
    failure = _PAM_FAILURE.match(message)
    if failure and failure["svc"] != "sshd":
        fields = dict(_PAM_KV.findall(failure["kv"]))
        return AuthMessage(
            result="Fail",
            user=_user(fields.get("user")),
            operation="PAM:authentication",
            address=_host(fields.get("rhost")),
            terminal=fields.get("tty") or None,
            service=failure["svc"],
        )
    session = _PAM_SESSION.match(message)
    if session and session["svc"] in _SESSION_LOGINS:
        return AuthMessage(
            result="Success",
            user=_user(session["user"]),
            operation="PAM:session_open",
            service=session["svc"],
        )
    return None


def _busybox_message(message: str) -> AuthMessage | None:
    found = _BUSYBOX_LOGIN.match(message)
    if found is None:
        return None
    return AuthMessage(
        result="Success" if found["root"] else "Fail",
        user="root" if found["root"] else _user(found["user"]),
        operation="login",
        address=_host(found["host"]),
        terminal=found["tty"],
        service="login",
    )


def parse_auth_message(program: str, message: str) -> AuthMessage | None:
    """What a syslog/journal ``message`` of ``program`` says about a login, or None."""
    repeated = _REPEATED.match(message)
    if repeated:
        inner = parse_auth_message(program, repeated["inner"])
        return replace(inner, count=int(repeated["n"])) if inner else None
    if program == "sshd":
        return _sshd_message(message)
    if program == "login":
        return _pam_message(message) or _busybox_message(message)
    return _pam_message(message)


_MONTHS = {
    name: number
    for number, name in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"),
        start=1,
    )
}
_SYSLOG = re.compile(
    r"(?:(?P<mon>[A-Z][a-z]{2}) +(?P<day>\d{1,2}) (?P<clock>\d\d:\d\d:\d\d)"
    r"|(?P<iso>\d{4}-\d\d-\d\dT\S+))"
    # busybox adds "facility.level"; a line without a "program[pid]:" tag is no login
    r" (?P<host>\S+)(?: [a-z0-9]+\.[a-z]+)?"
    r"(?: (?P<prog>[^\s\[:]+)(?:\[(?P<pid>\d+)\])?:)?(?: (?P<msg>.*))?$",
    re.ASCII,
)


def _syslog_time(
    found: re.Match[str], now: datetime, tz: tzinfo | None, source: str, line: int | None
) -> datetime:
    if found["iso"]:
        try:
            when = datetime.fromisoformat(found["iso"])
        except ValueError:
            raise ParseError(source, f"bad RFC 3339 time {found['iso']!r}", line=line) from None
        return when if when.tzinfo else _localize(when, tz)
    month = _MONTHS.get(found["mon"])
    if month is None:
        raise ParseError(source, f"unknown month {found['mon']!r}", line=line)
    hour, minute, second = (int(part) for part in found["clock"].split(":"))
    local_now = now.astimezone(tz)
    # Syslog drops the year: take the latest year that does not put the line in the future
    # (a day of slack for clock skew), so December lines read in January land last year.
    for year in (local_now.year, local_now.year - 1, local_now.year - 4):
        try:
            when = _localize(datetime(year, month, int(found["day"]), hour, minute, second), tz)
        except ValueError:
            continue
        if when <= local_now + timedelta(days=1):
            return when
    raise ParseError(source, f"no valid date for {found['mon']} {found['day']}", line=line)


def _localize(naive: datetime, tz: tzinfo | None) -> datetime:
    # None is the system's zone, with its daylight-saving rules (a fixed offset would be off
    # by an hour for half of the year).
    return naive.replace(tzinfo=tz) if tz is not None else naive.astimezone()


def parse_syslog_line(
    text: str,
    *,
    now: datetime,
    tz: tzinfo | None = None,
    source: str = "/var/log/auth.log",
    line: int | None = None,
) -> AuthRecord | None:
    """The login in one syslog line, or None; ``tz`` (default: the system's) zones bare times."""
    found = _SYSLOG.match(text.rstrip("\r\n"))
    if found is None:
        raise ParseError(source, "not a syslog line", line=line)
    program = found["prog"]
    if program is None or found["msg"] is None:
        return None
    message = parse_auth_message(program, found["msg"])
    if message is None:
        return None
    return _record(
        message,
        time=_syslog_time(found, now, tz, source, line),
        program=program,
        pid=int(found["pid"]) if found["pid"] else None,
        executable=None,
        origin="syslog",
    )


def _record(
    message: AuthMessage,
    *,
    time: datetime,
    program: str,
    pid: int | None,
    executable: str | None,
    origin: str,
) -> AuthRecord:
    return AuthRecord(
        time=time,
        result=message.result,
        user=message.user,
        operation=message.operation,
        executable=executable or _EXECUTABLES.get(program, program),
        origin=origin,
        address=message.address,
        port=message.port,
        pid=pid,
        terminal=message.terminal,
        service=message.service,
        count=message.count,
    )


def _journal_text(value: Any) -> str | None:
    # journalctl prints a field that is not valid UTF-8 as an array of byte values.
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(b, int) and 0 <= b < 256 for b in value):
        return bytes(value).decode("utf-8", errors="replace")
    return None


def parse_journal_line(
    text: str, *, source: str = "journalctl", line: int | None = None
) -> JournalEntry:
    """One line of ``journalctl -o json``: the entry's cursor and its login, if any."""
    try:
        entry = msgspec.json.decode(text)
    except msgspec.DecodeError as exc:
        raise ParseError(source, f"not JSON: {exc}", line=line) from None
    if not isinstance(entry, dict):
        raise ParseError(source, "a journal entry is a JSON object", line=line)
    cursor = _journal_text(entry.get("__CURSOR"))
    program = _journal_text(entry.get("SYSLOG_IDENTIFIER")) or _journal_text(entry.get("_COMM"))
    message = _journal_text(entry.get("MESSAGE"))
    if program is None or message is None:
        return JournalEntry(cursor, None)
    said = parse_auth_message(program, message)
    if said is None:
        return JournalEntry(cursor, None)
    stamp = _journal_text(entry.get("__REALTIME_TIMESTAMP"))
    if stamp is None or _number(stamp) is None:
        raise ParseError(source, f"bad __REALTIME_TIMESTAMP {stamp!r}", line=line)
    try:
        time = datetime.fromtimestamp(int(stamp) / 1_000_000, tz=UTC)
    except (OverflowError, OSError, ValueError):
        raise ParseError(
            source, f"__REALTIME_TIMESTAMP {stamp} is out of range", line=line
        ) from None
    pid_text = _journal_text(entry.get("SYSLOG_PID")) or _journal_text(entry.get("_PID"))
    return JournalEntry(
        cursor,
        _record(
            said,
            time=time,
            program=program,
            pid=_number(pid_text),
            executable=_journal_text(entry.get("_EXE")),
            origin="journal",
        ),
    )


_AUDIT = re.compile(
    r"type=(?P<type>\S+) msg=audit\((?P<sec>\d+)\.(?P<ms>\d+):(?P<serial>\d+)\): ?(?P<body>.*)$",
    re.ASCII,
)
_AUDIT_FIELD = re.compile(r"([\w-]+)=(\"[^\"]*\"|'[^']*'|\S*)", re.ASCII)
_HEX = re.compile(r"(?:[0-9A-F]{2})+", re.ASCII)
_AUDIT_RESULTS: Mapping[str, LoginResult] = {
    "success": "Success",
    "yes": "Success",
    "1": "Success",
    "failed": "Fail",
    "no": "Fail",
    "0": "Fail",
}


def _audit_fields(body: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for key, raw in _AUDIT_FIELD.findall(body):
        if key == "msg" and raw.startswith("'"):
            # The userspace part of the record: its fields win over the kernel's.
            fields.update(_audit_fields(raw[1:-1]))
        else:
            fields.setdefault(key, raw)
    return fields


def _audit_value(raw: str | None) -> str | None:
    """An audit field's value: quoted is literal, unquoted upper-case hex is encoded text."""
    if raw is None or raw in ("?", "(null)", ""):
        return None
    if raw.startswith('"'):
        return raw[1:-1]
    if _HEX.fullmatch(raw):
        return bytes.fromhex(raw).decode("utf-8", errors="replace")
    return raw


def parse_audit_line(
    text: str, *, source: str = "/var/log/audit/audit.log", line: int | None = None
) -> AuthRecord | None:
    """The login in one audit record (USER_LOGIN or USER_AUTH), or None for other records."""
    # auditd's ENRICHED format appends the interpreted fields after a group separator.
    record = text.rstrip("\r\n").split("\x1d", 1)[0]
    found = _AUDIT.match(record)
    if found is None:
        raise ParseError(source, "not an audit record", line=line)
    kind = found["type"]
    if kind not in ("USER_LOGIN", "USER_AUTH"):
        return None
    fields = _audit_fields(found["body"])
    result = _AUDIT_RESULTS.get(fields.get("res", "").strip("'\""))
    if result is None:
        raise ParseError(source, f"{kind} without res=success|failed", line=line)
    executable = _audit_value(fields.get("exe")) or "?"
    if kind == "USER_AUTH" and result == "Success" and executable.endswith("/sudo"):
        return None
    try:
        time = datetime.fromtimestamp(int(found["sec"]), tz=UTC) + timedelta(
            milliseconds=int(found["ms"][:3].ljust(3, "0"))
        )
    except (OverflowError, OSError, ValueError):
        raise ParseError(source, f"audit time {found['sec']} is out of range", line=line) from None
    user_id = fields.get("id") or None
    return AuthRecord(
        time=time,
        result=result,
        user=_user(_audit_value(fields.get("acct"))),
        operation=_audit_value(fields.get("op")) or kind,
        executable=executable,
        origin=f"audit:{kind}",
        address=_host(_audit_value(fields.get("addr"))),
        pid=_number(fields.get("pid")),
        user_id=user_id if _number(user_id) is not None else None,
        terminal=_audit_value(fields.get("terminal")),
    )
