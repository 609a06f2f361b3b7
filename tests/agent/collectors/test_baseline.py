"""The OS baseline: the checks as data, each test kind, and every fixture distribution."""

from __future__ import annotations

import contextlib
import dataclasses
import doctest
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iotsec.agent.collectors import baseline_checks
from iotsec.agent.collectors.baseline import (
    BASELINE_SPEC,
    BaselineCollector,
    Outcome,
    evaluate,
    parse_shadow_passwords,
    read_sshd_config,
)
from iotsec.agent.collectors.baseline_checks import (
    CHECKS,
    AllOf,
    AtLeast,
    AtMost,
    Between,
    Check,
    ConfigValue,
    Equals,
    FileMode,
    FileOwner,
    KernelParam,
    NoWorldWritable,
    OneOf,
    Predicate,
    ServiceDisabled,
    ServiceEnabled,
    SshdOption,
    Test,
)
from iotsec.agent.errors import ParseError
from iotsec.agent.hostroot import FakeHostRoot
from iotsec.schema import OSBaselineEvent, SecurityMessage, encode_message
from tests.msschema import validate_with_microsoft_schema

HOSTS = Path(__file__).resolve().parents[1] / "fixtures" / "hosts"
NOW = datetime(2024, 3, 4, tzinfo=UTC)


def check(test: Test) -> Check:
    return Check("T-1", "Warning", "a test check", "fix it", test)


def run(test: Test, files: dict[str, str], tmp_path: Path) -> Outcome:
    return evaluate(check(test), FakeHostRoot.build(tmp_path, files=files))


def _leaves(test: Test) -> Iterator[Test]:
    if isinstance(test, AllOf):
        for inner in test.tests:
            yield from _leaves(inner)
    else:
        yield test


# --- the checks as data ----------------------------------------------------------------------


def test_the_spec() -> None:
    assert (BASELINE_SPEC.name, BASELINE_SPEC.category, BASELINE_SPEC.default_priority) == (
        "OSBaseline",
        "Periodic",
        "Low",
    )


def test_at_least_25_checks_with_unique_ids_and_full_text() -> None:
    assert len(CHECKS) >= 25
    ids = [c.id for c in CHECKS]
    assert len(set(ids)) == len(ids)
    for c in CHECKS:
        assert c.id.startswith(("CIS-", "IOTSEC-")), c.id
        assert c.severity in ("Critical", "Important", "Warning", "Informational")
        assert c.description.endswith(".") and c.remediation
        assert c.cce_id is None or c.cce_id.startswith("CCE-")


def test_every_test_kind_is_used() -> None:
    kinds = {type(leaf) for c in CHECKS for leaf in _leaves(c.test)}
    declared = set(baseline_checks.Test.__args__)
    assert declared - {AllOf} <= kinds


REQUIRED_COVERAGE = {
    "PermitRootLogin",
    "PasswordAuthentication",
    "Protocol",
    "PermitEmptyPasswords",
    "X11Forwarding",
    "MaxAuthTries",
    "ClientAliveInterval",
    "LogLevel",
    "PASS_MAX_DAYS",
    "PASS_MIN_DAYS",
    "PASS_WARN_AGE",
    "minlen",
    "/etc/passwd",
    "/etc/shadow",
    "/etc/group",
    "/etc/gshadow",
    "net.ipv4.ip_forward",
    "kernel.randomize_va_space",
    "net.ipv4.tcp_syncookies",
    "fs.suid_dumpable",
    "telnet",
    "rsh",
    "tftp",
    "avahi-daemon",
    "cups",
    "auditd",
}


def test_the_checks_cover_what_the_baseline_must() -> None:
    covered: set[str] = set()
    for c in CHECKS:
        for leaf in _leaves(c.test):
            for value in dataclasses.astuple(leaf):
                items = value if isinstance(value, tuple) else (value,)
                covered |= {str(v) for v in items}
    covered |= {
        n.rsplit(".", 2)[-1] for n in covered
    }  # "net.ipv4.conf.all.rp_filter" -> last parts
    assert covered >= REQUIRED_COVERAGE
    assert any(
        isinstance(leaf, NoWorldWritable) and "/usr/sbin" in leaf.dirs
        for c in CHECKS
        for leaf in _leaves(c.test)
    )


