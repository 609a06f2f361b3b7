"""Login lines of auth.log/secure/messages, the journal and auditd, and what they mean."""

from __future__ import annotations

import contextlib
import doctest
import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iotsec.agent.collectors.authlog import (
    parse_audit_line,
    parse_auth_message,
    parse_journal_line,
    parse_syslog_line,
)
from iotsec.agent.errors import ParseError

NOW = datetime(2024, 3, 4, 12, 0, tzinfo=UTC)
HEAD = "Mar  3 10:15:01 edge"

# (program[pid]: message) -> (result, user, address, port, operation, executable, pid)
LINES = [
    (
        "sshd[1234]: Accepted password for pi from 10.0.0.7 port 52344 ssh2",
        ("Success", "pi", "10.0.0.7", "52344", "sshd:password", "/usr/sbin/sshd", 1234),
    ),
    (
        "sshd[1234]: Accepted publickey for pi from 2001:db8::7 port 40022 ssh2: ED25519 SHA256:x",
        ("Success", "pi", "2001:db8::7", "40022", "sshd:publickey", "/usr/sbin/sshd", 1234),
    ),
    (
        "sshd[77]: Failed password for invalid user admin from 203.0.113.5 port 50412 ssh2",
        ("Fail", "admin", "203.0.113.5", "50412", "sshd:password", "/usr/sbin/sshd", 77),
    ),
    (
        "sshd[77]: Failed none for invalid user  from 203.0.113.5 port 50412 ssh2",
        ("Fail", None, "203.0.113.5", "50412", "sshd:none", "/usr/sbin/sshd", 77),
    ),
    (
        "sshd[77]: Invalid user oracle from 198.51.100.77 port 33012",
        ("Fail", "oracle", "198.51.100.77", "33012", "sshd:invalid-user", "/usr/sbin/sshd", 77),
    ),
    (
        "sshd[77]: Invalid user oracle from 198.51.100.77",
        ("Fail", "oracle", "198.51.100.77", None, "sshd:invalid-user", "/usr/sbin/sshd", 77),
    ),
    (
        "su[1420]: pam_unix(su:auth): authentication failure; logname=pi uid=1000 euid=0 "
        "tty=/dev/pts/0 ruser=pi rhost=  user=root",
        ("Fail", "root", None, None, "PAM:authentication", "/bin/su", 1420),
    ),
    (
        "sudo: pam_unix(sudo:auth): authentication failure; logname=pi uid=1000 euid=0 "
        "tty=/dev/pts/0 ruser=pi rhost=  user=pi",
        ("Fail", "pi", None, None, "PAM:authentication", "/usr/bin/sudo", None),
    ),
    (
        "login[812]: pam_unix(login:auth): authentication failure; logname=LOGIN uid=0 euid=0 "
        "tty=/dev/tty1 ruser= rhost=10.9.9.9  user=ubuntu",
        ("Fail", "ubuntu", "10.9.9.9", None, "PAM:authentication", "/bin/login", 812),
    ),
    (
        "login[812]: pam_unix(login:session): session opened for user ubuntu(uid=1000) "
        "by LOGIN(uid=0)",
        ("Success", "ubuntu", None, None, "PAM:session_open", "/bin/login", 812),
    ),
    (
        "su[1422]: pam_unix(su-l:session): session opened for user root(uid=0) by pi(uid=1000)",
        ("Success", "root", None, None, "PAM:session_open", "/bin/su", 1422),
    ),
    (
        "login[2301]: invalid password for 'sensor' on 'ttyAMA0'",
        ("Fail", "sensor", None, None, "login", "/bin/login", 2301),
    ),
    (
        "login[2301]: root login on 'pts/0' from '192.168.7.2'",
        ("Success", "root", "192.168.7.2", None, "login", "/bin/login", 2301),
    ),
]

NOT_LOGINS = [
    "sshd[1201]: Server listening on 0.0.0.0 port 22.",
    # sshd's own Failed line carries the port; PAM's line for sshd would count it twice.
    "sshd[1240]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh "
    "ruser= rhost=203.0.113.50  user=root",
    "sshd[1302]: pam_unix(sshd:session): session opened for user pi(uid=1000) by (uid=0)",
    "sudo: pam_unix(sudo:session): session opened for user root(uid=0) by pi(uid=1000)",
    "CRON[1500]: pam_unix(cron:session): session opened for user root(uid=0) by (uid=0)",
    "sshd[1240]: error: maximum authentication attempts exceeded for root from 1.2.3.4 port 5 ssh2",
    "sshd[1234]: Connection closed by invalid user admin 203.0.113.50 port 50412 [preauth]",
    "su[1420]: FAILED SU (to root) pi on pts/0",
    "systemd-logind[640]: New session 4 of user ubuntu.",
]


