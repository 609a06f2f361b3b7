"""Lowering of tabular operators: each pipe stage becomes a SELECT over the previous one.

Every stage names its columns explicitly (never ``*``), so the output schema is known exactly.
Tabular ``let`` statements become CTEs named ``let_<name>``; tables are only ever the catalog's.

KQL semantics kept: ``sort`` is descending by default with nulls last (ascending: nulls first);
``summarize`` without ``by`` yields one row even over an empty input; ``join`` defaults to
``innerunique`` (the left side deduplicated on the join keys first); right-side columns whose
names are taken get a numeric suffix (``DeviceId1``); ``union`` is ``outer`` by default.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlglot import exp

from iotsec.workspace.kql import ast
from iotsec.workspace.kql.errors import did_you_mean
from iotsec.workspace.kql.functions import AGGREGATES, check_arity
from iotsec.workspace.kql.scalar import lower_expr
from iotsec.workspace.kql.semantic import Context, Schema, unique_name
from iotsec.workspace.kql.types import Typed, as_bool, call, col
from iotsec.workspace.tables import KqlType

__all__ = ["Relation", "lower_pipeline"]

_SQL_TYPES: dict[KqlType, str] = {
    "string": "VARCHAR",
    "long": "BIGINT",
    "real": "DOUBLE",
    "bool": "BOOLEAN",
    "datetime": "TIMESTAMPTZ",
    "timespan": "INTERVAL",
    "dynamic": "JSON",
}
_JOIN_TYPES = {
    "inner": "inner",
    "innerunique": "inner",
    "leftouter": "left",
    "rightouter": "right",
    "fullouter": "full",
}


@dataclass(slots=True)
class Relation:
    """A lowered tabular value: its query and schema, plus the render hint if one was given."""

    query: exp.Query
    schema: Schema
    render: ast.Render | None = field(default=None)


def _alias(sql: exp.Expression, name: str) -> exp.Expression:
    return exp.Alias(this=sql, alias=exp.to_identifier(name, quoted=True))


def _select_from(ctx: Context, rel: Relation, items: list[exp.Expression]) -> exp.Select:
    sub = exp.Subquery(this=rel.query, alias=exp.TableAlias(this=exp.to_identifier(ctx.fresh())))
    return exp.Select(expressions=items).from_(sub, copy=False)


def _columns(schema: Schema, table: str | None = None) -> list[exp.Expression]:
    return [col(name, table) for name in schema.names]


def _default_name(expr: ast.Expr) -> str | None:
    if isinstance(expr, ast.Name):
        return expr.name
    if isinstance(expr, ast.Member):
        base = _default_name(expr.obj)
        return f"{base}_{expr.name}" if base else None
    if isinstance(expr, ast.Call) and expr.name in ("bin", "floor") and expr.args:
        return _default_name(expr.args[0])
    return None


def _named(
    ctx: Context, schema: Schema, items: tuple[ast.Assignment, ...], taken: list[str]
) -> list[tuple[str, Typed]]:
    out: list[tuple[str, Typed]] = []
    unnamed = 0
    for item in items:
        value = lower_expr(ctx, schema, item.expr)
        name = item.name or _default_name(item.expr)
        if name is None:
            unnamed += 1
            name = unique_name(f"Column{unnamed}", taken)
        out.append((name, value))
    return out


def _source(ctx: Context, node: ast.Source) -> Relation:
    if isinstance(node, ast.Union):
        return _union(ctx, None, node)
    if node.name in ctx.tabular:
        table = exp.Table(this=exp.to_identifier(f"let_{node.name}", quoted=True))
        schema = ctx.tabular[node.name]
    elif node.name in ctx.catalog:
        table = exp.Table(this=exp.to_identifier(node.name, quoted=True))
        schema = Schema.of(ctx.catalog[node.name])
    else:
        raise ctx.error(did_you_mean("table", node.name, ctx.table_names()), node)
    return Relation(exp.Select(expressions=_columns(schema)).from_(table, copy=False), schema)


def lower_pipeline(ctx: Context, node: ast.Pipeline) -> Relation:
    """Lower a source and its operators."""
    rel = _source(ctx, node.source)
    for i, op in enumerate(node.operators):
        if isinstance(op, ast.Render):
            if i != len(node.operators) - 1:
                raise ctx.error("render must be the last operator", op)
            rel.render = op
            continue
        rel = _operator(ctx, rel, op)
    return rel


def _operator(ctx: Context, rel: Relation, op: ast.Operator) -> Relation:  # noqa: PLR0911, PLR0912
    schema = rel.schema
    match op:
        case ast.Where(predicate=predicate):
            cond = lower_expr(ctx, schema, predicate)
            query = _select_from(ctx, rel, _columns(schema)).where(as_bool(cond), copy=False)
            return Relation(query, schema)
        case ast.Project(items=items):
            named = _named(ctx, schema, items, [])
            names = [n for n, _ in named]
            if len(set(names)) != len(names):
                dup = next(n for n in names if names.count(n) > 1)
                raise ctx.error(f"duplicate column name '{dup}' in project", op)
            select = [_alias(v.sql, n) for n, v in named]
            return Relation(
                _select_from(ctx, rel, select), Schema(tuple((n, v.type) for n, v in named))
            )
        case ast.Extend(items=items):
            columns = dict(schema.columns)
            sqls: dict[str, exp.Expression] = {n: col(n) for n in schema.names}
            for name, value in _named(ctx, schema, items, list(schema.names)):
                columns[name] = value.type
                sqls[name] = _alias(value.sql, name)
            return Relation(
                _select_from(ctx, rel, list(sqls.values())), Schema(tuple(columns.items()))
            )
        case ast.ProjectAway(names=names):
            for away_name in names:
                ctx.column(schema, away_name)
            away = {n.name for n in names}
            kept = Schema(tuple((n, t) for n, t in schema.columns if n not in away))
            return Relation(_select_from(ctx, rel, _columns(kept)), kept)
        case ast.ProjectRename(pairs=pairs):
            renames = {}
            for new, old in pairs:
                ctx.column(schema, old)
                renames[old.name] = new.name
            renamed = tuple((renames.get(n, n), t) for n, t in schema.columns)
            select = [_alias(col(n), renames.get(n, n)) for n in schema.names]
            return Relation(_select_from(ctx, rel, select), Schema(renamed))
        case ast.Summarize():
            return _summarize(ctx, rel, op)
        case ast.Count():
            count = _alias(exp.Count(this=exp.Star()), "Count")
            return Relation(_select_from(ctx, rel, [count]), Schema((("Count", "long"),)))
        case ast.Distinct(items=items):
            if not items:
                query = _select_from(ctx, rel, _columns(schema)).distinct(copy=False)
                return Relation(query, schema)
            named = _named(ctx, schema, tuple(ast.Assignment(None, i, i.span) for i in items), [])
            query = _select_from(ctx, rel, [_alias(v.sql, n) for n, v in named]).distinct(
                copy=False
            )
            return Relation(query, Schema(tuple((n, v.type) for n, v in named)))
        case ast.Take(count=count):
            query = _select_from(ctx, rel, _columns(schema)).limit(
                _limit(ctx, schema, count), copy=False
            )
            return Relation(query, schema)
        case ast.Sort(keys=keys):
            query = _select_from(ctx, rel, _columns(schema)).order_by(
                *_order(ctx, schema, keys), copy=False
            )
            return Relation(query, schema)
        case ast.Top(count=count, keys=keys):
            query = _select_from(ctx, rel, _columns(schema)).order_by(
                *_order(ctx, schema, keys), copy=False
            )
            return Relation(query.limit(_limit(ctx, schema, count), copy=False), schema)
        case ast.MvExpand(items=items):
            return _mv_expand(ctx, rel, items)
        case ast.Join():
            return _join(ctx, rel, op)
        case ast.Union():
            return _union(ctx, rel, op)
    raise ctx.error("render must be the last operator", op)


def _limit(ctx: Context, schema: Schema, node: ast.Expr) -> exp.Expression:
    value = lower_expr(ctx, schema, node).const
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ctx.error("the row count must be a constant, non-negative long", node)
    return exp.Literal.number(str(value))


def _order(ctx: Context, schema: Schema, keys: tuple[ast.SortKey, ...]) -> list[exp.Ordered]:
    out = []
    for key in keys:
        value = lower_expr(ctx, schema, key.expr)
        nulls_first = key.nulls_first
        if nulls_first is None:  # KQL: desc puts nulls last, asc puts them first
            nulls_first = not key.descending
        out.append(exp.Ordered(this=value.sql, desc=key.descending, nulls_first=nulls_first))
    return out


def _summarize(ctx: Context, rel: Relation, op: ast.Summarize) -> Relation:
    schema = rel.schema
    by = _named(ctx, schema, op.by, [])
    taken = [n for n, _ in by]
    inner: list[exp.Expression] = [_alias(v.sql, n) for n, v in by]
    outer: list[exp.Expression] = [col(n) for n, _ in by]
    columns: list[tuple[str, KqlType]] = [(n, v.type) for n, v in by]
    two_level = False
    for item in op.aggregates:
        node = item.expr
        if not isinstance(node, ast.Call) or node.name not in AGGREGATES:
            raise ctx.error("summarize expects an aggregate function call, such as count()", item)
        spec = AGGREGATES[node.name]
        check_arity(ctx, node, spec.min_args, spec.max_args)
        target = _default_name(node.args[0]) if node.args else None
        if node.name in ("arg_max", "arg_min"):
            two_level = True
            hidden = ctx.fresh("__arg")
            fields = _arg_fields(ctx, schema, node, taken)
            struct = call(
                "struct_pack",
                *(
                    exp.PropertyEQ(this=exp.to_identifier(f, quoted=True), expression=v.sql)
                    for f, v in fields
                ),
            )
            key = lower_expr(ctx, schema, node.args[0])
            inner.append(_alias(call(node.name, struct, key.sql), hidden))
            for i, (field_name, value) in enumerate(fields):
                name = item.name if (i == 0 and item.name) else unique_name(field_name, taken)
                taken.append(name)
                outer.append(
                    _alias(
                        call("struct_extract", col(hidden), exp.Literal.string(field_name)), name
                    )
                )
                columns.append((name, value.type))
            continue
        if node.name == "percentiles":
            calls = [ast.Call("percentile", (node.args[0], p), node.span) for p in node.args[1:]]
        else:
            calls = [node]
        for sub in calls:
            lower = AGGREGATES[sub.name].lower
            assert lower is not None  # only arg_max/arg_min/percentiles lack one
            args = [lower_expr(ctx, schema, a) for a in sub.args]
            value = lower(ctx, args, sub)
            default = f"{spec.prefix}_{target or ''}"
            if sub.name == "percentile":
                default += f"_{args[1].const}".replace(".", "_")
            name = item.name if (item.name and len(calls) == 1) else unique_name(default, taken)
            if name in taken:
                raise ctx.error(f"duplicate column name '{name}' in summarize", item)
            taken.append(name)
            inner.append(_alias(value.sql, name))
            outer.append(col(name))
            columns.append((name, value.type))
    query = _select_from(ctx, rel, inner)
    if by:
        query = query.group_by(*(v.sql for _, v in by), copy=False)
    out = Relation(query, Schema(tuple(columns)))
    if two_level:
        out = Relation(_select_from(ctx, out, outer), out.schema)
    return out


def _arg_fields(
    ctx: Context, schema: Schema, node: ast.Call, by: list[str]
) -> list[tuple[str, Typed]]:
    key = node.args[0]
    key_name = _default_name(key) or f"{AGGREGATES[node.name].prefix}_"
    fields = [(key_name, lower_expr(ctx, schema, key))]
    for arg in node.args[1:]:
        if isinstance(arg, ast.Star):
            fields += [
                (n, Typed(col(n), t))
                for n, t in schema.columns
                if n not in by and n != key_name and n not in (f for f, _ in fields)
            ]
        else:
            name = _default_name(arg) or f"Column{len(fields)}"
            fields.append((name, lower_expr(ctx, schema, arg)))
    return fields


def _mv_expand(ctx: Context, rel: Relation, items: tuple[ast.Assignment, ...]) -> Relation:
    if len(items) != 1:
        raise ctx.error("mv-expand of several columns at once is not supported", items[1])
    ((name, value),) = _named(ctx, rel.schema, items, list(rel.schema.names))
    if value.type != "dynamic":
        raise ctx.error(f"mv-expand needs a dynamic column, got {value.type}", items[0])
    # KQL: a null value gives one row (null), an empty array none, a non-array value one row.
    is_array = exp.EQ(this=call("json_type", value.sql), expression=exp.Literal.string("ARRAY"))
    elements = exp.cast(call("json_extract", value.sql, exp.Literal.string("$[*]")), "JSON[]")
    single = call("list_value", value.sql)
    expanded = call("unnest", exp.If(this=is_array, true=elements, false=single))
    columns = dict(rel.schema.columns)
    sqls: dict[str, exp.Expression] = {n: col(n) for n in rel.schema.names}
    columns[name] = "dynamic"
    sqls[name] = _alias(expanded, name)
    return Relation(_select_from(ctx, rel, list(sqls.values())), Schema(tuple(columns.items())))


def _join(ctx: Context, left: Relation, op: ast.Join) -> Relation:
    right = lower_pipeline(ctx, op.right)
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
        numbered = _select_from(ctx, left, [*_columns(left.schema), _alias(window, rn)])
        left_query = _select_from(
            ctx, Relation(numbered, left.schema), _columns(left.schema)
        ).where(exp.EQ(this=col(rn), expression=exp.Literal.number("1")), copy=False)
    left_sub = exp.Subquery(this=left_query, alias=exp.TableAlias(this=exp.to_identifier(la)))
    right_sub = exp.Subquery(this=right.query, alias=exp.TableAlias(this=exp.to_identifier(ra)))
    if op.kind in ("leftsemi", "leftanti"):
        probe = exp.Select(expressions=[exp.Literal.number("1")]).from_(right_sub, copy=False)
        exists: exp.Expression = exp.Exists(this=probe.where(on, copy=False))
        if op.kind == "leftanti":
            exists = exp.Not(this=exists)
        query = exp.Select(expressions=_columns(left.schema, la)).from_(left_sub, copy=False)
        return Relation(query.where(exists, copy=False), left.schema)
    select: list[exp.Expression] = [_alias(col(n, la), n) for n in left.schema.names]
    columns = list(left.schema.columns)
    for name, kind in right.schema.columns:
        out = unique_name(name, [n for n, _ in columns])
        select.append(_alias(col(name, ra), out))
        columns.append((out, kind))
    query = exp.Select(expressions=select).from_(left_sub, copy=False)
    query = query.join(right_sub, on=on, join_type=_JOIN_TYPES[op.kind], copy=False)
    return Relation(query, Schema(tuple(columns)))


def _union(ctx: Context, first: Relation | None, op: ast.Union) -> Relation:
    parts = ([first] if first is not None else []) + [lower_pipeline(ctx, s) for s in op.sources]
    columns: dict[str, KqlType] = {}
    for part in parts:
        for name, kind in part.schema.columns:
            if columns.setdefault(name, kind) != kind:
                raise ctx.error(
                    f"union: column '{name}' is {columns[name]} in one input and {kind} in another",
                    op,
                )
    if op.kind == "inner":
        columns = {n: t for n, t in columns.items() if all(p.schema.type_of(n) for p in parts)}
    queries: list[exp.Query] = []
    for part in parts:
        select = [
            col(n) if part.schema.type_of(n) else _alias(exp.cast(exp.Null(), _SQL_TYPES[t]), n)
            for n, t in columns.items()
        ]
        queries.append(_select_from(ctx, part, select))
    query: exp.Query = queries[0]
    for other in queries[1:]:
        query = exp.union(query, other, distinct=False)
    return Relation(query, Schema(tuple(columns.items())))
