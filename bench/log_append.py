"""Append throughput and latency of the embedded durable log (SqliteLog), by concurrency.

Run: python bench/log_append.py [--seconds S] [--dir DIR]

Each case opens a fresh log in a temporary directory and runs N coroutines, each appending one
4 KB record at a time and waiting for it (as the hub does before it acknowledges a device
message), for S seconds. Prints appends/s, append latency p50/p99, and records per transaction,
which shows group commit at work. Every append is fsynced (synchronous=FULL), so the figures
depend on the disk: run it on the disk the log will live on (--dir).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

from iotsec.stream import Record, SqliteLog

RECORD_BYTES = 4096
CONCURRENCY = (1, 10, 100, 1000)


async def _case(
    directory: Path, concurrency: int, seconds: float
) -> tuple[int, float, list[float], int]:
    """Appends made, elapsed seconds, each append's latency, and transactions, for one case."""
    body = os.urandom(RECORD_BYTES)
    latencies: list[float] = []
    async with await SqliteLog.open(directory / f"log-{concurrency}.db") as log:
        deadline = time.perf_counter() + seconds

        async def appender(task: int) -> None:
            record = Record(f"device-{task}", "d2c", body, {"protocol": "mqtt"}, time.time())
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                await log.append([record])
                latencies.append(time.perf_counter() - start)

        start = time.perf_counter()
        await asyncio.gather(*(appender(task) for task in range(concurrency)))
        elapsed = time.perf_counter() - start
        return len(latencies), elapsed, latencies, log.transactions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="time per case (default 3)")
    parser.add_argument("--dir", type=Path, default=None, help="where to put the log files")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="iotsec-bench-") as tmp:
        print(f"{RECORD_BYTES}-byte records, synchronous=FULL, in {tmp}")
        print(f"{'appenders':>9} {'appends/s':>10} {'MB/s':>6} {'p50 ms':>7} {'p99 ms':>7} "
              f"{'records/txn':>11}")  # fmt: skip
        for concurrency in CONCURRENCY:
            count, elapsed, latencies, transactions = asyncio.run(
                _case(Path(tmp), concurrency, args.seconds)
            )
            cuts = statistics.quantiles(latencies, n=100)
            print(
                f"{concurrency:>9} {count / elapsed:>10,.0f} "
                f"{count * RECORD_BYTES / elapsed / 1e6:>6.1f} "
                f"{cuts[49] * 1e3:>7.2f} {cuts[98] * 1e3:>7.2f} {count / transactions:>11.1f}"
            )


if __name__ == "__main__":
    main()