@pytest.mark.parametrize(("tail", "expected"), LINES)
def test_login_lines(tail: str, expected: tuple[object, ...]) -> None:
    record = parse_syslog_line(f"{HEAD} {tail}", now=NOW, tz=UTC)
    assert record is not None
    got = (
        record.result,
        record.user,
        record.address,
        record.port,
        record.operation,
        record.executable,
        record.pid,
    )
    assert got == expected
    assert record.time == datetime(2024, 3, 3, 10, 15, 1, tzinfo=UTC)
    assert record.origin == "syslog"


@pytest.mark.parametrize("tail", NOT_LOGINS)
def test_other_lines_are_not_logins(tail: str) -> None:
    assert parse_syslog_line(f"{HEAD} {tail}", now=NOW, tz=UTC) is None


def test_repeated_messages_keep_their_count() -> None:
    line = (
        f"{HEAD} sshd[1240]: message repeated 2 times: "
        "[ Failed password for root from 203.0.113.50 port 50444 ssh2]"
    )
    record = parse_syslog_line(line, now=NOW, tz=UTC)
    assert record is not None
    assert (record.count, record.user, record.result) == (2, "root", "Fail")


def test_busybox_facility_and_untagged_lines() -> None:
    line = (
        "Mar  3 08:07:30 sensor-hub auth.info sshd[2310]: "
        "Failed password for root from 1.2.3.4 port 5 ssh2"
    )
    record = parse_syslog_line(line, now=NOW, tz=UTC)
    assert record is not None and record.pid == 2310
    untagged = "Mar  3 08:00:01 sensor-hub syslog.info syslogd started: BusyBox v1.36.1"
    assert parse_syslog_line(untagged, now=NOW, tz=UTC) is None


def test_the_year_is_the_latest_that_is_not_in_the_future() -> None:
    new_year = datetime(2024, 1, 1, 0, 10, tzinfo=UTC)
    december = "Dec 31 23:59:58 host sshd[1]: Failed password for x from 1.2.3.4 port 5 ssh2"
    january = "Jan  1 00:00:05 host sshd[1]: Failed password for x from 1.2.3.4 port 5 ssh2"
    last_year = parse_syslog_line(december, now=new_year, tz=UTC)
    this_year = parse_syslog_line(january, now=new_year, tz=UTC)
    assert last_year is not None and last_year.time.year == 2023
    assert this_year is not None and this_year.time.year == 2024
    # Feb 29 read in a non-leap year belongs to the last leap year.
    leap = "Feb 29 10:00:00 host sshd[1]: Failed password for x from 1.2.3.4 port 5 ssh2"
    record = parse_syslog_line(leap, now=datetime(2025, 3, 1, tzinfo=UTC), tz=UTC)
    assert record is not None and record.time.date().isoformat() == "2024-02-29"


def test_local_times_take_the_given_zone_and_rfc3339_keeps_its_own() -> None:
    plus2 = timezone(timedelta(hours=2))
    record = parse_syslog_line(f"{HEAD} {LINES[0][0]}", now=NOW, tz=plus2)
    assert record is not None and record.time == datetime(2024, 3, 3, 8, 15, 1, tzinfo=UTC)
    iso = "2024-03-03T10:15:03.910552+01:00 gateway-07 " + LINES[0][0]
    record = parse_syslog_line(iso, now=NOW, tz=plus2)
    assert record is not None
    assert record.time == datetime(2024, 3, 3, 9, 15, 3, 910552, tzinfo=UTC)


@pytest.mark.parametrize(
    "line",
    [
        "not a syslog line",
        "Foo  3 10:15:01 host sshd[1]: Accepted password for a from 1.2.3.4 port 1 ssh2",
        "Mar 33 10:15:01 host sshd[1]: Accepted password for a from 1.2.3.4 port 1 ssh2",
        "2024-13-03T10:15:01Z host sshd[1]: Accepted password for a from 1.2.3.4 port 1 ssh2",
    ],
)
def test_unreadable_lines_raise_parse_error_with_the_line(line: str) -> None:
    with pytest.raises(ParseError) as caught:
        parse_syslog_line(line, now=NOW, tz=UTC, source="/var/log/secure", line=7)
    assert (caught.value.source, caught.value.line) == ("/var/log/secure", 7)


