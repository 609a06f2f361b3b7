"""The workspace's DuckDB file: its tables, idempotent appends, the Device upsert, deletes.

Only one process may open a DuckDB file, so the server owns the store and everyone else queries
through its API. Isolation: each write commits as one transaction. Raw event appends run in
*lanes*: appends in one lane are serialized on that lane's own connection, appends in different
lanes run in parallel (DuckDB appends to one table from concurrent transactions), so ingest can
use every core. A caller must send all copies of an event through one lane (ingest gives each
worker its own log partitions, and the hub puts all of a device's messages in one partition);
the idempotency check then cannot race with itself. Every other write (sinks, retention, the
Device upsert) is serialized by one lock. Every query gets its own cursor on the same database
(``query_cursor``) and sees the last committed batch, never half of one (DuckDB MVCC).
The database is opened with external access disabled (no files, URLs, extensions or replacement
scans of Python objects) and its configuration locked, so no statement can turn that back on.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Self

import duckdb
import pyarrow as pa  # type: ignore[import-untyped]  # pyarrow ships no type hints

from iotsec.workspace import rawevents
from iotsec.workspace.errors import StoreError
from iotsec.workspace.rows import conform, conform_to
from iotsec.workspace.sinks import AlertRow, RecommendationRow, rows_to_arrow
from iotsec.workspace.tables import TABLES, Table

__all__ = ["DEVICE_TABLE", "WorkspaceStore"]

DEVICE_TABLE = "Device"
# Written to the DuckDB config before the file is opened: nothing may reach files or the network.
_LOCKDOWN = {
    "enable_external_access": "false",
    "autoload_known_extensions": "false",
    "autoinstall_known_extensions": "false",
}


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def create_table_sql(table: Table) -> str:
    """``CREATE TABLE IF NOT EXISTS`` for ``table``, with its key as the primary key."""
    columns = ", ".join(f"{_quote(c.name)} {c.duckdb_type}" for c in table.columns)
    return (
        f"CREATE TABLE IF NOT EXISTS {_quote(table.name)} ({columns},"
        f" PRIMARY KEY ({_quote(table.key)}))"
    )


class WorkspaceStore:
    """The workspace tables in one DuckDB file (or in memory, with ``path=None``).

    >>> import pyarrow as pa
    >>> with WorkspaceStore(None) as store:
    ...     rows = pa.table({"DeadLetterId": ["0:1", "0:1"], "Reason": ["too big", "too big"]})
    ...     store.append("DeadLetter", rows)
    1
    """

    def __init__(
        self,
        path: Path | None,
        *,
        tables: Mapping[str, Table] = TABLES,
        threads: int | None = None,
        memory_limit: str | None = None,
        checkpoint_threshold: str = "256MB",
    ) -> None:
        self.path = path
        self.tables = dict(tables)
        config: dict[str, str | bool | int | float | list[str]] = dict(_LOCKDOWN)
        if threads is not None:
            config["threads"] = str(threads)
        # A larger WAL before the automatic checkpoint: measured 26k -> 55k rows/s with 10k-row
        # batches, at the cost of a longer WAL replay after a crash.
        config["checkpoint_threshold"] = checkpoint_threshold
        if memory_limit is not None:
            config["memory_limit"] = memory_limit
        try:
            self._db = duckdb.connect(str(path) if path else ":memory:", config=config)
            self._db.execute("SET GLOBAL TimeZone = 'UTC'")
            for table in self.tables.values():
                if table.name == rawevents.RAW_TABLE:
                    self._create_raw()
                else:
                    self._db.execute(create_table_sql(table))
            self._db.execute("SET lock_configuration = true")
        except duckdb.Error as exc:
            raise StoreError(
                f"cannot open the workspace {path or ':memory:'}: {exc}", path=path
            ) from exc
        self._lock = threading.Lock()
        self._lanes: dict[int, _Lane] = {}
        self._staged = itertools.count()
        self._closed = False

    def __enter__(self) -> Self:
        """The store; ``with`` closes it."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the store."""
        self.close()

    def table(self, name: str) -> Table:
        """The registry entry of table ``name``."""
        try:
            return self.tables[name]
        except KeyError:
            raise StoreError(f"no table {name!r}", path=self.path, table=name) from None

    def append(self, table: str, data: pa.Table | pa.RecordBatch, *, lane: int = 0) -> int:
        """Insert ``data`` into ``table``, skipping rows whose key is already there.

        Columns are matched by name; missing ones are null. Returns how many rows were new. The
        Device table is upserted instead (see ``upsert_devices``). Raw events are appended in
        ``lane`` (see the module's text): every copy of an event must come through one lane.
        """
        spec = self.table(table)
        if spec.name == DEVICE_TABLE:
            return self.upsert_devices(data)
        if spec.name == rawevents.RAW_TABLE:
            return self._append_raw(data, lane)
        staged = conform(spec, data)
        if staged.num_rows == 0:
            return 0
        return self._insert(
            spec,
            staged,
            f"INSERT INTO {_quote(spec.name)} SELECT * FROM {{staged}} ON CONFLICT DO NOTHING",  # noqa: S608 - registry names, quoted
        )

    def _create_raw(self) -> None:
        # Creates the raw event tables, first moving rows of an older layout to this one.
        stored = [
            str(row[0])
            for row in self._db.execute(
                "SELECT column_name FROM duckdb_columns() WHERE table_name = ?",
                [rawevents.STORAGE_TABLE],
            ).fetchall()
        ]
        upgrade = rawevents.upgrade_statements(stored)
        if upgrade:
            self._db.execute("BEGIN TRANSACTION")
            try:
                for statement in upgrade:
                    self._db.execute(statement)
                self._db.execute("COMMIT")
            except duckdb.Error:
                self._db.execute("ROLLBACK")
                raise
        for statement in rawevents.create_statements():
            self._db.execute(statement)

    def _lane(self, lane: int) -> _Lane:
        with self._lock:
            self._check_open()
            found = self._lanes.get(lane)
            if found is None:
                found = self._lanes[lane] = _Lane(threading.Lock(), self._db.cursor())
            return found

    def _append_raw(self, data: pa.Table | pa.RecordBatch, lane: int) -> int:
        try:
            staged = conform_to(rawevents.INGEST_SCHEMA, rawevents.RAW_TABLE, data)
        except (ValueError, pa.ArrowInvalid) as exc:
            raise StoreError(
                f"cannot stage rows for {rawevents.RAW_TABLE}: {exc}",
                path=self.path,
                table=rawevents.RAW_TABLE,
            ) from exc
        if staged.num_rows == 0:
            return 0
        for required in ("TimeGenerated", "EventId"):
            missing = staged.column(required).null_count
            if missing:
                raise StoreError(
                    f"{rawevents.RAW_TABLE} rows need a {required}:"
                    f" {missing} of {staged.num_rows} have none",
                    path=self.path,
                    table=rawevents.RAW_TABLE,
                )
        repeats = rawevents.has_repeats(staged)
        clusters = rawevents.time_clusters(staged.column("TimeGenerated"))
        writer = self._lane(lane)
        with writer.lock:
            self._check_open()
            db = writer.cursor
            name = f"_staged_{next(self._staged)}"
            db.register(name, staged)
            inserted = 0
            try:
                db.execute("BEGIN TRANSACTION")
                db.execute(rawevents.source_statement(_quote(name))).fetchall()
                statements = rawevents.insert_statements(_quote(name), clusters, distinct=repeats)
                for sql in statements:
                    inserted += _first(db.execute(sql).fetchall())
                db.execute("COMMIT")
            except duckdb.Error as exc:
                db.execute("ROLLBACK")
                raise StoreError(
                    f"cannot write {staged.num_rows} rows to {rawevents.RAW_TABLE}: {exc}",
                    path=self.path,
                    table=rawevents.RAW_TABLE,
                ) from exc
            finally:
                db.unregister(name)
        return inserted

    def upsert_devices(self, data: pa.Table | pa.RecordBatch) -> int:
        """Insert or update Device rows; a null column keeps the stored value.

        ``FirstSeen`` keeps the earliest value and ``LastSeen`` the latest. When a batch holds
        one device twice, its last row wins.
        """
        spec = self.table(DEVICE_TABLE)
        staged = _last_per_key(conform(spec, data), spec.key)
        if staged.num_rows == 0:
            return 0
        target = _quote(spec.name)
        sets = []
        for column in spec.columns:
            name = _quote(column.name)
            if column.name == spec.key:
                continue
            if column.name == "FirstSeen":
                sets.append(f"{name} = least({target}.{name}, EXCLUDED.{name})")
            elif column.name == "LastSeen":
                sets.append(f"{name} = greatest({target}.{name}, EXCLUDED.{name})")
            else:
                sets.append(f"{name} = coalesce(EXCLUDED.{name}, {target}.{name})")
        sql = (
            f"INSERT INTO {target} SELECT * FROM {{staged}}"  # noqa: S608 - registry names, quoted
            f" ON CONFLICT ({_quote(spec.key)}) DO UPDATE SET {', '.join(sets)}"
        )
        return self._insert(spec, staged, sql)

    def write_alerts(self, rows: Sequence[AlertRow]) -> int:
        """Store alerts from the analytics pipeline (``AlertSink``); returns rows written.

        An alert's later state (a higher count, a new status) replaces the stored row.
        """
        return self.replace("SecurityAlert", rows_to_arrow("SecurityAlert", rows))

    def write_recommendations(self, rows: Sequence[RecommendationRow]) -> int:
        """Store recommendations (``RecommendationSink``); a later state replaces the stored row."""
        return self.replace("SecurityRecommendation", rows_to_arrow("SecurityRecommendation", rows))

    def replace(self, table: str, data: pa.Table | pa.RecordBatch) -> int:
        """Insert ``data``, replacing stored rows with the same key (last write wins).

        Returns the rows written. For tables whose rows change state (alerts,
        recommendations); raw events and the operation log are append-only.
        """
        spec = self.table(table)
        if spec.name in (DEVICE_TABLE, rawevents.RAW_TABLE):
            raise StoreError(f"{spec.name} rows cannot be replaced", path=self.path, table=table)
        staged = _last_per_key(conform(spec, data), spec.key)
        if staged.num_rows == 0:
            return 0
        target = _quote(spec.name)
        sets = ", ".join(
            f"{_quote(c.name)} = EXCLUDED.{_quote(c.name)}"
            for c in spec.columns
            if c.name != spec.key
        )
        sql = (
            f"INSERT INTO {target} SELECT * FROM {{staged}}"  # noqa: S608 - registry names, quoted
            f" ON CONFLICT ({_quote(spec.key)}) DO UPDATE SET {sets}"
        )
        return self._insert(spec, staged, sql)

    def delete_older_than(self, table: str, cutoff: datetime) -> int:
        """Delete the rows of ``table`` whose time column is before ``cutoff``; returns how many.

        For raw events, the sources no row refers to any more go too (appends wait for that
        moment, since one may be about to use such a source).
        """
        spec = self.table(table)
        sql = f"DELETE FROM {_quote(_stored(spec))} WHERE {_quote(spec.time_column)} < ?"  # noqa: S608 - registry names
        with contextlib.ExitStack() as held:
            held.enter_context(self._lock)
            self._check_open()
            try:
                row = self._db.execute(sql, [cutoff]).fetchall()
                if spec.name == rawevents.RAW_TABLE and _first(row):
                    for lane in self._lanes.values():
                        held.enter_context(lane.lock)
                    self._db.execute(rawevents.prune_sources_statement()).fetchall()
            except duckdb.Error as exc:
                raise StoreError(
                    f"cannot delete from {table}: {exc}",  # noqa: S608 - a message, not SQL
                    path=self.path,
                    table=table,
                ) from exc
        return _first(row)

    def count(self, table: str) -> int:
        """How many rows ``table`` holds."""
        spec = self.table(table)
        with self._lock:
            self._check_open()
            sql = f"SELECT count(*) FROM {_quote(_stored(spec))}"  # noqa: S608 - a registry name, quoted
            row = self._db.execute(sql).fetchall()
        return _first(row)

    def checkpoint(self) -> None:
        """Write the write-ahead log into the database file (between appends)."""
        with contextlib.ExitStack() as held:
            held.enter_context(self._lock)
            self._check_open()
            for lane in self._lanes.values():
                held.enter_context(lane.lock)
            self._db.execute("CHECKPOINT")

    def query_cursor(self) -> duckdb.DuckDBPyConnection:
        """A new connection to the database for one query; the caller closes it."""
        self._check_open()
        return self._db.cursor()

    def close(self) -> None:
        """Checkpoint and close the file (idempotent); waits for appends in progress."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            lanes = list(self._lanes.values())
        for lane in lanes:
            with lane.lock:
                lane.cursor.close()
        with self._lock:
            self._db.close()

    def _insert(self, spec: Table, staged: pa.Table, sql: str) -> int:
        with self._lock:
            self._check_open()
            name = f"_staged_{next(self._staged)}"
            self._db.register(name, staged)
            try:
                row = self._db.execute(sql.format(staged=_quote(name))).fetchall()
            except duckdb.Error as exc:
                raise StoreError(
                    f"cannot write {staged.num_rows} rows to {spec.name}: {exc}",
                    path=self.path,
                    table=spec.name,
                ) from exc
            finally:
                self._db.unregister(name)
        return _first(row)

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("the workspace store is closed", path=self.path)


@dataclass(frozen=True, slots=True)
class _Lane:
    # One lane of raw appends: its lock, held for a whole append, and its own connection.
    lock: threading.Lock
    cursor: duckdb.DuckDBPyConnection


def _stored(spec: Table) -> str:
    # The table that holds the rows: raw events live behind a view.
    return rawevents.STORAGE_TABLE if spec.name == rawevents.RAW_TABLE else spec.name


def _last_per_key(data: pa.Table, key: str) -> pa.Table:
    last: dict[object, int] = {}
    for index, value in enumerate(data.column(key).to_pylist()):
        last[value] = index
    if len(last) == data.num_rows:
        return data
    return data.take(sorted(last.values()))


def _first(rows: list[tuple[object, ...]]) -> int:
    # Results are always fetched to their end: DuckDB 2 refuses new work on a connection with an
    # unfinished result.
    return int(str(rows[0][0])) if rows else 0
