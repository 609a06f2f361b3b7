"""Lowering of tabular expressions: each pipe stage becomes a SELECT over the previous one.

Every stage names its columns explicitly (never ``*``), so the output schema is known exactly.
Tabular ``let`` statements become CTEs named ``let_<name>``; tables are only ever the catalog's.
``summarize``, ``mv-expand``, ``join``, ``union`` and the non-table sources have their own
modules; this one dispatches and lowers the column-shaping operators.

KQL semantics kept: ``sort`` is descending by default with nulls last (ascending: nulls first);
``project-keep`` keeps the input order; ``project-reorder`` puts the columns it names first, in
the order named (a wildcard's matches in input order, or sorted by ``asc``/``desc``, or
``granny-asc``/``granny-desc`` comparing digit runs as numbers) and leaves the rest after them.
"""

from __future__ import annotations

import re

from sqlglot import exp

from iotsec.workspace.kql import ast
from iotsec.workspace.kql.errors import did_you_mean
from iotsec.workspace.kql.expand import lower_mv_expand
from iotsec.workspace.kql.join import lower_join
from iotsec.workspace.kql.relation import Relation, alias, columns, named, row_count, select_from
from iotsec.workspace.kql.scalar import lower_expr
from iotsec.workspace.kql.semantic import Context, Schema
from iotsec.workspace.kql.sources import lower_datatable, lower_print, lower_range
from iotsec.workspace.kql.summarize import lower_summarize
from iotsec.workspace.kql.types import as_bool, col
from iotsec.workspace.kql.union import lower_union

__all__ = ["Relation", "lower_pipeline", "lower_subquery"]


def _table(ctx: Context, node: ast.TableRef) -> Relation:
    if node.name in ctx.tabular:
        table = exp.Table(this=exp.to_identifier(ctx.ctes[node.name], quoted=True))
        schema = ctx.tabular[node.name]
    elif node.name in ctx.catalog:
        table = exp.Table(this=exp.to_identifier(node.name, quoted=True))
        schema = Schema.of(ctx.catalog[node.name])
    else:
        raise ctx.error(did_you_mean("table", node.name, ctx.table_names()), node)
    query = exp.Select(expressions=columns(schema)).from_(table, copy=False)
    return Relation(query, schema, origin=node.name)


def _source(ctx: Context, node: ast.Source) -> Relation:
    match node:
        case ast.Union():
            return lower_union(ctx, _union_parts(ctx, node), node)
        case ast.Print():
            return lower_print(ctx, node)
        case ast.DataTable():
            return lower_datatable(ctx, node)
        case ast.Range():
            return lower_range(ctx, node)
        case ast.TableRef(name=name):
            if "*" in name:
                raise ctx.error("table wildcards are only allowed in union", node)
            return _table(ctx, node)
    raise AssertionError(node)  # pragma: no cover - the match is exhaustive


def _union_parts(ctx: Context, op: ast.Union) -> list[Relation]:
    parts: list[Relation] = []
    for source in op.sources:
        head = source.source
        if isinstance(head, ast.TableRef) and "*" in head.name and not source.operators:
            pattern = _wildcard(head.name)
            matches = sorted(name for name in ctx.catalog if pattern.fullmatch(name))
            if not matches:
                raise ctx.error(f"no table matches '{head.name}'", head)
            parts += [_table(ctx, ast.TableRef(name, head.span)) for name in matches]
        else:
            parts.append(lower_pipeline(ctx, source))
    return parts


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


def lower_subquery(ctx: Context, node: ast.Pipeline) -> tuple[exp.Query, Schema]:
    """A tabular expression used as a value set (``x in ((T | project c))``)."""
    rel = lower_pipeline(ctx, node)
    if rel.render is not None:
        raise ctx.error("render is not allowed in a subquery", rel.render)
    return rel.query, rel.schema


