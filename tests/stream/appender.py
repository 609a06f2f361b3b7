"""Child process of the kill -9 test: append forever, print each acknowledged append.

Run: python appender.py LOG_PATH PARTITIONS CONCURRENCY

Each line printed is ``partition offset body`` for every record of one append, written and
flushed only after ``append`` returned, so it is exactly what a device would have been
acknowledged. Stops by itself after 60 s in case the test that started it is gone.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from iotsec.stream import Record, SqliteLog


async def main(path: Path, partitions: int, concurrency: int) -> None:
    log = await SqliteLog.open(path, partitions=partitions)
    deadline = time.monotonic() + 60

    async def appender(task: int) -> None:
        i = 0
        while time.monotonic() < deadline:
            bodies = [f"{task}:{i}:{n}".encode() * 20 for n in range(2)]
            records = [
                Record(f"device-{task}", "d2c", body, {"n": str(i)}, time.time()) for body in bodies
            ]
            acks = await log.append(records)
            line = " ".join(f"{p} {o} {b.decode()}" for (p, o), b in zip(acks, bodies, strict=True))
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
            i += 1

    await asyncio.gather(*(appender(task) for task in range(concurrency)))
    await log.close()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])))
