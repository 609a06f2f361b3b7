"""The Login collector on fixture hosts: sources, read positions, rotation and deduplication."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from iotsec.agent.collectors.authlog import AuthRecord
from iotsec.agent.collectors.login import (
    LOGIN_SPEC,
    LoginCollector,
    LoginConfig,
    LoginSighting,
    merge_logins,
)
from iotsec.agent.collectors.utmp import UtmpRecord, UtmpType, encode_utmp
from iotsec.agent.errors import HostReadError, ParseError
from iotsec.agent.hostroot import FakeHostRoot
from iotsec.schema import Event, Login, LoginEvent, SecurityMessage, encode_message
from tests.msschema import validate_with_microsoft_schema

HOSTS = Path(__file__).resolve().parents[1] / "fixtures" / "hosts"
T0 = datetime(2024, 3, 3, 10, 15, 3, tzinfo=UTC)
UTC_CONFIG = LoginConfig(local_tz=UTC)


def rows(events: Sequence[Event]) -> list[Login]:
    out = []
    for event in events:
        assert isinstance(event, LoginEvent)
        assert len(event.payload) == 1
        out.append(event.payload[0])
    return out


def assert_schema_valid(events: Sequence[Event]) -> None:
    message = SecurityMessage.create(events, agent_id="b97faf0a-0f57-471f-9dab-46a8e1764946")
    validate_with_microsoft_schema(json.loads(encode_message(message)))


def failed_ssh(user: str = "admin", *, at: datetime = T0, pid: int = 1234) -> UtmpRecord:
    """A btmp record as sshd writes it for a failed password."""
    return UtmpRecord(
        type=UtmpType.LOGIN_PROCESS,
        pid=pid,
        line="ssh:notty",
        user=user,
        host="203.0.113.50",
        seconds=int(at.timestamp()),
        address="203.0.113.50",
    )


def append(path: Path, data: bytes | str) -> None:
    with path.open("ab") as handle:
        handle.write(data.encode() if isinstance(data, str) else data)


@pytest.fixture
def host(tmp_path: Path) -> FakeHostRoot:
    """A host with empty wtmp and btmp and no text log."""
    return FakeHostRoot.build(tmp_path, files={"/var/log/wtmp": b"", "/var/log/btmp": b""})


def test_the_spec() -> None:
    assert (LOGIN_SPEC.name, LOGIN_SPEC.category, LOGIN_SPEC.event_type) == (
        "Login",
        "Triggered",
        "Security",
    )
    assert LOGIN_SPEC.default_priority == "High"


def test_a_failed_login_written_to_btmp_arrives_in_the_next_collect(
    host: FakeHostRoot, tmp_path: Path
) -> None:
    append(tmp_path / "var/log/btmp", encode_utmp([failed_ssh("old")]))
    collector = LoginCollector(host, UTC_CONFIG)
    assert collector.collect(T0) == []  # the first call only finds where the files end
    append(tmp_path / "var/log/btmp", encode_utmp([failed_ssh()]))
    events = collector.collect(T0 + timedelta(seconds=10))
    (row,) = rows(events)
    assert (row.result, row.user_name, row.remote_address, row.process_id) == (
        "Fail",
        "admin",
        "203.0.113.50",
        1234,
    )
    assert (row.executable, row.operation) == ("/usr/sbin/sshd", "login")
    assert row.extra_details == {"Source": "/var/log/btmp", "Terminal": "ssh:notty"}
    assert events[0].timestamp_utc == T0
    assert collector.collect(T0 + timedelta(seconds=20)) == []
    assert_schema_valid(events)


def test_wtmp_user_processes_are_successes_and_other_records_are_not(
    host: FakeHostRoot, tmp_path: Path
) -> None:
    collector = LoginCollector(host, UTC_CONFIG)
    collector.collect(T0)
    records = [
        UtmpRecord(UtmpType.BOOT_TIME, user="reboot", line="~", seconds=int(T0.timestamp())),
        UtmpRecord(
            UtmpType.USER_PROCESS, pid=900, line="tty1", user="pi", seconds=int(T0.timestamp())
        ),
        UtmpRecord(UtmpType.DEAD_PROCESS, pid=900, line="tty1", seconds=int(T0.timestamp()) + 60),
    ]
    append(tmp_path / "var/log/wtmp", encode_utmp(records))
    (row,) = rows(collector.collect(T0))
    assert (row.result, row.user_name, row.executable, row.remote_address) == (
        "Success",
        "pi",
        "/bin/login",
        None,
    )


def test_a_partial_record_waits_for_its_end(host: FakeHostRoot, tmp_path: Path) -> None:
    collector = LoginCollector(host, UTC_CONFIG)
    collector.collect(T0)
    raw = encode_utmp([failed_ssh()])
    append(tmp_path / "var/log/btmp", raw[:200])
    assert collector.collect(T0) == []
    append(tmp_path / "var/log/btmp", raw[200:])
    assert len(collector.collect(T0)) == 1
    assert collector.errors == []


def test_replay_history_reads_what_is_already_there(host: FakeHostRoot, tmp_path: Path) -> None:
    append(tmp_path / "var/log/btmp", encode_utmp([failed_ssh("a"), failed_ssh("b", pid=9)]))
    events = LoginCollector(host, LoginConfig(replay_history=True)).collect(T0)
    assert [r.user_name for r in rows(events)] == ["a", "b"]


def test_a_log_that_appears_later_is_read_from_its_start(tmp_path: Path) -> None:
    host = FakeHostRoot.build(tmp_path, files={"/var/log/wtmp": b""})
    collector = LoginCollector(host, UTC_CONFIG)
    collector.collect(T0)
    (tmp_path / "var/log/btmp").write_bytes(encode_utmp([failed_ssh()]))
    assert len(collector.collect(T0)) == 1


def test_btmp_rotation_finishes_the_old_file_then_reads_the_new(
    host: FakeHostRoot, tmp_path: Path
) -> None:
    btmp = tmp_path / "var/log/btmp"
    collector = LoginCollector(host, UTC_CONFIG)
    collector.collect(T0)
    append(btmp, encode_utmp([failed_ssh("before", at=T0)]))
    btmp.rename(tmp_path / "var/log/btmp.1")
    btmp.write_bytes(encode_utmp([failed_ssh("after", at=T0 + timedelta(seconds=5), pid=2)]))
    assert [r.user_name for r in rows(collector.collect(T0))] == ["before", "after"]
    assert collector.collect(T0) == []


def test_a_truncated_file_is_read_again_from_its_start(host: FakeHostRoot, tmp_path: Path) -> None:
    btmp = tmp_path / "var/log/btmp"
    btmp.write_bytes(encode_utmp([failed_ssh("x", pid=1), failed_ssh("y", pid=2)]))
    collector = LoginCollector(host, UTC_CONFIG)
    collector.collect(T0)
    btmp.write_bytes(encode_utmp([failed_ssh("z", at=T0 + timedelta(minutes=1), pid=3)]))
    assert [r.user_name for r in rows(collector.collect(T0))] == ["z"]


AUTH_LOG = (
    "2024-03-03T10:15:01.482113+00:00 gw sshd[1234]: "
    "Invalid user admin from 203.0.113.50 port 50412\n"
    "2024-03-03T10:15:03.910552+00:00 gw sshd[1234]: "
    "Failed password for invalid user admin from 203.0.113.50 port 50412 ssh2\n"
)


def test_btmp_and_auth_log_report_one_login_once(host: FakeHostRoot, tmp_path: Path) -> None:
    append(tmp_path / "var/log/auth.log", "")
    collector = LoginCollector(host, UTC_CONFIG)
    collector.collect(T0)
    append(tmp_path / "var/log/btmp", encode_utmp([failed_ssh(at=T0)]))
    append(tmp_path / "var/log/auth.log", AUTH_LOG)
    events = collector.collect(T0)
    (row,) = rows(events)
    # The earliest sighting is kept: sshd's "Invalid user" line, with the port.
    assert (row.user_name, row.remote_port, row.operation) == (
        "admin",
        "50412",
        "sshd:invalid-user",
    )
    assert row.extra_details["Source"] == "/var/log/auth.log"


def test_three_attempts_in_two_sources_stay_three(host: FakeHostRoot, tmp_path: Path) -> None:
    append(tmp_path / "var/log/auth.log", "")
    collector = LoginCollector(host, UTC_CONFIG)
    collector.collect(T0)
    times = [T0 + timedelta(seconds=s) for s in (0, 2, 4)]
    append(tmp_path / "var/log/btmp", encode_utmp([failed_ssh("root", at=t) for t in times]))
    lines = "".join(
        f"{t.isoformat()} gw sshd[1234]: Failed password for root from 203.0.113.50 port 5 ssh2\n"
        for t in times
    )
    append(tmp_path / "var/log/auth.log", lines)
    assert len(collector.collect(T0)) == 3


def test_a_login_seen_in_two_calls_is_reported_once(host: FakeHostRoot, tmp_path: Path) -> None:
    append(tmp_path / "var/log/auth.log", "")
    collector = LoginCollector(host, UTC_CONFIG)
    collector.collect(T0)
    append(tmp_path / "var/log/btmp", encode_utmp([failed_ssh(at=T0)]))
    assert len(collector.collect(T0)) == 1
    append(tmp_path / "var/log/auth.log", AUTH_LOG)
    assert collector.collect(T0) == []


def test_text_logs_are_tailed_by_whole_lines(host: FakeHostRoot, tmp_path: Path) -> None:
    log = tmp_path / "var/log/auth.log"
    append(log, AUTH_LOG)
    collector = LoginCollector(host, UTC_CONFIG)
    assert collector.collect(T0) == []
    line = (
        "2024-03-03T10:20:42+00:00 gw sshd[1302]: "
        "Accepted publickey for pi from 192.168.1.20 port 41822 ssh2\n"
    )
    append(log, line[:30])
    assert collector.collect(T0) == []
    append(log, line[30:])
    (row,) = rows(collector.collect(T0))
    assert (row.result, row.user_name, row.remote_port) == ("Success", "pi", "41822")


def test_auth_log_rotation(host: FakeHostRoot, tmp_path: Path) -> None:
    log = tmp_path / "var/log/auth.log"
    append(log, "")
    collector = LoginCollector(host, UTC_CONFIG)
    collector.collect(T0)
    append(log, "Mar  3 10:00:00 gw sshd[1]: Failed password for a from 10.0.0.1 port 1 ssh2\n")
    log.rename(tmp_path / "var/log/auth.log.1")
    append(log, "Mar  3 10:05:00 gw sshd[2]: Failed password for b from 10.0.0.2 port 2 ssh2\n")
    users = [r.user_name for r in rows(collector.collect(datetime(2024, 3, 4, tzinfo=UTC)))]
    assert users == ["a", "b"]


def test_a_malformed_line_is_an_error_and_the_rest_is_read(
    host: FakeHostRoot, tmp_path: Path
) -> None:
    append(tmp_path / "var/log/auth.log", "")
    collector = LoginCollector(host, UTC_CONFIG)
    collector.collect(T0)
    append(tmp_path / "var/log/auth.log", "garbage\n" + AUTH_LOG)
    assert len(collector.collect(T0)) == 1
    (error,) = collector.errors
    assert isinstance(error, ParseError) and error.line == 1


def test_syslog_repeats_are_expanded(host: FakeHostRoot, tmp_path: Path) -> None:
    append(tmp_path / "var/log/auth.log", "")
    collector = LoginCollector(host, UTC_CONFIG)
    collector.collect(T0)
    append(
        tmp_path / "var/log/auth.log",
        "2024-03-03T10:16:16+00:00 gw sshd[1240]: message repeated 3 times: "
        "[ Failed password for root from 203.0.113.50 port 50444 ssh2]\n",
    )
    assert len(collector.collect(T0)) == 3


AUDIT_FAIL = (
    "type=USER_AUTH msg=audit({t}.331:530): pid=3360 uid=0 auid=4294967295 ses=4294967295 "
    'msg=\'op=PAM:authentication grantors=? acct="root" exe="/usr/sbin/sshd" '
    "hostname=198.51.100.77 addr=198.51.100.77 terminal=ssh res=failed'\n"
)


def test_the_audit_log_replaces_wtmp_and_btmp(host: FakeHostRoot, tmp_path: Path) -> None:
    audit = tmp_path / "var/log/audit/audit.log"
    audit.parent.mkdir(parents=True)
    audit.write_text("")
    collector = LoginCollector(host, UTC_CONFIG)
    collector.collect(T0)
    append(tmp_path / "var/log/btmp", encode_utmp([failed_ssh()]))
    append(audit, AUDIT_FAIL.format(t=int(T0.timestamp())))
    (row,) = rows(collector.collect(T0))
    assert (row.user_name, row.operation, row.extra_details["Source"]) == (
        "root",
        "PAM:authentication",
        "/var/log/audit/audit.log",
    )


def test_an_unreadable_audit_log_falls_back_to_btmp(host: FakeHostRoot, tmp_path: Path) -> None:
    # A directory where the log should be: reading it fails, as a permission error would.
    (tmp_path / "var/log/audit/audit.log").mkdir(parents=True)
    collector = LoginCollector(host, UTC_CONFIG)
    collector.collect(T0)
    append(tmp_path / "var/log/btmp", encode_utmp([failed_ssh()]))
    assert len(collector.collect(T0)) == 1
    assert [type(e) for e in collector.errors] == [HostReadError]


def test_audit_user_ids_are_named_from_passwd(host: FakeHostRoot, tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/passwd").write_text("ops:x:1000:1000::/home/ops:/bin/bash\n")
    audit = tmp_path / "var/log/audit/audit.log"
    audit.parent.mkdir(parents=True)
    audit.write_text(
        "type=USER_LOGIN msg=audit(1709452361.210:512): pid=3301 uid=0 auid=1000 ses=3 "
        'msg=\'op=login id=1000 exe="/usr/sbin/sshd" hostname=10.1.2.3 addr=10.1.2.3 '
        "terminal=ssh res=success'\n"
    )
    (row,) = rows(LoginCollector(host, LoginConfig(replay_history=True)).collect(T0))
    assert (row.user_id, row.user_name, row.result) == ("1000", "ops", "Success")


JOURNAL_ARGS = ("journalctl", "-o", "json", "--no-pager", "-q")
FACILITIES = ("SYSLOG_FACILITY=4", "SYSLOG_FACILITY=10")


def journal_line(cursor: str, message: str, usec: int) -> str:
    return json.dumps(
        {
            "__CURSOR": cursor,
            "__REALTIME_TIMESTAMP": str(usec),
            "SYSLOG_IDENTIFIER": "sshd",
            "_PID": "4242",
            "_EXE": "/usr/sbin/sshd",
            "MESSAGE": message,
        }
    )


def test_the_journal_is_resumed_by_cursor(tmp_path: Path) -> None:
    host = FakeHostRoot.build(tmp_path)
    old = journal_line(
        "c1", "Failed password for old from 10.0.0.1 port 1 ssh2", 1_709_000_000_000_000
    )
    new = journal_line(
        "c2", "Accepted password for pi from 10.0.0.2 port 2 ssh2", 1_709_460_903_000_000
    )
    host.fake_commands.add((*JOURNAL_ARGS, "-n", "1", *FACILITIES), old + "\n")
    host.fake_commands.add((*JOURNAL_ARGS, "--after-cursor", "c1", *FACILITIES), new + "\n")
    collector = LoginCollector(host, UTC_CONFIG)
    assert collector.collect(T0) == []
    (row,) = rows(collector.collect(T0))
    assert (row.user_name, row.result, row.process_id, row.extra_details["Source"]) == (
        "pi",
        "Success",
        4242,
        "journal",
    )
    assert host.fake_commands.calls[-1][-4:-2] == ("--after-cursor", "c1")


def test_a_failing_journal_is_an_error(tmp_path: Path) -> None:
    host = FakeHostRoot.build(tmp_path)
    host.fake_commands.add(
        (*JOURNAL_ARGS, "-n", "1", *FACILITIES),
        "",
        returncode=1,
        stderr="No journal files were found.",
    )
    collector = LoginCollector(host, UTC_CONFIG)
    assert collector.collect(T0) == []
    (error,) = collector.errors
    assert isinstance(error, HostReadError) and "No journal files" in error.reason


# Every distribution's logs, read from the start: (time, result, user, address, operation).
EXPECTED = {
    "debian12": (
        datetime(2024, 3, 4, tzinfo=UTC),
        [
            ("10:15:01", "Fail", "admin", "203.0.113.50", "sshd:invalid-user"),
            ("10:16:13", "Fail", "root", "203.0.113.50", "sshd:password"),
            ("10:16:16", "Fail", "root", "203.0.113.50", "sshd:password"),
            ("10:16:16", "Fail", "root", "203.0.113.50", "sshd:password"),
            ("10:20:42", "Success", "pi", "192.168.1.20", "sshd:publickey"),
            ("10:22:30", "Fail", "root", None, "PAM:authentication"),
            ("10:23:01", "Success", "root", None, "PAM:session_open"),
        ],
    ),
    "ubuntu2204": (
        datetime(2024, 1, 1, 0, 10, tzinfo=UTC),
        [
            ("23:59:58", "Fail", "ubuntu", "198.51.100.23", "sshd:password"),
            ("00:00:05", "Success", "deploy", "10.20.3.4", "sshd:password"),
            ("00:02:00", "Fail", "deploy", None, "PAM:authentication"),
            ("00:03:00", "Fail", "ubuntu", None, "PAM:authentication"),
            ("00:03:20", "Success", "ubuntu", None, "PAM:session_open"),
            ("00:04:44", "Fail", "ubuntu", "2001:db8::7", "sshd:publickey"),
        ],
    ),
    "alpine318": (
        datetime(2024, 3, 4, tzinfo=UTC),
        [
            ("08:05:12", "Success", "root", "192.168.7.2", "sshd:none"),
            ("08:06:40", "Fail", "sensor", None, "login"),
            ("08:06:55", "Success", "root", None, "login"),
            ("08:07:30", "Fail", "root", "192.168.7.99", "sshd:password"),
        ],
    ),
    # secure and the audit log see the same sshd logins: each is reported once.
    "rhel9": (
        datetime(2024, 3, 4, tzinfo=UTC),
        [
            ("07:52:41", "Success", "ops", "10.1.2.3", "sshd:publickey"),
            ("07:55:02", "Fail", "oracle", "198.51.100.77", "sshd:invalid-user"),
            ("07:56:10", "Fail", "root", "198.51.100.77", "sshd:password"),
            ("07:56:50", "Fail", "root", None, "PAM:authentication"),
        ],
    ),
}


@pytest.mark.parametrize("distro", sorted(EXPECTED))
def test_every_distribution_from_the_start(distro: str, tmp_path: Path) -> None:
    shutil.copytree(HOSTS / distro / "etc", tmp_path / "etc")
    shutil.copytree(HOSTS / distro / "var", tmp_path / "var")
    now, expected = EXPECTED[distro]
    collector = LoginCollector(
        FakeHostRoot.from_tree(tmp_path), LoginConfig(replay_history=True, local_tz=UTC)
    )
    events = collector.collect(now)
    got = [
        (e.timestamp_utc.strftime("%H:%M:%S"), r.result, r.user_name, r.remote_address, r.operation)
        for e, r in zip(events, rows(events), strict=True)
    ]
    assert got == expected
    assert collector.errors == []
    assert_schema_valid(events)
    assert collector.collect(now) == []


def test_host_names_are_kept_out_of_remote_address(host: FakeHostRoot, tmp_path: Path) -> None:
    append(tmp_path / "var/log/auth.log", "")
    collector = LoginCollector(host, UTC_CONFIG)
    collector.collect(T0)
    append(
        tmp_path / "var/log/auth.log",
        "2024-03-03T10:15:01+00:00 gw sshd[9]: "
        "Failed password for x from evil.example port 1 ssh2\n"
        "2024-03-03T10:16:01+00:00 gw sshd[9]: "
        "Failed password for x from ::ffff:10.0.0.9 port 1 ssh2\n",
    )
    first, second = rows(collector.collect(T0))
    assert (first.remote_address, first.extra_details["RemoteHost"]) == (None, "evil.example")
    assert second.remote_address == "10.0.0.9"


def record(origin: str, seconds: float, **fields: Any) -> LoginSighting:
    base = AuthRecord(
        time=T0 + timedelta(seconds=seconds),
        result="Fail",
        user="root",
        operation="x",
        executable="/usr/sbin/sshd",
        origin=origin,
        address="10.0.0.1",
    )
    return LoginSighting(dataclasses.replace(base, **fields), origin)


def test_merge_rules() -> None:
    def merged(*sightings: LoginSighting) -> int:
        return len(merge_logins(sightings))

    assert merged(record("btmp", 0), record("syslog", 0.9)) == 1
    assert merged(record("btmp", 0), record("syslog", 1.5)) == 2
    assert merged(record("btmp", 0), record("btmp", 0)) == 2  # one source never merges itself
    assert merged(record("btmp", 0), record("syslog", 0, result="Success")) == 2
    assert merged(record("btmp", 0), record("syslog", 0, address="10.0.0.2")) == 2
    assert merged(record("btmp", 0), record("syslog", 0, user="other")) == 2
    assert merged(record("btmp", 0), record("syslog", 0, user=None, address=None)) == 1
    # PAM logs before its failure delay, auditd after: one process, a few seconds apart.
    assert merged(record("syslog", 0, pid=7), record("audit:USER_AUTH", 3, pid=7)) == 1
    assert merged(record("syslog", 0, pid=7), record("audit:USER_AUTH", 3, pid=8)) == 2
    assert merged(record("syslog", 0, pid=7), record("audit:USER_AUTH", 9, pid=7)) == 2


def test_close_is_harmless(host: FakeHostRoot) -> None:
    collector = LoginCollector(host)
    collector.close()
    assert os.path.exists(host.path("/var/log/btmp"))


def test_a_line_longer_than_the_read_limit_does_not_stall(
    host: FakeHostRoot, tmp_path: Path
) -> None:
    log = tmp_path / "var/log/auth.log"
    append(log, "")
    collector = LoginCollector(host, LoginConfig(local_tz=UTC, max_read_bytes=200))
    collector.collect(T0)
    append(log, "x" * 300 + "\n" + AUTH_LOG)
    events: list[Event] = []
    for _ in range(10):
        events += collector.collect(T0)
    assert len(events) == 1
