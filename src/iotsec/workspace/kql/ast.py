"""The KQL syntax tree: frozen, typed nodes, each with the source span it was parsed from.

Spans compare equal to each other, so two trees are equal when they have the same shape and
values, wherever their text came from: ``parse(format(parse(q))) == parse(q)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal as TypingLiteral

from iotsec.workspace.kql.errors import Span
from iotsec.workspace.tables import KqlType

__all__ = [
    "Assignment",
    "Between",
    "Binary",
    "Call",
    "ColumnPattern",
    "Count",
    "DataTable",
    "Distinct",
    "ExpandItem",
    "Expr",
    "Extend",
    "InList",
    "Index",
    "Join",
    "JoinKey",
    "Let",
    "Literal",
    "LiteralKind",
    "Member",
    "MvExpand",
    "Name",
    "Operator",
    "Pipeline",
    "Print",
    "Project",
    "ProjectAway",
    "ProjectKeep",
    "ProjectRename",
    "ProjectReorder",
    "Query",
    "Range",
    "Render",
    "ReorderKey",
    "ReorderOrder",
    "Sort",
    "SortKey",
    "Source",
    "Star",
    "Subquery",
    "Summarize",
    "TableRef",
    "Take",
    "Top",
    "Unary",
    "Union",
    "Where",
]

_NOWHERE = Span(0, 0)


LiteralKind = TypingLiteral["string", "long", "real", "bool", "timespan", "datetime", "dynamic"]


# --- scalar expressions -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Literal:
    """A literal; ``value`` is decoded (timespans in microseconds, datetime/dynamic raw text).

    ``value`` None is a typed null such as ``long(null)``.
    """

    kind: LiteralKind
    value: str | int | float | bool | None
    span: Span = field(default=_NOWHERE, repr=False)


@dataclass(frozen=True, slots=True)
class Name:
    """A column, or a scalar ``let`` name."""

    name: str
    span: Span = field(default=_NOWHERE, repr=False)


@dataclass(frozen=True, slots=True)
class Member:
    """Property access on a dynamic value: ``obj.name``."""

    obj: Expr
    name: str
    span: Span = field(default=_NOWHERE, repr=False)


@dataclass(frozen=True, slots=True)
class Index:
    """Subscript on a dynamic value: ``obj["key"]`` or ``obj[0]``."""

    obj: Expr
    index: Expr
    span: Span = field(default=_NOWHERE, repr=False)


@dataclass(frozen=True, slots=True)
class Star:
    """``*`` as a function argument (``arg_max(T, *)``) or in ``distinct *``."""

    span: Span = field(default=_NOWHERE, repr=False)


@dataclass(frozen=True, slots=True)
class Call:
    """A scalar function or aggregate call."""

    name: str
    args: tuple[Expr, ...]
    span: Span = field(default=_NOWHERE, repr=False)


@dataclass(frozen=True, slots=True)
class Unary:
    """``-x`` or ``+x``."""

    op: str
    operand: Expr
    span: Span = field(default=_NOWHERE, repr=False)


@dataclass(frozen=True, slots=True)
class Binary:
    """A binary operator: arithmetic, comparison, string operator, ``and``/``or``."""

    op: str
    left: Expr
    right: Expr
    span: Span = field(default=_NOWHERE, repr=False)


@dataclass(frozen=True, slots=True)
class InList:
    """``x in (a, b)``, ``!in``, ``in~``, ``!in~``."""

    op: str
    left: Expr
    items: tuple[Expr, ...]
    span: Span = field(default=_NOWHERE, repr=False)


@dataclass(frozen=True, slots=True)
class Between:
    """``x between (low .. high)`` and ``!between``."""

    negated: bool
    left: Expr
    low: Expr
    high: Expr
    span: Span = field(default=_NOWHERE, repr=False)


@dataclass(frozen=True, slots=True)
class Subquery:
    """A tabular expression used as a set of values: ``x in ((T | project c))``."""

    pipeline: Pipeline
    span: Span = field(default=_NOWHERE, repr=False)


Expr = Literal | Name | Member | Index | Star | Call | Unary | Binary | InList | Between | Subquery


# --- tabular operators ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Assignment:
    """``name = expr``, or a bare ``expr`` (then the output name is derived)."""

    name: str | None
    expr: Expr
    span: Span = field(default=_NOWHERE, repr=False)


@dataclass(frozen=True, slots=True)
class SortKey:
    """One sort key; ``nulls_first`` None means KQL's default for the direction."""

    expr: Expr
    descending: bool = True
    nulls_first: bool | None = None
    span: Span = field(default=_NOWHERE, repr=False)


