"""Workspace benchmark: 10M realistic raw events in, ten investigation queries out.

Run: ``python bench/workspace_ingest_query.py [--rows N] [--batch N] [--runs N] [--dir D]``.
Prints the ingest rate (through ``WorkspaceStore.append``, the path ingest uses), bytes per
event on disk after CHECKPOINT, and p50/p95 latency of ten queries as SQL (and as KQL when
``iotsec.workspace.kql`` compiles them). Targets: >= 200,000 rows/s, <= 60 bytes/event,
p95 <= 300 ms for time-window and per-device queries, <= 1 s for full scans.

Rows are generated in the store's ingest form (``iotsec.workspace.rawevents.INGEST_SCHEMA``)
in a separate in-memory DuckDB (vectorized; no Python dicts per row):
3,000 devices, an event-name mix dominated by process and connection events, timestamps
spread over 30 days in arrival order, payload fields without a column as small JSON objects.
"""

# ruff: noqa: E501 - query texts and JSON templates read best one per line

from __future__ import annotations

import argparse
import concurrent.futures
import importlib
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa  # type: ignore[import-untyped]  # pyarrow ships no type hints
import pyarrow.compute as pc  # type: ignore[import-untyped]

from iotsec.workspace.query import QueryLimits, Workspace
from iotsec.workspace.store import WorkspaceStore

END = datetime(2025, 6, 1, tzinfo=UTC)
START = END - timedelta(days=30)
DEVICES = 3000
RESOURCE = "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.Devices/IotHubs/bench-hub"

# (name, category, weight %): a fleet of Linux agents, triggered events dominating.
_MIX = (
    ("ProcessCreate", "Triggered", 40),
    ("ConnectionCreate", "Triggered", 30),
    ("ProcessTerminate", "Triggered", 10),
    ("Login", "Triggered", 5),
    ("ListeningPorts", "Periodic", 7),
    ("LocalUsers", "Periodic", 3),
    ("FirewallConfiguration", "Periodic", 2),
    ("SystemInformation", "Periodic", 1),
    ("OSBaseline", "Periodic", 1),
    ("DroppedEventsStatistics", "Periodic", 1),
)


def _generate_sql(offset: int, count: int, total: int) -> str:
    cases, bound = [], 0
    for name, _, weight in _MIX:
        bound += weight
        cases.append(f"WHEN r < {bound} THEN '{name}'")
    span_us = int((END - START).total_seconds() * 1_000_000)
    return f"""
    WITH base AS (
      SELECT i,
        (hash(i * 7 + 1) % 100)::INT AS r,
        (hash(i * 13 + 5) % {DEVICES})::INT AS dev,
        (hash(i * 17 + 3) % 40)::INT AS exe,
        (hash(i * 19 + 11) % 250)::INT AS host,
        gen_random_uuid()::VARCHAR AS eid,
        TIMESTAMPTZ '{START.isoformat()}' + to_microseconds(({span_us}::HUGEINT * i // {total})::BIGINT) AS t
      FROM range({offset}, {offset + count}) AS g(i)
    ), named AS (
      SELECT *, CASE {" ".join(cases)} ELSE 'Diagnostic' END AS name FROM base
    )
    SELECT
      t AS TimeGenerated,
      t + INTERVAL 2 SECOND AS TimeStamp,
      '2.1.0' AS AgentVersion,
      printf('a0000000-0000-4000-8000-%012d', dev) AS AgentId,
      '{RESOURCE}' AS AssociatedResourceId,
      '0000' AS AzureSubscriptionId,
      'bench-hub' AS HubName,
      printf('device-%04d', dev) AS DeviceId,
      NULL::VARCHAR AS ModuleId,
      eid AS EventId,
      NULL::VARCHAR AS EventIdText,
      0 AS RowIndex,
      name AS RawEventName,
      CASE WHEN name IN ('ProcessCreate','ConnectionCreate','ProcessTerminate','Login','Diagnostic')
           THEN 'Triggered' ELSE 'Periodic' END AS RawEventCategory,
      'Security' AS RawEventType,
      name = 'OSBaseline' AS IsEmpty,
      ((dev % 5) - 2) * 60 AS LocalOffset,
      NULL::BIGINT AS LocalSkew,
      -- Payload fields without a column of their own (EventDetails is rebuilt by the view).
      CASE name
        WHEN 'ProcessTerminate' THEN '{{"ExitStatus":0}}'
        WHEN 'LocalUsers' THEN printf('{{"GroupNames":"user%d;sudo","GroupIds":"%d;27"}}', exe, 1000 + exe)
        WHEN 'FirewallConfiguration' THEN '{{"Enabled":true,"Action":"Allow","Priority":1,"ChainName":"INPUT"}}'
        WHEN 'SystemInformation' THEN '{{"OSName":"Debian GNU/Linux","OSVersion":"12","Architecture":"x86_64","TotalPhysicalMemoryInKB":2048000}}'
        WHEN 'DroppedEventsStatistics' THEN '{{"Queue":"Low","CollectedEvents":120,"DroppedEvents":0}}'
      END AS Details,
      CASE WHEN name IN ('ProcessCreate','ProcessTerminate','ConnectionCreate') THEN '/usr/bin/prog' || exe END AS Executable,
      CASE WHEN name = 'ProcessCreate' THEN 'prog' || exe || ' --run ' || host END AS CommandLine,
      CASE WHEN name IN ('ProcessCreate','ProcessTerminate','ConnectionCreate') THEN i % 32768 END AS ProcessId,
      CASE WHEN name = 'ProcessCreate' THEN 1 END AS ParentProcessId,
      CASE WHEN name = 'ProcessCreate' THEN 'root' WHEN name = 'Login' THEN 'user' || exe END AS UserName,
      CASE WHEN name = 'ProcessCreate' THEN '0' END AS UserId,
      CASE WHEN name = 'ConnectionCreate' THEN '10.' || host || '.' || exe || '.1'
           WHEN name = 'Login' THEN '203.0.113.' || host END AS RemoteAddress,
      CASE WHEN name = 'ConnectionCreate' THEN '443' END AS RemotePort,
      NULL::VARCHAR AS LocalAddress,
      CASE WHEN name = 'ListeningPorts' THEN (20 + exe)::VARCHAR END AS LocalPort,
      CASE WHEN name IN ('ConnectionCreate','ListeningPorts') THEN 'TCP' END AS Protocol,
      CASE WHEN name = 'ConnectionCreate' THEN 'Out' END AS Direction,
      CASE WHEN name = 'Login' THEN CASE WHEN r % 3 = 0 THEN 'Fail' ELSE 'Success' END END AS Result,
      1::BIGINT AS HitCount
    FROM named
    """


