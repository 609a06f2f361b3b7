"""Golden file: ``iotsec rules check`` on a file with every kind of problem.

Regenerate after an intended change of wording or position (and read the diff), from
``tests/analytics/rules``: ``python -m iotsec rules check golden/invalid.yaml > golden/invalid.txt``
"""

from __future__ import annotations

from pathlib import Path

import pytest

from iotsec.cli import main

HERE = Path(__file__).parent


def test_check_output_matches_the_golden_file(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(HERE)
    assert main(["rules", "check", "golden/invalid.yaml"]) == 1
    assert capsys.readouterr().out == (HERE / "golden" / "invalid.txt").read_text()
