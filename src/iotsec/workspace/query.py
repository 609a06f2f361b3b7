"""Running KQL and read-only SQL against the workspace, with limits.

Each query gets its own DuckDB cursor, a slot among ``QueryLimits.slots`` (waiting at most
``queue_timeout``), and a timer that calls ``interrupt()`` on its cursor at ``timeout``. Results
are read as Arrow batches and cut at ``max_rows`` rows or ``max_bytes`` bytes (Arrow size); a cut
result has ``truncated=True`` and says why. Only one SELECT statement ever reaches DuckDB: SQL
passes the guard, and compiled KQL is checked with DuckDB's own statement splitter.
"""

from __future__ import annotations

import importlib
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import duckdb
import pyarrow as pa  # type: ignore[import-untyped]  # pyarrow ships no type hints

from iotsec.workspace.errors import (
    QueryBusy,
    QueryFailed,
    QueryInvalid,
    QueryRefused,
    QueryTimeout,
)
from iotsec.workspace.sql_guard import guard_sql
from iotsec.workspace.store import WorkspaceStore

__all__ = [
    "CompiledLike",
    "KqlCompiler",
    "QueryLimits",
    "QueryResult",
    "ResultColumn",
    "Workspace",
    "default_compiler",
    "kql_type",
]

MiB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class QueryLimits:
    """Caps on one query's result and time, and on how many run at once."""

    max_rows: int = 500_000
    max_bytes: int = 64 * MiB
    timeout: float = 30.0
    slots: int = 4
    queue_timeout: float = 10.0
    batch_rows: int = 65_536


@dataclass(frozen=True, slots=True)
class ResultColumn:
    """A result column: its name and KQL type."""

    name: str
    type: str


@dataclass(frozen=True, slots=True)
class QueryResult:
    """A query's rows (as an Arrow table), its columns, and whether it was cut short."""

    columns: tuple[ResultColumn, ...]
    table: pa.Table
    truncated: bool
    elapsed: float
    reason: str | None = None
    render: Any = None

    @property
    def rows(self) -> list[list[Any]]:
        """The rows as lists of Python values, in column order."""
        columns = [column.to_pylist() for column in self.table.columns]
        return [list(row) for row in zip(*columns, strict=True)]


class CompiledLike(Protocol):
    """What a KQL compiler returns: SQL, typed output columns, and the render directive."""

    @property
    def sql(self) -> str: ...

    @property
    def columns(self) -> Sequence[Any]: ...

    @property
    def render(self) -> Any: ...


KqlCompiler = Callable[[str, datetime | None], CompiledLike]

# DuckDB type names to KQL types, for SQL results; anything else is reported as dynamic.
_KQL_TYPES = {
    "VARCHAR": "string",
    "BIGINT": "long",
    "INTEGER": "long",
    "SMALLINT": "long",
    "TINYINT": "long",
    "UBIGINT": "long",
    "UINTEGER": "long",
    "HUGEINT": "long",
    "DOUBLE": "real",
    "FLOAT": "real",
    "BOOLEAN": "bool",
    "TIMESTAMP WITH TIME ZONE": "datetime",
    "TIMESTAMP": "datetime",
    "DATE": "datetime",
    "INTERVAL": "timespan",
    "JSON": "dynamic",
}


def kql_type(duckdb_type: str) -> str:
    """The KQL type of a DuckDB result type."""
    if duckdb_type.startswith("DECIMAL"):
        return "real"
    return _KQL_TYPES.get(duckdb_type, "dynamic")


def default_compiler(text: str, now: datetime | None) -> CompiledLike:
    """Compile with ``iotsec.workspace.kql``; its ``KqlError`` becomes ``QueryInvalid``."""
    kql: Any = importlib.import_module("iotsec.workspace.kql")
    try:
        compiled: CompiledLike = kql.compile_kql(text, now=now)
    except kql.KqlError as exc:
        raise QueryInvalid(
            str(exc),
            line=getattr(exc, "line", None),
            column=getattr(exc, "column", None),
            rendered=exc.render() if hasattr(exc, "render") else None,
        ) from None
    return compiled


