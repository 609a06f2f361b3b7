"""The LocalUsers collector: every local account with its groups.

Groups are the primary group first, then every group that lists the user as a member, their
names and ids ';'-joined in the same order (``root;adm``, ``0;4``), as both ASC agents send them.
A primary gid with no /etc/group line is still listed, by id, with an empty name.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from iotsec.agent.accounts import Accounts, PasswdEntry
from iotsec.agent.collectors.base import CollectorSpec
from iotsec.agent.hostroot import HostRoot
from iotsec.schema import Event, LocalUsers, LocalUsersEvent

__all__ = ["USERS_SPEC", "UsersCollector", "local_user_rows"]

USERS_SPEC = CollectorSpec(
    name="LocalUsers",
    event_type="Security",
    category="Periodic",
    default_priority="High",
    description="Local accounts and their groups from /etc/passwd and /etc/group",
)


def _row(accounts: Accounts, user: PasswdEntry) -> LocalUsers:
    groups = accounts.groups_of(user)
    names = [g.name for g in groups]
    ids = [str(g.gid) for g in groups]
    if user.gid not in {g.gid for g in groups}:
        names.insert(0, "")
        ids.insert(0, str(user.gid))
    return LocalUsers(
        user_name=user.name,
        user_id=str(user.uid),
        group_names=";".join(names),
        group_ids=";".join(ids),
        extra_details={"Shell": user.shell, "Home": user.home},
    )


def local_user_rows(accounts: Accounts) -> list[LocalUsers]:
    """One row per account, in /etc/passwd order."""
    return [_row(accounts, user) for user in accounts.users]


class UsersCollector:
    """Snapshots local accounts (Periodic/Security, default priority High)."""

    spec = USERS_SPEC

    def __init__(self, host: HostRoot) -> None:
        self.host = host

    def collect(self, now: datetime) -> Sequence[Event]:
        """One LocalUsers event; HostReadError or ParseError when the account files are bad."""
        return [LocalUsersEvent.create(local_user_rows(Accounts(self.host)), at=now)]

    def close(self) -> None:
        """Nothing to release."""