def journal(**fields: object) -> str:
    entry: dict[str, object] = {
        "__CURSOR": "s=a1;i=2f;b=b0;m=1;t=5;x=9",
        "__REALTIME_TIMESTAMP": "1709460903910552",
        "SYSLOG_FACILITY": "4",
        "SYSLOG_IDENTIFIER": "sshd",
        "SYSLOG_PID": "1234",
        "_PID": "1234",
        "_COMM": "sshd",
        "_EXE": "/usr/sbin/sshd",
        "MESSAGE": "Failed password for root from 203.0.113.50 port 50444 ssh2",
    }
    entry.update(fields)
    return json.dumps({k: v for k, v in entry.items() if v is not None})


def test_journal_entries() -> None:
    entry = parse_journal_line(journal())
    assert entry.cursor == "s=a1;i=2f;b=b0;m=1;t=5;x=9"
    record = entry.record
    assert record is not None
    assert record.time == datetime(2024, 3, 3, 10, 15, 3, 910552, tzinfo=UTC)
    assert (record.user, record.address, record.pid, record.executable, record.origin) == (
        "root",
        "203.0.113.50",
        1234,
        "/usr/sbin/sshd",
        "journal",
    )


def test_journal_messages_that_are_bytes_and_entries_that_are_not_logins() -> None:
    raw = list(b"Failed password for r\xf6ot from 203.0.113.50 port 1 ssh2")
    record = parse_journal_line(journal(MESSAGE=raw)).record
    assert record is not None and record.user == "r\ufffdot"
    other = parse_journal_line(journal(MESSAGE="Server listening on :: port 22."))
    assert other.record is None and other.cursor is not None
    no_message = parse_journal_line(journal(MESSAGE=None))
    assert no_message.record is None


@pytest.mark.parametrize(
    "line",
    ["{", "[1, 2]", journal(__REALTIME_TIMESTAMP="soon"), journal(__REALTIME_TIMESTAMP=None)],
)
def test_bad_journal_lines(line: str) -> None:
    with pytest.raises(ParseError):
        parse_journal_line(line, line=3)


AUDIT_LOGIN = (
    "type=USER_LOGIN msg=audit(1709452361.210:512): pid=3301 uid=0 auid=1000 ses=3 "
    'subj=system_u:system_r:sshd_t:s0-s0:c0.c1023 msg=\'op=login id=1000 exe="/usr/sbin/sshd" '
    'hostname=10.1.2.3 addr=10.1.2.3 terminal=ssh res=success\'\x1dUID="root" AUID="ops"'
)


def test_audit_user_login_with_an_id() -> None:
    record = parse_audit_line(AUDIT_LOGIN)
    assert record is not None
    assert record.time == datetime(2024, 3, 3, 7, 52, 41, 210_000, tzinfo=UTC)
    assert (record.result, record.user, record.user_id, record.address, record.pid) == (
        "Success",
        None,
        "1000",
        "10.1.2.3",
        3301,
    )
    assert (record.operation, record.executable, record.origin, record.terminal) == (
        "login",
        "/usr/sbin/sshd",
        "audit:USER_LOGIN",
        "ssh",
    )


def test_audit_hex_accounts_and_failures() -> None:
    hexed = b"bob smith".hex().upper()
    line = (
        "type=USER_AUTH msg=audit(1709452570.012:540): pid=3360 uid=0 auid=4294967295 "
        f'msg=\'op=PAM:authentication grantors=? acct={hexed} exe="/usr/sbin/sshd" '
        "hostname=198.51.100.77 addr=198.51.100.77 terminal=ssh res=failed'"
    )
    record = parse_audit_line(line)
    assert record is not None
    assert (record.user, record.result, record.operation) == (
        "bob smith",
        "Fail",
        "PAM:authentication",
    )
    invalid = line.replace(hexed, b"(invalid user)".hex().upper())
    unknown = parse_audit_line(invalid)
    assert unknown is not None and unknown.user is None


