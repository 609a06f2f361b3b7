"""``iotsec schema validate`` and ``iotsec schema export``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from iotsec.cli import main
from iotsec.schema import json_schema_text
from tests.schema.test_conformance import INVALID, VALID


@pytest.fixture
def samples(tmp_path: Path) -> dict[str, Path]:
    files = {
        "valid_array": tmp_path / "valid.json",
        "one_valid": tmp_path / "one.json",
        "invalid_lines": tmp_path / "invalid.jsonl",
    }
    files["valid_array"].write_text(json.dumps(VALID))
    files["one_valid"].write_text(json.dumps(VALID[0]))
    files["invalid_lines"].write_text("\n".join(json.dumps(m) for m in INVALID) + "\n")
    return files


def test_all_valid_exits_zero(samples: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema", "validate", str(samples["valid_array"]), str(samples["one_valid"])]) == 0
    out = capsys.readouterr().out
    assert f"{samples['valid_array']}[12]: valid (1 event)" in out
    assert out.rstrip().endswith("14 messages, 14 valid, 0 invalid")


def test_any_invalid_exits_one_with_paths(
    samples: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["schema", "validate", str(samples["one_valid"]), str(samples["invalid_lines"])]) == 1
    )
    out = capsys.readouterr().out
    assert f"{samples['invalid_lines']}:line 6: invalid\n" in out
    assert "  Events[0].Payload[0].RemotePort: expected a string, got an integer\n" in out
    assert out.rstrip().endswith("7 messages, 1 valid, 6 invalid")


def test_json_format_gives_the_same_verdicts(
    samples: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["schema", "validate", "--format", "json", str(samples["invalid_lines"])]) == 1
    verdicts = json.loads(capsys.readouterr().out)
    assert len(verdicts) == 6
    assert not any(v["valid"] for v in verdicts)
    assert verdicts[2]["issues"] == [
        {"path": "AgentVersion", "reason": "required field is missing"}
    ]


def test_keep_valid_policy_reports_partially_valid_messages(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sample = json.loads(json.dumps(VALID[4]))
    sample["Events"][1]["Payload"][0]["ProcessId"] = "x"
    path = tmp_path / "partial.json"
    path.write_text(json.dumps(sample))
    assert (
        main(["schema", "validate", "--policy", "keep-valid", "--format", "json", str(path)]) == 1
    )
    verdict = json.loads(capsys.readouterr().out)[0]
    assert (verdict["events"], verdict["rejected_events"]) == (3, 1)
    assert verdict["issues"][0]["path"] == "Events[1].Payload[0].ProcessId"


def test_unreadable_file_is_reported_not_raised(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["schema", "validate", str(tmp_path / "missing.json")]) == 1
    assert "cannot read: No such file or directory" in capsys.readouterr().out


def test_export_to_stdout_and_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema", "export"]) == 0
    assert capsys.readouterr().out == json_schema_text()
    target = tmp_path / "schema.json"
    assert main(["schema", "export", "-o", str(target)]) == 0
    assert target.read_text() == json_schema_text()


def test_console_script_reads_stdin(samples: dict[str, Path]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "iotsec", "schema", "validate", "-"],
        input=samples["one_valid"].read_bytes(),
        capture_output=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert b"-: valid (1 event)" in done.stdout
