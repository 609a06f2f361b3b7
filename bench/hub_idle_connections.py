"""Memory of idle device connections: hub RSS growth per TLS MQTT connection.

Run: python bench/hub_idle_connections.py [--connections N] [--step S]

Starts ``iotsec up`` in a child process with N devices registered (one identity per
connection: a second connection for an identity replaces the first), then opens N TLS MQTT
connections from this process, S at a time, each connected and authenticated (CONNACK 0) with
a long keep-alive, and then idle. After each step it prints the hub process's VmRSS; at the
end the growth per connection, overall and from the first step on (the marginal cost, without
one-time allocations such as the first TLS handshake's).

Target (issue: hub): under 50 KB per idle connection.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import ssl
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hubload import HubProcess, MqttDevice, connect_all, raise_fd_limit, rss_bytes

TARGET_BYTES = 50 * 1024
KEEPALIVE = 1200  # seconds: the hub would wait 1.5x this before dropping a silent device
SETTLE = 2.0


async def _rss_after_settling(pid: int) -> int:
    await asyncio.sleep(SETTLE)
    return rss_bytes(pid)


async def run(hub: HubProcess, step: int) -> list[tuple[int, int]]:
    """(connections, hub RSS) at the start and after each step."""
    points = [(0, await _rss_after_settling(hub.pid))]
    print(f"{0:>11,} connections: hub RSS {points[0][1] / 2**20:8.1f} MiB")
    devices: list[MqttDevice] = []
    credentials = hub.credentials
    for start in range(0, len(credentials), step):
        devices += await connect_all(hub, credentials[start : start + step], keepalive=KEEPALIVE)
        points.append((len(devices), await _rss_after_settling(hub.pid)))
        print(f"{len(devices):>11,} connections: hub RSS {points[-1][1] / 2**20:8.1f} MiB")
    gc.collect()  # ours, so that the client side does not swap the figures around
    lost = [d.device_id for d in devices if d.writer.is_closing() or d.reader.at_eof()]
    if lost:
        raise SystemExit(f"{len(lost)} connections were closed by the hub, e.g. {lost[0]}")
    await asyncio.gather(*(device.close() for device in devices))
    return points


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=5000, help="idle connections (5000)")
    parser.add_argument("--step", type=int, default=1000, help="connections per step (1000)")
    args = parser.parse_args()
    limit = raise_fd_limit()
    if limit < args.connections + 100:
        raise SystemExit(f"the open-file limit is {limit}; raise it (ulimit -Hn) to run this")
    print(f"hub_idle_connections: {args.connections:,} idle TLS MQTT connections to one hub")
    with HubProcess(args.connections) as hub:
        try:
            points = asyncio.run(run(hub, args.step))
        except (OSError, ssl.SSLError) as exc:
            raise SystemExit(f"connecting failed: {exc!r}\nhub log:\n{hub.log_tail()}") from exc
    (_, before), (first, at_first), (last, after) = points[0], points[1], points[-1]
    overall = (after - before) / last
    marginal = (after - at_first) / (last - first) if last > first else overall
    verdict = "meets" if overall < TARGET_BYTES else "MISSES"
    print(
        f"hub RSS growth per idle connection: {overall / 1024:.1f} KB overall, "
        f"{marginal / 1024:.1f} KB from {first:,} on; {verdict} < {TARGET_BYTES // 1024} KB"
    )


if __name__ == "__main__":
    main()