# --- each kind of test ------------------------------------------------------------------------


def test_predicates() -> None:
    assert Equals("no").holds(" NO ") and not Equals("no").holds("yes")
    assert OneOf(("INFO", "VERBOSE")).holds("verbose")
    assert AtMost(4).holds("4") and not AtMost(4).holds("5")
    assert AtLeast(14).holds("14") and not AtLeast(14).holds("-1")
    assert Between(1, 300).holds("300") and not Between(1, 300).holds("0")
    with pytest.raises(ValueError, match="not an integer"):
        AtMost(4).holds("four")


def test_file_mode(tmp_path: Path) -> None:
    host = FakeHostRoot.build(tmp_path, files={"/etc/shadow": "x"}, modes={"/etc/shadow": 0o640})
    assert evaluate(check(FileMode("/etc/shadow", 0o640)), host).result == "Pass"
    os.chmod(host.path("/etc/shadow"), 0o644)
    outcome = evaluate(check(FileMode("/etc/shadow", 0o640)), host)
    assert outcome == Outcome("Fail", "/etc/shadow has mode 644, expected 640")
    assert evaluate(check(FileMode("/etc/none", 0o600)), host).result == "Pass"
    assert evaluate(check(FileMode("/etc/none", 0o600, missing="Fail")), host).result == "Fail"


def test_file_owner_names_come_from_the_hosts_accounts(tmp_path: Path) -> None:
    uid, gid = os.getuid(), os.getgid()
    files = {
        "/etc/passwd": f"root:x:{uid}:{gid}::/root:/bin/sh\n",
        "/etc/group": f"shadow:x:{gid}:\n",
        "/etc/shadow": "root:*:1::::::\n",
    }
    host = FakeHostRoot.build(tmp_path, files=files)
    assert (
        evaluate(check(FileOwner("/etc/shadow", groups=("root", "shadow"))), host).result == "Pass"
    )
    outcome = evaluate(check(FileOwner("/etc/shadow")), host)
    assert outcome == Outcome("Fail", "/etc/shadow is owned by root:shadow, expected root:root")


SSHD_MAIN = """\
# comment
Include /etc/ssh/sshd_config.d/*.conf
PermitRootLogin no
MaxAuthTries=3
X11Forwarding yes
Match User backup
    PermitRootLogin yes
    Include extra.conf
Match all
LogLevel QUIET
"""


def sshd_host(tmp_path: Path, **extra: str) -> FakeHostRoot:
    files = {
        "/etc/ssh/sshd_config": SSHD_MAIN,
        "/etc/ssh/sshd_config.d/10-first.conf": "PermitRootLogin prohibit-password\n",
        "/etc/ssh/sshd_config.d/20-second.conf": "PermitRootLogin no\nPasswordAuthentication no\n",
        "/etc/ssh/sshd_config.d/README": "PasswordAuthentication yes\n",
        "/etc/ssh/extra.conf": "X11Forwarding no\nPasswordAuthentication yes\n",
    }
    files.update(extra)
    return FakeHostRoot.build(tmp_path, files=files)


def test_sshd_includes_sorted_and_first_value_wins(tmp_path: Path) -> None:
    config = read_sshd_config(sshd_host(tmp_path))
    root = config.options["permitrootlogin"]
    assert (root.value, root.source, root.line) == (
        "prohibit-password",
        "/etc/ssh/sshd_config.d/10-first.conf",
        1,
    )
    assert config.options["maxauthtries"].value == "3"
    assert config.options["passwordauthentication"].source.endswith("20-second.conf")
    # "Match all" closes the Match block: LogLevel is global again.
    assert config.options["loglevel"].value == "QUIET"
    matched = {(k, v.value, v.match) for k, v in config.matched}
    assert ("permitrootlogin", "yes", "User backup") in matched
    assert ("passwordauthentication", "yes", "User backup") in matched  # Include inside Match


