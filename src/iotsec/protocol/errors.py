"""Errors of the IoT Hub protocol conventions (see ``iotsec.errors`` for the whole tree)."""

from __future__ import annotations

from iotsec.errors import IotsecError

__all__ = ["ProtocolError", "SasTokenError", "TopicError"]


class ProtocolError(IotsecError):
    """Base class of the protocol conventions' errors."""


class SasTokenError(ProtocolError):
    """A SAS token that is malformed, or a key that cannot sign one. Never retried."""


class TopicError(ProtocolError):
    """A topic, username or client id that does not follow the IoT Hub conventions."""

    def __init__(self, text: str, reason: str) -> None:
        super().__init__(f"{reason}: {text!r}")
        self.text = text
        self.reason = reason
