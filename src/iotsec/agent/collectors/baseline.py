"""The OSBaseline collector: evaluates the baseline checks against a host.

Every check of :data:`~iotsec.agent.collectors.baseline_checks.CHECKS` gets a result: Pass,
Fail (``ExtraDetails["Finding"]`` says what was found and where), or Err when the host could
not tell (a file that cannot be read, a value that does not parse; ``Error`` says why). Like
ASC's agents, the event carries the checks that did not pass; ``send_all`` adds the passes.

>>> import tempfile
>>> from iotsec.agent.collectors.baseline_checks import Check, Equals, KernelParam
>>> from iotsec.agent.hostroot import FakeHostRoot
>>> check = Check("X-1", "Warning", "No forwarding.", "Turn it off.",
...               KernelParam("net.ipv4.ip_forward", Equals("0")))
>>> with tempfile.TemporaryDirectory() as tmp:
...     host = FakeHostRoot.build(tmp, files={"/proc/sys/net/ipv4/ip_forward": "1\\n"})
...     evaluate(check, host)
Outcome(result='Fail', finding='net.ipv4.ip_forward is 1, expected 0')
"""

from __future__ import annotations

import fnmatch
import re
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import PurePosixPath

from iotsec.agent.accounts import Accounts, parse_passwd
from iotsec.agent.collectors.base import CollectorSpec
from iotsec.agent.collectors.baseline_checks import (
    CHECKS,
    AllOf,
    AnyPathExists,
    Check,
    ConfigValue,
    FileMode,
    FileOwner,
    KernelParam,
    LimitsValue,
    NoEmptyPasswords,
    NoWorldWritable,
    OnlyRootUid0,
    Predicate,
    ServiceDisabled,
    ServiceEnabled,
    SshdOption,
    Test,
)
from iotsec.agent.errors import HostReadError, ParseError
from iotsec.agent.hostroot import HostRoot
from iotsec.schema import Event, OSBaseline, OSBaselineEvent
from iotsec.schema.payloads import BaselineResult

__all__ = [
    "BASELINE_SPEC",
    "BaselineCollector",
    "Outcome",
    "SshdConfig",
    "SshdValue",
    "evaluate",
    "parse_shadow_passwords",
    "read_sshd_config",
]

BASELINE_SPEC = CollectorSpec(
    name="OSBaseline",
    event_type="Security",
    category="Periodic",
    default_priority="Low",
    description="CIS-style OS configuration checks that did not pass",
)


@dataclass(frozen=True, slots=True)
class Outcome:
    """A check's result; ``finding`` is what failed, or why the check could not run."""

    result: BaselineResult
    finding: str = ""


_PASS = Outcome("Pass")


# --- sshd_config ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SshdValue:
    """An sshd option's value and the line that set it."""

    value: str
    source: str
    line: int
    match: str | None = None

    def where(self) -> str:
        block = f" in 'Match {self.match}'" if self.match else ""
        return f"{self.source}:{self.line}{block}"


@dataclass
class SshdConfig:
    """sshd's global options (first value wins) and the values each Match block sets."""

    present: bool = True
    options: dict[str, SshdValue] = field(default_factory=dict)
    matched: list[tuple[str, SshdValue]] = field(default_factory=list)


_SSHD_LINE = re.compile(r"\s*(?P<key>[^\s=]+)(?:\s*=\s*|\s+)?(?P<value>.*?)\s*$", re.ASCII)
_MAX_INCLUDE_DEPTH = 16


def _include_paths(host: HostRoot, pattern: str) -> list[str]:
    # Relative Include paths are relative to /etc/ssh; glob results are sorted, as sshd does.
    path = pattern if pattern.startswith("/") else f"/etc/ssh/{pattern}"
    parent, name = str(PurePosixPath(path).parent), PurePosixPath(path).name
    if not any(ch in path for ch in "*?["):
        return [path] if host.exists(path) else []
    if any(ch in parent for ch in "*?["):
        raise ParseError(path, "wildcards are supported in the file name only")
    if not host.exists(parent):
        return []
    return [f"{parent.rstrip('/')}/{e}" for e in host.listdir(parent) if fnmatch.fnmatch(e, name)]


def _read_sshd(
    host: HostRoot, path: str, config: SshdConfig, match: str | None, depth: int
) -> None:
    if depth > _MAX_INCLUDE_DEPTH:
        raise ParseError(path, f"Include nested deeper than {_MAX_INCLUDE_DEPTH} files")
    for number, raw in enumerate(host.read_text(path).splitlines(), start=1):
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        found = _SSHD_LINE.match(raw)
        if found is None:
            raise ParseError(path, "expected 'Keyword value'", line=number)
        key, value = found["key"].lower(), found["value"].strip('"')
        if key == "include":
            for pattern in value.split():
                for included in _include_paths(host, pattern):
                    _read_sshd(host, included, config, match, depth + 1)
        elif key == "match":
            # "Match all" applies to every connection, like the global section.
            match = None if value.lower() == "all" else value
        elif match is None:
            config.options.setdefault(key, SshdValue(value, path, number))
        else:
            config.matched.append((key, SshdValue(value, path, number, match)))