def test_sshd_options_judge_global_and_match_values(tmp_path: Path) -> None:
    host = sshd_host(tmp_path)

    def outcome(option: str, expect: Predicate, default: str) -> Outcome:
        return evaluate(check(SshdOption(option, expect, default)), host)

    root = outcome("PermitRootLogin", Equals("no"), "prohibit-password")
    assert root.result == "Fail"
    assert "prohibit-password (/etc/ssh/sshd_config.d/10-first.conf:1)" in root.finding
    assert "yes (/etc/ssh/sshd_config:7 in 'Match User backup')" in root.finding
    assert outcome("MaxAuthTries", AtMost(4), "6").result == "Pass"
    assert outcome("Protocol", Equals("2"), "2").result == "Pass"
    client = outcome("ClientAliveInterval", Between(1, 300), "0")
    assert client == Outcome(
        "Fail", "ClientAliveInterval is 0 (OpenSSH default), expected between 1 and 300"
    )
    password = outcome("PasswordAuthentication", Equals("no"), "yes")
    assert password.result == "Fail" and "extra.conf:2 in 'Match User backup'" in password.finding


def test_sshd_without_a_config_has_nothing_to_check(tmp_path: Path) -> None:
    assert run(SshdOption("PermitRootLogin", Equals("no"), "yes"), {}, tmp_path).result == "Pass"


def test_sshd_include_loops_and_bad_values_are_errors(tmp_path: Path) -> None:
    looping = {"/etc/ssh/sshd_config": "Include /etc/ssh/sshd_config\n"}
    outcome = run(SshdOption("PermitRootLogin", Equals("no"), "yes"), looping, tmp_path / "a")
    assert outcome.result == "Err" and "nested deeper" in outcome.finding
    bad = {"/etc/ssh/sshd_config": "MaxAuthTries lots\n"}
    outcome = run(SshdOption("MaxAuthTries", AtMost(4), "6"), bad, tmp_path / "b")
    assert outcome == Outcome(
        "Err", "MaxAuthTries (/etc/ssh/sshd_config:1): 'lots' is not an integer"
    )


def test_config_values_last_one_wins_and_defaults(tmp_path: Path) -> None:
    defs = "# PASS_MAX_DAYS 1\nPASS_MAX_DAYS\t400\nPASS_MAX_DAYS 90\n"
    test = ConfigValue("/etc/login.defs", "PASS_MAX_DAYS", AtMost(365), "99999")
    assert run(test, {"/etc/login.defs": defs}, tmp_path / "a").result == "Pass"
    missing = run(test, {}, tmp_path / "b")
    assert missing == Outcome(
        "Fail",
        "PASS_MAX_DAYS is 99999 (/etc/login.defs does not exist; default), expected at most 365",
    )
    no_default = ConfigValue("/etc/login.defs", "PASS_MAX_DAYS", AtMost(365))
    assert (
        run(no_default, {"/etc/login.defs": ""}, tmp_path / "c").finding
        == "PASS_MAX_DAYS is not set in /etc/login.defs"
    )
    pwq = ConfigValue(
        "/etc/security/pwquality.conf", "minlen", AtLeast(14), "8", separator="equals"
    )
    assert (
        run(pwq, {"/etc/security/pwquality.conf": "minlen=15\n"}, tmp_path / "d").result == "Pass"
    )
    assert run(pwq, {"/etc/security/pwquality.conf": "minlen\n"}, tmp_path / "e").result == "Err"


def test_an_unreadable_file_is_an_error_with_the_reason(tmp_path: Path) -> None:
    # A directory where the file should be: reading fails as a permission error would.
    (tmp_path / "etc/login.defs").mkdir(parents=True)
    outcome = evaluate(
        check(ConfigValue("/etc/login.defs", "PASS_MAX_DAYS", AtMost(365), "99999")),
        FakeHostRoot.from_tree(tmp_path),
    )
    assert outcome.result == "Err"
    assert outcome.finding.startswith("cannot read /etc/login.defs:")


def test_kernel_params(tmp_path: Path) -> None:
    files = {"/proc/sys/net/ipv4/ip_forward": "0\n"}
    assert run(KernelParam("net.ipv4.ip_forward", Equals("0")), files, tmp_path).result == "Pass"
    absent = run(KernelParam("net.ipv6.conf.all.accept_ra", Equals("0")), files, tmp_path)
    assert absent == Outcome("Err", "/proc/sys/net/ipv6/conf/all/accept_ra does not exist")
    tolerated = KernelParam("net.ipv6.conf.all.accept_ra", Equals("0"), missing="Pass")
    assert run(tolerated, files, tmp_path).result == "Pass"


