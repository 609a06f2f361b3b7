"""Errors of the device agent (see ``iotsec.errors`` for the whole tree)::

AgentError
+-- HostReadError           a file or command of the host could not be read (path or argv named)
+-- ParseError              host data that does not parse (source, line number and reason named)
+-- AgentConfigError        agent configuration that cannot be used (file, twin property, value)
+-- QueueError              the on-device queue's storage failed (sqlite3/OSError); carries the path
"""

from __future__ import annotations

from iotsec.errors import IotsecError

__all__ = ["AgentConfigError", "AgentError", "HostReadError", "ParseError", "QueueError"]


class AgentError(IotsecError):
    """Base class of the agent's errors."""


class HostReadError(AgentError):
    """A host file, directory or command could not be read."""

    def __init__(self, what: str, reason: str) -> None:
        super().__init__(f"cannot read {what}: {reason}")
        self.what = what
        self.reason = reason


class ParseError(AgentError):
    """Host data that does not parse; ``source`` names the file or command, ``line`` is 1-based."""

    def __init__(self, source: str, reason: str, *, line: int | None = None) -> None:
        where = f"{source}:{line}" if line is not None else source
        super().__init__(f"{where}: {reason}")
        self.source = source
        self.reason = reason
        self.line = line


class AgentConfigError(AgentError):
    """Agent configuration that cannot be used; ``where`` names the file or twin property."""

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(f"{where}: {reason}")
        self.where = where
        self.reason = reason


class QueueError(AgentError):
    """The on-device queue's storage failed."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"queue {path}: {reason}")
        self.path = path
        self.reason = reason
