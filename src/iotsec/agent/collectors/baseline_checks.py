"""The OS baseline: CIS-style Linux checks written as data.

A :class:`Check` names what is checked (id, severity, description, remediation) and holds a
declarative test: a frozen value such as ``SshdOption("PermitRootLogin", Equals("no"),
default="prohibit-password")`` that :mod:`iotsec.agent.collectors.baseline` evaluates against a
HostRoot. Adding a check is adding a value to :data:`CHECKS`; no code changes.

Ids follow the numbering of the CIS Distribution Independent Linux benchmark (v2.0), which the
distribution benchmarks renumber; the id is a stable key, the description says what it means.
Checks without a CIS counterpart use ``IOTSEC-*`` ids. ``cce_id`` is set only where the CCE
identifier is known (ASC's own OSBaseline samples name them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from iotsec.schema.payloads import BaselineResult, BaselineSeverity

__all__ = [
    "CHECKS",
    "AllOf",
    "AnyPathExists",
    "AtLeast",
    "AtMost",
    "Between",
    "Check",
    "ConfigValue",
    "Equals",
    "FileMode",
    "FileOwner",
    "KernelParam",
    "LimitsValue",
    "NoEmptyPasswords",
    "NoWorldWritable",
    "OneOf",
    "OnlyRootUid0",
    "Predicate",
    "ServiceDisabled",
    "ServiceEnabled",
    "SshdOption",
    "Test",
]


# --- predicates on one configured value -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Equals:
    """The value equals ``value`` (case-insensitive)."""

    value: str

    def holds(self, actual: str) -> bool:
        return actual.strip().lower() == self.value.lower()

    def describe(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class OneOf:
    """The value is one of ``values`` (case-insensitive)."""

    values: tuple[str, ...]

    def holds(self, actual: str) -> bool:
        return actual.strip().lower() in {v.lower() for v in self.values}

    def describe(self) -> str:
        return " or ".join(self.values)


def _integer(actual: str) -> int:
    text = actual.strip()
    digits = text.removeprefix("-")
    if not digits.isascii() or not digits.isdigit() or len(digits) > 18:
        raise ValueError(f"{actual!r} is not an integer")
    return int(text)


@dataclass(frozen=True, slots=True)
class AtMost:
    """The value is an integer no greater than ``limit`` (ValueError if not an integer)."""

    limit: int

    def holds(self, actual: str) -> bool:
        return _integer(actual) <= self.limit

    def describe(self) -> str:
        return f"at most {self.limit}"


@dataclass(frozen=True, slots=True)
class AtLeast:
    """The value is an integer no smaller than ``limit`` (ValueError if not an integer)."""

    limit: int

    def holds(self, actual: str) -> bool:
        return _integer(actual) >= self.limit

    def describe(self) -> str:
        return f"at least {self.limit}"


@dataclass(frozen=True, slots=True)
class Between:
    """The value is an integer in ``[low, high]`` (ValueError if not an integer)."""

    low: int
    high: int

    def holds(self, actual: str) -> bool:
        return self.low <= _integer(actual) <= self.high

    def describe(self) -> str:
        return f"between {self.low} and {self.high}"


Predicate = Equals | OneOf | AtMost | AtLeast | Between


# --- tests: what to look at on the host -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FileMode:
    """``path`` has no permission bits beyond ``max_mode``; an absent file gets ``missing``."""

    path: str
    max_mode: int
    missing: BaselineResult = "Pass"


@dataclass(frozen=True, slots=True)
class FileOwner:
    """``path`` is owned by ``user`` and one of ``groups`` (names, via /etc/passwd and group)."""

    path: str
    user: str = "root"
    groups: tuple[str, ...] = ("root",)
    missing: BaselineResult = "Pass"


@dataclass(frozen=True, slots=True)
class SshdOption:
    """sshd's effective ``option`` (Includes followed, first value wins) satisfies ``expect``.

    ``default`` is OpenSSH's built-in value when the option is not set. A Match block that sets
    a value failing ``expect`` fails the check too: some clients get that setting.
    """

    option: str
    expect: Predicate
    default: str
    config: str = "/etc/ssh/sshd_config"


@dataclass(frozen=True, slots=True)
class ConfigValue:
    """``key`` of a ``KEY value`` (or ``key = value``) file satisfies ``expect``; last one wins.

    ``default`` is what the program assumes when the key (or the file) is absent; None fails.
    """

    path: str
    key: str
    expect: Predicate
    default: str | None = None
    separator: Literal["space", "equals"] = "space"


@dataclass(frozen=True, slots=True)
class LimitsValue:
    """pam_limits' hard ``item`` for every user (``*``) satisfies ``expect``.

    Read from /etc/security/limits.conf, then /etc/security/limits.d/*.conf; the last entry wins.
    """

    item: str
    expect: Predicate


@dataclass(frozen=True, slots=True)
class KernelParam:
    """sysctl ``name`` (read from /proc/sys) satisfies ``expect``; absent gets ``missing``."""

    name: str
    expect: Predicate
    missing: BaselineResult = "Err"


@dataclass(frozen=True, slots=True)
class NoWorldWritable:
    """No regular file under ``dirs`` is world-writable, nor any directory without the sticky bit.

    The walk skips symlinks and stops after ``max_entries`` (then the result is Err).
    """

    dirs: tuple[str, ...]
    max_entries: int = 50_000
    max_depth: int = 12


@dataclass(frozen=True, slots=True)
class ServiceDisabled:
    """No unit or service named in ``units`` starts at boot, nor any ``inetd`` service.

    Enabled means: a systemd ``*.wants`` link in /etc/systemd/system, an OpenRC runlevel entry,
    a SysV ``/etc/rc[2-5].d/S*`` link, an active /etc/inetd.conf line or an xinetd file with
    ``disable = no``.
    """

    units: tuple[str, ...]
    inetd: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ServiceEnabled:
    """One of ``units`` starts at boot (systemd wants link, OpenRC runlevel or SysV link)."""

    units: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AnyPathExists:
    """One of ``paths`` exists (an installed program, for instance)."""

    paths: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class NoEmptyPasswords:
    """No account has an empty password field, in /etc/shadow or /etc/passwd."""

    shadow_file: str = "/etc/shadow"
    accounts_file: str = "/etc/passwd"


@dataclass(frozen=True, slots=True)
class OnlyRootUid0:
    """``root`` is the only account with uid 0."""

    accounts_file: str = "/etc/passwd"


@dataclass(frozen=True, slots=True)
class AllOf:
    """Every test passes; the findings of those that do not are joined."""

    tests: tuple[Test, ...]


Test = (
    FileMode
    | FileOwner
    | SshdOption
    | ConfigValue
    | LimitsValue
    | KernelParam
    | NoWorldWritable
    | ServiceDisabled
    | ServiceEnabled
    | AnyPathExists
    | NoEmptyPasswords
    | OnlyRootUid0
    | AllOf
)


@dataclass(frozen=True, slots=True)
class Check:
    """One baseline rule: what it checks, how bad a failure is, how to fix it, and the test."""

    id: str
    severity: BaselineSeverity
    description: str
    remediation: str
    test: Test
    cce_id: str | None = None


def _sysctl(name: str, value: str, *, missing: BaselineResult = "Err") -> KernelParam:
    return KernelParam(name, Equals(value), missing)


def _both(template: str, value: str) -> AllOf:
    """The sysctl for ``all`` interfaces and for ``default`` (new interfaces)."""
    return AllOf(tuple(_sysctl(template.format(which), value) for which in ("all", "default")))


_SYSTEM_DIRS = ("/etc", "/usr/bin", "/usr/sbin", "/bin", "/sbin", "/usr/local/bin")

CHECKS: tuple[Check, ...] = (
    # 1.5 Additional process hardening
    Check(
        "CIS-1.5.1a",
        "Warning",
        "Core dumps should be restricted: a hard core limit of 0 for every user.",
        "Add '* hard core 0' to /etc/security/limits.conf or a file in limits.d.",
        LimitsValue("core", Equals("0")),
    ),
    Check(
        "CIS-1.5.1b",
        "Warning",
        "Set-uid programs should not dump core (fs.suid_dumpable = 0).",
        "Set fs.suid_dumpable = 0 in /etc/sysctl.d/ and run 'sysctl -p'.",
        _sysctl("fs.suid_dumpable", "0"),
    ),
    Check(
        "CIS-1.5.3",
        "Important",
        "Address space layout randomization should be fully enabled (randomize_va_space = 2).",
        "Set kernel.randomize_va_space = 2 in /etc/sysctl.d/.",
        _sysctl("kernel.randomize_va_space", "2"),
    ),
    # 2.1 inetd services, 2.2 special purpose services
    Check(
        "CIS-2.1.6",
        "Critical",
        "The rsh, rlogin and rexec servers should be disabled: they send passwords in clear.",
        "Disable and remove the rsh server (rsh.socket, rlogin.socket, rexec.socket, inetd lines).",
        ServiceDisabled(("rsh", "rlogin", "rexec"), inetd=("shell", "login", "exec")),
    ),
    Check(
        "CIS-2.1.8",
        "Critical",
        "The telnet server should be disabled: it sends passwords in clear.",
        "Disable and remove telnetd (telnet.socket, inetd 'telnet' line, OpenRC telnetd).",
        ServiceDisabled(("telnet", "telnetd", "inetutils-telnetd"), inetd=("telnet",)),
    ),
    Check(
        "CIS-2.1.9",
        "Important",
        "The TFTP server should be disabled: it serves files without authentication.",
        "Disable and remove the TFTP server (tftpd-hpa, atftpd, inetd 'tftp' line).",
        ServiceDisabled(("tftp", "tftpd", "tftpd-hpa", "atftpd", "in.tftpd"), inetd=("tftp",)),
    ),
    Check(
        "CIS-2.2.3",
        "Warning",
        "The avahi-daemon service should be disabled.",
        "Run 'systemctl disable --now avahi-daemon.service avahi-daemon.socket'.",
        ServiceDisabled(("avahi-daemon",)),
        cce_id="CCE-4365-3",
    ),
    Check(
        "CIS-2.2.4",
        "Warning",
        "The CUPS print service should be disabled.",
        "Run 'systemctl disable --now cups.service cups.socket cups.path'.",
        ServiceDisabled(("cups", "cupsd", "cups-browsed")),
        cce_id="CCE-4425-5",
    ),
    Check(
        "CIS-2.2.7",
        "Warning",
        "NFS and RPC services should be disabled unless the device serves files.",
        "Disable rpcbind and the NFS server ('systemctl disable --now rpcbind nfs-server').",
        ServiceDisabled(("rpcbind", "nfs-server", "nfs-kernel-server")),
    ),
    Check(
        "CIS-2.2.14",
        "Warning",
        "The SNMP daemon should be disabled unless the device is managed over SNMP.",
        "Disable snmpd ('systemctl disable --now snmpd').",
        ServiceDisabled(("snmpd",)),
    ),
    # 3.1 and 3.2 Network parameters
    Check(
        "CIS-3.1.1",
        "Warning",
        "IP forwarding should be disabled on a device that is not a router.",
        "Set net.ipv4.ip_forward = 0 in /etc/sysctl.d/.",
        _sysctl("net.ipv4.ip_forward", "0"),
    ),
    Check(
        "CIS-3.1.2",
        "Warning",
        "The device should not send ICMP redirects.",
        "Set net.ipv4.conf.all.send_redirects = 0 and net.ipv4.conf.default.send_redirects = 0.",
        _both("net.ipv4.conf.{}.send_redirects", "0"),
    ),
    Check(
        "CIS-3.2.1",
        "Warning",
        "Source-routed packets should not be accepted.",
        "Set net.ipv4.conf.all.accept_source_route = 0 (and default).",
        _both("net.ipv4.conf.{}.accept_source_route", "0"),
    ),
    Check(
        "CIS-3.2.2",
        "Warning",
        "ICMP redirects should not be accepted (IPv4 and IPv6).",
        "Set net.ipv4.conf.all.accept_redirects = 0 (and default), "
        "net.ipv6.conf.all.accept_redirects = 0.",
        AllOf(
            (
                _both("net.ipv4.conf.{}.accept_redirects", "0"),
                _sysctl("net.ipv6.conf.all.accept_redirects", "0", missing="Pass"),
            )
        ),
    ),
    Check(
        "CIS-3.2.5",
        "Informational",
        "Broadcast ICMP requests should be ignored.",
        "Set net.ipv4.icmp_echo_ignore_broadcasts = 1.",
        _sysctl("net.ipv4.icmp_echo_ignore_broadcasts", "1"),
    ),
    Check(
        "CIS-3.2.7",
        "Warning",
        "Reverse path filtering should be enabled.",
        "Set net.ipv4.conf.all.rp_filter = 1 and net.ipv4.conf.default.rp_filter = 1.",
        _both("net.ipv4.conf.{}.rp_filter", "1"),
    ),
    Check(
        "CIS-3.2.8",
        "Important",
        "TCP SYN cookies should be enabled against SYN floods.",
        "Set net.ipv4.tcp_syncookies = 1.",
        _sysctl("net.ipv4.tcp_syncookies", "1"),
    ),
    # 4.1 Auditing
    Check(
        "CIS-4.1.1.1",
        "Important",
        "auditd should be installed, so logins and process starts are recorded.",
        "Install the audit package (auditd on Debian, audit on RHEL and Alpine).",
        AnyPathExists(("/sbin/auditd", "/usr/sbin/auditd", "/usr/bin/auditd")),
    ),
    Check(
        "CIS-4.1.1.2",
        "Important",
        "The auditd service should be enabled.",
        "Run 'systemctl enable --now auditd' (OpenRC: 'rc-update add auditd').",
        ServiceEnabled(("auditd",)),
    ),
    # 5.2 SSH server
    Check(
        "CIS-5.2.1",
        "Important",
        "/etc/ssh/sshd_config should be owned by root and not readable by others (600).",
        "Run 'chown root:root /etc/ssh/sshd_config && chmod 600 /etc/ssh/sshd_config'.",
        AllOf((FileMode("/etc/ssh/sshd_config", 0o600), FileOwner("/etc/ssh/sshd_config"))),
    ),
    Check(
        "CIS-5.2.2",
        "Critical",
        "sshd should accept only SSH protocol 2.",
        "Remove 'Protocol' lines other than 'Protocol 2' from sshd_config.",
        SshdOption("Protocol", Equals("2"), default="2"),
        cce_id="CCE-4325-7",
    ),
    Check(
        "CIS-5.2.3",
        "Informational",
        "sshd should log at level INFO or VERBOSE, so logins are recorded.",
        "Set 'LogLevel INFO' (or VERBOSE) in sshd_config.",
        SshdOption("LogLevel", OneOf(("INFO", "VERBOSE")), default="INFO"),
    ),
    Check(
        "CIS-5.2.4",
        "Warning",
        "SSH X11 forwarding should be disabled.",
        "Set 'X11Forwarding no' in sshd_config.",
        SshdOption("X11Forwarding", Equals("no"), default="no"),
    ),
    Check(
        "CIS-5.2.5",
        "Warning",
        "SSH MaxAuthTries should be 4 or less, to slow password guessing.",
        "Set 'MaxAuthTries 4' in sshd_config.",
        SshdOption("MaxAuthTries", AtMost(4), default="6"),
    ),
    Check(
        "CIS-5.2.6",
        "Important",
        "sshd should ignore .rhosts files.",
        "Set 'IgnoreRhosts yes' in sshd_config.",
        SshdOption("IgnoreRhosts", Equals("yes"), default="yes"),
        cce_id="CCE-4030-3",
    ),
    Check(
        "CIS-5.2.7",
        "Important",
        "SSH host-based authentication should be disabled.",
        "Set 'HostbasedAuthentication no' in sshd_config.",
        SshdOption("HostbasedAuthentication", Equals("no"), default="no"),
        cce_id="CCE-4370-3",
    ),
    Check(
        "CIS-5.2.8",
        "Critical",
        "SSH root login should be disabled.",
        "Set 'PermitRootLogin no' in sshd_config; log in as a user and use sudo.",
        SshdOption("PermitRootLogin", Equals("no"), default="prohibit-password"),
    ),
    Check(
        "CIS-5.2.9",
        "Critical",
        "SSH login with an empty password should be refused.",
        "Set 'PermitEmptyPasswords no' in sshd_config.",
        SshdOption("PermitEmptyPasswords", Equals("no"), default="no"),
        cce_id="CCE-3660-8",
    ),
    Check(
        "CIS-5.2.10",
        "Warning",
        "Users should not be able to set environment options for sshd.",
        "Set 'PermitUserEnvironment no' in sshd_config.",
        SshdOption("PermitUserEnvironment", Equals("no"), default="no"),
        cce_id="CCE-14716-5",
    ),
    Check(
        "CIS-5.2.12",
        "Warning",
        "Idle SSH sessions should time out (ClientAliveInterval 1-300, ClientAliveCountMax 3).",
        "Set 'ClientAliveInterval 300' and 'ClientAliveCountMax 3' in sshd_config.",
        AllOf(
            (
                SshdOption("ClientAliveInterval", Between(1, 300), default="0"),
                SshdOption("ClientAliveCountMax", AtMost(3), default="3"),
            )
        ),
    ),
    Check(
        "IOTSEC-SSH-1",
        "Important",
        "SSH password authentication should be disabled on devices: use keys or certificates.",
        "Set 'PasswordAuthentication no' in sshd_config (and in every Match block).",
        SshdOption("PasswordAuthentication", Equals("no"), default="yes"),
    ),
    # 5.3 and 5.4 Passwords
    Check(
        "CIS-5.3.1",
        "Warning",
        "New passwords should be at least 14 characters long (pam_pwquality minlen).",
        "Install libpam-pwquality and set 'minlen = 14' in /etc/security/pwquality.conf.",
        ConfigValue("/etc/security/pwquality.conf", "minlen", AtLeast(14), "8", separator="equals"),
    ),
    Check(
        "CIS-5.4.1.1",
        "Warning",
        "Passwords should expire within 365 days (PASS_MAX_DAYS).",
        "Set 'PASS_MAX_DAYS 365' in /etc/login.defs and 'chage --maxdays 365' existing users.",
        ConfigValue("/etc/login.defs", "PASS_MAX_DAYS", AtMost(365), "99999"),
    ),
    Check(
        "CIS-5.4.1.2",
        "Informational",
        "Passwords should not be changeable more than once a day (PASS_MIN_DAYS).",
        "Set 'PASS_MIN_DAYS 1' in /etc/login.defs.",
        ConfigValue("/etc/login.defs", "PASS_MIN_DAYS", AtLeast(1), "0"),
    ),
    Check(
        "CIS-5.4.1.3",
        "Informational",
        "Users should be warned 7 days or more before their password expires (PASS_WARN_AGE).",
        "Set 'PASS_WARN_AGE 7' in /etc/login.defs.",
        ConfigValue("/etc/login.defs", "PASS_WARN_AGE", AtLeast(7), "7"),
    ),
    # 6.1 System file permissions
    Check(
        "CIS-6.1.2",
        "Important",
        "/etc/passwd should be owned by root and mode 644 or stricter.",
        "Run 'chown root:root /etc/passwd && chmod 644 /etc/passwd'.",
        AllOf((FileMode("/etc/passwd", 0o644), FileOwner("/etc/passwd"))),
    ),
    Check(
        "CIS-6.1.3",
        "Critical",
        "/etc/shadow should be owned by root (group root or shadow) and mode 640 or stricter.",
        "Run 'chown root:shadow /etc/shadow && chmod 640 /etc/shadow'.",
        AllOf(
            (
                FileMode("/etc/shadow", 0o640),
                FileOwner("/etc/shadow", groups=("root", "shadow")),
            )
        ),
    ),
    Check(
        "CIS-6.1.4",
        "Important",
        "/etc/group should be owned by root and mode 644 or stricter.",
        "Run 'chown root:root /etc/group && chmod 644 /etc/group'.",
        AllOf((FileMode("/etc/group", 0o644), FileOwner("/etc/group"))),
    ),
    Check(
        "CIS-6.1.5",
        "Important",
        "/etc/gshadow should be owned by root (group root or shadow) and mode 640 or stricter.",
        "Run 'chown root:shadow /etc/gshadow && chmod 640 /etc/gshadow'.",
        AllOf(
            (
                FileMode("/etc/gshadow", 0o640),
                FileOwner("/etc/gshadow", groups=("root", "shadow")),
            )
        ),
    ),
    Check(
        "CIS-6.1.10",
        "Critical",
        "No file in system directories should be world-writable.",
        "Run 'chmod o-w' on the files named (and 'chmod +t' on the directories named).",
        NoWorldWritable(_SYSTEM_DIRS),
    ),
    # 6.2 User and group settings
    Check(
        "CIS-6.2.1",
        "Critical",
        "No account should have an empty password.",
        "Lock the accounts named ('passwd -l NAME') or give them a password.",
        NoEmptyPasswords(),
    ),
    Check(
        "CIS-6.2.5",
        "Critical",
        "root should be the only account with uid 0.",
        "Remove the other uid 0 accounts or give them their own uid.",
        OnlyRootUid0(),
    ),
)
