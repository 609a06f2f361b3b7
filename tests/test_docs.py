"""The README's commands and the docs' runnable examples work as written."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
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


def test_the_readme_run_command_succeeds(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    first_block = (ROOT / "README.md").read_text("utf-8").split("```sh\n", 1)[1].split("```")[0]
    run = next(line for line in first_block.splitlines() if "iotsec " in line)
    argv = shlex.split(run.split("bin/iotsec ", 1)[1])
    monkeypatch.chdir(ROOT)
    assert main(argv) == 0
    assert "0 invalid" in capsys.readouterr().out


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
