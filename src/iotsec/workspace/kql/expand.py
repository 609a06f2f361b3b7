"""Lowering of ``mv-expand``: one output row per element, several columns in lockstep.

Each expanded value becomes a DuckDB list in an inner SELECT; the outer SELECT unnests every
list at once, which DuckDB does side by side, padding the shorter lists with null: exactly
KQL's lockstep expansion. Per value, as in KQL:

* an array gives one row per element, an empty array none;
* a property bag gives one row per property: ``{"key": value}`` (``kind=bag``, the default) or
  ``["key", value]`` (``kind=array``); an empty bag gives none;
* null, or any other value, gives one row holding the value itself.

A row gives as many rows as its longest list (none if all are empty); ``limit n`` caps that.
``to typeof(T)`` casts each element without parsing: an element that is not already a ``T``
(a JSON string for ``long``, say) becomes null; ``string`` takes any element's text.
``with_itemindex=i`` adds ``i``, the 0-based element position, as the last column.
"""

from __future__ import annotations

from sqlglot import exp

from iotsec.workspace.kql import ast
from iotsec.workspace.kql.functions import FUNCTIONS
from iotsec.workspace.kql.relation import Relation, alias, default_name, row_count, select_from
from iotsec.workspace.kql.scalar import lower_expr
from iotsec.workspace.kql.semantic import Context, Schema
from iotsec.workspace.kql.types import Typed, as_string, call, col
from iotsec.workspace.tables import KqlType

__all__ = ["lower_mv_expand"]

_S = exp.Literal.string


def _json_type_in(value: exp.Expression, *types: str) -> exp.Expression:
    return exp.In(this=call("json_type", value), expressions=[_S(t) for t in types])


def _elements(ctx: Context, value: exp.Expression, kind: str = "bag") -> exp.Expression:
    """The list of JSON values ``value`` expands to (see the module docstring)."""
    items = exp.cast(call("json_extract", value, _S("$[*]")), "JSON[]")
    key, index = ctx.fresh("__k"), ctx.fresh("__i")
    values = exp.cast(call("json_extract", value, _S("$.*")), "JSON[]")
    pair = call(
        "json_object" if kind == "bag" else "json_array",
        exp.column(key, quoted=True),
        exp.Bracket(this=values, expressions=[exp.column(index, quoted=True)]),
    )
    lam = exp.Lambda(
        this=pair,
        expressions=[exp.to_identifier(key, quoted=True), exp.to_identifier(index, quoted=True)],
    )
    properties = call("list_transform", call("json_keys", value), lam)
    return exp.Case(
        ifs=[
            exp.If(this=_json_type_in(value, "ARRAY"), true=items),
            exp.If(this=_json_type_in(value, "OBJECT"), true=properties),
        ],
        default=call("list_value", value),
    )


def _typed(ctx: Context, element: exp.Expression, to: KqlType) -> exp.Expression:
    """One JSON element cast to ``to``: null unless it already is one (strings: its text)."""
    text = call("json_extract_string", element, _S("$"))
    if to == "string":
        return as_string(Typed(element, "dynamic"))
    if to == "datetime":
        to_datetime = FUNCTIONS["todatetime"].lower
        parsed = to_datetime(ctx, [Typed(text, "string")], ast.Call("todatetime", ()))
        return exp.If(this=_json_type_in(element, "VARCHAR"), true=parsed.sql)
    json_types = {
        "long": ("BIGINT", "UBIGINT"),
        "real": ("BIGINT", "UBIGINT", "DOUBLE"),
        "bool": ("BOOLEAN",),
    }[to]
    sql_type = {"long": "BIGINT", "real": "DOUBLE", "bool": "BOOLEAN"}[to]
    cast = exp.TryCast(this=text, to=exp.DataType.build(sql_type))
    return exp.If(this=_json_type_in(element, *json_types), true=cast)


def lower_mv_expand(ctx: Context, rel: Relation, op: ast.MvExpand) -> Relation:
    """Lower ``mv-expand`` over ``rel``."""
    schema = rel.schema
    limit = row_count(ctx, schema, op.limit) if op.limit is not None else None
    out: dict[str, KqlType] = dict(schema.columns)
    inner: list[exp.Expression] = [col(n) for n in schema.names]
    outer: dict[str, exp.Expression] = {n: col(n) for n in schema.names}
    lists: list[str] = []
    expanded: set[str] = set()
    for item in op.items:
        name = item.name or default_name(item.expr)
        if name is None:
            raise ctx.error("mv-expand needs a column, or 'name = expression'", item)
        if name in expanded:
            raise ctx.error(f"mv-expand names column '{name}' twice", item)
        expanded.add(name)
        value = lower_expr(ctx, schema, item.expr)
        if value.type != "dynamic":
            raise ctx.error(f"mv-expand needs a dynamic column, got {value.type}", item)
        values = _elements(ctx, value.sql, op.kind)
        if limit is not None:
            values = call("list_slice", values, exp.Literal.number("1"), limit)
        if item.to_type is not None and item.to_type != "dynamic":
            values = _cast_elements(ctx, item, values, item.to_type)
        hidden = ctx.fresh("__mv")
        lists.append(hidden)
        inner.append(alias(values, hidden))
        out[name] = item.to_type or "dynamic"
        outer[name] = alias(call("unnest", col(hidden)), name)
    if op.index is not None:
        if op.index in out:
            raise ctx.error(f"with_itemindex column '{op.index}' already exists", op)
        longest = exp.Greatest(
            this=call("len", col(lists[0])), expressions=[call("len", col(h)) for h in lists[1:]]
        )
        positions = call("range", exp.Literal.number("0"), longest)
        outer[op.index] = alias(call("unnest", positions), op.index)
        out[op.index] = "long"
    inner_rel = Relation(select_from(ctx, rel, inner), schema)
    return Relation(select_from(ctx, inner_rel, list(outer.values())), Schema(tuple(out.items())))


def _cast_elements(
    ctx: Context, item: ast.ExpandItem, values: exp.Expression, to: KqlType
) -> exp.Expression:
    if to == "timespan":
        raise ctx.error("mv-expand cannot cast elements to timespan", item)
    element = ctx.fresh("__e")
    converted = _typed(ctx, exp.column(element, quoted=True), to)
    lam = exp.Lambda(this=converted, expressions=[exp.to_identifier(element, quoted=True)])
    return call("list_transform", values, lam)
