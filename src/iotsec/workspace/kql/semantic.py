"""Name resolution and the running schema: what a query may refer to at each point.

The schema flows through the pipeline: a table's columns come from the catalog
(:data:`iotsec.workspace.tables.TABLES`), ``project``/``extend``/``summarize``/``join`` build new
ones. Lookups are exact (KQL names are case-sensitive); misses suggest the closest names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from sqlglot import exp

from iotsec.workspace.kql import ast
from iotsec.workspace.kql.errors import KqlError, Span, did_you_mean
from iotsec.workspace.kql.types import Typed
from iotsec.workspace.tables import KqlType, Table

__all__ = ["Context", "Schema", "SubqueryLowering", "unique_name"]

Node = (
    ast.Expr
    | ast.Operator
    | ast.Assignment
    | ast.SortKey
    | ast.JoinKey
    | ast.Pipeline
    | ast.Source
    | ast.ExpandItem
    | ast.ReorderKey
)


@dataclass(frozen=True, slots=True)
class Schema:
    """The ordered, typed columns of a tabular value."""

    columns: tuple[tuple[str, KqlType], ...]

    @classmethod
    def of(cls, table: Table) -> Schema:
        """The schema of a catalog table."""
        return cls(tuple((c.name, c.type) for c in table.columns))

    @property
    def names(self) -> tuple[str, ...]:
        """Column names in order."""
        return tuple(name for name, _ in self.columns)

    def type_of(self, name: str) -> KqlType | None:
        """The type of column ``name``, or None."""
        for column, kind in self.columns:
            if column == name:
                return kind
        return None


#: Lowers a tabular expression used inside a scalar one (``x in ((T | project c))``).
SubqueryLowering = Callable[["Context", ast.Pipeline], tuple[exp.Query, "Schema"]]


@dataclass(slots=True)
class Context:
    """What a compilation knows: the text (for errors), the catalog, lets and the clock.

    ``tabular`` holds the schema of each tabular ``let`` name, ``ctes`` the CTE that holds its
    rows. ``subquery`` is the tabular lowering, handed in by the compiler so that the scalar
    lowering can lower a subquery without importing the tabular one (which imports it).
    """

    text: str
    catalog: Mapping[str, Table]
    now: datetime
    subquery: SubqueryLowering | None = None
    scalars: dict[str, Typed] = field(default_factory=dict)
    tabular: dict[str, Schema] = field(default_factory=dict)
    ctes: dict[str, str] = field(default_factory=dict)
    counter: int = 0

    def error(self, message: str, node: Node | Span) -> KqlError:
        """A :class:`KqlError` about ``node``'s span."""
        span = node if isinstance(node, Span) else node.span
        return KqlError(message, self.text, span)

    def fresh(self, prefix: str = "__q") -> str:
        """A new internal alias (never starts with ``let_``, the prefix of let CTEs)."""
        self.counter += 1
        return f"{prefix}{self.counter}"

    def column(self, schema: Schema, node: ast.Name) -> KqlType:
        """The type of the column ``node`` names, or an error suggesting close names."""
        kind = schema.type_of(node.name)
        if kind is None:
            raise self.error(did_you_mean("column", node.name, schema.names), node)
        return kind

    def table_names(self) -> Iterable[str]:
        """Every name a tabular source may use."""
        return [*self.tabular, *self.catalog]


def unique_name(name: str, taken: Iterable[str]) -> str:
    """``name``, or ``name1``, ``name2``... as KQL does when a column name is already taken."""
    used = set(taken)
    if name not in used:
        return name
    n = 1
    while f"{name}{n}" in used:
        n += 1
    return f"{name}{n}"