def _queries(now: datetime) -> list[tuple[str, str, str, str]]:
    """(kind, label, SQL, KQL) for ten typical investigation queries."""
    dev = "device-0042"
    ago1h, ago24h = (now - timedelta(hours=1)).isoformat(), (now - timedelta(days=1)).isoformat()
    ago7d = (now - timedelta(days=7)).isoformat()
    raw = "SecurityIoTRawEvent"
    return [
        ("window", "events by name, last hour",
         f"SELECT RawEventName, count(*) n FROM {raw} WHERE TimeGenerated > '{ago1h}' GROUP BY 1 ORDER BY 2 DESC",
         f"{raw} | where TimeGenerated > ago(1h) | summarize n = count() by RawEventName | order by n desc"),
        ("window", "failed logins by device, last 24h",
         f"SELECT DeviceId, RemoteAddress, count(*) n FROM {raw} WHERE TimeGenerated > '{ago24h}' AND RawEventName = 'Login' AND Result = 'Fail' GROUP BY ALL ORDER BY n DESC LIMIT 20",
         f"{raw} | where TimeGenerated > ago(24h) and RawEventName == 'Login' and Result == 'Fail' | summarize n = count() by DeviceId, RemoteAddress | top 20 by n"),
        ("window", "root processes via EventDetails, last hour",
         f"SELECT DeviceId, json_extract_string(EventDetails, '$.CommandLine') cl FROM {raw} WHERE TimeGenerated > '{ago1h}' AND json_extract_string(EventDetails, '$.UserName') = 'root' LIMIT 100",
         f"{raw} | where TimeGenerated > ago(1h) | where extractjson('$.UserName', EventDetails) == 'root' | project DeviceId, cl = extractjson('$.CommandLine', EventDetails) | take 100"),
        ("device", "one device, last 24h, newest first",
         f"SELECT TimeGenerated, RawEventName, Executable, RemoteAddress FROM {raw} WHERE DeviceId = '{dev}' AND TimeGenerated > '{ago24h}' ORDER BY TimeGenerated DESC LIMIT 100",
         f"{raw} | where DeviceId == '{dev}' and TimeGenerated > ago(24h) | project TimeGenerated, RawEventName, Executable, RemoteAddress | order by TimeGenerated desc | take 100"),
        ("device", "one device's executables, last 7 days",
         f"SELECT Executable, count(*) n, min(TimeGenerated) first FROM {raw} WHERE DeviceId = '{dev}' AND TimeGenerated > '{ago7d}' AND RawEventName = 'ProcessCreate' GROUP BY 1 ORDER BY 2 DESC",
         f"{raw} | where DeviceId == '{dev}' and TimeGenerated > ago(7d) and RawEventName == 'ProcessCreate' | summarize n = count(), first = min(TimeGenerated) by Executable | order by n desc"),
        ("device", "one device's destinations, all time",
         f"SELECT RemoteAddress, count(*) n FROM {raw} WHERE DeviceId = '{dev}' AND RawEventName = 'ConnectionCreate' GROUP BY 1 ORDER BY 2 DESC LIMIT 20",
         f"{raw} | where DeviceId == '{dev}' and RawEventName == 'ConnectionCreate' | summarize n = count() by RemoteAddress | top 20 by n"),
        ("window", "who talked to 10.7.3.1, last 24h",
         f"SELECT DeviceId, count(*) n FROM {raw} WHERE TimeGenerated > '{ago24h}' AND RemoteAddress = '10.7.3.1' GROUP BY 1",
         f"{raw} | where TimeGenerated > ago(24h) and RemoteAddress == '10.7.3.1' | summarize n = count() by DeviceId"),
        ("scan", "count by event name, all",
         f"SELECT RawEventName, count(*) n FROM {raw} GROUP BY 1 ORDER BY 2 DESC",
         f"{raw} | summarize n = count() by RawEventName | order by n desc"),
        ("scan", "top 10 devices, all",
         f"SELECT DeviceId, count(*) n FROM {raw} GROUP BY 1 ORDER BY 2 DESC LIMIT 10",
         f"{raw} | summarize n = count() by DeviceId | top 10 by n"),
        ("scan", "hourly histogram, all",
         f"SELECT time_bucket(INTERVAL 1 HOUR, TimeGenerated) h, count(*) n FROM {raw} GROUP BY 1 ORDER BY 1",
         f"{raw} | summarize n = count() by bin(TimeGenerated, 1h) | order by TimeGenerated asc"),
    ]  # fmt: skip


