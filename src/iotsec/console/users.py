"""Console users: a name, a role (admin, analyst, viewer), a scrypt hash, a disabled flag.

``UserStore`` is what the console and ``iotsec users`` need; ``SqliteUserStore`` keeps users in
``users.db`` in the data dir (mode 0600). Each user has a ``generation`` that goes up when the
password, role or disabled flag changes: a session remembers the generation it was signed in
with, so such a change ends the user's sessions at once. The server reads the store on each
request, so the CLI may change it while the server runs (SQLite's locking keeps them apart).

>>> import tempfile, pathlib
>>> store = SqliteUserStore(pathlib.Path(tempfile.mkdtemp()) / "users.db", cost=2**10)
>>> store.add("alice", "analyst", "a long passphrase").role
'analyst'
>>> store.authenticate("Alice", "a long passphrase").username, store.authenticate("alice", "no")
('alice', None)
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, Protocol

from iotsec.console.errors import UnknownUser, UserExists, UserInvalid, UserStoreError
from iotsec.console.passwords import (
    MIN_PASSWORD_LENGTH,
    SCRYPT_N,
    burn_time,
    hash_password,
    verify_password,
)

__all__ = [
    "OWNER",
    "ROLES",
    "USERS_FILE",
    "Role",
    "SqliteUserStore",
    "User",
    "UserStore",
    "check_password",
    "check_role",
    "check_username",
    "role_allows",
]

Role = Literal["viewer", "analyst", "admin"]
#: Roles from least to most allowed.
ROLES: tuple[Role, ...] = ("viewer", "analyst", "admin")
#: The name of the owner-credential sign-in; no user may take it.
OWNER = "owner"
#: The user store's file name in the data dir.
USERS_FILE = "users.db"

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    username TEXT PRIMARY KEY COLLATE NOCASE,
    role TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0,
    generation INTEGER NOT NULL DEFAULT 1,
    created REAL NOT NULL,
    updated REAL NOT NULL
)
"""


def role_allows(role: Role, needed: Role) -> bool:
    """Whether ``role`` may do what ``needed`` may (admin > analyst > viewer)."""
    return ROLES.index(role) >= ROLES.index(needed)


def check_username(username: str) -> str:
    """``username`` if usable: letters, digits and ``._@-``, up to 64, not ``owner``."""
    if not _NAME.fullmatch(username):
        raise UserInvalid(
            "username", "use 1 to 64 letters, digits, '.', '_', '@' or '-', starting with a letter"
        )
    if username.lower() == OWNER:
        raise UserInvalid("username", f"{OWNER!r} is the owner-credential sign-in")
    return username


def check_role(role: str) -> Role:
    """``role`` if it is one of ``ROLES``."""
    for known in ROLES:
        if role == known:
            return known
    raise UserInvalid("role", f"must be one of {', '.join(ROLES)}, not {role!r}")


def check_password(password: str) -> str:
    """``password`` if long enough."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UserInvalid("password", f"must have at least {MIN_PASSWORD_LENGTH} characters")
    return password


@dataclass(frozen=True, slots=True)
class User:
    """A console user (never with its password hash)."""

    username: str
    role: Role
    disabled: bool = False
    generation: int = 1
    created: datetime | None = None


class UserStore(Protocol):
    """Where console users live."""

    def get(self, username: str) -> User | None:
        """The user called ``username`` (any case), or None."""
        ...

    def list(self) -> list[User]:
        """Every user, by name."""
        ...

    def authenticate(self, username: str, password: str) -> User | None:
        """The enabled user whose password this is, or None (as slowly either way)."""
        ...

    def add(self, username: str, role: str, password: str) -> User:
        """Create a user; ``UserExists``, ``UserInvalid``."""
        ...

    def set_password(self, username: str, password: str) -> User:
        """Replace a user's password (ending their sessions)."""
        ...

    def set_role(self, username: str, role: str) -> User:
        """Change a user's role (ending their sessions)."""
        ...

    def set_disabled(self, username: str, disabled: bool) -> User:
        """Disable or enable a user (ending their sessions)."""
        ...

    def delete(self, username: str) -> None:
        """Remove a user; ``UnknownUser`` when there is none."""
        ...


