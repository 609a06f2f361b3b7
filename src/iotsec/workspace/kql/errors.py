"""The one error the KQL compiler raises: :class:`KqlError`, with the span it is about.

Every failure of :func:`iotsec.workspace.kql.compile_kql` (a bad token, a bad pipe, an unknown
name, a wrong arity, a construct we refuse for safety) is a ``KqlError`` carrying the query text,
the offset and length of the offending span, and its 1-based line and column. ``render()`` prints
the query line with a caret underline, as sqlglot does::

    unknown column 'DeviceID' (did you mean 'DeviceId'?)
      line 1, column 32
      SecurityAlert | where DeviceID == "d1"
                            ^^^^^^^^
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from iotsec.errors import IotsecError

__all__ = ["KqlError", "Span", "did_you_mean"]


class Span:
    """A half-open character range ``[start, end)`` in the query text."""

    __slots__ = ("end", "start")

    def __init__(self, start: int, end: int) -> None:
        self.start = start
        self.end = max(end, start)

    def __eq__(self, other: object) -> bool:
        # Spans never take part in tree equality: a reformatted query parses to an equal tree.
        return isinstance(other, Span)

    def __hash__(self) -> int:
        return 0

    def __repr__(self) -> str:
        return f"Span({self.start}, {self.end})"

    def to(self, other: Span) -> Span:
        """The span from the start of this one to the end of ``other``."""
        return Span(self.start, other.end)


class KqlError(IotsecError):
    """A query that cannot be compiled; carries the text and the span it is about."""

    def __init__(self, message: str, text: str = "", span: Span | None = None) -> None:
        self.message = message
        self.text = text
        self.offset = span.start if span is not None else 0
        self.length = max(1, span.end - span.start) if span is not None else 1
        before = text[: self.offset]
        self.line = before.count("\n") + 1
        self.column = self.offset - (before.rfind("\n") + 1) + 1
        super().__init__(message)

    def render(self) -> str:
        """The message, the position, and the query line with a caret underline."""
        lines = self.text.split("\n")
        source = lines[self.line - 1] if self.line - 1 < len(lines) else ""
        width = max(1, min(self.length, len(source) - self.column + 1))
        caret = " " * (self.column - 1) + "^" * width
        return f"{self.message}\n  line {self.line}, column {self.column}\n  {source}\n  {caret}"


def did_you_mean(kind: str, name: str, candidates: Iterable[str]) -> str:
    """``unknown <kind> 'name'``, with the closest candidates suggested."""
    pool = list(candidates)
    lowered = {c.lower(): c for c in pool}
    close = [lowered[name.lower()]] if name.lower() in lowered else []
    close += [c for c in difflib.get_close_matches(name, pool, n=3, cutoff=0.6) if c not in close]
    if not close:
        return f"unknown {kind} '{name}'"
    return f"unknown {kind} '{name}' (did you mean '{close[0]}'?)"