def read_sshd_config(host: HostRoot, path: str = "/etc/ssh/sshd_config") -> SshdConfig:
    """sshd's configuration with Includes followed; ``present`` is False without the file."""
    if not host.exists(path):
        return SshdConfig(present=False)
    config = SshdConfig()
    _read_sshd(host, path, config, None, 0)
    return config


# --- other host files -------------------------------------------------------------------------


def parse_shadow_passwords(text: str, source: str = "/etc/shadow") -> list[tuple[str, str]]:
    """(name, password field) of every account in a shadow (or passwd) file."""
    entries = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith(("#", "+", "-")):
            continue
        fields = line.split(":")
        if len(fields) < 2 or not fields[0]:
            raise ParseError(source, "expected 'name:password:...'", line=number)
        entries.append((fields[0], fields[1]))
    return entries


def _config_lines(text: str, source: str, separator: str) -> Iterator[tuple[int, str, str]]:
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if separator == "equals":
            key, sep, value = line.partition("=")
            if not sep:
                raise ParseError(source, "expected 'key = value'", line=number)
        else:
            key, *rest = line.split(None, 1)
            value = rest[0] if rest else ""
        yield number, key.strip(), value.strip()


# --- evaluation -------------------------------------------------------------------------------


def _judge(what: str, actual: str, expect: Predicate, where: str = "") -> Outcome:
    try:
        holds = expect.holds(actual)
    except ValueError as exc:
        return Outcome("Err", f"{what}{where}: {exc}")
    if holds:
        return _PASS
    return Outcome("Fail", f"{what} is {actual}{where}, expected {expect.describe()}")


def _missing(result: BaselineResult, what: str) -> Outcome:
    return Outcome(result, f"{what} does not exist" if result != "Pass" else "")


def _file_mode(host: HostRoot, test: FileMode) -> Outcome:
    if not host.exists(test.path):
        return _missing(test.missing, test.path)
    mode = stat.S_IMODE(host.stat(test.path).st_mode)
    if mode & ~test.max_mode:
        return Outcome("Fail", f"{test.path} has mode {mode:o}, expected {test.max_mode:o}")
    return _PASS


def _file_owner(host: HostRoot, test: FileOwner, accounts: Accounts) -> Outcome:
    if not host.exists(test.path):
        return _missing(test.missing, test.path)
    info = host.stat(test.path)
    user = accounts.user_name(info.st_uid) or str(info.st_uid)
    group = next((g.name for g in accounts.groups if g.gid == info.st_gid), str(info.st_gid))
    if user != test.user or group not in test.groups:
        expected = f"{test.user}:{'|'.join(test.groups)}"
        return Outcome("Fail", f"{test.path} is owned by {user}:{group}, expected {expected}")
    return _PASS


def _sshd_option(test: SshdOption, config: SshdConfig) -> Outcome:
    if not config.present:
        return _PASS  # no sshd_config: sshd does not start, there is no SSH server to check
    key = test.option.lower()
    found = config.options.get(key)
    if found is None:
        outcome = _judge(test.option, test.default, test.expect, " (OpenSSH default)")
    else:
        outcome = _judge(test.option, found.value, test.expect, f" ({found.where()})")
    failures = [outcome] if outcome.result != "Pass" else []
    for name, value in config.matched:
        if name == key:
            judged = _judge(test.option, value.value, test.expect, f" ({value.where()})")
            if judged.result != "Pass":
                failures.append(judged)
    return _combine(failures)


def _config_value(host: HostRoot, test: ConfigValue) -> Outcome:
    value, where = test.default, " (default)"
    if host.exists(test.path):
        text = host.read_text(test.path)
        for number, key, found in _config_lines(text, test.path, test.separator):
            if key == test.key:
                value, where = found, f" ({test.path}:{number})"
    elif test.default is not None:
        where = f" ({test.path} does not exist; default)"
    if value is None:
        return Outcome("Fail", f"{test.key} is not set in {test.path}")
    return _judge(test.key, value, test.expect, where)


