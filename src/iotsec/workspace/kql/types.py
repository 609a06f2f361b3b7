"""Typed SQL values and the small sqlglot builders the lowering shares.

A lowered scalar is a :class:`Typed`: a sqlglot expression plus its KQL type. Builders here are
the only places that turn Python values into SQL text: strings go through
``sqlglot.exp.Literal.string`` (the generator escapes quotes), identifiers are always quoted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlglot import exp

from iotsec.workspace.tables import KqlType

__all__ = [
    "NUMERIC",
    "Typed",
    "as_bool",
    "as_number",
    "as_string",
    "call",
    "col",
    "interval",
    "json_items",
    "json_pointer",
    "string",
    "timestamp",
]

NUMERIC: frozenset[KqlType] = frozenset({"long", "real"})


@dataclass(frozen=True, slots=True)
class Typed:
    """A lowered scalar: its SQL expression and KQL type; ``const`` for compile-time values."""

    sql: exp.Expression
    type: KqlType
    const: str | int | float | bool | datetime | timedelta | None = None

    @property
    def is_const(self) -> bool:
        """Whether the value is known at compile time."""
        return self.const is not None


def call(name: str, *args: exp.Expression) -> exp.Expression:
    """A call of the DuckDB function ``name`` (always one of ours, never the user's)."""
    return exp.Anonymous(this=name, expressions=list(args))


def col(name: str, table: str | None = None) -> exp.Column:
    """A quoted column reference."""
    return exp.column(name, table=table, quoted=True)


def string(value: str) -> Typed:
    """A string literal."""
    return Typed(exp.Literal.string(value), "string", value)


def timestamp(value: datetime) -> Typed:
    """A UTC ``TIMESTAMPTZ`` literal."""
    value = value.astimezone(UTC)
    text = value.strftime("%Y-%m-%d %H:%M:%S.%f+00")
    return Typed(exp.cast(exp.Literal.string(text), "TIMESTAMPTZ"), "datetime", value)


def interval(micros: int) -> Typed:
    """A timespan literal, as an interval of microseconds."""
    sql = exp.Interval(this=exp.Literal.string(str(micros)), unit=exp.var("MICROSECOND"))
    return Typed(sql, "timespan", timedelta(microseconds=micros))


def _try_cast(sql: exp.Expression, to: str) -> exp.Expression:
    return exp.TryCast(this=sql, to=exp.DataType.build(to))


def _json_text(value: Typed) -> exp.Expression:
    return call("json_extract_string", value.sql, exp.Literal.string("$"))


def as_string(value: Typed) -> exp.Expression:
    """The value as a KQL string (never null: null becomes the empty string)."""
    if value.type == "string":
        if isinstance(value.sql, exp.Literal):
            return value.sql
        return exp.Coalesce(this=value.sql, expressions=[exp.Literal.string("")])
    if value.type == "dynamic":
        inner = _json_text(value)
    elif value.type == "datetime":
        utc = exp.AtTimeZone(this=value.sql, zone=exp.Literal.string("UTC"))
        inner = exp.DPipe(
            this=call("strftime", utc, exp.Literal.string("%Y-%m-%dT%H:%M:%S.%f")),
            expression=exp.Literal.string("Z"),
        )
    else:
        inner = exp.cast(value.sql, "VARCHAR")
    return exp.Coalesce(this=inner, expressions=[exp.Literal.string("")])


def as_number(value: Typed, to: str = "DOUBLE") -> exp.Expression:
    """A dynamic or string value converted to a number (null when it is not one)."""
    if value.type in NUMERIC:
        return value.sql
    if value.type == "dynamic":
        return _try_cast(_json_text(value), to)
    return _try_cast(value.sql, to)


def as_bool(value: Typed) -> exp.Expression:
    """A value used as a predicate."""
    if value.type == "bool":
        return value.sql
    if value.type == "dynamic":
        return _try_cast(_json_text(value), "BOOLEAN")
    return _try_cast(value.sql, "BOOLEAN")


def json_pointer(path: list[str | int]) -> str:
    """A JSON pointer (RFC 6901) for DuckDB's JSON functions: ``~`` and ``/`` escaped."""
    return "".join(
        "/" + (str(p) if isinstance(p, int) else p.replace("~", "~0").replace("/", "~1"))
        for p in path
    )


def json_items(value: exp.Expression) -> exp.Expression:
    """A JSON value as a list: an array's elements, or any other value (null too) alone."""
    is_array = exp.EQ(this=call("json_type", value), expression=exp.Literal.string("ARRAY"))
    items = exp.cast(call("json_extract", value, exp.Literal.string("$[*]")), "JSON[]")
    return exp.If(this=is_array, true=items, false=call("list_value", value))
