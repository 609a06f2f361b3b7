"""Lowering of ``summarize``: aggregates, expressions over aggregates, multi-column aggregates.

The inner SELECT groups by the ``by`` expressions and computes every aggregate call. An outer
SELECT is added when an item needs one: an expression over aggregates
(``ratio = todouble(countif(Result == "Fail")) / count()``) is lowered against the inner
columns, each aggregate call inside it having become a hidden inner column; ``arg_max`` and
``arg_min`` compute a struct that the outer SELECT unpacks into columns.

KQL semantics kept: without ``by`` there is one row even over an empty input; outside an
aggregate call, an expression may only use the ``by`` columns (and scalar ``let`` names).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from sqlglot import exp

from iotsec.workspace.kql import ast
from iotsec.workspace.kql.functions import AGGREGATES, check_arity
from iotsec.workspace.kql.relation import Relation, alias, default_name, named, select_from
from iotsec.workspace.kql.scalar import lower_expr
from iotsec.workspace.kql.semantic import Context, Schema, unique_name
from iotsec.workspace.kql.types import Typed, call, col
from iotsec.workspace.tables import KqlType

__all__ = ["lower_summarize"]

# Aggregates that produce several columns: only allowed as a whole summarize item.
_MULTI = frozenset({"arg_max", "arg_min", "percentiles"})


def lower_summarize(ctx: Context, rel: Relation, op: ast.Summarize) -> Relation:
    """Lower ``summarize aggregates by keys`` over ``rel``."""
    summary = _Summary(ctx, rel.schema, named(ctx, rel.schema, op.by, []))
    for item in op.aggregates:
        summary.add(item)
    return summary.finish(rel)


def _children(node: ast.Expr) -> list[ast.Expr]:
    out: list[ast.Expr] = []
    for f in dataclasses.fields(node):
        value = getattr(node, f.name)
        if isinstance(value, tuple):
            out += [v for v in value if isinstance(v, ast.Expr)]
        elif isinstance(value, ast.Expr):
            out.append(value)
    return out


def _map_children(node: ast.Expr, fn: Callable[[ast.Expr], ast.Expr]) -> ast.Expr:
    """``node`` with ``fn`` applied to each direct sub-expression (not inside subqueries)."""
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(node):
        value = getattr(node, f.name)
        if isinstance(value, tuple) and any(isinstance(v, ast.Expr) for v in value):
            changes[f.name] = tuple(fn(v) if isinstance(v, ast.Expr) else v for v in value)
        elif isinstance(value, ast.Expr):
            changes[f.name] = fn(value)
    return dataclasses.replace(node, **changes) if changes else node


def _has_aggregate(node: ast.Expr) -> bool:
    if isinstance(node, ast.Call) and node.name in AGGREGATES:
        return True
    return any(_has_aggregate(child) for child in _children(node))


class _Summary:
    """The items of one summarize: inner (grouped) and outer SELECT lists, output columns."""

    def __init__(self, ctx: Context, schema: Schema, by: list[tuple[str, Typed]]) -> None:
        self.ctx = ctx
        self.schema = schema
        self.by = by
        self.taken = [n for n, _ in by]
        self.inner: list[exp.Expression] = [alias(v.sql, n) for n, v in by]
        self.outer: list[exp.Expression] = [col(n) for n, _ in by]
        self.columns: list[tuple[str, KqlType]] = [(n, v.type) for n, v in by]
        self.hidden: list[tuple[str, KqlType]] = []
        self.two_level = False
        self.unnamed = 0

    def finish(self, rel: Relation) -> Relation:
        query = select_from(self.ctx, rel, self.inner)
        if self.by:
            query = query.group_by(*(v.sql for _, v in self.by), copy=False)
        out = Relation(query, Schema(tuple(self.columns)))
        if self.two_level:
            out = Relation(select_from(self.ctx, out, self.outer), out.schema)
        return out

    def claim(self, name: str, node: ast.Assignment) -> str:
        if name in self.taken:
            raise self.ctx.error(f"duplicate column name '{name}' in summarize", node)
        self.taken.append(name)
        return name

    def add(self, item: ast.Assignment) -> None:
        node = item.expr
        if not isinstance(node, ast.Call) or node.name not in AGGREGATES:
            self.add_expression(item)
            return
        spec = AGGREGATES[node.name]
        check_arity(self.ctx, node, spec.min_args, spec.max_args)
        if node.name in ("arg_max", "arg_min"):
            self.add_arg(item, node)
            return
        calls = [node]
        if node.name == "percentiles":
            calls = [ast.Call("percentile", (node.args[0], p), node.span) for p in node.args[1:]]
        target = default_name(node.args[0]) if node.args else None
        for sub in calls:
            value = self.aggregate(sub)
            default = f"{spec.prefix}_{target or ''}"
            if sub.name == "percentile":
                default += f"_{lower_expr(self.ctx, self.schema, sub.args[1]).const}"
                default = default.replace(".", "_")
            name = item.name if (item.name and len(calls) == 1) else None
            name = self.claim(name or unique_name(default, self.taken), item)
            self.inner.append(alias(value.sql, name))
            self.outer.append(col(name))
            self.columns.append((name, value.type))

    def aggregate(self, node: ast.Call) -> Typed:
        """One single-column aggregate call, lowered against the input rows."""
        spec = AGGREGATES[node.name]
        check_arity(self.ctx, node, spec.min_args, spec.max_args)
        for arg in node.args:
            if _has_aggregate(arg):
                raise self.ctx.error("aggregate calls cannot be nested", arg)
        lower = spec.lower
        assert lower is not None  # only the multi-column aggregates lack one
        args = [lower_expr(self.ctx, self.schema, a) for a in node.args]
        return lower(self.ctx, args, node)

    def add_expression(self, item: ast.Assignment) -> None:
        if not _has_aggregate(item.expr):
            raise self.ctx.error(
                "summarize expects an aggregate function call, such as count()", item
            )
        self.two_level = True
        rewritten = self.hoist(item.expr)
        value = lower_expr(self.ctx, Schema(tuple(self.by_columns() + self.hidden)), rewritten)
        name = item.name
        if name is None:
            self.unnamed += 1
            name = unique_name(f"Column{self.unnamed}", self.taken)
        name = self.claim(name, item)
        self.outer.append(alias(value.sql, name))
        self.columns.append((name, value.type))

    def by_columns(self) -> list[tuple[str, KqlType]]:
        return [(n, v.type) for n, v in self.by]

    def hoist(self, node: ast.Expr) -> ast.Expr:
        """``node`` with each aggregate call replaced by a hidden inner column's name."""
        if isinstance(node, ast.Call) and node.name in AGGREGATES:
            if node.name in _MULTI:
                raise self.ctx.error(
                    f"{node.name}() returns several columns and cannot be part of an expression",
                    node,
                )
            value = self.aggregate(node)
            hidden = self.ctx.fresh("__agg")
            self.inner.append(alias(value.sql, hidden))
            self.hidden.append((hidden, value.type))
            return ast.Name(hidden, node.span)
        if isinstance(node, ast.Name):
            by_names = {n for n, _ in self.by}
            if node.name not in by_names and self.schema.type_of(node.name) is not None:
                raise self.ctx.error(
                    f"column '{node.name}' must be inside an aggregate or be a 'by' column", node
                )
            return node
        return _map_children(node, self.hoist)

    def add_arg(self, item: ast.Assignment, node: ast.Call) -> None:
        self.two_level = True
        hidden = self.ctx.fresh("__arg")
        fields = self.arg_fields(node)
        struct = call(
            "struct_pack",
            *(
                exp.PropertyEQ(this=exp.to_identifier(f, quoted=True), expression=v.sql)
                for f, v in fields
            ),
        )
        key = lower_expr(self.ctx, self.schema, node.args[0])
        self.inner.append(alias(call(node.name, struct, key.sql), hidden))
        for i, (field_name, value) in enumerate(fields):
            name = item.name if (i == 0 and item.name) else unique_name(field_name, self.taken)
            self.taken.append(name)
            extract = call("struct_extract", col(hidden), exp.Literal.string(field_name))
            self.outer.append(alias(extract, name))
            self.columns.append((name, value.type))

    def arg_fields(self, node: ast.Call) -> list[tuple[str, Typed]]:
        key = node.args[0]
        key_name = default_name(key) or f"{AGGREGATES[node.name].prefix}_"
        fields = [(key_name, lower_expr(self.ctx, self.schema, key))]
        for arg in node.args[1:]:
            if isinstance(arg, ast.Star):
                fields += [
                    (n, Typed(col(n), t))
                    for n, t in self.schema.columns
                    if n not in self.taken and n != key_name and n not in (f for f, _ in fields)
                ]
            else:
                name = default_name(arg) or f"Column{len(fields)}"
                fields.append((name, lower_expr(self.ctx, self.schema, arg)))
        return fields
