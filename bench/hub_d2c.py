"""Device-to-cloud throughput and ack latency of one hub process, over TLS MQTT, QoS 1.

Run: python bench/hub_d2c.py [--connections N] [--seconds S] [--rate R] [--latency-seconds S]

Starts ``iotsec up`` in a child process with N devices registered, opens N TLS MQTT
connections from this process (the load generator) and publishes realistic security messages
of about 4 KB (ASC agent events, as many as fit), QoS 1. The hub acknowledges a message only
once it is durable in the log (fsynced), so every PUBACK counted is a message on disk.

1. sustained: every connection keeps ``--window`` publishes in flight for S seconds (after a
   warm-up); prints acknowledged messages/s, and the CPU time the hub and the load generator
   spent per message.
2. latency: the connections together offer R messages/s at fixed times (open loop) for
   ``--latency-seconds``; prints the ack latency from each message's scheduled time (so a
   stalled sender counts against the hub too) at p50, p99 and max.

Targets (issue: hub): >= 3,000 messages/s sustained; p99 <= 50 ms at 1,000 messages/s.
Both processes share the machine, so on a 2-core box the load generator takes one core.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sqlite3
import ssl
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from corpus import realistic_message  # bench/ is not a package
from hubload import (
    HubProcess,
    MqttDevice,
    connect_all,
    cpu_seconds,
    raise_fd_limit,
    thread_cpu_seconds,
)

TARGET_RATE = 3000.0
TARGET_P99 = 0.050
MESSAGE_BYTES = 4096


def four_kb_message() -> tuple[bytes, int]:
    """The largest realistic message of at most 4 KB, and its event count."""
    events = 1
    while len(realistic_message(events + 1)) <= MESSAGE_BYTES:
        events += 1
    return realistic_message(events), events


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _check(devices: list[MqttDevice]) -> None:
    for device in devices:
        if device.lost is not None:
            raise SystemExit(f"a connection was lost: {device.lost!r}")


async def sustained(
    hub: HubProcess, devices: list[MqttDevice], window: int, warmup: float, seconds: float
) -> None:
    """Closed loop: each connection keeps ``window`` publishes in flight."""
    loop = asyncio.get_running_loop()
    acked = 0
    stop = False

    def make_on_ack(device: MqttDevice) -> None:
        def on_ack(_stamp: float) -> None:
            nonlocal acked
            acked += 1
            if not stop:
                device.publish(0.0)

        device.on_ack = on_ack

    for device in devices:
        make_on_ack(device)
        for _ in range(window):
            device.publish(0.0)
    await asyncio.sleep(warmup)
    _check(devices)
    start, start_acked = loop.time(), acked
    hub_cpu, own_cpu = cpu_seconds(hub.pid), _own_cpu()
    loop_cpu, other_cpu = thread_cpu_seconds(hub.pid)
    await asyncio.sleep(seconds)
    elapsed, count = loop.time() - start, acked - start_acked
    hub_cpu, own_cpu = cpu_seconds(hub.pid) - hub_cpu, _own_cpu() - own_cpu
    loop_now, other_now = thread_cpu_seconds(hub.pid)
    loop_cpu, other_cpu = loop_now - loop_cpu, other_now - other_cpu
    stop = True
    while any(d.in_flight for d in devices):
        _check(devices)
        await asyncio.sleep(0.05)
    rate = count / elapsed
    verdict = "meets" if rate >= TARGET_RATE else "MISSES"
    print(
        f"sustained: {rate:,.0f} messages/s acked over {elapsed:.1f} s "
        f"({len(devices)} connections x {window} in flight); {verdict} >= {TARGET_RATE:,.0f}"
    )
    print(
        f"  CPU per message: hub {hub_cpu / count * 1e6:,.0f} us "
        f"({hub_cpu / elapsed:.0%} of a core), load generator {own_cpu / count * 1e6:,.0f} us "
        f"({own_cpu / elapsed:.0%} of a core)"
    )
    print(
        f"  hub threads: event loop {loop_cpu / elapsed:.0%} of a core, "
        f"others (log writer, ...) {other_cpu / elapsed:.0%}"
    )


async def fixed_rate(devices: list[MqttDevice], rate: float, seconds: float) -> None:
    """Open loop: ``rate`` messages/s spread evenly over the connections, at fixed times."""
    loop = asyncio.get_running_loop()
    latencies: list[float] = []

    def on_ack(scheduled: float) -> None:
        latencies.append(loop.time() - scheduled)

    interval = len(devices) / rate
    start = loop.time() + 0.5
    end = start + seconds

    async def sender(index: int, device: MqttDevice) -> None:
        device.on_ack = on_ack
        due = start + index / rate
        while due < end:
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            device.publish(due)
            due += interval

    await asyncio.gather(*(sender(i, d) for i, d in enumerate(devices)))
    deadline = loop.time() + 30
    while any(d.in_flight for d in devices) and loop.time() < deadline:
        _check(devices)
        await asyncio.sleep(0.05)
    _check(devices)
    cuts = statistics.quantiles(latencies, n=100)
    p50, p99 = cuts[49], cuts[98]
    verdict = "meets" if p99 <= TARGET_P99 else "MISSES"
    print(
        f"latency at {rate:,.0f} messages/s offered ({len(latencies) / seconds:,.0f}/s acked, "
        f"{seconds:.0f} s): p50 {p50 * 1e3:.1f} ms, p99 {p99 * 1e3:.1f} ms, "
        f"max {max(latencies) * 1e3:.1f} ms; {verdict} p99 <= {TARGET_P99 * 1e3:.0f} ms"
    )


async def run(hub: HubProcess, args: argparse.Namespace, body: bytes) -> int:
    """Both phases over the same connections; returns how many messages the hub acked."""
    devices = await connect_all(hub, hub.credentials)
    for device in devices:
        device.prepare(body)
    await sustained(hub, devices, args.window, args.warmup, args.seconds)
    await fixed_rate(devices, args.rate, args.latency_seconds)
    await asyncio.gather(*(device.close() for device in devices))
    return sum(device.acked for device in devices)


def _stored(data_dir: Path) -> int:
    with sqlite3.connect(data_dir / "log.db") as db:
        (count,) = db.execute("SELECT count(*) FROM records WHERE kind = 'security'").fetchone()
    return int(count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=150, help="devices (default 150)")
    parser.add_argument("--seconds", type=float, default=20.0, help="sustained phase (20)")
    parser.add_argument("--warmup", type=float, default=3.0, help="before measuring (3)")
    parser.add_argument("--window", type=int, default=1, help="publishes in flight each (1)")
    parser.add_argument("--rate", type=float, default=1000.0, help="latency phase rate (1000)")
    parser.add_argument("--latency-seconds", type=float, default=15.0, help="latency phase (15)")
    parser.add_argument(
        "--no-workspace",
        action="store_true",
        help="measure the hub alone (iotsec up --no-workspace)",
    )
    args = parser.parse_args()
    raise_fd_limit()
    body, events = four_kb_message()
    print(
        f"hub_d2c: {args.connections} TLS MQTT connections, QoS 1, security messages of "
        f"{len(body):,} bytes ({events} events); {os.cpu_count()} CPUs shared by hub and load"
    )
    print(
        "  system: "
        + (
            "hub alone (--no-workspace)"
            if args.no_workspace
            else "hub + workspace ingest into DuckDB in the same process"
        )
    )
    with HubProcess(args.connections, workspace=not args.no_workspace) as hub:
        try:
            acked = asyncio.run(run(hub, args, body))
        except (OSError, ssl.SSLError) as exc:
            raise SystemExit(f"load generator failed: {exc!r}\nhub log:\n{hub.log_tail()}") from exc
        hub.stop()
        stored = _stored(hub.data_dir)
        problems = hub.log_problems()
    verdict = "every acked message is durable" if stored >= acked else "ACKED MESSAGES ARE MISSING"
    print(f"  acked {acked:,}; in the hub's log after it stopped {stored:,}: {verdict}")
    print(f"  hub log: {len(problems)} warnings or errors", *problems[:5], sep="\n    ")


if __name__ == "__main__":
    main()
