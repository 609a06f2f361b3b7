"""``iotsec rules check`` and ``iotsec rules list``: output and exit codes."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from iotsec.analytics.rules import RuleWarning, catalogue, check_files, load_catalogue
from iotsec.cli import main

GOOD = """\
rules:
  - id: Custom_Netcat
    name: Netcat
    severity: Medium
    description: "{Executable} on {DeviceId}"
    match: {event: ProcessCreate, field: Executable, endswith: /nc}
"""
BAD = """\
rules:
  - id: Custom_Bad
    name: Bad
    severity: Hgh
    description: "{Executable}"
    match: {event: ProcessCreate, field: Executable, regex: 'a(b'}
"""
OLD_SUPPRESSION = """\
suppressions:
  - rule: Custom_Netcat
    scope: {device: lab-1}
    expires: 2020-01-01T00:00:00Z
    reason: lab
"""
BUILTIN = """\
rules:
  - id: IoT_Builtin
    name: Built in
    severity: Low
    description: d
    match: {event: Login}
"""


@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """Rule files, and a one-rule built-in catalogue in place of the real one."""
    builtin = tmp_path / "catalogue"
    builtin.mkdir()
    (builtin / "one.yaml").write_text(BUILTIN)
    monkeypatch.setattr(catalogue, "catalogue_files", lambda: sorted(builtin.glob("*.yaml")))
    paths = {}
    for name, text in (("good", GOOD), ("bad", BAD), ("old", OLD_SUPPRESSION)):
        paths[name] = tmp_path / f"{name}.yaml"
        paths[name].write_text(text)
    paths["builtin"] = builtin / "one.yaml"
    return paths


def test_check_a_valid_file_exits_zero(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["rules", "check", str(files["good"])]) == 0
    assert capsys.readouterr().out == "1 file: 0 errors, 0 warnings\n"


def test_check_prints_file_line_col_and_exits_one(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["rules", "check", str(files["good"]), str(files["bad"])]) == 1
    bad = files["bad"]
    assert capsys.readouterr().out.splitlines() == [
        f"{bad}:4:15: unknown severity 'Hgh'; did you mean 'High'? (one of High, Medium, Low, "
        "Informational) (rule Custom_Bad)",
        f"{bad}:6:63: bad regular expression: missing ), unterminated subpattern at position 1 "
        "(rule Custom_Bad)",
        "2 files: 2 errors, 0 warnings",
    ]


def test_warnings_alone_exit_zero(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["rules", "check", str(files["good"]), str(files["old"])]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        f"{files['old']}:2:5: warning: this suppression expired at 2020-01-01T00:00:00+00:00 "
        "and is ignored",
        "2 files: 0 errors, 1 warning",
    ]


def test_check_json(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rules", "check", "--format", "json", str(files["old"]), str(files["bad"])]) == 1
    found = json.loads(capsys.readouterr().out)
    assert [(p["file"], p["line"], p["column"], p["severity"]) for p in found] == [
        (str(files["bad"]), 4, 15, "error"),
        (str(files["bad"]), 6, 63, "error"),
        (str(files["old"]), 2, 5, "warning"),
        (str(files["old"]), 2, 5, "warning"),
    ]
    assert found[3]["reason"].startswith("this suppression names rule 'Custom_Netcat'")


def test_check_knows_the_builtin_ids(files: dict[str, Path], tmp_path: Path) -> None:
    clash = tmp_path / "clash.yaml"
    clash.write_text(BUILTIN)
    (problem,) = check_files([clash])
    assert problem.reason == f"rule id 'IoT_Builtin' is a built-in rule ({files['builtin']}:2:5)"
    assert check_files([files["builtin"]]) == []  # checking the catalogue file itself
    suppression = tmp_path / "s.yaml"
    suppression.write_text(OLD_SUPPRESSION.replace("Custom_Netcat", "IoT_Builtin"))
    assert check_files([suppression], now=datetime(2019, 1, 1, tzinfo=UTC)) == []
    (warning,) = check_files([suppression])
    assert isinstance(warning, RuleWarning) and "expired" in warning.reason


def test_a_missing_file_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rules", "check", str(tmp_path / "nope.yaml")]) == 1
    assert "nope.yaml: cannot read: No such file or directory" in capsys.readouterr().out


def test_list_files_and_the_catalogue(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["rules", "list", str(files["good"])]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "ID             SEVERITY       KIND       NAME",
        "Custom_Netcat  Medium         match      Netcat",
    ]
    assert main(["rules", "list", "--format", "json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert (row["id"], row["kind"], row["location"]) == (
        "IoT_Builtin",
        "match",
        f"{files['builtin']}:2:5",
    )
    assert load_catalogue().ids == ("IoT_Builtin",)


def test_list_refuses_files_that_do_not_load(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["rules", "list", str(files["bad"])]) == 1
    err = capsys.readouterr().err
    assert f"{files['bad']}:4:15: unknown severity" in err
    assert "run 'iotsec rules check'" in err
