"""What the agent costs the device: CPU and memory of ``iotsec agent run`` under process churn.

Run (as root, for the netlink proc connector): python bench/agent_cost.py [--minutes 10]

Starts ``iotsec up`` in a child process (bench/hubload.py's HubProcess), registers one device,
and runs ``iotsec agent run`` as the device's security module at its default configuration
(no twin overrides, default budget). Meanwhile this process spawns ``--rate`` short processes
per second (a few distinct command lines, as cron jobs and scripts do). Every second it reads
the agent's /proc/<pid>/stat (utime + stime) and status (VmRSS).

Prints the agent's average CPU share of one core (whole run, and after the first minute),
its maximum and average RSS, and the events the agent collected: those the hub received
plus those still queued (Low events wait lowPriorityMessageFrequency, five hours by default).

Targets (issue: agent): average CPU <= 2% of one core; RSS <= 40 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hubload import HubProcess, cpu_seconds, rss_bytes  # bench/ is not a package
from iotsec.agent.config import OBJECT_NAME
from iotsec.schema import aggregation_of, decode_event, decode_message
from iotsec.stream import SqliteLog

TARGET_CPU_PERCENT = 2.0
TARGET_RSS_MB = 40.0
WARM_UP_S = 60.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
COMMANDS = (
    ["/bin/true"],
    ["/bin/sh", "-c", "exit 0"],
    ["/bin/sleep", "0"],
    ["/bin/true", "--backup"],
    ["/usr/bin/env", "true"],
)


def module_connection_string(hub: HubProcess, device_id: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "iotsec", "device", "connection-string", device_id,
         "--module", "azureiotsecurity", "--data-dir", str(hub.data_dir)],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    return done.stdout.strip()


def processes_created() -> int:
    """Processes (and threads) created on this machine since boot (``processes`` of /proc/stat)."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("processes "):
            return int(line.split()[1])
    raise RuntimeError("no 'processes' line in /proc/stat")


def user_system_seconds(pid: int) -> tuple[float, float]:
    """User and system CPU time of process ``pid`` (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLOCK_TICKS, int(fields[12]) / CLOCK_TICKS


def children_cpu_seconds(pid: int) -> float:
    """CPU time of the children ``pid`` has waited for (the commands the agent runs)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[13]) + int(fields[14])) / CLOCK_TICKS  # cutime, cstime


def start_agent(
    hub: HubProcess, workdir: Path, overrides: dict[str, object] | None = None
) -> subprocess.Popen[bytes]:
    secret = workdir / "cs.txt"
    secret.write_text(module_connection_string(hub, hub.credentials[0].device_id))
    secret.chmod(0o600)
    config = workdir / "agent.json"
    body: dict[str, object] = {
        "connectionStringFile": str(secret),
        "caFile": str(hub.ca_file),
        "stateDir": "state",
    }
    if overrides:
        body[OBJECT_NAME] = {name: {"value": value} for name, value in overrides.items()}
    config.write_text(json.dumps(body))
    with (workdir / "agent.log").open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "iotsec", "agent", "run", "--config", str(config),
             "--port", str(hub.mqtt_port), "--log-level", "WARNING"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip


def hub_events(data_dir: Path) -> collections.Counter[str]:
    """Security events in the hub's durable log, by name (ProcessCreate by hit count)."""
    counts: collections.Counter[str] = collections.Counter()

    async def read() -> None:
        log = await SqliteLog.open(data_dir / "log.db")
        try:
            for partition in range(log.partitions):
                offset = 0
                while batch := await log.read(partition, offset, 1000):
                    for entry in batch:
                        if entry.record.kind == "security":
                            for event in decode_message(entry.record.body).message.events:
                                counts[event.name] += _hits(event)
                    offset = batch[-1].offset + 1
        finally:
            await log.close()

    asyncio.run(read())
    return counts


def queued_events(queue_file: Path) -> collections.Counter[str]:
    """Events still in the agent's queue, by name (ProcessCreate by hit count)."""
    counts: collections.Counter[str] = collections.Counter()
    db = sqlite3.connect(f"file:{queue_file}?mode=ro", uri=True)
    try:
        for (body,) in db.execute("SELECT body FROM events"):
            event = decode_event(body)
            counts[event.name] += _hits(event)
    finally:
        db.close()
    return counts