def _limits(host: HostRoot, test: LimitsValue) -> Outcome:
    files = ["/etc/security/limits.conf"]
    if host.exists("/etc/security/limits.d"):
        names = host.listdir("/etc/security/limits.d")
        files += [f"/etc/security/limits.d/{n}" for n in names if n.endswith(".conf")]
    value: tuple[str, str] | None = None
    for path in files:
        if not host.exists(path):
            continue
        for number, raw in enumerate(host.read_text(path).splitlines(), start=1):
            words = raw.split("#", 1)[0].split()
            everyone_hard = len(words) == 4 and words[0] == "*" and words[1] in ("hard", "-")
            if everyone_hard and words[2] == test.item:
                value = (words[3], f" ({path}:{number})")
    if value is None:
        return Outcome("Fail", f"no hard '{test.item}' limit is set for every user ('*')")
    return _judge(f"the hard {test.item} limit", value[0], test.expect, value[1])


def _kernel_param(host: HostRoot, test: KernelParam) -> Outcome:
    path = "/proc/sys/" + test.name.replace(".", "/")
    if not host.exists(path):
        return _missing(test.missing, path)
    return _judge(test.name, host.read_text(path).strip(), test.expect)


def _world_writable(host: HostRoot, test: NoWorldWritable) -> Outcome:
    findings: list[str] = []
    unreadable: list[str] = []
    seen = 0
    stack = [(d, 0) for d in reversed(test.dirs)]
    while stack:
        path, depth = stack.pop()
        try:
            info = host.stat(path, follow_symlinks=False)
        except HostReadError:
            continue  # gone, or a top directory this distribution does not have
        # Symlinks are mode 777 by nature, and a linked /bin is walked as /usr/bin.
        if stat.S_ISLNK(info.st_mode):
            continue
        seen += 1
        if seen > test.max_entries:
            return Outcome("Err", f"stopped after {test.max_entries} entries; not all checked")
        writable = info.st_mode & stat.S_IWOTH
        if stat.S_ISREG(info.st_mode) and writable:
            findings.append(path)
        elif stat.S_ISDIR(info.st_mode):
            if writable and not info.st_mode & stat.S_ISVTX:
                findings.append(f"{path}/ (no sticky bit)")
            if depth < test.max_depth:
                try:
                    names = host.listdir(path)
                except HostReadError:
                    unreadable.append(path)
                    continue
                stack += [(f"{path.rstrip('/')}/{n}", depth + 1) for n in reversed(names)]
    if findings:
        more = f" and {len(findings) - 10} more" if len(findings) > 10 else ""
        return Outcome("Fail", "world-writable: " + ", ".join(findings[:10]) + more)
    if unreadable:
        return Outcome("Err", "cannot read " + ", ".join(unreadable[:5]))
    return _PASS


def _unit_stem(name: str) -> str:
    stem = name.split("@", 1)[0]
    for suffix in (".service", ".socket", ".path", ".timer"):
        stem = stem.removesuffix(suffix)
    return stem


def _enabled_units(host: HostRoot, units: Sequence[str]) -> list[str]:
    # Only names are looked at, never link targets: in a fixture tree an absolute link
    # would point into the machine running the tests.
    wanted = set(units)
    found = []
    for wants in _subdirs(host, "/etc/systemd/system", ".wants"):
        found += [f"{wants}/{u}" for u in host.listdir(wants) if _unit_stem(u) in wanted]
    for level in _subdirs(host, "/etc/runlevels"):
        found += [f"{level}/{n}" for n in host.listdir(level) if n in wanted]
    for rc in (f"/etc/rc{level}.d" for level in "2345"):
        if host.exists(rc):
            # SysV links are S<two-digit order><name>.
            found += [f"{rc}/{n}" for n in host.listdir(rc) if n[:1] == "S" and n[3:] in wanted]
    return found


def _subdirs(host: HostRoot, parent: str, suffix: str = "") -> list[str]:
    if not host.exists(parent):
        return []
    paths = [f"{parent}/{n}" for n in host.listdir(parent) if n.endswith(suffix)]
    return [p for p in paths if stat.S_ISDIR(host.stat(p, follow_symlinks=False).st_mode)]


def _enabled_inetd(host: HostRoot, services: Sequence[str]) -> list[str]:
    found = []
    if host.exists("/etc/inetd.conf"):
        for number, raw in enumerate(host.read_text("/etc/inetd.conf").splitlines(), start=1):
            words = raw.split()
            if words and not words[0].startswith("#") and words[0] in services:
                found.append(f"/etc/inetd.conf:{number} ({words[0]})")
    if host.exists("/etc/xinetd.d"):
        for name in host.listdir("/etc/xinetd.d"):
            if name in services:
                text = host.read_text(f"/etc/xinetd.d/{name}")
                if re.search(r"^\s*disable\s*=\s*no\b", text, re.MULTILINE):
                    found.append(f"/etc/xinetd.d/{name}")
    return found


