"""Errors of the security message contract (see ``iotsec.errors`` for the whole tree)."""

from __future__ import annotations

from dataclasses import dataclass

from iotsec.errors import IotsecError

__all__ = [
    "DefenderReportInvalid",
    "FieldIssue",
    "MessageInvalid",
    "MessageTooLarge",
    "SchemaError",
]


@dataclass(frozen=True, slots=True)
class FieldIssue:
    """One thing wrong with a message: where (a JSON path, ``Events[2].Payload[0]``) and why."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


class SchemaError(IotsecError):
    """Base class of the schema component's errors."""


class MessageTooLarge(SchemaError):
    """The message is over the size limit; it was refused before parsing."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"message is {size} bytes, over the {limit}-byte limit")
        self.size = size
        self.limit = limit


class MessageInvalid(SchemaError):
    """The message does not decode; ``issues`` names each problem by JSON path."""

    def __init__(self, issues: tuple[FieldIssue, ...]) -> None:
        if not issues:
            raise ValueError("MessageInvalid needs at least one issue")
        shown = "; ".join(str(issue) for issue in issues[:5])
        more = f" (and {len(issues) - 5} more)" if len(issues) > 5 else ""
        super().__init__(shown + more)
        self.issues = issues


class DefenderReportInvalid(MessageInvalid):
    """An AWS IoT Device Defender metrics report that does not decode."""
