"""Errors of the durable log (see ``iotsec.errors`` for the whole tree)::

StreamError
+-- RecordInvalid           a record that cannot be built (empty key, non-bytes body, ...)
+-- InvalidRequest          a partition out of range, a negative offset, a limit below 1
+-- LogError                the log's storage failed; ``path`` names the file
    +-- LogClosed           the log was used after close()
"""

from __future__ import annotations

from pathlib import Path

from iotsec.errors import IotsecError

__all__ = ["InvalidRequest", "LogClosed", "LogError", "RecordInvalid", "StreamError"]


class StreamError(IotsecError):
    """Base class of the durable log's errors."""


class RecordInvalid(StreamError, ValueError):
    """A record that cannot be built; the message names the field and the reason."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"record {field}: {reason}")
        self.field = field
        self.reason = reason


class InvalidRequest(StreamError, ValueError):
    """A call the log cannot serve: a partition out of range, a negative offset, a bad limit."""


class LogError(StreamError):
    """The log's storage failed (cannot open, disk full, corrupt, another writer)."""

    def __init__(self, message: str, *, path: Path | None = None) -> None:
        super().__init__(f"{message} ({path})" if path is not None else message)
        self.path = path


class LogClosed(LogError):
    """The log was used after ``close()``."""