def _shadow(host: HostRoot, test: NoEmptyPasswords) -> Outcome:
    empty = []
    for path in (test.shadow_file, test.accounts_file):
        if host.exists(path):
            empty += [n for n, pw in parse_shadow_passwords(host.read_text(path), path) if not pw]
    if empty:
        return Outcome("Fail", "empty password: " + ", ".join(dict.fromkeys(empty)))
    return _PASS


def _uid0(host: HostRoot, test: OnlyRootUid0) -> Outcome:
    users = parse_passwd(host.read_text(test.accounts_file), test.accounts_file)
    others = [u.name for u in users if u.uid == 0 and u.name != "root"]
    return Outcome("Fail", "uid 0: " + ", ".join(others)) if others else _PASS


def _combine(outcomes: Sequence[Outcome]) -> Outcome:
    failed = [o for o in outcomes if o.result == "Fail"]
    errors = [o for o in outcomes if o.result == "Err"]
    if failed:
        return Outcome("Fail", "; ".join(o.finding for o in failed))
    if errors:
        return Outcome("Err", "; ".join(o.finding for o in errors))
    return _PASS


@dataclass
class _Run:
    """What one evaluation pass reads once and shares between checks."""

    host: HostRoot
    _sshd: dict[str, SshdConfig] = field(default_factory=dict)
    _accounts: Accounts | None = None

    def sshd(self, path: str) -> SshdConfig:
        if path not in self._sshd:
            self._sshd[path] = read_sshd_config(self.host, path)
        return self._sshd[path]

    def accounts(self) -> Accounts:
        if self._accounts is None:
            self._accounts = Accounts(self.host)
        return self._accounts

    def run(self, test: Test) -> Outcome:  # noqa: PLR0911, PLR0912  # one case per test type
        """The outcome of ``test``; a host that cannot be read or parsed gives Err."""
        host = self.host
        try:
            match test:
                case AllOf(tests):
                    return _combine([self.run(t) for t in tests])
                case FileMode():
                    return _file_mode(host, test)
                case FileOwner():
                    return _file_owner(host, test, self.accounts())
                case SshdOption():
                    return _sshd_option(test, self.sshd(test.config))
                case ConfigValue():
                    return _config_value(host, test)
                case LimitsValue():
                    return _limits(host, test)
                case KernelParam():
                    return _kernel_param(host, test)
                case NoWorldWritable():
                    return _world_writable(host, test)
                case ServiceDisabled(units, inetd):
                    enabled = _enabled_units(host, units) + _enabled_inetd(host, inetd)
                    return Outcome("Fail", "enabled: " + ", ".join(enabled)) if enabled else _PASS
                case ServiceEnabled(units):
                    if _enabled_units(host, units):
                        return _PASS
                    return Outcome("Fail", f"none of {', '.join(units)} is enabled")
                case AnyPathExists(paths):
                    if any(host.exists(p) for p in paths):
                        return _PASS
                    return Outcome("Fail", f"none of {', '.join(paths)} exists")
                case NoEmptyPasswords():
                    return _shadow(host, test)
                case OnlyRootUid0():
                    return _uid0(host, test)
        except (HostReadError, ParseError) as exc:
            return Outcome("Err", str(exc))


def evaluate(check: Check, host: HostRoot) -> Outcome:
    """The outcome of one check on ``host``."""
    return _Run(host).run(check.test)


class BaselineCollector:
    """Runs the baseline checks (Periodic/Security, default priority Low)."""

    spec = BASELINE_SPEC

    def __init__(
        self,
        host: HostRoot,
        checks: Sequence[Check] = CHECKS,
        *,
        send_all: bool = False,
        disabled: frozenset[str] = frozenset(),
    ) -> None:
        self.host = host
        self.checks = tuple(c for c in checks if c.id not in disabled)
        self.send_all = send_all

    def results(self) -> list[tuple[Check, Outcome]]:
        """Every enabled check with its outcome, in check order."""
        run = _Run(self.host)
        return [(check, run.run(check.test)) for check in self.checks]

    def collect(self, now: datetime) -> Sequence[Event]:
        """One OSBaseline event: the checks that did not pass (all of them with ``send_all``)."""
        rows = [
            _row(check, outcome)
            for check, outcome in self.results()
            if self.send_all or outcome.result != "Pass"
        ]
        return [OSBaselineEvent.create(rows, at=now)]

    def close(self) -> None:
        """Nothing to release."""


def _row(check: Check, outcome: Outcome) -> OSBaseline:
    details = {"RuleId": check.id, "Remediation": check.remediation}
    if outcome.result == "Fail":
        details["Finding"] = outcome.finding
    return OSBaseline(
        description=check.description,
        cce_id=check.cce_id or check.id,
        result=outcome.result,
        error=outcome.finding if outcome.result == "Err" else "",
        severity=check.severity,
        extra_details=details,
    )
