"""KQL tokens: what the lexer produces and the parser consumes."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from iotsec.workspace.kql.errors import Span
from iotsec.workspace.tables import KqlType

__all__ = ["DASHED_WORDS", "NEGATED_WORDS", "TIMESPAN_UNITS", "TYPE_NAMES", "Token", "TokenKind"]


class TokenKind(enum.Enum):
    """The kinds of KQL token."""

    IDENT = "identifier"
    STRING = "string"
    LONG = "long"
    REAL = "real"
    TIMESPAN = "timespan"
    DATETIME = "datetime literal"
    DYNAMIC = "dynamic literal"
    OP = "operator"
    EOF = "end of query"


@dataclass(frozen=True, slots=True)
class Token:
    """One token: its kind, its text (or decoded value) and where it is."""

    kind: TokenKind
    value: str
    span: Span
    #: decoded literal: an int (long, or microseconds for a timespan), a float, or None
    number: int | float | None = None

    def is_op(self, *values: str) -> bool:
        """Whether this is one of the punctuation/operator tokens ``values``."""
        return self.kind is TokenKind.OP and self.value in values

    def is_word(self, *words: str) -> bool:
        """Whether this is an identifier equal (case-sensitively, as in KQL) to one of ``words``."""
        return self.kind is TokenKind.IDENT and self.value in words


#: Operator names written with a dash, lexed as one word.
DASHED_WORDS = frozenset(
    {
        "project-away",
        "project-rename",
        "project-keep",
        "project-reorder",
        "mv-expand",
        "mv-apply",
        "granny-asc",
        "granny-desc",
    }
)

#: KQL scalar type names (``datatable`` columns, ``to typeof()``, ``long(null)``) and the type
#: each one means here: ``int`` is stored as ``long``, ``decimal`` as ``real``, ``guid`` as
#: ``string``.
TYPE_NAMES: dict[str, KqlType] = {
    "bool": "bool",
    "boolean": "bool",
    "int": "long",
    "long": "long",
    "real": "real",
    "double": "real",
    "decimal": "real",
    "string": "string",
    "guid": "string",
    "datetime": "datetime",
    "date": "datetime",
    "timespan": "timespan",
    "time": "timespan",
    "dynamic": "dynamic",
}

#: Negated string operators, lexed as one operator token (``!contains``).
NEGATED_WORDS = frozenset(
    {
        "contains",
        "contains_cs",
        "has",
        "has_cs",
        "startswith",
        "startswith_cs",
        "endswith",
        "endswith_cs",
        "in",
        "in~",
        "between",
        "hasprefix",
        "hassuffix",
    }
)

_US = 1
_MS = 1000 * _US
_S = 1000 * _MS
_M = 60 * _S
_H = 60 * _M
_D = 24 * _H

#: Timespan unit suffixes, in microseconds.
TIMESPAN_UNITS: dict[str, int] = {
    "d": _D,
    "day": _D,
    "days": _D,
    "h": _H,
    "hr": _H,
    "hrs": _H,
    "hour": _H,
    "hours": _H,
    "m": _M,
    "min": _M,
    "minute": _M,
    "minutes": _M,
    "s": _S,
    "sec": _S,
    "second": _S,
    "seconds": _S,
    "ms": _MS,
    "milli": _MS,
    "millis": _MS,
    "millisecond": _MS,
    "milliseconds": _MS,
    "microsecond": _US,
    "microseconds": _US,
}
