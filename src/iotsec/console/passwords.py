"""Password hashes: scrypt with a per-user random salt, compared in constant time.

A hash is stored as ``scrypt$<n>$<r>$<p>$<salt b64>$<key b64>``, so the cost can be raised
later without breaking stored hashes.

>>> stored = hash_password("correct horse battery", n=2**10)
>>> verify_password("correct horse battery", stored), verify_password("wrong", stored)
(True, False)
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import secrets

__all__ = ["MIN_PASSWORD_LENGTH", "burn_time", "hash_password", "verify_password"]

#: The shortest password the console accepts.
MIN_PASSWORD_LENGTH = 10
#: scrypt cost: 2**14 with r=8 takes ~50 ms and 16 MiB, OWASP's floor for interactive logins.
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
_KEY_BYTES = 32
_SALT_BYTES = 16
_MAX_MEMORY = 64 * 1024 * 1024


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _derive(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=_KEY_BYTES, maxmem=_MAX_MEMORY
    )


def hash_password(password: str, *, n: int = SCRYPT_N) -> str:
    """A new salted scrypt hash of ``password``."""
    salt = secrets.token_bytes(_SALT_BYTES)
    key = _derive(password, salt, n, SCRYPT_R, SCRYPT_P)
    return f"scrypt${n}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(key)}"


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches ``stored``; a malformed hash matches nothing."""
    try:
        scheme, n, r, p, salt, key = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(key, validate=True)
        derived = _derive(password, base64.b64decode(salt, validate=True), int(n), int(r), int(p))
    except ValueError:
        return False
    return hmac.compare_digest(derived, expected)


@functools.cache
def _dummy() -> str:
    return hash_password(secrets.token_urlsafe(16))


def burn_time(password: str) -> None:
    """Spend what a real check costs, so an unknown user name answers as slowly as a known one."""
    verify_password(password, _dummy())