@dataclass(frozen=True, slots=True)
class Where:
    """``where predicate``."""

    predicate: Expr
    span: Span = field(default=_NOWHERE, repr=False)


@dataclass(frozen=True, slots=True)
class Project:
    """``project a, b = expr``."""

    items: tuple[Assignment, ...]
    span: Span = field(default=_NOWHERE, repr=False)


@dataclass(frozen=True, slots=True)
class ColumnPattern:
    """A column wildcard such as ``Remote*`` (``*`` matches any run of characters)."""

    pattern: str
    span: Span = field(default=_NOWHERE, repr=False)


@dataclass(frozen=True, slots=True)
class ProjectAway:
    """``project-away a, b*``."""

    names: tuple[Name | ColumnPattern, ...]
    span: Span = field(default=_NOWHERE, repr=False)


@dataclass(frozen=True, slots=True)
class ProjectKeep:
    """``project-keep a, b*``: keep the matching columns, in their input order."""

    names: tuple[Name | ColumnPattern, ...]
    span: Span = field(default=_NOWHERE, repr=False)


ReorderOrder = TypingLiteral["asc", "desc", "granny-asc", "granny-desc"]


@dataclass(frozen=True, slots=True)
class ReorderKey:
    """One ``project-reorder`` item; ``order`` sorts the columns a pattern matches."""

    column: Name | ColumnPattern
    order: ReorderOrder | None = None
    span: Span = field(default=_NOWHERE, repr=False)


@dataclass(frozen=True, slots=True)
class ProjectReorder:
    """``project-reorder b, a* asc``: the named columns first, the others after, unchanged."""

    keys: tuple[ReorderKey, ...]
    span: Span = field(default=_NOWHERE, repr=False)


@dataclass(frozen=True, slots=True)
class ProjectRename:
    """``project-rename new = old, ...``."""

    pairs: tuple[tuple[Name, Name], ...]
    span: Span = field(default=_NOWHERE, repr=False)


@dataclass(frozen=True, slots=True)
class Extend:
    """``extend name = expr, ...``."""

    items: tuple[Assignment, ...]
    span: Span = field(default=_NOWHERE, repr=False)


@dataclass(frozen=True, slots=True)
class Summarize:
    """``summarize aggs by keys``."""

    aggregates: tuple[Assignment, ...]
    by: tuple[Assignment, ...]
    span: Span = field(default=_NOWHERE, repr=False)


@dataclass(frozen=True, slots=True)
class Count:
    """``count``."""

    span: Span = field(default=_NOWHERE, repr=False)


@dataclass(frozen=True, slots=True)
class Distinct:
    """``distinct a, b`` or ``distinct *`` (an empty ``items``)."""

    items: tuple[Expr, ...]
    span: Span = field(default=_NOWHERE, repr=False)


@dataclass(frozen=True, slots=True)
class Take:
    """``take n`` / ``limit n``."""

    count: Expr
    span: Span = field(default=_NOWHERE, repr=False)


@dataclass(frozen=True, slots=True)
class Top:
    """``top n by key [asc|desc] [nulls first|last]``."""

    count: Expr
    keys: tuple[SortKey, ...]
    span: Span = field(default=_NOWHERE, repr=False)


