"""The read-only SQL guard: one SELECT over catalog tables, or a typed refusal.

The text is parsed with sqlglot (DuckDB dialect). It must be exactly one SELECT (a WITH and set
operations included); every table it reads must be a workspace table or one of its own CTEs,
unqualified; no table function may appear (``read_csv``, ``glob``, ``range``, ...), and no
function on the deny list (anything that reads files, URLs, settings or the catalog). The SQL
that runs is the one sqlglot regenerates from the checked tree, so what was checked is what runs.
The database itself is opened with external access disabled: the guard is the first wall, not
the only one.
"""

from __future__ import annotations

from collections.abc import Collection

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, SqlglotError

from iotsec.workspace.errors import QueryInvalid, QueryRefused
from iotsec.workspace.tables import TABLES

__all__ = ["DENIED_FUNCTION_PREFIXES", "guard_sql"]

#: Functions refused wherever they appear: they read files, URLs, the environment or settings,
#: or move a sequence (a write, however small).
DENIED_FUNCTION_PREFIXES = (
    "read_",
    "parquet_",
    "sniff_",
    "glob",
    "duckdb_",
    "pragma_",
    "iceberg_",
    "delta_",
    "sqlite_",
    "postgres_",
    "mysql_",
    "http",
    "s3",
    "getenv",
    "current_setting",
    "query",
    "query_table",
    "load",
    "install",
    "which_secret",
    "json_execute_serialized_sql",
    "from_substrait",
    "nextval",
    "currval",
)
_READ_ONLY_ROOTS = (exp.Select, exp.SetOperation)


def guard_sql(text: str, tables: Collection[str] = tuple(TABLES)) -> str:
    """The SQL to run for ``text``, when it is one read-only query over ``tables``.

    >>> guard_sql('SELECT DeviceId FROM SecurityIoTRawEvent LIMIT 5')
    'SELECT DeviceId FROM SecurityIoTRawEvent LIMIT 5'

    Raises:
        QueryInvalid: the text does not parse.
        QueryRefused: it is not one SELECT, or it reads something other than catalog tables.
    """
    try:
        statements = [s for s in sqlglot.parse(text, read="duckdb") if s is not None]
    except ParseError as exc:
        first = exc.errors[0] if exc.errors else {}
        raise QueryInvalid(
            f"the SQL does not parse: {first.get('description') or exc}",
            line=first.get("line"),
            column=first.get("col"),
        ) from None
    except (SqlglotError, ValueError, RecursionError) as exc:
        raise QueryInvalid(f"the SQL does not parse: {exc}") from None
    if len(statements) != 1:
        raise QueryRefused(f"{len(statements)} statements", "send exactly one SELECT")
    root = statements[0]
    while isinstance(root, exp.Subquery):
        root = root.this
    if not isinstance(root, _READ_ONLY_ROOTS):
        raise QueryRefused(_statement_name(root), "only SELECT (with WITH or UNION) is allowed")
    allowed = {name.lower() for name in tables}
    ctes = {cte.alias_or_name.lower() for cte in root.find_all(exp.CTE)}
    for node in root.walk():
        _check(node, allowed, ctes)
    try:
        sql = root.sql(dialect="duckdb")
        # What runs is the regenerated text: it must parse back (sqlglot's generator can emit
        # text its parser refuses, for odd input), or the query is refused as invalid.
        sqlglot.parse_one(sql, read="duckdb")
    except ParseError as exc:
        first = exc.errors[0] if exc.errors else {}
        reason = first.get("description") or "it does not parse back"
        raise QueryInvalid(f"the SQL cannot be regenerated: {reason}") from None
    except (SqlglotError, ValueError, RecursionError) as exc:
        raise QueryInvalid(f"the SQL cannot be regenerated: {exc}") from None
    return sql


def _check(node: exp.Expr, allowed: set[str], ctes: set[str]) -> None:
    if isinstance(node, exp.Table):
        if not isinstance(node.this, exp.Identifier):
            raise QueryRefused(
                f"table function {_function_name(node.this)}", "only workspace tables can be read"
            )
        if node.args.get("db") or node.args.get("catalog"):
            raise QueryRefused(
                f"table {node.sql(dialect='duckdb')}", "tables are named without a schema"
            )
        name = node.name.lower()
        if name not in allowed and name not in ctes:
            raise QueryRefused(f"table {node.name!r}", "not a workspace table")
        return
    if isinstance(node, exp.Func):
        name = _function_name(node).lower()
        if name.startswith(DENIED_FUNCTION_PREFIXES):
            raise QueryRefused(
                f"function {name}", "it reads files, the network or settings, or writes"
            )
        return
    if (
        isinstance(node, exp.Expression)
        and not isinstance(node, _ALLOWED_NODES)
        and isinstance(node, _STATEMENTS)
    ):
        raise QueryRefused(_statement_name(node), "only SELECT is allowed")


def _function_name(node: exp.Expr | None) -> str:
    if isinstance(node, exp.Anonymous):
        return str(node.name)
    if isinstance(node, exp.Func):
        return node.sql_name()
    return type(node).__name__


def _statement_name(node: exp.Expr) -> str:
    if isinstance(node, exp.Command):
        return str(node.this).upper()
    return type(node).__name__.upper()


_ALLOWED_NODES = (exp.Select, exp.SetOperation, exp.Subquery)
# Statement-like nodes that must not appear anywhere in a query.
_STATEMENTS: tuple[type[exp.Expression], ...] = tuple(
    getattr(exp, name)
    for name in (
        "Insert",
        "Update",
        "Delete",
        "Merge",
        "Create",
        "Drop",
        "Alter",
        "Command",
        "Copy",
        "Pragma",
        "Set",
        "Attach",
        "Detach",
        "Use",
        "Transaction",
        "Commit",
        "Rollback",
        "Describe",
        "Summarize",
        "Show",
        "Install",
        "Load",
        "Export",
        "Into",
        "Cache",
        "Uncache",
        "Refresh",
        "TruncateTable",
        "Analyze",
        "Grant",
        "Revoke",
        "Comment",
    )
    if hasattr(exp, name)
)
