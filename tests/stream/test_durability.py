"""An acknowledged append survives kill -9 of the process that made it."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

from iotsec.stream import SqliteLog

APPENDER = Path(__file__).with_name("appender.py")
ACKS = 300


async def test_every_acknowledged_record_survives_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        str(APPENDER),
        str(path),
        "4",
        "8",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert child.stdout is not None
    acked: list[tuple[int, int, bytes]] = []
    try:
        while len(acked) < ACKS:
            line = await asyncio.wait_for(child.stdout.readline(), timeout=30)
            if not line.endswith(b"\n"):  # the child died on its own: show why
                _, err = await child.communicate()
                raise AssertionError(f"appender exited early:\n{err.decode()}")
            fields = line.split()
            for i in range(0, len(fields), 3):
                acked.append((int(fields[i]), int(fields[i + 1]), fields[i + 2]))
    finally:
        child.send_signal(signal.SIGKILL)
        await child.wait()
    assert child.returncode == -signal.SIGKILL

    async with await SqliteLog.open(path, partitions=4) as log:
        lost = []
        for partition, offset, body in acked:
            found = await log.read(partition, offset, limit=1)
            if not found or found[0].offset != offset or found[0].record.body != body:
                lost.append((partition, offset, body))
        assert lost == []
        for partition in range(4):
            end = await log.end_offset(partition)
            entries = await log.read(partition, 0, limit=end + 1)
            assert [e.offset for e in entries] == list(range(end))  # dense, nothing torn
