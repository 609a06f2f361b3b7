"""The SQLite side of ``SqliteLog``: the schema, opening a file, and rows to records and back.

One file in WAL mode. ``records`` holds every partition; ``seq`` is the record's offset in
partition ``part`` (OFFSET is an SQL keyword), unique per partition. It is a rowid table with an
index on (part, seq) rather than a WITHOUT ROWID table keyed by (part, seq): WITHOUT ROWID
tables suit small rows, and with 4 KB bodies it appended 20-40% slower (bench/log_append.py).
``positions`` holds the consumers' next offsets, ``meta`` the partition count, which may never
change: it decides where every key's records are.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from iotsec.stream.errors import LogError, RecordInvalid
from iotsec.stream.record import Entry, Record

__all__ = [
    "INSERT_POSITION",
    "INSERT_RECORD",
    "SCHEMA_VERSION",
    "Row",
    "connect",
    "ensure_schema",
    "next_offsets",
    "read_entries",
    "read_position",
    "row_of",
    "translate",
]

#: ``PRAGMA user_version`` of the files this code writes.
SCHEMA_VERSION = 1

_SCHEMA = (
    """CREATE TABLE records (
        part INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        key TEXT NOT NULL,
        kind TEXT NOT NULL,
        headers TEXT NOT NULL,
        body BLOB NOT NULL,
        ts REAL NOT NULL
    )""",
    "CREATE UNIQUE INDEX records_at ON records (part, seq)",
    """CREATE TABLE positions (
        consumer TEXT NOT NULL,
        part INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        PRIMARY KEY (consumer, part)
    ) WITHOUT ROWID""",
    "CREATE TABLE meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID",
)

INSERT_RECORD = (
    "INSERT INTO records (part, seq, key, kind, headers, body, ts) VALUES (?,?,?,?,?,?,?)"
)
INSERT_POSITION = "INSERT OR REPLACE INTO positions (consumer, part, seq) VALUES (?,?,?)"

#: A records row: part, seq, key, kind, headers (JSON object), body, ts.
Row = tuple[int, int, str, str, str, bytes, float]


def translate(exc: sqlite3.Error | OSError, doing: str, path: Path) -> LogError:
    """The ``LogError`` for a foreign error met while ``doing`` something with ``path``.

    The foreign error is the ``__cause__``, as ``raise ... from exc`` would set it: errors made
    on the writer thread reach the caller through a future, not a ``raise``.
    """
    error = LogError(f"{doing}: {exc}", path=path)
    error.__cause__ = exc
    return error


def connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    """Open ``path`` in WAL mode, with transactions under our control (``BEGIN``/``COMMIT``)."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=True, timeout=5.0)
    try:
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode != "wal":
            raise LogError(f"cannot use WAL mode (the journal mode stays {mode!r})", path=path)
        # FULL, not NORMAL: in WAL mode NORMAL does not fsync the WAL on commit, so a commit
        # survives kill -9 but not a power loss. The hub acknowledges a device message once
        # the append returns, so the append must survive both; group commit pays for the fsync.
        conn.execute("PRAGMA synchronous=FULL")
        if readonly:
            conn.execute("PRAGMA query_only=1")
    except BaseException:
        conn.close()
        raise
    return conn


def ensure_schema(conn: sqlite3.Connection, path: Path, partitions: int) -> None:
    """Create the tables in a new file, or check an existing file is a log of ``partitions``."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version == 0:
            if conn.execute("SELECT count(*) FROM sqlite_schema").fetchone()[0]:
                raise LogError("not an iotsec log: the file holds other tables", path=path)
            for statement in _SCHEMA:
                conn.execute(statement)
            conn.execute("INSERT INTO meta VALUES ('partitions', ?)", (partitions,))
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        elif version != SCHEMA_VERSION:
            raise LogError(
                f"log schema version {version} is not the {SCHEMA_VERSION} this version reads",
                path=path,
            )
        else:
            stored = conn.execute("SELECT value FROM meta WHERE name = 'partitions'").fetchone()
            if stored is None or stored[0] != partitions:
                raise LogError(
                    f"the log has {stored[0] if stored else 'no'} partitions, not {partitions};"
                    " the count is fixed when a log is created",
                    path=path,
                )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def next_offsets(conn: sqlite3.Connection, partitions: int) -> list[int]:
    """The next offset of each partition (MAX(seq) + 1, or 0 when it is empty)."""
    # One query per partition: MAX(seq) for one part is a single lookup in the (part, seq) index.
    query = "SELECT MAX(seq) FROM records WHERE part = ?"
    return [
        (last + 1 if (last := conn.execute(query, (part,)).fetchone()[0]) is not None else 0)
        for part in range(partitions)
    ]


def row_of(partition: int, offset: int, record: Record) -> Row:
    """The ``records`` row of ``record`` at ``partition``/``offset``."""
    headers = json.dumps(dict(record.headers), ensure_ascii=False, separators=(",", ":"))
    return (
        partition,
        offset,
        record.key,
        record.kind,
        headers,
        record.body,
        record.timestamp,
    )


def read_entries(
    conn: sqlite3.Connection, partition: int, offset: int, limit: int, path: Path
) -> list[Entry]:
    """Up to ``limit`` entries of ``partition`` from ``offset`` on."""
    rows: list[Row] = conn.execute(
        "SELECT part, seq, key, kind, headers, body, ts FROM records"
        " WHERE part = ? AND seq >= ? ORDER BY seq LIMIT ?",
        (partition, offset, limit),
    ).fetchall()
    return [_entry_of(row, path) for row in rows]


def _entry_of(row: Row, path: Path) -> Entry:
    """The entry of a ``records`` row; a row that is not a valid record is a ``LogError``."""
    partition, offset, key, kind, headers, body, ts = row
    try:
        decoded = json.loads(headers)
        if not isinstance(decoded, dict):
            raise RecordInvalid("headers", "are not a JSON object")
        return Entry(partition, offset, Record(key, kind, body, decoded, ts))
    except ValueError as exc:  # malformed JSON, or a RecordInvalid
        raise LogError(f"corrupt record at {partition}/{offset}: {exc}", path=path) from exc


def read_position(conn: sqlite3.Connection, consumer: str, partition: int) -> int:
    """The committed offset of ``consumer`` in ``partition``, or 0."""
    row = conn.execute(
        "SELECT seq FROM positions WHERE consumer = ? AND part = ?", (consumer, partition)
    ).fetchone()
    return int(row[0]) if row else 0
