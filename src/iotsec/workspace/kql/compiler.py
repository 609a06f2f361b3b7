"""``compile_kql``: KQL text to one read-only DuckDB ``SELECT``, its columns and render hint.

The compiler does no I/O. Its output can only read: it is generated from a sqlglot tree that the
compiler built itself, every table in it is a catalog table or a ``let`` CTE (checked again on
the finished tree), identifiers are quoted, and string literals are escaped by sqlglot.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlglot import exp

from iotsec.workspace.kql import ast
from iotsec.workspace.kql.errors import KqlError, Span
from iotsec.workspace.kql.lower import lower_pipeline, lower_subquery
from iotsec.workspace.kql.parser import parse
from iotsec.workspace.kql.scalar import lower_expr
from iotsec.workspace.kql.semantic import Context, Schema, unique_name
from iotsec.workspace.tables import TABLES, KqlType, Table

__all__ = ["CompiledQuery", "RenderHint", "compile_kql"]

RenderValue = str | int | float | bool


@dataclass(frozen=True, slots=True)
class RenderHint:
    """A ``render`` operator: the chart kind and its ``with (...)`` properties."""

    kind: str
    properties: Mapping[str, RenderValue] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CompiledQuery:
    """A compiled query: DuckDB SQL, the output columns with KQL types, the render hint."""

    sql: str
    columns: tuple[tuple[str, KqlType], ...]
    render: RenderHint | None = None

    @property
    def column_names(self) -> tuple[str, ...]:
        """The output column names, in order."""
        return tuple(name for name, _ in self.columns)


def _render(ctx: Context, node: ast.Render) -> RenderHint:
    props: dict[str, RenderValue] = {}
    for name, value in node.properties:
        if isinstance(value, ast.Name):
            props[name] = value.name
            continue
        const = lower_expr(ctx, Schema(()), value).const
        if not isinstance(const, str | int | float | bool):
            raise ctx.error(f"render property '{name}' must be a constant", value)
        props[name] = const
    return RenderHint(node.kind, props)


_COMPOUND = (exp.Binary, exp.Not, exp.Between, exp.In, exp.Is, exp.Neg)


def _parenthesize(query: exp.Query) -> None:
    """Parenthesize compound operands: the tree's shape, not SQL precedence, decides grouping."""
    for node in list(query.find_all(exp.Binary, exp.Not, exp.Between, exp.Neg, exp.In, exp.Is)):
        for key in ("this", "expression", "low", "high"):
            child = node.args.get(key)
            if isinstance(child, _COMPOUND) and not isinstance(node, exp.PropertyEQ):
                node.set(key, exp.Paren(this=child))


def _guard(ctx: Context, query: exp.Query, ctes: set[str]) -> None:
    """Defence in depth: the finished tree reads only catalog tables and let CTEs."""
    for table in query.find_all(exp.Table):
        name = table.name
        if (
            table.args.get("db")
            or table.args.get("catalog")
            or (name not in ctx.catalog and name not in ctes)
        ):
            raise KqlError(f"internal error: refusing to read {name!r}", ctx.text, Span(0, 0))
    if not isinstance(query, exp.Select | exp.Union):
        raise KqlError("internal error: not a SELECT", ctx.text, Span(0, 0))


def compile_kql(
    text: str, catalog: Mapping[str, Table] = TABLES, *, now: datetime | None = None
) -> CompiledQuery:
    """Compile a KQL query to DuckDB SQL.

    ``now`` fixes ``now()`` and ``ago()`` (default: the current time, read once).

    >>> compile_kql("SecurityAlert | count").columns
    (('Count', 'long'),)
    """
    tree = parse(text)
    ctx = Context(text, catalog, (now or datetime.now(UTC)).astimezone(UTC), lower_subquery)
    ctes: list[tuple[str, exp.Query]] = []
    for let in tree.lets:
        value = let.value
        if isinstance(value, ast.Name) and (value.name in ctx.tabular or value.name in catalog):
            value = ast.Pipeline(ast.TableRef(value.name, value.span), (), value.span)
        if isinstance(value, ast.Pipeline):
            rel = lower_pipeline(ctx, value)
            ctx.scalars.pop(let.name, None)
            ctx.tabular[let.name] = rel.schema
            # A name bound again gets a new CTE: the new value may read the old one.
            cte_name = unique_name(f"let_{let.name}", [name for name, _ in ctes])
            ctx.ctes[let.name] = cte_name
            ctes.append((cte_name, rel.query))
        else:
            ctx.tabular.pop(let.name, None)
            ctx.scalars[let.name] = lower_expr(ctx, Schema(()), value)
    rel = lower_pipeline(ctx, tree.body)
    query = rel.query
    for name, cte in ctes:
        query = query.with_(exp.to_identifier(name, quoted=True), as_=cte, copy=False)
    _guard(ctx, query, {name for name, _ in ctes})
    _parenthesize(query)
    render = _render(ctx, rel.render) if rel.render is not None else None
    return CompiledQuery(query.sql(dialect="duckdb"), rel.schema.columns, render)
