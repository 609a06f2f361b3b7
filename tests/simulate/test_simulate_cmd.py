"""``iotsec simulate``: its options, and a real run against ``iotsec up`` in a child process."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from iotsec.cli import COMMANDS, main


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _iotsec(*args: str, data_dir: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "iotsec", *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Path]:
    """``iotsec up`` in a child process; yields its data dir."""
    data = tmp_path / "data"
    output = tmp_path / "hub.out"
    with output.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "iotsec",
                "up",
                "--data-dir",
                str(data),
                "--mqtt-port",
                str(_free_port()),
                "--https-port",
                str(_free_port()),
                "--hub-name",
                "sim-hub",
                "--no-local-agent",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while not (data / "server.json").exists():
            assert process.poll() is None, output.read_text()
            assert time.monotonic() < deadline, "the hub did not start"
            time.sleep(0.1)
        yield data
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _cli(capsys: pytest.CaptureFixture[str], *args: str, data: Path) -> Any:
    """Run a read-only command in this process (no interpreter start-up); its JSON output."""
    capsys.readouterr()
    assert main([*args, "--data-dir", str(data)]) == 0
    return json.loads(capsys.readouterr().out)


def test_simulate_is_a_registered_command() -> None:
    assert "simulate" in COMMANDS


def test_list_scenarios_names_each_with_its_alerts(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--list-scenarios"]) == 0
    out = capsys.readouterr().out
    for name in ("bruteforce", "reverse-shell", "miner", "ti-connection", "download-exec"):
        assert f"\n{name} " in f"\n{out}"
    assert "IoT_Bruteforce_Fail, IoT_Bruteforce_Success" in out


def test_print_stix_writes_the_demo_feed(capsys: pytest.CaptureFixture[str]) -> None:
    from iotsec.simulate import scenario_indicators  # noqa: PLC0415

    assert main(["simulate", "--print-stix"]) == 0
    assert json.loads(capsys.readouterr().out) == scenario_indicators()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--scenario", "brutforce"], "did you mean 'bruteforce'?"),
        (["--devices", "0"], "at least one device"),
        (["--start", "2024-05-06T10:00:00"], "needs a time zone"),
        (["--speed", "-1"], "speed must be positive"),
    ],
)
def test_bad_options_are_refused_before_touching_the_hub(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert main(["simulate", *args, "--data-dir", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err


def test_without_a_hub_it_says_how_to_start_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["simulate", "--devices", "1", "--data-dir", str(tmp_path)]) == 1
    assert "iotsec up" in capsys.readouterr().err


# ServiceClient hands httpx its CA file as a path string, which httpx 0.28 deprecates; the
# warning is the CLI's to fix, and subprocess runs of the same commands never see it.
def test_a_simulated_fleet_reaches_the_workspace(
    hub: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = _iotsec(
        "simulate",
        "--devices",
        "3",
        "--duration",
        "5",
        "--speed",
        "600",
        "--scenario",
        "bruteforce",
        "--seed",
        "9",
        data_dir=hub,
    )
    out = run.stdout
    assert out.count("created sim-") == 3
    assert "3 devices ready: 3 created, 0 reused" in out
    assert "3 of 3 devices connected" in out
    assert "50 simulated minutes" in out
    assert (
        "95/95 events played; expected alerts: IoT_Bruteforce_Fail, IoT_Bruteforce_Success" in out
    )
    assert "SharedAccessKey" not in out + run.stderr
    victim = out.split("scenario bruteforce on ", 1)[1].split(" ", 1)[0]

    devices = _cli(capsys, "device", "list", "--format", "json", data=hub)
    simulated = sorted(d["deviceId"] for d in devices if d["deviceId"].startswith("sim-"))
    assert len(simulated) == 3 and victim in simulated
    twin = _cli(capsys, "device", "twin", "show", victim, data=hub)
    assert twin["tags"]["simulated"] == "true" and twin["tags"]["SecurityGroup"]

    # The workspace ingests from the hub's log in micro-batches: wait for the last of them.
    kql = (
        "SecurityIoTRawEvent | summarize n = count() by DeviceId, RawEventName, RemoteAddress,"
        " Result = tostring(EventDetails.Result)"
    )
    deadline = time.monotonic() + 20
    while True:
        rows = _cli(capsys, "query", kql, "--format", "json", data=hub)
        per_device = {r["DeviceId"] for r in rows if r["RawEventName"] == "SystemInformation"}
        attack = {
            (r["RemoteAddress"], r["Result"]): r["n"]
            for r in rows
            if r["DeviceId"] == victim
            and r["RawEventName"] == "Login"
            and r["RemoteAddress"].startswith("203.0.113.")
        }
        if (per_device == set(simulated) and sum(attack.values()) >= 32) or (
            time.monotonic() > deadline
        ):
            break
        time.sleep(0.5)
    assert per_device == set(simulated)
    (attacker,) = {address for address, _ in attack}
    assert attack == {(attacker, "Fail"): 30, (attacker, "Success"): 2}

    again = ["simulate", "--devices", "3", "--duration", "1", "--seed", "9"]
    assert main([*again, "--data-dir", str(hub)]) == 0
    assert "3 devices ready: 0 created, 3 reused" in capsys.readouterr().out