def _time(run: Callable[[], object], runs: int) -> tuple[float, float]:
    run()  # warm-up
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        run()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    p95 = samples[min(len(samples) - 1, round(0.95 * (len(samples) - 1)))]
    return statistics.median(samples), p95


def main() -> None:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--batch", type=int, default=50_000, help="rows per append (ingest: 50k)")
    parser.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="parallel appenders, one store lane each (ingest: one per core)",
    )
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    folder = args.dir or Path(tempfile.mkdtemp(prefix="iotsec-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "workspace.duckdb"
    path.unlink(missing_ok=True)

    generator = duckdb.connect()
    store = WorkspaceStore(path)
    workers = max(1, args.workers)
    # Generated first (not counted), split by device as the log's partitions split them: one
    # list of batches per ingest worker, each appending in its own lane.
    lanes: list[list[pa.Table]] = [[] for _ in range(workers)]
    started = time.perf_counter()
    chunk = max(args.batch * workers, 100_000)
    for offset in range(0, args.rows, chunk):
        table = generator.sql(
            _generate_sql(offset, min(chunk, args.rows - offset), args.rows)
        ).to_arrow_table()
        device = pc.cast(pc.utf8_slice_codeunits(table.column("DeviceId"), 7), pa.int64())
        lane_of = device.to_numpy() % workers
        for lane in range(workers):
            part = table.filter(pa.array(lane_of == lane))
            lanes[lane].extend(
                part.slice(start, args.batch) for start in range(0, part.num_rows, args.batch)
            )
    generated = time.perf_counter() - started

    def ingest(lane: int) -> None:
        for batch in lanes[lane]:
            store.append("SecurityIoTRawEvent", batch, lane=lane)

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        list(pool.map(ingest, range(workers)))
    appended = time.perf_counter() - started
    lanes.clear()
    started = time.perf_counter()
    store.checkpoint()
    checkpoint = time.perf_counter() - started
    rows = store.count("SecurityIoTRawEvent")
    size = path.stat().st_size + (
        path.with_suffix(".duckdb.wal").stat().st_size
        if path.with_suffix(".duckdb.wal").exists()
        else 0
    )
    print(
        f"rows: {rows:,} in batches of {args.batch:,} from {workers} workers"
        f"  (generation {generated:.1f} s, not counted)"
    )
    print(
        f"ingest: {rows / appended:,.0f} rows/s append-only ({appended:.1f} s); "
        f"{rows / (appended + checkpoint):,.0f} rows/s with the final CHECKPOINT ({checkpoint:.1f} s)"
    )
    print(f"disk: {size / rows:.1f} bytes/event ({size / 2**20:.0f} MiB)")

    workspace = Workspace(store, limits=QueryLimits(timeout=120))
    try:
        kql: object = importlib.import_module("iotsec.workspace.kql")
        compile_kql = getattr(kql, "compile_kql", None)
    except ImportError:
        compile_kql = None
    print(
        f"\n{'kind':7} {'query':45} {'SQL p50':>9} {'SQL p95':>9} {'KQL p50':>9} {'KQL p95':>9}  rows"
    )
    for kind, label, sql, kql_text in _queries(END):
        p50, p95 = _time(lambda sql=sql: workspace.query_sql(sql), args.runs)
        count = workspace.query_sql(sql).table.num_rows
        kql_cols = f"{'-':>9} {'-':>9}"
        if compile_kql is not None:
            try:
                k50, k95 = _time(lambda t=kql_text: workspace.query_kql(t, now=END), args.runs)
                kql_cols = f"{k50:8.1f}ms {k95:8.1f}ms"
            except Exception as exc:  # a benchmark reports a failing query and goes on
                kql_cols = f"  KQL failed: {type(exc).__name__}: {str(exc).splitlines()[0][:60]}"
        print(f"{kind:7} {label:45} {p50:7.1f}ms {p95:7.1f}ms {kql_cols}  {count}")
    store.close()
    print(f"\nworkspace file: {path}")


if __name__ == "__main__":
    main()
