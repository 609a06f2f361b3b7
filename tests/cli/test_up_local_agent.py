"""``iotsec up`` with its agent for this machine: the first recommendations are about this host."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from iotsec.cli.local_agent import local_device_id


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _query(data: Path, kql: str) -> list[dict[str, object]]:
    done = subprocess.run(
        [sys.executable, "-m", "iotsec", "query", "--data-dir", str(data), "--format", "json", kql],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        return []
    rows: list[dict[str, object]] = json.loads(done.stdout)  # one JSON array of row objects
    return rows


def test_up_runs_an_agent_for_this_machine_and_recommends_within_a_minute(tmp_path: Path) -> None:
    data = tmp_path / "data"
    output = tmp_path / "up.out"
    argv = [sys.executable, "-m", "iotsec", "up", "--data-dir", str(data)]
    argv += ["--mqtt-port", str(_free_port()), "--https-port", str(_free_port()), "--no-console"]
    started = time.monotonic()
    with output.open("wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    device = local_device_id()
    try:
        rows: list[dict[str, object]] = []
        while time.monotonic() - started < 120 and not rows:
            assert process.poll() is None, output.read_text()
            time.sleep(1.0)
            if (data / "server.json").exists():
                rows = _query(
                    data,
                    f'SecurityRecommendation | where DeviceId == "{device}"'
                    " | project RecommendationName",
                )
        elapsed = time.monotonic() - started
        assert rows, f"no recommendation for {device} after {elapsed:.0f} s\n" + output.read_text()
        print(f"first recommendation for {device} after {elapsed:.1f} s")
        snapshot = _query(data, f'SecurityIoTRawEvent | where DeviceId == "{device}" | count')
        assert snapshot and int(str(snapshot[0]["Count"])) > 0
        key_file = data / "agent" / "connection-string"
        assert key_file.stat().st_mode & 0o077 == 0  # the module key is private
        assert "SharedAccessKey=" not in output.read_text()
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0, output.read_text()
    assert "first snapshot of this machine received" in output.read_text()  # progress shown
    agent_log = (data / "agent" / "agent.log").read_text()
    assert "Traceback" not in agent_log, agent_log
