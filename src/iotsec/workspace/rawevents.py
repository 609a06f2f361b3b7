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
    "STORAGE_TABLE",
    "create_statements",
    "has_repeats",
    "insert_statements",
    "time_clusters",
]

RAW_TABLE = "SecurityIoTRawEvent"
#: The physical table behind the view; not a workspace table, so queries cannot name it.
STORAGE_TABLE = "_SecurityIoTRawEventRows"

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

# (name, DuckDB type, Arrow type) of the stored columns, in table order.
_STORED: tuple[tuple[str, str, pa.DataType], ...] = (
    ("TimeGenerated", "TIMESTAMPTZ", pa.timestamp("us", tz="UTC")),
    ("TimeStamp", "TIMESTAMPTZ", pa.timestamp("us", tz="UTC")),
    ("AgentVersion", "VARCHAR", pa.string()),
    ("AgentId", "VARCHAR", pa.string()),
    ("AssociatedResourceId", "VARCHAR", pa.string()),
    ("AzureSubscriptionId", "VARCHAR", pa.string()),
    ("HubName", "VARCHAR", pa.string()),
    ("DeviceId", "VARCHAR", pa.string()),
    ("ModuleId", "VARCHAR", pa.string()),
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

#: The Arrow schema ingest hands to the store: the stored columns, with the event id as text.
INGEST_SCHEMA = pa.schema([pa.field(name, arrow) for name, _, arrow in _STORED])


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
        f" FROM {_q(STORAGE_TABLE)}"
    )


def create_statements() -> list[str]:
    """The statements that create the stored table and the view (idempotent)."""
    columns = ", ".join(f"{_q(name)} {kind}" for name, kind, _ in _STORED)
    return [f"CREATE TABLE IF NOT EXISTS {_q(STORAGE_TABLE)} ({columns})", _view_sql()]


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

    ``clusters`` are inclusive (low, high) bounds in microseconds since the epoch; the
    statements read the staged relation ``staged`` (a quoted name). ``distinct`` keeps one row
    per key within the batch; it costs more than the insert itself, so the store asks for it
    only when ``has_repeats`` finds some.
    """
    unique = 'DISTINCT ON ("EventId", "RowIndex") ' if distinct else ""
    select = []
    for name, kind, _ in _STORED:
        if name == "EventId":
            # A non-UUID id becomes the UUID of its MD5 digest (same text, same UUID).
            digest = 'md5("EventId")'
            parts = ((1, 8), (9, 4), (13, 4), (17, 4), (21, 12))
            uuid_text = " || '-' || ".join(f"substr({digest}, {a}, {b})" for a, b in parts)
            select.append(
                f'coalesce(TRY_CAST("EventId" AS UUID), ({uuid_text})::UUID) AS "EventId"'
            )
        elif name == "EventIdText":
            select.append(
                'CASE WHEN TRY_CAST("EventId" AS UUID) IS NULL THEN "EventId" END AS "EventIdText"'
            )
        else:
            select.append(f"{_q(name)}::{kind} AS {_q(name)}")
    statements = []
    for low, high in clusters:
        window = f"make_timestamptz({low}::BIGINT) AND make_timestamptz({high}::BIGINT)"
        statements.append(
            f"INSERT INTO {_q(STORAGE_TABLE)} SELECT * FROM ("  # noqa: S608 - fixed names, integer bounds
            f"SELECT {unique}{', '.join(select)} FROM {staged}"
            f' WHERE "TimeGenerated" BETWEEN {window}) AS s'
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
