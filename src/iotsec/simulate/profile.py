"""What a kind of device normally does: its accounts, daemons, jobs, peers and admins.

A profile is data. The benign generator reads it to produce a device's ordinary life, and the
attack scenarios read it to make an attack look like it happened on that device (the web server
that spawns the shell, the shell that exists there, the firewall tool it has). The profiles of
the demo fleet are in :mod:`iotsec.simulate.kinds`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

__all__ = [
    "Account",
    "AttackSurface",
    "BaselineCheck",
    "Chatter",
    "DeviceProfile",
    "FirewallRule",
    "Job",
    "Listener",
    "LoginHabits",
    "OsInfo",
    "Service",
    "Step",
]

Transport = Literal["TCP", "UDP"]
Direction = Literal["In", "Out"]


@dataclass(frozen=True, slots=True)
class Account:
    """A local account: its uid and its groups, primary group first, as ``(name, gid)``."""

    name: str
    uid: int
    groups: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class Listener:
    """A socket a service listens on."""

    protocol: Transport
    address: str
    port: int


@dataclass(frozen=True, slots=True)
class Service:
    """A long-running daemon, as ``ps`` and the audit log name it."""

    name: str
    executable: str
    command_line: str
    user: str
    listens: tuple[Listener, ...] = ()


@dataclass(frozen=True, slots=True)
class Step:
    """One process of a job or an admin session: the executable and its command line."""

    executable: str
    command_line: str


@dataclass(frozen=True, slots=True)
class Job:
    """A periodic job (a cron entry or a systemd timer).

    Runs every ``every``, ``at`` into the period in device local time (``every=1 day,
    at=6 h 25 min`` is 06:25 every day). ``steps`` run as a chain, each the child of the one
    before; the last one makes the ``connects``. ``launcher`` is the service that starts the
    chain (``cron``), or ``None`` for systemd (pid 1).
    """

    name: str
    every: timedelta
    at: timedelta
    user: str
    steps: tuple[Step, ...]
    connects: tuple[tuple[str, int, Transport], ...] = ()
    launcher: str | None = "cron"
    seconds: int = 2


@dataclass(frozen=True, slots=True)
class Chatter:
    """A service's recurring connections: NTP polls, DNS lookups, a peer that reconnects.

    ``Out``: the service connects to ``address:port``. ``In``: ``address`` connects to the
    service's local ``port``.
    """

    service: str
    direction: Direction
    address: str
    port: int
    protocol: Transport
    per_hour: float


@dataclass(frozen=True, slots=True)
class LoginHabits:
    """Who logs in over SSH, how often, and what they do then.

    They log in from their site's administrators' workstation on the management network.

    Sessions happen in local working hours (08:00-18:00). A share of them use a password, and a
    share of those start with one mistyped password: never more than one failure in a row.
    """

    admins: tuple[str, ...]
    sessions_per_day: float
    password_share: float
    typo_share: float
    commands: tuple[Step, ...]
    daemon: str
    shell: Step


@dataclass(frozen=True, slots=True)
class OsInfo:
    """What the SystemInformation snapshot reports."""

    name: str
    version: str
    vendor: str
    architecture: str
    bios_version: str | None
    boot_device: str
    memory_kb: int
    swap_kb: int


@dataclass(frozen=True, slots=True)
class BaselineCheck:
    """An OS baseline (CIS) check a device of this kind may fail."""

    cce_id: str
    description: str
    severity: Literal["Critical", "Important", "Warning", "Informational"]


@dataclass(frozen=True, slots=True)
class FirewallRule:
    """An INPUT rule of a deny-by-default firewall: allow ``protocol/port`` from ``source``."""

    protocol: Transport
    port: int
    source: str | None


@dataclass(frozen=True, slots=True)
class AttackSurface:
    """What an attacker finds on the device.

    ``entry`` is the service whose process spawns the attacker's first shell (a web UI with a
    command injection, say). ``bash`` is None where there is no bash (busybox devices), and
    ``downloader`` is ``curl`` or ``wget`` as ``(executable, name)``. ``iptables`` is the
    binary ``iptables`` resolves to, which is what the audit log names; ``ufw`` says if ufw is
    installed. ``web`` says whether ``entry`` is a web server (its account is a web account).
    """

    entry: str
    sh: str
    bash: str | None
    downloader: tuple[str, str]
    iptables: str
    ufw: bool
    python: str | None
    web: bool = False


@dataclass(frozen=True, slots=True)
class DeviceProfile:
    """A kind of device and its ordinary behaviour."""

    kind: str
    description: str
    group: str
    os: OsInfo
    accounts: tuple[Account, ...]
    services: tuple[Service, ...]
    jobs: tuple[Job, ...]
    chatter: tuple[Chatter, ...]
    logins: LoginHabits
    firewall: tuple[FirewallRule, ...]
    baseline: tuple[BaselineCheck, ...]
    attack: AttackSurface

    def service(self, name: str) -> Service:
        """The service called ``name``.

        Raises:
            KeyError: the profile has no such service.
        """
        for service in self.services:
            if service.name == name:
                return service
        raise KeyError(f"{self.kind} has no service {name!r}")

    def uid(self, user: str) -> str:
        """The uid of ``user`` as the wire carries it (a string).

        Raises:
            KeyError: the profile has no such account.
        """
        for account in self.accounts:
            if account.name == user:
                return str(account.uid)
        raise KeyError(f"{self.kind} has no account {user!r}")