def _hits(event: object) -> int:
    aggregation = aggregation_of(event)  # type: ignore[arg-type]  # every decoded event
    return aggregation.hit_count if aggregation is not None else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=20.0, help="processes spawned per second")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="PROPERTY=JSON",
        help="a twin property in the local file, to compare with the default (repeatable)",
    )
    args = parser.parse_args()
    overrides = {k: json.loads(v) for k, _, v in (item.partition("=") for item in args.set)}

    with HubProcess(devices=1, workspace=False) as hub, tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        agent = start_agent(hub, workdir, overrides)
        forks_before = processes_created()
        started = time.monotonic()
        deadline = started + args.minutes * 60
        next_spawn = started
        next_sample = started + 1.0
        spawned = 0
        rss: list[int] = []
        cpu_at_warm_up: float | None = None
        children: list[subprocess.Popen[bytes]] = []
        try:
            while (now := time.monotonic()) < deadline:
                if agent.poll() is not None:
                    raise SystemExit(f"the agent exited: {(workdir / 'agent.log').read_text()}")
                if now >= next_spawn:
                    command = COMMANDS[spawned % len(COMMANDS)]
                    children.append(subprocess.Popen(command))
                    spawned += 1
                    next_spawn += 1.0 / args.rate
                    children = [c for c in children if c.poll() is None]
                if now >= next_sample:
                    rss.append(rss_bytes(agent.pid))
                    if cpu_at_warm_up is None and now - started >= WARM_UP_S:
                        cpu_at_warm_up = cpu_seconds(agent.pid)
                        warm_up_at = now
                    next_sample += 1.0
                time.sleep(max(0.0, min(next_spawn, next_sample) - time.monotonic()))
            wall = time.monotonic() - started
            forks = processes_created() - forks_before
            cpu = cpu_seconds(agent.pid)
            user, system = user_system_seconds(agent.pid)
            cpu_children = children_cpu_seconds(agent.pid)
        finally:
            for child in children:
                child.wait()
            agent.send_signal(signal.SIGTERM)
            agent.wait(60)
        problems = [
            line
            for line in (workdir / "agent.log").read_text(errors="replace").splitlines()
            if " ERROR " in line or "Traceback" in line
        ]
        hub.stop()
        received = hub_events(hub.data_dir)
        queued = queued_events(workdir / "state" / "queue.db")

    average = cpu / wall * 100
    configuration = f"with {overrides}" if overrides else "at the default configuration"
    print(f"agent cost, {wall / 60:.1f} min {configuration}, {spawned} processes "
          f"spawned ({spawned / wall:.1f}/s)")  # fmt: skip
    print(f"  CPU, whole run:        {average:.2f}% of one core (target <= {TARGET_CPU_PERCENT}%)")
    print(f"  machine-wide forks:    {forks / wall:.1f}/s, this bench's and everything else's "
          "(the agent watches them all)")  # fmt: skip
    print(f"  agent CPU per fork:    {cpu / forks * 1e6:.0f} us")
    print(f"  CPU user / system:     {user / wall * 100:.2f}% / {system / wall * 100:.2f}%")
    print(f"  CPU of its commands:   {cpu_children / wall * 100:.2f}% of one core (nft, ...)")
    if cpu_at_warm_up is not None:
        steady = (cpu - cpu_at_warm_up) / (started + wall - warm_up_at) * 100
        print(f"  CPU, after 1 min:      {steady:.2f}% of one core")
    print(f"  RSS max / avg:         {max(rss) / 2**20:.1f} / {sum(rss) / len(rss) / 2**20:.1f} MB"
          f" (target <= {TARGET_RSS_MB:.0f} MB)")  # fmt: skip
    print(f"  events at the hub:     {dict(sorted(received.items()))}")
    print(f"  events still queued:   {dict(sorted(queued.items()))}")
    seen = received["ProcessCreate"] + queued["ProcessCreate"]
    print(f"  ProcessCreate hits:    {seen} (spawned here: {spawned}; the rest of the machine "
          "runs processes too)")  # fmt: skip
    if problems:
        print("  agent log problems:\n    " + "\n    ".join(problems[:10]))
    ok = average <= TARGET_CPU_PERCENT and max(rss) <= TARGET_RSS_MB * 2**20
    print("  within targets" if ok else "  OVER TARGET")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
