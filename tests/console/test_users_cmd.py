"""``iotsec users``: add, list, passwd, role, disable, enable, delete on the data dir's store."""

from __future__ import annotations

import argparse
import io
import stat
from pathlib import Path

import orjson
import pytest

from iotsec.cli import register_of, users_cmd
from iotsec.console.users import USERS_FILE


def run(
    data_dir: Path, *argv: str, stdin: str = "", monkeypatch: pytest.MonkeyPatch
) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="iotsec")
    users_cmd.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["users", *argv, "--data-dir", str(data_dir)])
    out, err = io.StringIO(), io.StringIO()
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    monkeypatch.setattr("sys.stdout", out)
    monkeypatch.setattr("sys.stderr", err)
    code = args.handler(args)
    return code, out.getvalue(), err.getvalue()


def test_the_command_is_registered() -> None:
    assert register_of("users") is users_cmd.register


def test_users_are_managed_from_the_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    add = run(
        data,
        "add",
        "alice",
        "--role",
        "admin",
        "--password-stdin",
        stdin="alice-long-password\n",
        monkeypatch=monkeypatch,
    )
    assert add == (0, "added alice (admin)\n", "")
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert stat.S_IMODE((data / USERS_FILE).stat().st_mode) == 0o600
    store = users_cmd.user_store(data)
    assert store.authenticate("alice", "alice-long-password") is not None

    code, out, _ = run(
        data,
        "passwd",
        "alice",
        "--password-stdin",
        stdin="alice-new-password\n",
        monkeypatch=monkeypatch,
    )
    assert code == 0
    assert "sessions ended" in out
    assert store.authenticate("alice", "alice-new-password") is not None

    assert run(data, "role", "alice", "analyst", monkeypatch=monkeypatch)[0] == 0
    assert run(data, "disable", "alice", monkeypatch=monkeypatch)[0] == 0
    code, out, _ = run(data, "list", "--format", "json", monkeypatch=monkeypatch)
    [row] = orjson.loads(out)
    assert (row["username"], row["role"], row["disabled"]) == ("alice", "analyst", True)
    assert run(data, "enable", "alice", monkeypatch=monkeypatch)[0] == 0
    code, out, _ = run(data, "list", monkeypatch=monkeypatch)
    assert out.startswith("alice  analyst  enabled")
    assert run(data, "delete", "alice", monkeypatch=monkeypatch)[0] == 0
    assert store.list() == []
    assert "no users" in run(data, "list", monkeypatch=monkeypatch)[1]


@pytest.mark.parametrize(
    ("argv", "stdin", "message"),
    [
        (("add", "bob", "--role", "viewer", "--password-stdin"), "short\n", "at least 10"),
        (("add", "bob", "--role", "viewer", "--password-stdin"), "", "no password on stdin"),
        (("add", "bob", "--role", "viewer"), "", "--password-stdin"),
        (("add", "owner", "--role", "admin", "--password-stdin"), "long-password!\n", "owner"),
        (("passwd", "ghost", "--password-stdin"), "long-password!\n", "no user 'ghost'"),
        (("delete", "ghost"), "", "no user 'ghost'"),
        (("disable", "ghost"), "", "no user 'ghost'"),
    ],
)
def test_refusals_say_why(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    argv: tuple[str, ...],
    stdin: str,
    message: str,
) -> None:
    code, out, err = run(tmp_path / "data", *argv, stdin=stdin, monkeypatch=monkeypatch)
    assert code == 1
    assert out == ""
    assert message in err


def test_the_password_never_reaches_the_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "very-secret-password"
    code, out, err = run(
        tmp_path / "data",
        "add",
        "zoe",
        "--role",
        "viewer",
        "--password-stdin",
        stdin=f"{secret}\n",
        monkeypatch=monkeypatch,
    )
    assert code == 0
    assert secret not in out + err
    assert secret.encode() not in (tmp_path / "data" / USERS_FILE).read_bytes()