def test_audit_sudo_successes_are_not_logins_but_failures_are() -> None:
    sudo = (
        "type=USER_AUTH msg=audit(1709452600.500:551): pid=3400 uid=1000 auid=1000 ses=3 "
        'msg=\'op=PAM:authentication grantors=pam_unix acct="ops" exe="/usr/bin/sudo" '
        "hostname=? addr=? terminal=/dev/pts/0 res=success'"
    )
    assert parse_audit_line(sudo) is None
    failed = parse_audit_line(sudo.replace("res=success", "res=failed"))
    assert failed is not None and failed.address is None and failed.result == "Fail"


def test_other_audit_records_and_bad_ones() -> None:
    cred = (
        "type=CRED_ACQ msg=audit(1709452610.702:561): pid=3410 uid=1000 "
        "msg='op=PAM:setcred res=failed'"
    )
    assert parse_audit_line(cred) is None
    with pytest.raises(ParseError, match="not an audit record"):
        parse_audit_line("node=edge type=", line=4)
    with pytest.raises(ParseError, match="res=success"):
        parse_audit_line(AUDIT_LOGIN.replace("res=success", "res=maybe"))


def test_messages_classify_without_a_time() -> None:
    said = parse_auth_message("sshd", "Accepted gssapi-with-mic for ops from 10.1.2.3 port 1 ssh2")
    assert said is not None and said.operation == "sshd:gssapi-with-mic"
    assert parse_auth_message("kernel", "Accepted password for x from 1.2.3.4 port 1") is None


# --- property tests: arbitrary input raises only ParseError ----------------------------------

_messages = st.sampled_from([t for t, _ in LINES] + NOT_LOGINS).map(lambda t: t.split(": ", 1)[1])


@settings(max_examples=300)
@given(st.text(max_size=300))
def test_arbitrary_syslog_text_raises_only_parse_error(text: str) -> None:
    with contextlib.suppress(ParseError):
        parse_syslog_line(text, now=NOW, tz=UTC)


@settings(max_examples=300)
@given(
    st.sampled_from(
        ["Mar  3 10:15:01", "Feb 29 00:00:00", "2024-03-03T10:15:01+00:00", "Jan 99 99:99:99"]
    ),
    st.sampled_from(["sshd[1]", "su", "login[2]", "sudo", "x[999999999999999999999]"]),
    st.one_of(st.text(max_size=120), _messages, _messages.map(lambda m: m[: len(m) // 2])),
)
def test_arbitrary_messages_raise_only_parse_error(stamp: str, program: str, message: str) -> None:
    with contextlib.suppress(ParseError):
        parse_syslog_line(f"{stamp} host {program}: {message}", now=NOW, tz=None)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
_journal_keys = st.sampled_from(
    [
        "__CURSOR",
        "__REALTIME_TIMESTAMP",
        "SYSLOG_IDENTIFIER",
        "SYSLOG_PID",
        "_PID",
        "_EXE",
        "MESSAGE",
    ]
)


@settings(max_examples=300)
@given(st.text(max_size=200) | _json.map(json.dumps))
def test_arbitrary_journal_lines_raise_only_parse_error(text: str) -> None:
    with contextlib.suppress(ParseError):
        parse_journal_line(text)


@settings(max_examples=300)
@given(st.dictionaries(_journal_keys, _json | _messages, max_size=7))
def test_arbitrary_journal_entries_raise_only_parse_error(fields: dict[str, object]) -> None:
    with contextlib.suppress(ParseError):
        parse_journal_line(json.dumps(fields))


@settings(max_examples=300)
@given(
    st.sampled_from(["USER_LOGIN", "USER_AUTH", "SYSCALL"]),
    st.text(alphabet="0123456789.:", max_size=30),
    st.text(max_size=200),
)
def test_arbitrary_audit_records_raise_only_parse_error(kind: str, stamp: str, body: str) -> None:
    with contextlib.suppress(ParseError):
        parse_audit_line(f"type={kind} msg=audit({stamp}): {body}")
    with contextlib.suppress(ParseError):
        parse_audit_line(body)


def test_the_module_examples_run() -> None:
    import iotsec.agent.collectors.authlog as module  # noqa: PLC0415  # the module under doctest

    failed, attempted = doctest.testmod(module)
    assert (failed, attempted > 0) == (0, True)
