"""The README's commands and the docs' runnable examples work as written."""

from __future__ import annotations

import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from iotsec.cli import main

ROOT = Path(__file__).resolve().parents[1]
_RUNNABLE = re.compile(r"<!-- test: run -->\s*```python\n(.*?)```", re.DOTALL)


def _runnable_blocks() -> list[tuple[str, str]]:
    blocks = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for number, code in enumerate(_RUNNABLE.findall(doc.read_text("utf-8"))):
            blocks.append((f"{doc.name}#{number}", code))
    return blocks


def test_readme_opens_with_the_install_and_test_commands() -> None:
    first_block = (ROOT / "README.md").read_text("utf-8").split("```sh\n", 1)[1].split("```")[0]
    commands = [line for line in first_block.splitlines() if line and not line.startswith("#")]
    assert len(commands) == 2
    assert "pip install -e '.[all]'" in commands[0]
    assert commands[1].endswith("python -m pytest")


def test_the_readme_run_command_starts_the_hub(tmp_path: Path) -> None:
    first_block = (ROOT / "README.md").read_text("utf-8").split("```sh\n", 1)[1].split("```")[0]
    run = next(line for line in first_block.splitlines() if "iotsec " in line)
    argv = shlex.split(run.split("bin/iotsec ", 1)[1])
    assert argv == ["up"]
    # The command as written, in a temp data dir and on free ports so it cannot collide.
    ports = []
    for _ in range(2):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            ports.append(str(sock.getsockname()[1]))
    data = tmp_path / "iotsec-data"
    with (tmp_path / "out").open("wb") as out:
        hub = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "iotsec",
                *argv,
                "--data-dir",
                str(data),
                "--mqtt-port",
                ports[0],
                "--https-port",
                ports[1],
                "--no-local-agent",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while not (data / "server.json").exists():
            assert hub.poll() is None, (tmp_path / "out").read_text()
            assert time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        hub.send_signal(signal.SIGINT)
        assert hub.wait(timeout=30) == 0
    assert "up: MQTT mqtts://localhost:" in (tmp_path / "out").read_text()


def test_the_readme_validate_example(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    readme = (ROOT / "README.md").read_text("utf-8")
    line = next(x for x in readme.splitlines() if x.startswith("iotsec schema validate "))
    monkeypatch.chdir(ROOT)
    argv = [
        found
        for word in shlex.split(line.split("#", 1)[0])[1:]
        for found in (sorted(str(p) for p in ROOT.glob(word)) if "*" in word else [word])
    ]
    assert main(argv) == 1  # the examples include one invalid message, on purpose
    out = capsys.readouterr().out
    assert "invalid-port.json: invalid" in out
    assert "c-agent.json: valid" in out


@pytest.mark.parametrize(("where", "code"), _runnable_blocks(), ids=lambda v: v if "#" in v else "")
def test_runnable_examples(where: str, code: str, tmp_path: Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(code, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"{where} failed:\n{done.stderr}"
