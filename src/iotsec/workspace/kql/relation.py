"""A lowered tabular value (:class:`Relation`) and the SELECT builders every operator shares."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlglot import exp

from iotsec.workspace.kql import ast
from iotsec.workspace.kql.scalar import lower_expr
from iotsec.workspace.kql.semantic import Context, Schema, unique_name
from iotsec.workspace.kql.types import Typed, col
from iotsec.workspace.tables import KqlType

__all__ = [
    "SQL_TYPES",
    "Relation",
    "alias",
    "columns",
    "default_name",
    "named",
    "row_count",
    "select_from",
]

#: The DuckDB type that holds each KQL type.
SQL_TYPES: dict[KqlType, str] = {
    "string": "VARCHAR",
    "long": "BIGINT",
    "real": "DOUBLE",
    "bool": "BOOLEAN",
    "datetime": "TIMESTAMPTZ",
    "timespan": "INTERVAL",
    "dynamic": "JSON",
}


@dataclass(slots=True)
class Relation:
    """A lowered tabular value: its query and schema, plus the render hint if one was given.

    ``origin`` is the table or tabular ``let`` name when the value is exactly that table (what
    ``union withsource=`` reports for it).
    """

    query: exp.Query
    schema: Schema
    render: ast.Render | None = field(default=None)
    origin: str | None = field(default=None)


def alias(sql: exp.Expression, name: str) -> exp.Expression:
    """``sql AS "name"``."""
    return exp.Alias(this=sql, alias=exp.to_identifier(name, quoted=True))


def select_from(ctx: Context, rel: Relation, items: list[exp.Expression]) -> exp.Select:
    """``SELECT items FROM (rel) AS __qN``."""
    sub = exp.Subquery(this=rel.query, alias=exp.TableAlias(this=exp.to_identifier(ctx.fresh())))
    return exp.Select(expressions=items).from_(sub, copy=False)


def columns(schema: Schema, table: str | None = None) -> list[exp.Expression]:
    """Every column of ``schema``, quoted, in order."""
    return [col(name, table) for name in schema.names]


def default_name(expr: ast.Expr) -> str | None:
    """The column name KQL derives from an unnamed expression, if it derives one."""
    if isinstance(expr, ast.Name):
        return expr.name
    if isinstance(expr, ast.Member):
        base = default_name(expr.obj)
        return f"{base}_{expr.name}" if base else None
    if isinstance(expr, ast.Call) and expr.name in ("bin", "floor") and expr.args:
        return default_name(expr.args[0])
    return None


def named(
    ctx: Context, schema: Schema, items: tuple[ast.Assignment, ...], taken: list[str]
) -> list[tuple[str, Typed]]:
    """Lower ``name = expr`` items; unnamed ones get a derived name or ``Column1``, ``Column2``."""
    out: list[tuple[str, Typed]] = []
    unnamed = 0
    for item in items:
        value = lower_expr(ctx, schema, item.expr)
        name = item.name or default_name(item.expr)
        if name is None:
            unnamed += 1
            name = unique_name(f"Column{unnamed}", taken)
        out.append((name, value))
    return out


def row_count(ctx: Context, schema: Schema, node: ast.Expr) -> exp.Expression:
    """A row count (``take n``, ``limit n``): a constant, non-negative long."""
    value = lower_expr(ctx, schema, node).const
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ctx.error("the row count must be a constant, non-negative long", node)
    return exp.Literal.number(str(value))