class Workspace:
    """Queries over a ``WorkspaceStore``: KQL, read-only SQL, limits and timeouts."""

    def __init__(
        self,
        store: WorkspaceStore,
        *,
        limits: QueryLimits = QueryLimits(),
        compiler: KqlCompiler = default_compiler,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.store = store
        self.limits = limits
        self._compile = compiler
        self._clock = clock
        self._slots = threading.BoundedSemaphore(limits.slots)

    def query_kql(
        self,
        text: str,
        *,
        limit_rows: int | None = None,
        limit_bytes: int | None = None,
        timeout: float | None = None,
        now: datetime | None = None,
    ) -> QueryResult:
        """Compile and run a KQL query.

        Raises:
            QueryInvalid: the query does not compile (with line, column and a caret rendering).
            QueryTimeout, QueryBusy, QueryFailed: see ``query_sql``.
        """
        compiled = self._compile(text, now)
        columns = tuple(_column(c) for c in compiled.columns)
        return self._run(compiled.sql, columns, compiled.render, limit_rows, limit_bytes, timeout)

    def query_sql(
        self,
        text: str,
        *,
        limit_rows: int | None = None,
        limit_bytes: int | None = None,
        timeout: float | None = None,
    ) -> QueryResult:
        """Run one read-only SELECT over the workspace tables.

        Raises:
            QueryInvalid: the SQL does not parse.
            QueryRefused: it is not one SELECT over workspace tables (see ``guard_sql``).
            QueryTimeout: it ran past its timeout.
            QueryBusy: no query slot freed up in time.
            QueryFailed: DuckDB raised while running it.
        """
        return self._run(guard_sql(text), None, None, limit_rows, limit_bytes, timeout)

    def _run(  # noqa: PLR0917 - private; the public methods take keywords
        self,
        sql: str,
        columns: tuple[ResultColumn, ...] | None,
        render: Any,
        limit_rows: int | None,
        limit_bytes: int | None,
        timeout: float | None,
    ) -> QueryResult:
        limits = self.limits
        max_rows = min(limit_rows or limits.max_rows, limits.max_rows)
        max_bytes = min(limit_bytes or limits.max_bytes, limits.max_bytes)
        seconds = min(timeout or limits.timeout, limits.timeout)
        if not self._slots.acquire(timeout=limits.queue_timeout):
            raise QueryBusy(limits.slots)
        try:
            cursor = self.store.query_cursor()
            timer = threading.Timer(seconds, cursor.interrupt)
            started = self._clock()
            timer.start()
            try:
                result = self._fetch(cursor, sql, columns, max_rows, max_bytes)
            except duckdb.InterruptException:
                raise QueryTimeout(seconds) from None
            except duckdb.Error as exc:
                raise QueryFailed(str(exc)) from None
            finally:
                timer.cancel()
                timer.join()
                cursor.close()
            table, truncated, reason, names = result
            return QueryResult(
                columns=names,
                table=table,
                truncated=truncated,
                reason=reason,
                elapsed=self._clock() - started,
                render=render,
            )
        finally:
            self._slots.release()

    def _fetch(
        self,
        cursor: duckdb.DuckDBPyConnection,
        sql: str,
        columns: tuple[ResultColumn, ...] | None,
        max_rows: int,
        max_bytes: int,
    ) -> tuple[pa.Table, bool, str | None, tuple[ResultColumn, ...]]:
        statements = cursor.extract_statements(sql)
        if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
            raise QueryRefused("the compiled query", "it is not exactly one SELECT")
        relation = cursor.sql(sql)
        if columns is None:
            columns = tuple(
                ResultColumn(name, kql_type(str(kind)))
                for name, kind in zip(relation.columns, relation.types, strict=True)
            )
        reader = relation.to_arrow_reader(self.limits.batch_rows)
        batches: list[pa.RecordBatch] = []
        rows = size = 0
        reason: str | None = None
        for read in reader:
            batch = read
            room = max_rows - rows
            if batch.num_rows > room:
                batch, reason = batch.slice(0, room), f"the result has more than {max_rows} rows"
            if size + batch.nbytes > max_bytes:
                per_row = max(1, batch.nbytes // max(1, batch.num_rows))
                batch = batch.slice(0, max(0, (max_bytes - size) // per_row))
                reason = f"the result is over {max_bytes} bytes"
            batches.append(batch)
            rows += batch.num_rows
            size += batch.nbytes
            if reason is not None:
                break
        reader.close()
        table = pa.Table.from_batches(batches, schema=reader.schema)
        return table, reason is not None, reason, columns


def _column(item: Any) -> ResultColumn:
    if isinstance(item, tuple):
        return ResultColumn(str(item[0]), str(item[1]))
    return ResultColumn(str(item.name), str(item.type))
