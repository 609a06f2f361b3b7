"""Lowering of ``join``: every KQL join kind as one SQL join (or EXISTS for semi/anti joins).

KQL semantics kept: ``innerunique`` (the default) first cuts the left side to one row per join
key, then joins like ``inner``; ``leftsemi``/``leftanti`` keep the left rows that have / have no
match, left columns only; a right-side column whose name is taken gets a numeric suffix
(``DeviceId1``).
"""

from __future__ import annotations

from sqlglot import exp

from iotsec.workspace.kql import ast
from iotsec.workspace.kql.relation import Relation, alias, columns, select_from
from iotsec.workspace.kql.semantic import Context, Schema, unique_name
from iotsec.workspace.kql.types import col

__all__ = ["lower_join"]

_JOIN_TYPES = {
    "inner": "inner",
    "innerunique": "inner",
    "leftouter": "left",
    "rightouter": "right",
    "fullouter": "full",
}


def lower_join(ctx: Context, left: Relation, right: Relation, op: ast.Join) -> Relation:
    """Join ``left`` (the piped input) with ``right`` (the lowered right side of ``op``)."""
    la, ra = ctx.fresh("__l"), ctx.fresh("__r")
    conds: list[exp.Expression] = []
    left_keys = []
    for key in op.keys:
        lt, rt = ctx.column(left.schema, key.left), ctx.column(right.schema, key.right)
        if lt != rt:
            raise ctx.error(f"join keys have different types: {lt} and {rt}", key)
        conds.append(exp.EQ(this=col(key.left.name, la), expression=col(key.right.name, ra)))
        left_keys.append(col(key.left.name))
    on = exp.and_(*conds)
    left_query = left.query
    if op.kind == "innerunique":
        rn = ctx.fresh("__rn")
        window = exp.Window(this=exp.RowNumber(), partition_by=left_keys)
        numbered = select_from(ctx, left, [*columns(left.schema), alias(window, rn)])
        left_query = select_from(ctx, Relation(numbered, left.schema), columns(left.schema)).where(
            exp.EQ(this=col(rn), expression=exp.Literal.number("1")), copy=False
        )
    left_sub = exp.Subquery(this=left_query, alias=exp.TableAlias(this=exp.to_identifier(la)))
    right_sub = exp.Subquery(this=right.query, alias=exp.TableAlias(this=exp.to_identifier(ra)))
    if op.kind in ("leftsemi", "leftanti"):
        probe = exp.Select(expressions=[exp.Literal.number("1")]).from_(right_sub, copy=False)
        exists: exp.Expression = exp.Exists(this=probe.where(on, copy=False))
        if op.kind == "leftanti":
            exists = exp.Not(this=exists)
        query = exp.Select(expressions=columns(left.schema, la)).from_(left_sub, copy=False)
        return Relation(query.where(exists, copy=False), left.schema)
    select: list[exp.Expression] = [alias(col(n, la), n) for n in left.schema.names]
    out = list(left.schema.columns)
    for name, kind in right.schema.columns:
        unique = unique_name(name, [n for n, _ in out])
        select.append(alias(col(name, ra), unique))
        out.append((unique, kind))
    query = exp.Select(expressions=select).from_(left_sub, copy=False)
    query = query.join(right_sub, on=on, join_type=_JOIN_TYPES[op.kind], copy=False)
    return Relation(query, Schema(tuple(out)))
