"""Who is signed in: checking credentials, and turning a session back into a ``Principal``.

Two ways in. A user of the ``UserStore`` with their password; or ``owner`` with the
``iothubowner`` policy key (the ``SharedAccessKey`` in ``owner.credential``, or that whole
connection string), which is how the first admin gets in before any user exists. Every request
re-reads the user, so disabling a user, changing their role or password ends their sessions.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass

from iotsec.console.passwords import burn_time
from iotsec.console.sessions import Session
from iotsec.console.users import OWNER, Role, UserStore, role_allows

__all__ = ["OwnerKey", "Principal", "SignIn"]

#: The owner policy's key, or a callable that reads it (None: owner sign-in is off).
OwnerKey = str | Callable[[], str | None] | None


@dataclass(frozen=True, slots=True)
class Principal:
    """A signed-in person: name and role (``owner`` is the owner credential, an admin)."""

    username: str
    role: Role
    owner: bool = False

    def can(self, needed: Role) -> bool:
        """Whether this role may do what ``needed`` may."""
        return role_allows(self.role, needed)


def _owner_secret(text: str) -> str:
    """The key in a policy connection string, or the text itself when it is a bare key."""
    for part in text.strip().split(";"):
        name, _, value = part.partition("=")
        if name.strip() == "SharedAccessKey" and value:
            return value.strip()
    return text.strip()


class SignIn:
    """Checks credentials and sessions against the user store and the owner key.

    ``owner_key`` may be a callable, asked at each use: the server makes the key at its first
    start, after the console is built, and an operator may rotate it.
    """

    def __init__(self, users: UserStore, *, secret: bytes, owner_key: OwnerKey) -> None:
        self.users = users
        self._secret = secret
        self._owner_key = owner_key

    def _owner(self) -> tuple[str, str] | None:
        """The owner key and its stamp (a fingerprint, not the key: it goes into the cookie)."""
        key = self._owner_key() if callable(self._owner_key) else self._owner_key
        if not key:
            return None
        stamp = hmac.new(self._secret, b"owner:" + key.encode(), hashlib.sha256).hexdigest()
        return key, stamp[:24]

    @property
    def owner_enabled(self) -> bool:
        """Whether the owner credential may sign in."""
        return self._owner() is not None

    def check(self, username: str, password: str) -> tuple[Principal, str] | None:
        """The principal and session stamp for these credentials, or None. Blocks (scrypt)."""
        name = username.strip()
        if name.lower() == OWNER:
            return self._check_owner(password)
        user = self.users.authenticate(name, password)
        if user is None:
            return None
        return Principal(user.username, user.role), str(user.generation)

    def _check_owner(self, password: str) -> tuple[Principal, str] | None:
        burn_time(password)  # as slow as a user's check, so timing tells nothing
        owner = self._owner()
        if owner is None:
            return None
        key, stamp = owner
        given = hashlib.sha256(_owner_secret(password).encode()).digest()
        if not hmac.compare_digest(given, hashlib.sha256(key.encode()).digest()):
            return None
        return Principal(OWNER, "admin", owner=True), stamp

    def principal(self, session: Session | None) -> Principal | None:
        """Who ``session`` belongs to now, or None (anonymous, or its user changed)."""
        if session is None or session.username is None:
            return None
        if session.username == OWNER:
            owner = self._owner()
            if owner is None or not hmac.compare_digest(session.stamp, owner[1]):
                return None
            return Principal(OWNER, "admin", owner=True)
        user = self.users.get(session.username)
        if user is None or user.disabled or str(user.generation) != session.stamp:
            return None
        return Principal(user.username, user.role)