def test_world_writable_walk(tmp_path: Path) -> None:
    files = {"/etc/ok": "", "/etc/deep/er/open": "", "/usr/bin/tool": ""}
    host = FakeHostRoot.build(tmp_path, files=files, modes={"/etc/deep/er/open": 0o666})
    (tmp_path / "tmp").mkdir()
    os.chmod(tmp_path / "tmp", 0o1777)  # sticky: fine
    os.symlink("/etc/passwd", tmp_path / "etc/link")  # links are 777 and never followed
    os.symlink("usr/bin", tmp_path / "bin")
    (tmp_path / "usr/bin/drop").mkdir()
    os.chmod(tmp_path / "usr/bin/drop", 0o777)
    outcome = evaluate(check(NoWorldWritable(("/etc", "/usr/bin", "/bin", "/sbin", "/tmp"))), host)
    assert outcome == Outcome(
        "Fail", "world-writable: /etc/deep/er/open, /usr/bin/drop/ (no sticky bit)"
    )
    bounded = evaluate(check(NoWorldWritable(("/etc",), max_entries=2)), host)
    assert bounded == Outcome("Err", "stopped after 2 entries; not all checked")


def test_services_in_systemd_openrc_sysv_inetd_and_xinetd(tmp_path: Path) -> None:
    host = FakeHostRoot.build(
        tmp_path,
        files={
            "/etc/inetd.conf": (
                "#telnet stream tcp nowait root /usr/sbin/telnetd telnetd\n"
                "shell stream tcp nowait root /usr/sbin/in.rshd in.rshd\n"
            ),
            "/etc/xinetd.d/tftp": "service tftp\n{\n\tdisable\t= no\n}\n",
            "/etc/xinetd.d/telnet": "service telnet\n{\n\tdisable = yes\n}\n",
            "/etc/runlevels/default/avahi-daemon": "",
        },
    )
    wants = tmp_path / "etc/systemd/system/sockets.target.wants"
    wants.mkdir(parents=True)
    os.symlink("/lib/systemd/system/cups.socket", wants / "cups.socket")
    (tmp_path / "etc/rc2.d").mkdir()
    os.symlink("../init.d/snmpd", tmp_path / "etc/rc2.d/S01snmpd")
    os.symlink("../init.d/rpcbind", tmp_path / "etc/rc2.d/K01rpcbind")

    def disabled(units: tuple[str, ...], inetd: tuple[str, ...] = ()) -> Outcome:
        return evaluate(check(ServiceDisabled(units, inetd)), host)

    assert (
        disabled(("cups",)).finding
        == "enabled: /etc/systemd/system/sockets.target.wants/cups.socket"
    )
    assert disabled(("avahi-daemon",)).finding == "enabled: /etc/runlevels/default/avahi-daemon"
    assert disabled(("snmpd",)).finding == "enabled: /etc/rc2.d/S01snmpd"
    assert disabled(("rpcbind",)).result == "Pass"  # a K link stops it
    assert disabled(("rsh",), ("shell",)).finding == "enabled: /etc/inetd.conf:2 (shell)"
    assert disabled(("telnetd",), ("telnet",)).result == "Pass"
    assert disabled(("tftpd-hpa",), ("tftp",)).finding == "enabled: /etc/xinetd.d/tftp"
    assert evaluate(check(ServiceEnabled(("cups",))), host).result == "Pass"
    assert evaluate(check(ServiceEnabled(("auditd",))), host).result == "Fail"


def test_empty_passwords_and_uid_0(tmp_path: Path) -> None:
    files = {
        "/etc/passwd": (
            "root:x:0:0::/root:/bin/sh\nold::1001:1001::/:/bin/sh\ntoor:x:0:0::/:/bin/sh\n"
        ),
        "/etc/shadow": "root:*:1::::::\nguest::1::::::\n",
    }
    host = FakeHostRoot.build(tmp_path, files=files)
    by_id = {c.id: c for c in CHECKS}
    assert evaluate(by_id["CIS-6.2.1"], host) == Outcome("Fail", "empty password: guest, old")
    assert evaluate(by_id["CIS-6.2.5"], host) == Outcome("Fail", "uid 0: toor")
    assert parse_shadow_passwords("a:b:c\n#x\n\n") == [("a", "b")]
    with pytest.raises(ParseError):
        parse_shadow_passwords("nocolon\n")