def _operator(ctx: Context, rel: Relation, op: ast.Operator) -> Relation:  # noqa: PLR0911, PLR0912
    schema = rel.schema
    match op:
        case ast.Where(predicate=predicate):
            cond = lower_expr(ctx, schema, predicate)
            query = select_from(ctx, rel, columns(schema)).where(as_bool(cond), copy=False)
            return Relation(query, schema)
        case ast.Project(items=items):
            values = named(ctx, schema, items, [])
            names = [n for n, _ in values]
            if len(set(names)) != len(names):
                dup = next(n for n in names if names.count(n) > 1)
                raise ctx.error(f"duplicate column name '{dup}' in project", op)
            select = [alias(v.sql, n) for n, v in values]
            return Relation(
                select_from(ctx, rel, select), Schema(tuple((n, v.type) for n, v in values))
            )
        case ast.Extend(items=items):
            kinds = dict(schema.columns)
            sqls: dict[str, exp.Expression] = {n: col(n) for n in schema.names}
            for name, value in named(ctx, schema, items, list(schema.names)):
                kinds[name] = value.type
                sqls[name] = alias(value.sql, name)
            return Relation(
                select_from(ctx, rel, list(sqls.values())), Schema(tuple(kinds.items()))
            )
        case ast.ProjectAway(names=names):
            away = set(_matching(ctx, schema, names))
            return _keep(ctx, rel, [n for n in schema.names if n not in away])
        case ast.ProjectKeep(names=names):
            keep = set(_matching(ctx, schema, names))
            return _keep(ctx, rel, [n for n in schema.names if n in keep])
        case ast.ProjectReorder(keys=keys):
            return _keep(ctx, rel, _reordered(ctx, schema, keys))
        case ast.ProjectRename(pairs=pairs):
            renames = {}
            for new, old in pairs:
                ctx.column(schema, old)
                renames[old.name] = new.name
            renamed = tuple((renames.get(n, n), t) for n, t in schema.columns)
            select = [alias(col(n), renames.get(n, n)) for n in schema.names]
            return Relation(select_from(ctx, rel, select), Schema(renamed))
        case ast.Summarize():
            return lower_summarize(ctx, rel, op)
        case ast.Count():
            count = alias(exp.Count(this=exp.Star()), "Count")
            return Relation(select_from(ctx, rel, [count]), Schema((("Count", "long"),)))
        case ast.Distinct(items=items):
            if not items:
                query = select_from(ctx, rel, columns(schema)).distinct(copy=False)
                return Relation(query, schema)
            values = named(ctx, schema, tuple(ast.Assignment(None, i, i.span) for i in items), [])
            query = select_from(ctx, rel, [alias(v.sql, n) for n, v in values])
            return Relation(
                query.distinct(copy=False), Schema(tuple((n, v.type) for n, v in values))
            )
        case ast.Take(count=count):
            query = select_from(ctx, rel, columns(schema))
            return Relation(query.limit(row_count(ctx, schema, count), copy=False), schema)
        case ast.Sort(keys=keys):
            query = select_from(ctx, rel, columns(schema))
            return Relation(query.order_by(*_order(ctx, schema, keys), copy=False), schema)
        case ast.Top(count=count, keys=keys):
            query = select_from(ctx, rel, columns(schema))
            query = query.order_by(*_order(ctx, schema, keys), copy=False)
            return Relation(query.limit(row_count(ctx, schema, count), copy=False), schema)
        case ast.MvExpand():
            return lower_mv_expand(ctx, rel, op)
        case ast.Join():
            return lower_join(ctx, rel, lower_pipeline(ctx, op.right), op)
        case ast.Union():
            return lower_union(ctx, [rel, *_union_parts(ctx, op)], op)
    raise ctx.error("render must be the last operator", op)


def _order(ctx: Context, schema: Schema, keys: tuple[ast.SortKey, ...]) -> list[exp.Ordered]:
    out = []
    for key in keys:
        value = lower_expr(ctx, schema, key.expr)
        nulls_first = key.nulls_first
        if nulls_first is None:  # KQL: desc puts nulls last, asc puts them first
            nulls_first = not key.descending
        out.append(exp.Ordered(this=value.sql, desc=key.descending, nulls_first=nulls_first))
    return out


def _keep(ctx: Context, rel: Relation, names: list[str]) -> Relation:
    schema = Schema(tuple((n, rel.schema.type_of(n) or "string") for n in names))
    return Relation(select_from(ctx, rel, columns(schema)), schema)


def _wildcard(pattern: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")), re.DOTALL)


def _matching(
    ctx: Context, schema: Schema, names: tuple[ast.Name | ast.ColumnPattern, ...]
) -> list[str]:
    """The columns the names and wildcards match, in input order (a plain name must exist)."""
    out: list[str] = []
    for item in names:
        if isinstance(item, ast.Name):
            ctx.column(schema, item)
            found = [item.name]
        else:
            pattern = _wildcard(item.pattern)
            found = [n for n in schema.names if pattern.fullmatch(n)]
        out += [n for n in found if n not in out]
    return out


def _granny(name: str) -> tuple[tuple[int, int | str], ...]:
    """A natural sort key: digit runs compare as numbers (``a20`` before ``a100``)."""
    return tuple(
        (0, int(part)) if part.isdigit() else (1, part)
        for part in re.findall(r"\d+|\D+", name)
        if part
    )


def _reordered(ctx: Context, schema: Schema, keys: tuple[ast.ReorderKey, ...]) -> list[str]:
    first: list[str] = []
    for key in keys:
        found = [n for n in _matching(ctx, schema, (key.column,)) if n not in first]
        if key.order in ("asc", "desc"):
            found.sort(reverse=key.order == "desc")
        elif key.order in ("granny-asc", "granny-desc"):
            found.sort(key=_granny, reverse=key.order == "granny-desc")
        first += found
    return first + [n for n in schema.names if n not in first]
