"""Freshness: how soon an event the hub acknowledged can be queried in the workspace.

Run: python bench/workspace_freshness.py [--probes N] [--load R] [--events E]

Starts ``iotsec up`` (hub and workspace in one process, the embedded default) in a child
process. A probe device sends one security message with a fresh event id over TLS MQTT; when
the hub's PUBACK arrives (the message is durable), the clock starts, and the bench asks the
query API (HTTPS, KQL) for that event id every 20 ms until a row comes back. Meanwhile
``--load`` messages/s of ``--events`` distinct events each arrive from other devices, so ingest
has real work to do. Prints p50, p95 and max from ack to queryable.

Target (issue: workspace): p95 <= 2 s with ``iotsec up`` running.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import contextlib

from hubload import HOST, DeviceCredential, HubProcess  # bench/ is not a package
from iotsec.cli.query_cmd import QUERY_PATH
from iotsec.cli.service_client import ServiceClient
from iotsec.schema import (
    ConnectionCreate,
    ConnectionCreateEvent,
    ProcessCreate,
    ProcessCreateEvent,
)
from iotsec.sdk import AsyncDeviceClient

TARGET_P95 = 2.0


def _connection_string(credential: DeviceCredential) -> str:
    return f"HostName={HOST};DeviceId={credential.device_id};SharedAccessKey={credential.key}"


def _events(count: int) -> list[ProcessCreateEvent | ConnectionCreateEvent]:
    now = datetime.now(UTC)
    out: list[ProcessCreateEvent | ConnectionCreateEvent] = []
    for i in range(count):
        if i % 2:
            row = ConnectionCreate(
                remote_address=f"10.1.{i % 250}.7",
                remote_port="443",
                direction="Out",
                protocol="TCP",
                process_id=4000 + i,
                executable="/usr/bin/curl",
            )
            out.append(ConnectionCreateEvent.create([row], at=now))
        else:
            proc = ProcessCreate(
                executable="/bin/sh",
                process_id=4000 + i,
                parent_process_id=1,
                user_id="0",
                command_line=f"sh -c job{i}",
            )
            out.append(ProcessCreateEvent.create([proc], at=now))
    return out


async def _client(hub: HubProcess, credential: DeviceCredential) -> AsyncDeviceClient:
    client = AsyncDeviceClient.from_connection_string(
        _connection_string(credential),
        transport="mqtt",
        ca_file=str(hub.ca_file),
        port=hub.mqtt_port,
    )
    await client.connect()
    return client


async def _load(client: AsyncDeviceClient, rate: float, events: int, stop: asyncio.Event) -> int:
    sent = 0
    started = time.monotonic()
    while not stop.is_set():
        due = started + sent / rate
        delay = due - time.monotonic()
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            continue
        await client.send_security_message(_events(events))
        sent += 1
    return sent


def _visible(service: ServiceClient, event_id: str) -> bool:
    kql = f"SecurityIoTRawEvent | where EventId == '{event_id}' | count"
    answer = service.request("POST", QUERY_PATH, body={"query": kql, "language": "kql"})
    rows = answer.get("rows") or []
    return bool(rows) and int(rows[0][0]) > 0


async def _probe(client: AsyncDeviceClient, service: ServiceClient) -> float:
    [event] = _events(1)
    await client.send_security_message([event])
    acked = time.monotonic()
    while not await asyncio.to_thread(_visible, service, event.id):
        await asyncio.sleep(0.02)
    return time.monotonic() - acked


async def _run(args: argparse.Namespace) -> None:
    loaders = max(1, args.loaders) if args.load > 0 else 0
    with HubProcess(devices=1 + loaders) as hub:
        probe = await _client(hub, hub.credentials[0])
        clients = [await _client(hub, c) for c in hub.credentials[1:]]
        service = ServiceClient(hub.data_dir)
        stop = asyncio.Event()
        load = [
            asyncio.create_task(_load(c, args.load / len(clients), args.events, stop))
            for c in clients
        ]
        await asyncio.sleep(2.0)  # let the load settle
        samples = []
        for _ in range(args.probes):
            samples.append(await _probe(probe, service))
            await asyncio.sleep(args.gap)
        stop.set()
        sent = sum(await asyncio.gather(*load))
        for c in [probe, *clients]:
            await c.close()
        service.close()
        problems = hub.log_problems()
    samples.sort()
    p95 = samples[min(len(samples) - 1, round(0.95 * (len(samples) - 1)))]
    print(
        f"background load: {args.load:g} messages/s x {args.events} events ({sent:,} messages sent)"
    )
    print(
        f"ack -> queryable over {len(samples)} probes: p50 {statistics.median(samples):.3f} s,"
        f" p95 {p95:.3f} s, max {samples[-1]:.3f} s  (target p95 <= {TARGET_P95:g} s)"
    )
    if problems:
        print("hub log problems:", *problems[:10], sep="\n  ")


def main() -> None:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--probes", type=int, default=100)
    parser.add_argument("--gap", type=float, default=0.1, help="seconds between probes")
    parser.add_argument("--load", type=float, default=100.0, help="background messages/s")
    parser.add_argument("--events", type=int, default=20, help="events per background message")
    parser.add_argument("--loaders", type=int, default=4, help="background devices")
    args = parser.parse_args()
    uuid.uuid4()  # fail early if the platform has no randomness source
    asyncio.run(_run(args))


if __name__ == "__main__":
    main()