def test_all_of_reports_failures_before_errors(tmp_path: Path) -> None:
    files = {"/proc/sys/a": "1\n"}
    both = AllOf((KernelParam("a", Equals("0")), KernelParam("b", Equals("0"))))
    assert run(both, files, tmp_path) == Outcome("Fail", "a is 1, expected 0")
    errors = AllOf((KernelParam("a", Equals("1")), KernelParam("b", Equals("0"))))
    assert run(errors, files, tmp_path) == Outcome("Err", "/proc/sys/b does not exist")


# --- every fixture distribution --------------------------------------------------------------

# Failing checks per distribution, with the modes a real install has (set below: git keeps
# only the executable bit).
EXPECTED_FAILURES = {
    "debian12": {
        "CIS-1.5.1a", "CIS-2.2.3", "CIS-2.2.4", "CIS-3.1.1", "CIS-3.1.2", "CIS-3.2.2",
        "CIS-3.2.7", "CIS-4.1.1.1", "CIS-4.1.1.2", "CIS-5.2.4", "CIS-5.2.5", "CIS-5.2.8",
        "CIS-5.2.12", "IOTSEC-SSH-1", "CIS-5.3.1", "CIS-5.4.1.1", "CIS-5.4.1.2",
    },
    "ubuntu2204": {
        "CIS-1.5.1b", "CIS-1.5.3", "CIS-2.1.8", "CIS-2.1.9", "CIS-4.1.1.1", "CIS-4.1.1.2",
        "CIS-5.2.4", "CIS-5.2.5", "CIS-5.2.12", "IOTSEC-SSH-1", "CIS-5.3.1", "CIS-6.2.1",
        "CIS-6.2.5",
    },
    "alpine318": {
        "CIS-1.5.1a", "CIS-2.1.8", "CIS-2.1.9", "CIS-3.1.2", "CIS-3.2.1", "CIS-3.2.2",
        "CIS-3.2.7", "CIS-4.1.1.1", "CIS-4.1.1.2", "CIS-5.2.2", "CIS-5.2.3", "CIS-5.2.5",
        "CIS-5.2.8", "CIS-5.2.9", "CIS-5.2.12", "IOTSEC-SSH-1", "CIS-5.3.1", "CIS-5.4.1.1",
        "CIS-5.4.1.2", "CIS-6.2.1",
    },
    "rhel9": {"CIS-2.2.7", "CIS-6.1.10"},
}  # fmt: skip
MODES = {
    "etc/passwd": 0o644,
    "etc/group": 0o644,
    "etc/shadow": 0o640,
    "etc/gshadow": 0o640,
    "etc/ssh/sshd_config": 0o600,
}
OWNER_CHECKS = {
    c.id for c in CHECKS if any(isinstance(leaf, FileOwner) for leaf in _leaves(c.test))
}


def installed_host(distro: str, tmp_path: Path) -> FakeHostRoot:
    shutil.copytree(HOSTS / distro / "etc", tmp_path / "etc")
    shutil.copytree(HOSTS / distro / "proc" / "sys", tmp_path / "proc" / "sys")
    if (HOSTS / distro / "usr").exists():
        shutil.copytree(HOSTS / distro / "usr", tmp_path / "usr")
    for path, mode in MODES.items():
        if (tmp_path / path).exists():
            os.chmod(tmp_path / path, mode)
    return FakeHostRoot.from_tree(tmp_path)


@pytest.mark.parametrize("distro", sorted(EXPECTED_FAILURES))
def test_every_distribution(distro: str, tmp_path: Path) -> None:
    host = installed_host(distro, tmp_path)
    if distro == "rhel9":
        os.chmod(tmp_path / "etc/security/limits.conf", 0o666)  # the one bad file
    results = BaselineCollector(host).results()
    failed = {c.id for c, outcome in results if outcome.result == "Fail"}
    errors = [(c.id, o.finding) for c, o in results if o.result == "Err"]
    assert errors == []
    if os.getuid() != 0:
        # Fixture files belong to whoever runs the tests, not to the fixture's root.
        failed -= OWNER_CHECKS
    assert failed == EXPECTED_FAILURES[distro]


