"""Errors of the device client (see ``iotsec.errors`` for the whole tree)."""

from __future__ import annotations

from iotsec.errors import IotsecError
from iotsec.protocol.errors import SasTokenError, TopicError

__all__ = [
    "AuthError",
    "ClientClosedError",
    "ConnectionStringError",
    "NotSupportedError",
    "RejectedError",
    "SasTokenError",
    "SdkError",
    "ThrottledError",
    "TopicError",
    "TransportError",
]


class SdkError(IotsecError):
    """Base class of the device client's errors."""


class ConnectionStringError(SdkError):
    """A connection string that cannot be used; the message names the key that is wrong."""


class NotSupportedError(SdkError):
    """The transport cannot do this (e.g. desired-property updates over HTTPS); use MQTT."""


class AuthError(SdkError):
    """The hub refused our credentials. Never retried: retrying cannot fix it."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ThrottledError(SdkError):
    """The hub asked us to slow down; ``retry_after`` is its hint in seconds, if it gave one."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RejectedError(SdkError):
    """The hub (or the local pre-send check) refused the message; ``reason`` says why."""

    def __init__(self, reason: str, *, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class TransportError(SdkError):
    """The network or TLS failed; retried with backoff."""


class ClientClosedError(SdkError):
    """The client was used after it was closed."""
