"""Lowering of ``union``: ``UNION ALL`` of the inputs, each padded to the output columns.

KQL semantics kept: ``kind=outer`` (the default) keeps every column of any input, null where an
input lacks it, and a name that has several types becomes one column per type, suffixed with
the type (``Port_long``, ``Port_string``); ``kind=inner`` keeps the columns every input has
with one type. ``withsource=C`` adds ``C`` as the first column: the table (or tabular ``let``)
name a row came from, or ``union_arg<i>`` for an input that is a query (``i`` counts inputs
from 0, the piped input first).
"""

from __future__ import annotations

from sqlglot import exp

from iotsec.workspace.kql import ast
from iotsec.workspace.kql.relation import SQL_TYPES, Relation, alias, select_from
from iotsec.workspace.kql.semantic import Context, Schema
from iotsec.workspace.kql.types import col
from iotsec.workspace.tables import KqlType

__all__ = ["lower_union"]


def _output(ctx: Context, parts: list[Relation], op: ast.Union) -> list[tuple[str, str, KqlType]]:
    """(output name, input name, type) for each output column, in first-seen order."""
    types: dict[str, list[KqlType]] = {}
    for part in parts:
        for name, kind in part.schema.columns:
            seen = types.setdefault(name, [])
            if kind not in seen:
                seen.append(kind)
    out: list[tuple[str, str, KqlType]] = []
    for name, kinds in types.items():
        if op.kind == "inner":
            if len(kinds) > 1:
                raise ctx.error(
                    f"union: column '{name}' is {kinds[0]} in one input and {kinds[1]} in another",
                    op,
                )
            if all(p.schema.type_of(name) for p in parts):
                out.append((name, name, kinds[0]))
        elif len(kinds) == 1:
            out.append((name, name, kinds[0]))
        else:
            out += [(f"{name}_{kind}", name, kind) for kind in kinds]
    return out


def lower_union(ctx: Context, parts: list[Relation], op: ast.Union) -> Relation:
    """The union of ``parts`` (already lowered, the piped input first) as ``op`` asks."""
    out = _output(ctx, parts, op)
    names = [name for name, _, _ in out]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise ctx.error(f"union: two output columns are named '{dup}'", op)
    if op.withsource is not None and op.withsource in names:
        raise ctx.error(f"union: withsource column '{op.withsource}' is already a column", op)
    queries: list[exp.Query] = []
    for i, part in enumerate(parts):
        select: list[exp.Expression] = []
        if op.withsource is not None:
            origin = part.origin or f"union_arg{i}"
            select.append(alias(exp.Literal.string(origin), op.withsource))
        for name, source, kind in out:
            if part.schema.type_of(source) == kind:
                select.append(col(source) if name == source else alias(col(source), name))
            else:
                select.append(alias(exp.cast(exp.Null(), SQL_TYPES[kind]), name))
        queries.append(select_from(ctx, part, select))
    query: exp.Query = queries[0]
    for other in queries[1:]:
        query = exp.union(query, other, distinct=False)
    columns = [(name, kind) for name, _, kind in out]
    if op.withsource is not None:
        columns.insert(0, (op.withsource, "string"))
    return Relation(query, Schema(tuple(columns)))