def test_the_event_carries_failures_and_errors_only(tmp_path: Path) -> None:
    host = installed_host("ubuntu2204", tmp_path)
    os.remove(tmp_path / "proc/sys/net/ipv4/tcp_syncookies")
    (event,) = BaselineCollector(host).collect(NOW)
    assert isinstance(event, OSBaselineEvent)
    results = {row.extra_details["RuleId"]: row for row in event.payload}
    assert "CIS-5.2.2" not in results  # passed
    err = results["CIS-3.2.8"]
    assert (err.result, err.error, err.cce_id) == (
        "Err",
        "/proc/sys/net/ipv4/tcp_syncookies does not exist",
        "CIS-3.2.8",
    )
    fail = results["CIS-5.2.5"]
    assert (fail.result, fail.error, fail.severity) == ("Fail", "", "Warning")
    assert (
        fail.extra_details["Finding"]
        == "MaxAuthTries is 6 (/etc/ssh/sshd_config:7), expected at most 4"
    )
    assert fail.extra_details["Remediation"] == "Set 'MaxAuthTries 4' in sshd_config."
    message = SecurityMessage.create([event], agent_id="b97faf0a-0f57-471f-9dab-46a8e1764946")
    validate_with_microsoft_schema(json.loads(encode_message(message)))


def test_send_all_and_disabled_checks(tmp_path: Path) -> None:
    host = installed_host("rhel9", tmp_path)
    (everything,) = BaselineCollector(host, send_all=True).collect(NOW)
    assert isinstance(everything, OSBaselineEvent)
    assert len(everything.payload) == len(CHECKS)
    protocol = next(r for r in everything.payload if r.extra_details["RuleId"] == "CIS-5.2.2")
    assert (protocol.cce_id, protocol.result) == ("CCE-4325-7", "Pass")
    (some,) = BaselineCollector(host, disabled=frozenset({"CIS-2.2.7"})).collect(NOW)
    assert "CIS-2.2.7" not in {r.extra_details["RuleId"] for r in some.payload}


def test_all_passing_is_an_empty_event(tmp_path: Path) -> None:
    host = FakeHostRoot.build(tmp_path, files={"/proc/sys/kernel/randomize_va_space": "2\n"})
    only = [c for c in CHECKS if c.id == "CIS-1.5.3"]
    (event,) = BaselineCollector(host, only).collect(NOW)
    assert event.is_empty and event.payload == ()


# --- property tests -------------------------------------------------------------------------

_sshd_words = st.sampled_from(
    [
        "Include",
        "Match",
        "all",
        "User",
        "x",
        "PermitRootLogin",
        "yes",
        "=",
        "*.conf",
        '"',
        "#",
        "\t",
    ]
)


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=200) | st.lists(_sshd_words, max_size=16).map(" ".join))
def test_any_sshd_config_reads_or_raises_parse_error(text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        host = FakeHostRoot.build(tmp, files={"/etc/ssh/sshd_config": text})
        with contextlib.suppress(ParseError):
            read_sshd_config(host)


@settings(max_examples=100, deadline=None)
@given(
    st.sampled_from(
        [
            "/etc/login.defs",
            "/etc/security/pwquality.conf",
            "/etc/security/limits.conf",
            "/etc/shadow",
            "/etc/passwd",
            "/etc/inetd.conf",
        ]
    ),
    st.text(max_size=200),
)
def test_odd_files_give_results_never_exceptions(path: str, text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        host = FakeHostRoot.build(tmp, files={path: text})
        results: Sequence[tuple[Check, Outcome]] = BaselineCollector(host).results()
        assert {o.result for _, o in results} <= {"Pass", "Fail", "Err"}


@settings(max_examples=300)
@given(st.text(max_size=200))
def test_shadow_parser_raises_only_parse_error(text: str) -> None:
    with contextlib.suppress(ParseError):
        parse_shadow_passwords(text)


def test_the_module_examples_run() -> None:
    import iotsec.agent.collectors.baseline as module  # noqa: PLC0415  # the module under doctest

    failed, attempted = doctest.testmod(module)
    assert (failed, attempted > 0) == (0, True)
