"""Lowering of the sources that are not tables: ``print``, ``datatable`` and ``range``.

None of them reads anything: ``print`` is a SELECT without FROM, ``datatable`` a VALUES list
of literals, ``range`` unnests a DuckDB list of row numbers. Their values are constants lowered
by the scalar lowering, so no DuckDB table function (``read_csv`` and the like) can appear.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from sqlglot import exp

from iotsec.workspace.kql import ast
from iotsec.workspace.kql.relation import SQL_TYPES, Relation, alias, select_from
from iotsec.workspace.kql.scalar import lower_expr
from iotsec.workspace.kql.semantic import Context, Schema
from iotsec.workspace.kql.types import NUMERIC, Typed, call, col
from iotsec.workspace.tables import KqlType

__all__ = ["MAX_RANGE_ROWS", "lower_datatable", "lower_print", "lower_range"]

#: The most rows ``range`` may produce (a larger range is refused at compile time).
MAX_RANGE_ROWS = 1_000_000

_NO_COLUMNS = Schema(())


def _unique(ctx: Context, names: list[str], node: ast.Source, what: str) -> None:
    for i, name in enumerate(names):
        if name in names[:i]:
            raise ctx.error(f"duplicate column name '{name}' in {what}", node)


def lower_print(ctx: Context, node: ast.Print) -> Relation:
    """``print a = 1, 2``: one row; an unnamed value is named ``print_<position>``."""
    values = [lower_expr(ctx, _NO_COLUMNS, item.expr) for item in node.items]
    names = [item.name or f"print_{i}" for i, item in enumerate(node.items)]
    _unique(ctx, names, node, "print")
    query = exp.Select(expressions=[alias(v.sql, n) for n, v in zip(names, values, strict=True)])
    return Relation(query, Schema(tuple((n, v.type) for n, v in zip(names, values, strict=True))))


def _cell(ctx: Context, name: str, kind: KqlType, node: ast.Expr) -> exp.Expression:
    if not isinstance(node, ast.Literal):
        raise ctx.error("datatable values must be literals", node)
    target = exp.DataType.build(SQL_TYPES[kind])
    if node.value is None or (node.kind == "datetime" and node.value == "null"):
        return exp.Cast(this=exp.Null(), to=target)
    value = lower_expr(ctx, _NO_COLUMNS, node)
    if value.type == kind or (kind == "real" and value.type == "long"):
        return exp.Cast(this=value.sql, to=target)
    if kind == "dynamic":
        return call("to_json", value.sql)
    raise ctx.error(f"datatable column '{name}' is {kind}, got a {value.type} value", node)


def lower_datatable(ctx: Context, node: ast.DataTable) -> Relation:
    """``datatable(a:long, b:string) [1, "x", 2, "y"]``: the values fill rows in order."""
    names = [n for n, _ in node.columns]
    _unique(ctx, names, node, "datatable")
    width = len(node.columns)
    if len(node.values) % width:
        raise ctx.error(
            f"datatable has {len(node.values)} values, not a whole number of rows of {width}",
            node,
        )
    schema = Schema(node.columns)
    rows = [
        exp.Tuple(
            expressions=[
                _cell(ctx, name, kind, value)
                for (name, kind), value in zip(
                    node.columns, node.values[i : i + width], strict=True
                )
            ]
        )
        for i in range(0, len(node.values), width)
    ]
    if not rows:  # VALUES cannot be empty: select typed nulls and keep no row
        nulls = [alias(exp.cast(exp.Null(), SQL_TYPES[k]), n) for n, k in node.columns]
        return Relation(exp.Select(expressions=nulls).where(exp.false(), copy=False), schema)
    table = ctx.fresh("__dt")
    values = exp.Values(
        expressions=rows,
        alias=exp.TableAlias(
            this=exp.to_identifier(table),
            columns=[exp.to_identifier(n, quoted=True) for n in names],
        ),
    )
    return Relation(exp.Select(expressions=[col(n) for n in names]).from_(values), schema)


def _range_type(ctx: Context, node: ast.Range, start: Typed, stop: Typed, step: Typed) -> KqlType:
    kinds = (start.type, stop.type, step.type)
    if all(k in NUMERIC for k in kinds):
        return "real" if "real" in kinds else "long"
    if kinds == ("datetime", "datetime", "timespan"):
        return "datetime"
    if kinds == ("timespan", "timespan", "timespan"):
        return "timespan"
    raise ctx.error(f"range cannot go from a {kinds[0]} to a {kinds[1]} by a {kinds[2]}", node)


def _micros(value: object) -> int | float:
    if isinstance(value, datetime):
        return (value - datetime(1970, 1, 1, tzinfo=value.tzinfo)) // timedelta(microseconds=1)
    if isinstance(value, timedelta):
        return value // timedelta(microseconds=1)
    assert isinstance(value, int | float)
    return value


def lower_range(ctx: Context, node: ast.Range) -> Relation:
    """``range x from start to stop step step``: start, start + step, ... up to stop."""
    bounds = [lower_expr(ctx, _NO_COLUMNS, e) for e in (node.start, node.stop, node.step)]
    for value, expr in zip(bounds, (node.start, node.stop, node.step), strict=True):
        if value.const is None or isinstance(value.const, bool | str):
            raise ctx.error("range bounds and step must be constant numbers, times or spans", expr)
    start, stop, step = bounds
    kind = _range_type(ctx, node, start, stop, step)
    low, high, size = (_micros(v.const) for v in bounds)
    if size == 0:
        raise ctx.error("range step must not be zero", node.step)
    steps = (high - low) / size if kind == "real" else (high - low) // size
    rows = max(0, math.floor(steps + 1e-9) + 1) if math.isfinite(steps) else MAX_RANGE_ROWS + 1
    if rows > MAX_RANGE_ROWS:
        raise ctx.error(f"range would produce more than {MAX_RANGE_ROWS} rows", node)
    index = ctx.fresh("__i")
    numbers = exp.Select(
        expressions=[alias(call("unnest", call("range", exp.Literal.number(str(rows)))), index)]
    )
    series = exp.Add(this=start.sql, expression=exp.Mul(this=step.sql, expression=col(index)))
    return Relation(
        select_from(ctx, Relation(numbers, Schema(((index, "long"),))), [alias(series, node.name)]),
        Schema(((node.name, kind),)),
    )
