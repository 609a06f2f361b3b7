"""Parsers for the host's account databases: ``/etc/passwd`` and ``/etc/group``.

Several collectors need them: LocalUsers lists accounts, and the process, connection and login
collectors turn user ids into names.

>>> [(e.name, e.uid) for e in parse_passwd("root:x:0:0:root:/root:/bin/bash\\n")]
[('root', 0)]
>>> parse_group("sudo:x:27:alice,bob\\n")[0].members
('alice', 'bob')
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from iotsec.agent.errors import HostReadError, ParseError
from iotsec.agent.hostroot import HostRoot

_T = TypeVar("_T")

__all__ = ["Accounts", "GroupEntry", "PasswdEntry", "parse_group", "parse_passwd"]


@dataclass(frozen=True, slots=True)
class PasswdEntry:
    """One ``/etc/passwd`` line."""

    name: str
    uid: int
    gid: int
    gecos: str
    home: str
    shell: str


@dataclass(frozen=True, slots=True)
class GroupEntry:
    """One ``/etc/group`` line."""

    name: str
    gid: int
    members: tuple[str, ...]


def _records(text: str) -> Iterator[tuple[int, str]]:
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        # NIS compat lines ("+::::::", "+@group") name no local account.
        if stripped and not stripped.startswith(("#", "+", "-")):
            yield number, stripped


def _id(value: str, source: str, line: int, what: str) -> int:
    if not value.isdigit():
        raise ParseError(source, f"{what} must be a non-negative integer, got {value!r}", line=line)
    return int(value)


def parse_passwd(text: str, source: str = "/etc/passwd") -> list[PasswdEntry]:
    """Every account in a passwd file; a malformed line raises ParseError naming it."""
    entries = []
    for line, record in _records(text):
        fields = record.split(":")
        if len(fields) != 7:
            raise ParseError(
                source, f"expected 7 ':'-separated fields, got {len(fields)}", line=line
            )
        name, _, uid, gid, gecos, home, shell = fields
        if not name:
            raise ParseError(source, "empty user name", line=line)
        entries.append(
            PasswdEntry(
                name=name,
                uid=_id(uid, source, line, "uid"),
                gid=_id(gid, source, line, "gid"),
                gecos=gecos,
                home=home,
                shell=shell,
            )
        )
    return entries


def parse_group(text: str, source: str = "/etc/group") -> list[GroupEntry]:
    """Every group in a group file; a malformed line raises ParseError naming it."""
    entries = []
    for line, record in _records(text):
        fields = record.split(":")
        if len(fields) != 4:
            raise ParseError(
                source, f"expected 4 ':'-separated fields, got {len(fields)}", line=line
            )
        name, _, gid, members = fields
        if not name:
            raise ParseError(source, "empty group name", line=line)
        entries.append(
            GroupEntry(
                name=name,
                gid=_id(gid, source, line, "gid"),
                members=tuple(m for m in members.split(",") if m),
            )
        )
    return entries


class Accounts:
    """The host's users and groups, read once; ``refresh()`` re-reads them."""

    def __init__(self, host: HostRoot) -> None:
        self._host = host
        self.users: list[PasswdEntry] = []
        self.groups: list[GroupEntry] = []
        self._names: dict[int, str] = {}
        self.refresh()

    def refresh(self) -> None:
        """Re-read ``/etc/passwd`` and ``/etc/group`` (a missing file reads as empty)."""
        self.users = self._read("/etc/passwd", parse_passwd)
        self.groups = self._read("/etc/group", parse_group)
        self._names = {}
        for user in self.users:
            self._names.setdefault(user.uid, user.name)

    def user_name(self, uid: int) -> str | None:
        """The first account name with ``uid``, or None."""
        return self._names.get(uid)

    def groups_of(self, user: PasswdEntry) -> list[GroupEntry]:
        """The user's primary group first, then every group listing the user as a member."""
        primary = [g for g in self.groups if g.gid == user.gid][:1]
        others = [g for g in self.groups if user.name in g.members and g not in primary]
        return primary + others

    def _read(self, path: str, parse: Callable[[str, str], list[_T]]) -> list[_T]:
        try:
            text = self._host.read_text(path)
        except HostReadError:
            if self._host.exists(path):
                raise
            return []
        return parse(text, path)
