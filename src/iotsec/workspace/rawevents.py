"""How ``SecurityIoTRawEvent`` is stored: a compact table, and a view with ASC's columns.

Raw events are most of the workspace, so their storage is tuned for size and ingest speed:

- No per-row copies of what other columns already hold. The event id is stored once, as a
  16-byte UUID; ``IoTRawEventId`` (``<id>:<row>``) is computed. ``EventDetails`` is not stored
  as text: the view rebuilds it from the envelope columns, the typed hot columns and ``Details``,
  a JSON object of the payload fields that have no column of their own (NULL when none, which
  is the common case for process and connection events). ``TimestampLocal`` is stored as its
  UTC offset in minutes (and a skew, for the rare agent whose two clocks disagree).
- No index. An ART index on the key costs 100+ bytes per row and halves the insert rate.
  Idempotency comes from the data instead: a redelivered event has the same id, row index and
  ``TimeGenerated`` (it is the same message), so each batch is anti-joined against the stored
  rows *in its own time range*, which DuckDB's zone maps narrow to a few row groups. Every copy
  of an event comes through one store lane, whose appends are serialized, so the check and the
  insert cannot race.

- The columns that are the same for every event of one agent (its id and version, the hub's
  resource id, subscription and name, the device and module ids) are stored once per distinct
  combination, in a small *sources* table, and each row holds a 4-byte ``SourceKey``. Those
  strings were a third of the ingest work (copying, logging and compressing ~150 bytes per row);
  the view joins them back. A new combination (a new device, an agent upgrade) is added by the
  append that first brings it, in the same transaction; keys come from a sequence, so lanes do
  not collide.

An event id that is not a UUID (some agents send other 36-character ids) is stored as the
UUID of its MD5 digest with the original text in ``EventIdText``, so the view shows what the
agent sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa  # type: ignore[import-untyped]  # pyarrow ships no type hints
import pyarrow.compute as pc  # type: ignore[import-untyped]  # pyarrow ships no type hints

from iotsec.workspace.tables import TABLES

__all__ = [
    "HOT_COLUMNS",
    "INGEST_SCHEMA",
    "RAW_TABLE",
    "SOURCE_COLUMNS",
    "SOURCE_TABLE",
    "STORAGE_TABLE",
    "create_statements",
    "has_repeats",
    "insert_statements",
    "prune_sources_statement",
    "source_statement",
    "time_clusters",
    "upgrade_statements",
]

RAW_TABLE = "SecurityIoTRawEvent"
#: The physical table behind the view; not a workspace table, so queries cannot name it.
STORAGE_TABLE = "_SecurityIoTRawEventRows"

#: The source table, one row per distinct combination of ``SOURCE_COLUMNS``; not queryable.
SOURCE_TABLE = "_SecurityIoTRawEventSources"
_SOURCE_KEYS = "_SecurityIoTRawEventSourceKeys"

#: Columns that repeat for every event of one agent, stored in ``SOURCE_TABLE``.
SOURCE_COLUMNS = (
    "AgentVersion",
    "AgentId",
    "AssociatedResourceId",
    "AzureSubscriptionId",
    "HubName",
    "DeviceId",
    "ModuleId",
)

#: Typed columns filled from the payload row field of the same (wire) name.
HOT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("Executable", "VARCHAR"),
    ("CommandLine", "VARCHAR"),
    ("ProcessId", "BIGINT"),
    ("ParentProcessId", "BIGINT"),
    ("UserName", "VARCHAR"),
    ("UserId", "VARCHAR"),
    ("RemoteAddress", "VARCHAR"),
    ("RemotePort", "VARCHAR"),
    ("LocalAddress", "VARCHAR"),
    ("LocalPort", "VARCHAR"),
    ("Protocol", "VARCHAR"),
    ("Direction", "VARCHAR"),
    ("Result", "VARCHAR"),
)

# (name, DuckDB type, Arrow type) of the columns ingest hands over, in the stored table's order
# except that the source columns are replaced by one SourceKey.
_INGEST: tuple[tuple[str, str, pa.DataType], ...] = (
    ("TimeGenerated", "TIMESTAMPTZ", pa.timestamp("us", tz="UTC")),
    ("TimeStamp", "TIMESTAMPTZ", pa.timestamp("us", tz="UTC")),
    *((name, "VARCHAR", pa.string()) for name in SOURCE_COLUMNS),
    ("EventId", "UUID", pa.string()),
    ("EventIdText", "VARCHAR", pa.string()),
    ("RowIndex", "INTEGER", pa.int32()),
    ("RawEventName", "VARCHAR", pa.string()),
    ("RawEventCategory", "VARCHAR", pa.string()),
    ("RawEventType", "VARCHAR", pa.string()),
    ("IsEmpty", "BOOLEAN", pa.bool_()),
    ("LocalOffset", "SMALLINT", pa.int16()),
    ("LocalSkew", "BIGINT", pa.int64()),
    *((name, kind, pa.int64() if kind == "BIGINT" else pa.string()) for name, kind in HOT_COLUMNS),
    ("HitCount", "BIGINT", pa.int64()),
    ("Details", "VARCHAR", pa.string()),
)

# (name, DuckDB type) of the stored table's columns, in order.
_STORED: tuple[tuple[str, str], ...] = (
    ("TimeGenerated", "TIMESTAMPTZ"),
    ("TimeStamp", "TIMESTAMPTZ"),
    ("SourceKey", "INTEGER"),
    *((name, kind) for name, kind, _ in _INGEST[2 + len(SOURCE_COLUMNS) :]),
)

#: The Arrow schema ingest hands to the store, with the event id as text.
INGEST_SCHEMA = pa.schema([pa.field(name, arrow) for name, _, arrow in _INGEST])


def _q(name: str) -> str:
    return '"' + name + '"'


def _iso(ts: str) -> str:
    # msgspec's RFC 3339 form: microseconds only when there are some.
    return (
        f"CASE WHEN microsecond({ts}) % 1000000 = 0"
        f" THEN strftime({ts}, '%Y-%m-%dT%H:%M:%S')"
        f" ELSE strftime({ts}, '%Y-%m-%dT%H:%M:%S.%f') END"
    )


_UTC = "timezone('UTC', \"TimeGenerated\")"
_LOCAL = f'({_UTC} + to_microseconds("LocalOffset"::BIGINT * 60000000 + coalesce("LocalSkew", 0)))'
_ZONE = (
    "CASE WHEN \"LocalOffset\" = 0 THEN 'Z' ELSE"
    " (CASE WHEN \"LocalOffset\" < 0 THEN '-' ELSE '+' END)"
    " || lpad((abs(\"LocalOffset\") // 60)::VARCHAR, 2, '0') || ':'"
    " || lpad((abs(\"LocalOffset\") % 60)::VARCHAR, 2, '0') END"
)
_ID = 'coalesce("EventIdText", "EventId"::VARCHAR)'


def _event_details() -> str:
    envelope = (
        f"json_object('Id', {_ID}, 'TimestampLocal', {_iso(_LOCAL)} || {_ZONE},"
        f" 'TimestampUTC', {_iso(_UTC)} || 'Z', 'Category', \"RawEventCategory\","
        " 'Name', \"RawEventName\", 'EventType', \"RawEventType\", 'IsEmpty', \"IsEmpty\","
        " 'PayloadSchemaVersion', '1.0', 'AgentId', \"AgentId\", 'AgentVersion', \"AgentVersion\")"
    )
    # In a JSON merge patch a null removes the key, so absent hot fields stay absent.
    hot = "json_object(" + ", ".join(f"'{name}', {_q(name)}" for name, _ in HOT_COLUMNS) + ")"
    return f"json_merge_patch({envelope}, {hot}, coalesce(\"Details\", '{{}}'))"


def _view_sql() -> str:
    computed = {
        "IoTRawEventId": f"{_ID} || ':' || \"RowIndex\"",
        "EventId": _ID,
        "EventDetails": _event_details(),
        "Type": f"'{RAW_TABLE}'",
    }
    select = []
    for column in TABLES[RAW_TABLE].columns:
        expression = computed.get(column.name, _q(column.name))
        select.append(f"({expression})::{column.duckdb_type} AS {_q(column.name)}")
    return (
        f"CREATE OR REPLACE VIEW {_q(RAW_TABLE)} AS SELECT {', '.join(select)}"  # noqa: S608 - registry names
        f" FROM {_q(STORAGE_TABLE)} AS r LEFT JOIN {_q(SOURCE_TABLE)} AS s"
        ' ON s."SourceKey" = r."SourceKey"'
    )


def create_statements() -> list[str]:
    """The statements that create the tables, the key sequence and the view (idempotent)."""
    return [*_table_statements(), _view_sql()]


def _table_statements() -> list[str]:
    columns = ", ".join(f"{_q(name)} {kind}" for name, kind in _STORED)
    sources = ", ".join(f"{_q(name)} VARCHAR" for name in SOURCE_COLUMNS)
    return [
        f"CREATE SEQUENCE IF NOT EXISTS {_q(_SOURCE_KEYS)}",
        f"CREATE TABLE IF NOT EXISTS {_q(SOURCE_TABLE)}"
        f' ("SourceKey" INTEGER PRIMARY KEY, {sources})',
        f"CREATE TABLE IF NOT EXISTS {_q(STORAGE_TABLE)} ({columns})",
    ]


def upgrade_statements(stored_columns: Sequence[str]) -> list[str]:
    """The statements that move a stored table of an older layout to this one, or none.

    The layout before source keys held the source columns in every row; they are moved into the
    source table and the rows rewritten with their keys (one transaction, run by the caller
    before ``create_statements``).
    """
    if "SourceKey" in stored_columns or not stored_columns:
        return []
    old = _q(STORAGE_TABLE + "_old")
    select = ", ".join(
        's."SourceKey"' if name == "SourceKey" else f"o.{_q(name)}" for name, _ in _STORED
    )
    return [
        f"DROP VIEW IF EXISTS {_q(RAW_TABLE)}",
        f"ALTER TABLE {_q(STORAGE_TABLE)} RENAME TO {old}",
        *_table_statements(),
        _new_sources(old),
        f"INSERT INTO {_q(STORAGE_TABLE)} SELECT {select} FROM {old} AS o"  # noqa: S608 - fixed names
        f" JOIN ({_source_lookup()}) AS s ON {_same_source('o', 's')}",
        f"DROP TABLE {old}",
    ]


def _same_source(left: str, right: str) -> str:
    return " AND ".join(
        f"{left}.{_q(name)} IS NOT DISTINCT FROM {right}.{_q(name)}" for name in SOURCE_COLUMNS
    )


def _new_sources(relation: str) -> str:
    # Adds the source combinations of ``relation`` that the source table lacks.
    names = ", ".join(_q(name) for name in SOURCE_COLUMNS)
    return (
        f"INSERT INTO {_q(SOURCE_TABLE)} SELECT nextval('{_SOURCE_KEYS}'), n.* FROM"  # noqa: S608 - fixed names
        f" (SELECT DISTINCT {names} FROM {relation}) AS n"
        f" WHERE NOT EXISTS (SELECT 1 FROM {_q(SOURCE_TABLE)} AS s WHERE {_same_source('s', 'n')})"
    )


def source_statement(staged: str) -> str:
    """The ``INSERT`` that adds the source combinations of the staged batch not yet stored."""
    return _new_sources(staged)


def prune_sources_statement() -> str:
    """The ``DELETE`` of the sources no stored row refers to (after retention)."""
    return (
        f'DELETE FROM {_q(SOURCE_TABLE)} WHERE "SourceKey" NOT IN'  # noqa: S608 - fixed names
        f' (SELECT DISTINCT "SourceKey" FROM {_q(STORAGE_TABLE)})'
    )


def _source_lookup() -> str:
    # One key per combination, even should two appends ever have added the same one.
    names = ", ".join(_q(name) for name in SOURCE_COLUMNS)
    return (
        f'SELECT {names}, min("SourceKey") AS "SourceKey" FROM {_q(SOURCE_TABLE)}'  # noqa: S608 - fixed names
        f" GROUP BY {names}"
    )


def has_repeats(staged: pa.Table) -> bool:
    """Whether a staged batch holds some key (event id and row index) twice."""
    keys = pc.binary_join_element_wise(
        staged.column("EventId"), pc.cast(staged.column("RowIndex"), pa.string()), ":"
    )
    return bool(pc.count_distinct(keys).as_py() != staged.num_rows)


def insert_statements(
    staged: str, clusters: Sequence[tuple[int, int]], *, distinct: bool = True
) -> list[str]:
    """One ``INSERT`` per time cluster of the staged batch, skipping rows already stored.

    Run ``source_statement`` first, in the same transaction. ``clusters`` are inclusive (low,
    high) bounds in microseconds since the epoch; the statements read the staged relation
    ``staged`` (a quoted name). ``distinct`` keeps one row per key within the batch; it costs
    more than the insert itself, so the store asks for it only when ``has_repeats`` finds some.
    """
    unique = 'DISTINCT ON (b."EventId", b."RowIndex") ' if distinct else ""
    select = []
    for name, kind in _STORED:
        if name == "SourceKey":
            select.append('k."SourceKey"')
        elif name == "EventId":
            # A non-UUID id becomes the UUID of its MD5 digest (same text, same UUID).
            digest = 'md5(b."EventId")'
            parts = ((1, 8), (9, 4), (13, 4), (17, 4), (21, 12))
            uuid_text = " || '-' || ".join(f"substr({digest}, {a}, {b})" for a, b in parts)
            select.append(
                f'coalesce(TRY_CAST(b."EventId" AS UUID), ({uuid_text})::UUID) AS "EventId"'
            )
        elif name == "EventIdText":
            select.append(
                'CASE WHEN TRY_CAST(b."EventId" AS UUID) IS NULL THEN b."EventId" END'
                ' AS "EventIdText"'
            )
        else:
            select.append(f"b.{_q(name)}::{kind} AS {_q(name)}")
    statements = []
    for low, high in clusters:
        window = f"make_timestamptz({low}::BIGINT) AND make_timestamptz({high}::BIGINT)"
        statements.append(
            f"INSERT INTO {_q(STORAGE_TABLE)} SELECT * FROM ("  # noqa: S608 - fixed names, integer bounds
            f"SELECT {unique}{', '.join(select)} FROM {staged} AS b"
            f" JOIN ({_source_lookup()}) AS k ON {_same_source('b', 'k')}"
            f' WHERE b."TimeGenerated" BETWEEN {window}) AS s'
            f" WHERE NOT EXISTS (SELECT 1 FROM {_q(STORAGE_TABLE)} AS t"
            f' WHERE t."TimeGenerated" BETWEEN {window}'
            ' AND t."EventId" = s."EventId" AND t."RowIndex" = s."RowIndex")'
        )
    return statements


@dataclass(frozen=True, slots=True)
class _Gap:
    after: int
    size: int


def time_clusters(
    times: pa.Array | pa.ChunkedArray, *, gap_us: int = 3_600_000_000, most: int = 16
) -> list[tuple[int, int]]:
    """Split a batch's ``TimeGenerated`` values into at most ``most`` dense ranges.

    Live traffic gives one range; an agent with a wrong clock, or a replay, adds a few. Ranges
    are split at gaps over ``gap_us``, largest gaps first.

    >>> import pyarrow as pa
    >>> time_clusters(pa.array([5, 1, 2, 10_000], pa.int64()), gap_us=100)
    [(1, 5), (10000, 10000)]
    """
    micros = pc.drop_null(times.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64()))
    if len(micros) == 0:
        return []
    bounds = pc.min_max(micros)
    low, high = bounds["min"].as_py(), bounds["max"].as_py()
    if high - low <= gap_us:
        return [(low, high)]  # the common case: no sort needed
    ordered = sorted(pc.unique(micros).to_pylist())
    gaps = sorted(
        (
            _Gap(index, ordered[index + 1] - ordered[index])
            for index in range(len(ordered) - 1)
            if ordered[index + 1] - ordered[index] > gap_us
        ),
        key=lambda gap: -gap.size,
    )[: most - 1]
    cuts = sorted(gap.after for gap in gaps)
    clusters, start = [], 0
    for cut in cuts:
        clusters.append((ordered[start], ordered[cut]))
        start = cut + 1
    clusters.append((ordered[start], ordered[-1]))
    return clusters