class SqliteUserStore:
    """Users in an SQLite file; every call opens and closes its own connection."""

    def __init__(self, path: Path, *, cost: int = SCRYPT_N) -> None:
        self.path = path
        self._cost = cost
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            with contextlib.suppress(FileExistsError):
                os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        with self._db() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(_SCHEMA)

    def __repr__(self) -> str:
        return f"SqliteUserStore({str(self.path)!r})"

    @contextlib.contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        try:
            db = sqlite3.connect(self.path, timeout=10.0)
        except sqlite3.Error as exc:
            raise UserStoreError(f"cannot open the user store {self.path}: {exc}") from None
        try:
            with db:
                yield db
        except sqlite3.Error as exc:
            raise UserStoreError(f"the user store {self.path} failed: {exc}") from None
        finally:
            db.close()

    @staticmethod
    def _user(row: tuple[str, str, int, int, float]) -> User:
        name, role, disabled, generation, created = row
        return User(
            username=name,
            role=check_role(role),
            disabled=bool(disabled),
            generation=int(generation),
            created=datetime.fromtimestamp(created, UTC),
        )

    _COLUMNS = "username, role, disabled, generation, created"

    def get(self, username: str) -> User | None:
        with self._db() as db:
            row = db.execute(
                f"SELECT {self._COLUMNS} FROM users WHERE username = ?",  # noqa: S608 - constant
                (username,),
            ).fetchone()
        return None if row is None else self._user(row)

    def list(self) -> list[User]:
        with self._db() as db:
            rows = db.execute(
                f"SELECT {self._COLUMNS} FROM users ORDER BY username"  # noqa: S608 - constant
            ).fetchall()
        return [self._user(row) for row in rows]

    def authenticate(self, username: str, password: str) -> User | None:
        with self._db() as db:
            row = db.execute(
                f"SELECT {self._COLUMNS}, password_hash FROM users WHERE username = ?",  # noqa: S608 - constant
                (username,),
            ).fetchone()
        if row is None:
            burn_time(password)
            return None
        user = self._user(row[:5])
        if not verify_password(password, row[5]) or user.disabled:
            return None
        return user

    def add(self, username: str, role: str, password: str) -> User:
        check_username(username)
        checked = check_role(role)
        hashed = hash_password(check_password(password), n=self._cost)
        now = time.time()
        with self._db() as db:
            try:
                db.execute(
                    "INSERT INTO users (username, role, password_hash, created, updated)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (username, checked, hashed, now, now),
                )
            except sqlite3.IntegrityError:
                raise UserExists(username) from None
        return User(username, checked, created=datetime.fromtimestamp(now, UTC))

    def _update(self, username: str, assignments: str, values: tuple[object, ...]) -> User:
        with self._db() as db:
            changed = db.execute(
                f"UPDATE users SET {assignments}, generation = generation + 1, updated = ?"  # noqa: S608 - assignments are constants of this class
                " WHERE username = ?",
                (*values, time.time(), username),
            ).rowcount
        if not changed:
            raise UnknownUser(username)
        user = self.get(username)
        if user is None:
            raise UnknownUser(username)
        return user

    def set_password(self, username: str, password: str) -> User:
        hashed = hash_password(check_password(password), n=self._cost)
        return self._update(username, "password_hash = ?", (hashed,))

    def set_role(self, username: str, role: str) -> User:
        return self._update(username, "role = ?", (check_role(role),))

    def set_disabled(self, username: str, disabled: bool) -> User:
        return self._update(username, "disabled = ?", (int(disabled),))

    def delete(self, username: str) -> None:
        with self._db() as db:
            deleted = db.execute("DELETE FROM users WHERE username = ?", (username,)).rowcount
        if not deleted:
            raise UnknownUser(username)
