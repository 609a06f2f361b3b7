"""Webhook signatures: HMAC-SHA256 over ``"<timestamp>." + body``, checked in constant time.

The timestamp travels in ``X-Iotsec-Timestamp`` (Unix seconds) and is part of the signed
bytes, so a captured request cannot be replayed later: a receiver refuses timestamps outside its
tolerance. The signature travels as ``X-Iotsec-Signature: sha256=<hex>``.

>>> secret = b"0123456789abcdef0123456789abcdef"
>>> body = b'{"alertId":"a1"}'
>>> header = sign(secret, 1735689600, body)
>>> header[:7]
'sha256='
>>> verify(secret, body, timestamp="1735689600", signature=header, now=1735689630.0)
True
>>> verify(secret, body + b" ", timestamp="1735689600", signature=header, now=1735689630.0)
False
>>> verify(secret, body, timestamp="1735689600", signature=header, now=1735699999.0)
False
"""

from __future__ import annotations

import hashlib
import hmac

__all__ = [
    "DELIVERY_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "TOLERANCE_SECONDS",
    "sign",
    "verify",
]

SIGNATURE_HEADER = "X-Iotsec-Signature"
TIMESTAMP_HEADER = "X-Iotsec-Timestamp"
#: One id per alert delivery, the same on each retry: receivers may drop repeats with it.
DELIVERY_HEADER = "X-Iotsec-Delivery"
#: How far a receiver should accept a timestamp from its own clock.
TOLERANCE_SECONDS = 300.0

_PREFIX = "sha256="


def _mac(secret: bytes, timestamp: str, body: bytes) -> str:
    message = timestamp.encode("ascii") + b"." + body
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """The ``X-Iotsec-Signature`` value for ``body`` sent at ``timestamp`` (Unix seconds)."""
    return _PREFIX + _mac(secret, str(int(timestamp)), body)


def verify(
    secret: bytes,
    body: bytes,
    *,
    timestamp: str | None,
    signature: str | None,
    now: float,
    tolerance: float = TOLERANCE_SECONDS,
) -> bool:
    """True when ``signature`` signs ``body`` at ``timestamp`` and the timestamp is recent.

    ``body`` must be the exact bytes received (not re-encoded JSON). The comparison takes the
    same time whatever the signature, so it leaks nothing about the expected value.
    """
    if not (timestamp and signature and timestamp.isascii() and timestamp.isdigit()):
        return False
    if len(timestamp) > 12:
        return False
    if abs(now - int(timestamp)) > tolerance:
        return False
    expected = _PREFIX + _mac(secret, timestamp, body)
    return hmac.compare_digest(expected.encode("ascii"), signature.encode("utf-8", "replace"))
