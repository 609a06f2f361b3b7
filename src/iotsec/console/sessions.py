"""Signed session cookies: who is signed in, since when, until when, and the CSRF token.

The cookie holds ``<payload>.<signature>``: URL-safe base64 of compact JSON, and an
HMAC-SHA256 of it under a key derived from the console secret. Nothing secret is inside (the
CSRF token only has to be unguessable by other sites). The server keeps no session state;
what ends a session early is the user's ``stamp`` (their store generation, or a fingerprint of
the owner key) no longer matching.

>>> codec = SessionCodec(b"k" * 32, ttl=60, clock=lambda: 1000.0)
>>> session = codec.new("alice", stamp="3")
>>> codec.decode(codec.encode(session)) == session
True
>>> codec.decode(codec.encode(session)[:-2] + "xx") is None
True
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import orjson

__all__ = ["SECRET_BYTES", "Session", "SessionCodec", "load_or_create_secret"]

#: Length of the console secret.
SECRET_BYTES = 32
_CONTEXT = b"iotsec console session v1"


@dataclass(frozen=True, slots=True)
class Session:
    """A browser's session: anonymous (``username`` None) until sign-in."""

    csrf: str
    issued: float
    expires: float
    username: str | None = None
    stamp: str = ""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SessionCodec:
    """Makes, signs and checks sessions that last ``ttl`` seconds."""

    def __init__(
        self, secret: bytes, *, ttl: float, clock: Callable[[], float] = time.time
    ) -> None:
        if len(secret) < 16:
            raise ValueError("the console secret must have at least 16 bytes")
        self._key = hmac.new(secret, _CONTEXT, hashlib.sha256).digest()
        self.ttl = ttl
        self._clock = clock

    def new(self, username: str | None = None, *, stamp: str = "") -> Session:
        """A fresh session with a new CSRF token (sign-in always makes a new one)."""
        now = self._clock()
        return Session(
            csrf=secrets.token_urlsafe(24),
            issued=now,
            expires=now + self.ttl,
            username=username,
            stamp=stamp,
        )

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self._key, payload.encode("ascii"), hashlib.sha256).digest())

    def encode(self, session: Session) -> str:
        """The cookie value for ``session``."""
        body = {
            "c": session.csrf,
            "i": session.issued,
            "e": session.expires,
            "u": session.username,
            "s": session.stamp,
        }
        payload = _b64(orjson.dumps(body))
        return f"{payload}.{self._sign(payload)}"

    def decode(self, value: str | None) -> Session | None:
        """The session in a cookie value, or None when it is absent, forged or expired."""
        if not value or value.count(".") != 1 or not value.isascii():
            return None
        payload, signature = value.split(".")
        if not hmac.compare_digest(signature.encode("ascii"), self._sign(payload).encode("ascii")):
            return None
        try:
            body = orjson.loads(_unb64(payload))
            session = Session(
                csrf=str(body["c"]),
                issued=float(body["i"]),
                expires=float(body["e"]),
                username=None if body["u"] is None else str(body["u"]),
                stamp=str(body["s"]),
            )
        except (binascii.Error, orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None
        if session.expires <= self._clock():
            return None
        return session


def load_or_create_secret(path: Path) -> bytes:
    """The console secret in ``path`` (made at first start, mode 0600); it signs sessions.

    Deleting the file (and restarting) signs everyone out.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        data = b""
    if len(data) >= SECRET_BYTES:
        return data
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(secrets.token_bytes(SECRET_BYTES))
    temporary.replace(path)
    return path.read_bytes()