@dataclass(frozen=True, slots=True)
class Sort:
    """``sort by`` / ``order by``."""

    keys: tuple[SortKey, ...]
    span: Span = field(default=_NOWHERE, repr=False)


@dataclass(frozen=True, slots=True)
class ExpandItem:
    """One ``mv-expand`` column: ``[name =] expr [to typeof(type)]``."""

    name: str | None
    expr: Expr
    to_type: KqlType | None = None
    span: Span = field(default=_NOWHERE, repr=False)


@dataclass(frozen=True, slots=True)
class MvExpand:
    """``mv-expand [kind=bag|array] [with_itemindex=i] item, ... [limit n]``."""

    items: tuple[ExpandItem, ...]
    kind: TypingLiteral["bag", "array"] = "bag"
    index: str | None = None
    limit: Expr | None = None
    span: Span = field(default=_NOWHERE, repr=False)


@dataclass(frozen=True, slots=True)
class Render:
    """``render kind [with (prop = value, ...)]``: recorded, never executed."""

    kind: str
    properties: tuple[tuple[str, Expr], ...]
    span: Span = field(default=_NOWHERE, repr=False)


@dataclass(frozen=True, slots=True)
class JoinKey:
    """``on Col`` (left == right) or ``on $left.A == $right.B``."""

    left: Name
    right: Name
    span: Span = field(default=_NOWHERE, repr=False)


@dataclass(frozen=True, slots=True)
class Join:
    """``join kind=K (right) on keys``."""

    kind: str
    right: Pipeline
    keys: tuple[JoinKey, ...]
    span: Span = field(default=_NOWHERE, repr=False)


@dataclass(frozen=True, slots=True)
class Union:
    """``union [kind=inner|outer] [withsource=C] A, B*`` (an operator: the piped input first).

    A source that is a bare table name containing ``*`` is a wildcard over the catalog's tables.
    """

    kind: str
    sources: tuple[Pipeline, ...]
    withsource: str | None = None
    span: Span = field(default=_NOWHERE, repr=False)


Operator = (
    Where
    | Project
    | ProjectAway
    | ProjectRename
    | ProjectKeep
    | ProjectReorder
    | Extend
    | Summarize
    | Count
    | Distinct
    | Take
    | Top
    | Sort
    | MvExpand
    | Render
    | Join
    | Union
)


@dataclass(frozen=True, slots=True)
class TableRef:
    """A table, or a tabular ``let`` name."""

    name: str
    span: Span = field(default=_NOWHERE, repr=False)


@dataclass(frozen=True, slots=True)
class Print:
    """``print [name =] expr, ...``: one row of scalar values."""

    items: tuple[Assignment, ...]
    span: Span = field(default=_NOWHERE, repr=False)


@dataclass(frozen=True, slots=True)
class DataTable:
    """``datatable(a:long, b:string) [1, "x", ...]``: literal rows, values in row order."""

    columns: tuple[tuple[str, KqlType], ...]
    values: tuple[Expr, ...]
    span: Span = field(default=_NOWHERE, repr=False)


@dataclass(frozen=True, slots=True)
class Range:
    """``range name from start to stop step step``."""

    name: str
    start: Expr
    stop: Expr
    step: Expr
    span: Span = field(default=_NOWHERE, repr=False)


Source = TableRef | Union | Print | DataTable | Range


@dataclass(frozen=True, slots=True)
class Pipeline:
    """A source and the operators piped after it."""

    source: Source
    operators: tuple[Operator, ...]
    span: Span = field(default=_NOWHERE, repr=False)


@dataclass(frozen=True, slots=True)
class Let:
    """``let name = scalar;`` or ``let name = tabular;``."""

    name: str
    value: Expr | Pipeline
    span: Span = field(default=_NOWHERE, repr=False)


@dataclass(frozen=True, slots=True)
class Query:
    """A whole query: its let statements and the tabular expression they end with."""

    lets: tuple[Let, ...]
    body: Pipeline
    span: Span = field(default=_NOWHERE, repr=False)
