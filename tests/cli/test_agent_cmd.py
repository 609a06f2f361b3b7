"""``iotsec agent``: settings resolution, ``collect`` on fixture hosts, the systemd unit."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from iotsec.agent.config import OBJECT_NAME
from iotsec.agent.errors import AgentConfigError
from iotsec.cli import build_parser, main
from iotsec.cli.agent_cmd import CONNECTION_STRING_ENV, settings_from, unit_text
from iotsec.schema import decode_message

HOSTS = Path(__file__).resolve().parents[1] / "agent" / "fixtures" / "hosts"
KEY = "c2VjcmV0LWtleS0xMjM0NQ=="
CS = f"HostName=hub.example;DeviceId=edge-1;ModuleId=azureiotsecurity;SharedAccessKey={KEY}"


def run_args(*argv: str) -> argparse.Namespace:
    return build_parser(only="agent").parse_args(["agent", "run", *argv])


def test_the_flag_beats_the_environment_which_beats_the_file(tmp_path: Path) -> None:
    other = CS.replace("edge-1", "from-file")
    (tmp_path / "cs.txt").write_text(other)
    config = tmp_path / "agent.json"
    config.write_text(
        json.dumps(
            {
                "connectionStringFile": "cs.txt",
                "transport": "https",
                "stateDir": "state",
                OBJECT_NAME: {"snapshotFrequency": {"value": "PT1H"}},
            }
        )
    )
    from_file = settings_from(run_args("--config", str(config)), {})
    assert "from-file" in from_file.connection_string
    assert from_file.transport == "https" and from_file.hub_port == 443
    assert from_file.state_dir == tmp_path / "state"
    assert from_file.base.snapshot_frequency.total_seconds() == 3600
    from_env = settings_from(run_args("--config", str(config)), {CONNECTION_STRING_ENV: CS})
    assert "edge-1" in from_env.connection_string
    flagged = settings_from(
        run_args("--config", str(config), "--connection-string", CS.replace("edge-1", "flag"),
                 "--transport", "mqtt", "--port", "1883"),
        {CONNECTION_STRING_ENV: CS},
    )  # fmt: skip
    assert "flag" in flagged.connection_string
    assert (flagged.transport, flagged.hub_port) == ("mqtt", 1883)
    assert KEY not in repr(flagged)


def test_without_a_connection_string_it_says_where_to_put_one() -> None:
    with pytest.raises(AgentConfigError, match="--connection-string"):
        settings_from(run_args(), {})


def test_a_bad_state_dir_fails_at_once_without_showing_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    code = main(["agent", "run", "--connection-string", CS, "--state-dir", str(blocker / "x")])
    captured = capsys.readouterr()
    assert code == 2
    assert "state dir" in captured.err
    assert KEY not in captured.err + captured.out


def test_collect_prints_valid_security_messages_of_a_fixture_host(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(
        ["agent", "collect", "--host-root", str(HOSTS / "debian12"),
         "--event", "LocalUsers", "--event", "SystemInformation"]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    message = decode_message(out.encode()).message
    assert sorted(e.name for e in message.events) == ["LocalUsers", "SystemInformation"]
    users = next(e for e in message.events if e.name == "LocalUsers")
    assert any(row.user_name == "root" for row in users.payload)


def test_collect_names_unknown_and_agent_made_events(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["agent", "collect", "--event", "LocalUser"]) == 2
    assert "known: " in capsys.readouterr().err
    assert main(["agent", "collect", "--event", "MessageStatistics"]) == 2
    assert "the running agent produces it" in capsys.readouterr().err


def test_the_unit_runs_this_installation_with_the_config_given() -> None:
    text = unit_text("/opt/venv/bin/python3", Path("/etc/iotsec/agent.json"))
    [exec_start] = [line for line in text.splitlines() if line.startswith("ExecStart=")]
    assert exec_start == (
        "ExecStart=/opt/venv/bin/python3 -m iotsec agent run --config /etc/iotsec/agent.json"
    )
    assert "CapabilityBoundingSet=CAP_NET_ADMIN" in text
    assert "StateDirectory=iotsec-agent" in text


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    unit = tmp_path / "iotsec-agent.service"
    unit.write_text(unit_text(sys.executable, tmp_path / "agent.json"))
    done = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "iotsec-agent.service" not in done.stderr  # no warning about our unit


def test_the_agent_command_loads_neither_the_hub_nor_the_console() -> None:
    code = (
        "import sys\n"
        "from iotsec.cli import build_parser\n"
        "build_parser(only='agent')\n"
        "import iotsec.agent.runner, iotsec.sdk.mqtt\n"
        "heavy = {'httpx', 'starlette', 'jinja2', 'duckdb', 'uvicorn', 'cryptography'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]"
