"""``iotsec users``: the web console's accounts, kept in ``users.db`` in the data dir.

The command edits the user store directly; the server reads it on every request, so a change
applies at once, even while ``iotsec up`` runs (SQLite's locking keeps the two apart). A
change of password, role or disabled flag ends that user's console sessions.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

import orjson

from iotsec.cli.service_client import add_data_dir_flag, data_dir_from
from iotsec.console import ROLES, SqliteUserStore, UnknownUser, UserStoreError
from iotsec.console.users import USERS_FILE

__all__ = ["register", "user_store"]


def user_store(data_dir: Path) -> SqliteUserStore:
    """The console's user store in ``data_dir`` (made, mode 0700, if it does not exist)."""
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    return SqliteUserStore(data_dir / USERS_FILE)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``iotsec users`` and its subcommands."""
    users = sub.add_parser("users", help="web console accounts (admin, analyst, viewer)")
    add_data_dir_flag(users, leaf=False)
    actions = users.add_subparsers(dest="users_command", metavar="ACTION", required=True)

    add = actions.add_parser("add", help="add a user")
    add.add_argument("username")
    add.add_argument("--role", choices=ROLES, required=True)
    _password_flag(add)
    add.set_defaults(handler=_run(_add))

    listing = actions.add_parser("list", help="list the users")
    listing.add_argument("--format", choices=("table", "json"), default="table")
    listing.set_defaults(handler=_run(_list))

    passwd = actions.add_parser("passwd", help="set a user's password")
    passwd.add_argument("username")
    _password_flag(passwd)
    passwd.set_defaults(handler=_run(_passwd))

    role = actions.add_parser("role", help="change a user's role")
    role.add_argument("username")
    role.add_argument("role", choices=ROLES)
    role.set_defaults(handler=_run(_role))

    for name, disabled in (("disable", True), ("enable", False)):
        toggle = actions.add_parser(name, help=f"{name} a user (keeps the account)")
        toggle.add_argument("username")
        toggle.set_defaults(handler=_run(_toggle(disabled)))

    delete = actions.add_parser("delete", help="delete a user")
    delete.add_argument("username")
    delete.set_defaults(handler=_run(_delete))

    for parser in actions.choices.values():
        add_data_dir_flag(parser)


def _password_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of stdin instead of prompting",
    )


Action = Callable[[SqliteUserStore, argparse.Namespace, TextIO], int]


def _run(action: Action) -> Callable[[argparse.Namespace], int]:
    def handler(args: argparse.Namespace) -> int:
        try:
            store = user_store(data_dir_from(getattr(args, "data_dir", None)))
            return action(store, args, sys.stdout)
        except (UserStoreError, _PasswordError, OSError) as exc:
            sys.stderr.write(f"iotsec: {exc}\n")
            return 1

    return handler


class _PasswordError(Exception):
    """No password could be read."""


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        line = sys.stdin.readline().rstrip("\r\n")
        if not line:
            raise _PasswordError("no password on stdin")
        return line
    if not sys.stdin.isatty():
        raise _PasswordError("stdin is not a terminal: pass the password with --password-stdin")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Again: ") != first:
        raise _PasswordError("the two passwords differ")
    return first


def _report(out: TextIO, text: str) -> int:
    out.write(text + "\n")
    return 0


def _add(store: SqliteUserStore, args: argparse.Namespace, out: TextIO) -> int:
    user = store.add(args.username, args.role, _password(args))
    return _report(out, f"added {user.username} ({user.role})")


def _passwd(store: SqliteUserStore, args: argparse.Namespace, out: TextIO) -> int:
    if store.get(args.username) is None:
        raise UnknownUser(args.username)  # before prompting for a password in vain
    user = store.set_password(args.username, _password(args))
    return _report(out, f"password of {user.username} changed; their sessions ended")


def _role(store: SqliteUserStore, args: argparse.Namespace, out: TextIO) -> int:
    user = store.set_role(args.username, args.role)
    return _report(out, f"{user.username} is now {user.role}; their sessions ended")


def _toggle(disabled: bool) -> Action:
    def action(store: SqliteUserStore, args: argparse.Namespace, out: TextIO) -> int:
        user = store.set_disabled(args.username, disabled)
        state = "disabled; their sessions ended" if disabled else "enabled"
        return _report(out, f"{user.username} is {state}")

    return action


def _delete(store: SqliteUserStore, args: argparse.Namespace, out: TextIO) -> int:
    store.delete(args.username)
    return _report(out, f"deleted {args.username}")


def _list(store: SqliteUserStore, args: argparse.Namespace, out: TextIO) -> int:
    users = store.list()
    if args.format == "json":
        rows = [
            {
                "username": u.username,
                "role": u.role,
                "disabled": u.disabled,
                "created": u.created.isoformat() if u.created else None,
            }
            for u in users
        ]
        out.write(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode() + "\n")
        return 0
    if not users:
        return _report(out, "no users; add one with `iotsec users add NAME --role admin`")
    width = max(len(u.username) for u in users)
    for u in users:
        state = "disabled" if u.disabled else "enabled"
        created = u.created.strftime("%Y-%m-%d %H:%M") if u.created else ""
        out.write(f"{u.username.ljust(width)}  {u.role.ljust(7)}  {state.ljust(8)}  {created}\n")
    return 0
