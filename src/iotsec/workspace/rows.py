"""Durable-log entries to Arrow tables, one per workspace table (I/O-free).

``RowBuilder.add(entry)`` maps one entry and keeps its rows as Python column lists;
``RowBuilder.build()`` turns them into Arrow tables with the registry's schema. Security
messages give one ``SecurityIoTRawEvent`` row per payload row (an empty event gives one row
whose EventDetails holds only the envelope), operation-log entries give ``OperationLog`` rows
and dead letters ``DeadLetter`` rows. A security record that no longer decodes becomes a
DeadLetter row that says why, so nothing is dropped silently.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import msgspec
import pyarrow as pa  # type: ignore[import-untyped]  # pyarrow ships no type hints

from iotsec.schema import MessageInvalid, MessageTooLarge, aggregation_of, decode_message
from iotsec.stream import Entry
from iotsec.workspace.rawevents import HOT_COLUMNS, INGEST_SCHEMA
from iotsec.workspace.tables import TABLES, Table

__all__ = [
    "DEADLETTER_KIND",
    "OPLOG_KIND",
    "SECURITY_KIND",
    "HubIdentity",
    "RowBuilder",
    "arrow_schema",
    "conform",
]

# Durable-log record kinds, as the hub writes them (iotsec.hub is not imported on purpose).
SECURITY_KIND = "security"
OPLOG_KIND = "oplog"
DEADLETTER_KIND = "deadletter"

RAW, OPLOG, DEADLETTER = "SecurityIoTRawEvent", "OperationLog", "DeadLetter"

_ARROW: dict[str, pa.DataType] = {
    "string": pa.string(),
    "long": pa.int64(),
    "real": pa.float64(),
    "bool": pa.bool_(),
    "datetime": pa.timestamp("us", tz="UTC"),
    "timespan": pa.duration("us"),
    "dynamic": pa.string(),  # JSON text; DuckDB casts it to JSON on insert
}

_encode = msgspec.json.Encoder().encode


# Payload fields by row type: (attribute, hot column or None, wire name, default).
_FIELDS: dict[type, tuple[tuple[str, str | None, str, object], ...]] = {}
_HOT_NAMES = {name for name, _ in HOT_COLUMNS}


def _fields_of(row_type: type) -> tuple[tuple[str, str | None, str, object], ...]:
    fields = _FIELDS.get(row_type)
    if fields is None:
        fields = tuple(
            (
                f.name,
                f.encode_name if f.encode_name in _HOT_NAMES else None,
                f.encode_name,
                {} if f.default_factory is dict else f.default,
            )
            for f in msgspec.structs.fields(row_type)
        )
        _FIELDS[row_type] = fields
    return fields


def _payload_columns(row: object, hot: dict[str, list[object]]) -> str | None:
    """Append ``row``'s hot fields to their columns; return the other fields as JSON (or None)."""
    seen: set[str] = set()
    residual: dict[str, object] = {}
    if row is not None:
        for attr, column, wire, default in _fields_of(type(row)):
            value = getattr(row, attr)
            if column is not None:
                # RemotePort is a string on the wire; the C agent's integer 0 is normalized.
                hot[column].append("" if column == "RemotePort" and value == 0 else value)
                seen.add(column)
            elif value != default:
                residual[wire] = value
    for column, values in hot.items():
        if column not in seen:
            values.append(None)
    return _encode(residual).decode() if residual else None


def arrow_schema(table: Table) -> pa.Schema:
    """The Arrow schema of ``table``'s rows (dynamic columns travel as JSON text)."""
    return pa.schema([pa.field(c.name, _ARROW[c.type]) for c in table.columns])


def conform(table: Table, data: pa.Table | pa.RecordBatch) -> pa.Table:
    """``data`` with ``table``'s columns in order and types; missing columns are null.

    A missing ``Type`` column is filled with the table name, as Log Analytics does.
    """
    return conform_to(arrow_schema(table), table.name, data)


def conform_to(schema: pa.Schema, name: str, data: pa.Table | pa.RecordBatch) -> pa.Table:
    """``data`` with ``schema``'s columns in order and types (see ``conform``)."""
    if isinstance(data, pa.RecordBatch):
        data = pa.Table.from_batches([data])
    unknown = set(data.column_names) - set(schema.names)
    if unknown:
        raise ValueError(f"{name} has no column {sorted(unknown)[0]!r}")
    n = data.num_rows
    arrays = []
    for field in schema:
        if field.name in data.column_names:
            arrays.append(data.column(field.name).cast(field.type))
        elif field.name == "Type":
            arrays.append(pa.array([name] * n, field.type))
        else:
            arrays.append(pa.nulls(n, field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


@dataclass(frozen=True, slots=True)
class HubIdentity:
    """The hub's resource id; ASC puts it in AssociatedResourceId and ResourceId columns.

    >>> hub = HubIdentity("/subscriptions/0000/resourceGroups/rg/providers/"
    ...                   "Microsoft.Devices/IotHubs/my-hub")
    >>> hub.hub_name, hub.subscription_id
    ('my-hub', '0000')
    """

    resource_id: str

    @property
    def hub_name(self) -> str:
        """The last segment of the resource id, lower case."""
        return self.resource_id.rstrip("/").rsplit("/", 1)[-1].lower()

    @property
    def subscription_id(self) -> str | None:
        """The segment after ``/subscriptions/``, when the id has one."""
        parts = self.resource_id.strip("/").split("/")
        if len(parts) >= 2 and parts[0].lower() == "subscriptions":
            return parts[1]
        return None


class _OplogEntry(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """The hub's operation-log entry, as much of it as the workspace reads."""

    time: float
    category: str
    operation: str
    result: str = "Success"
    protocol: str | None = None
    device_id: str | None = None
    module_id: str | None = None
    source_ip: str | None = None
    reason: str | None = None
    detail: str | None = None
    properties: dict[str, str] = msgspec.field(default_factory=dict)


_oplog_decoder = msgspec.json.Decoder(_OplogEntry)


def _micros(seconds: float) -> int:
    return round(seconds * 1_000_000)


class RowBuilder:
    """Accumulates the rows of log entries and builds Arrow tables from them."""

    def __init__(self, hub: HubIdentity) -> None:
        self.hub = hub
        self._cols: dict[str, dict[str, list[object]]] = {}
        self.rows = 0
        self.reset()

    def reset(self) -> None:
        """Forget every row added so far."""
        self._cols = {name: {c: [] for c in TABLES[name].column_names} for name in (OPLOG,)}
        self._cols[RAW] = {c: [] for c in INGEST_SCHEMA.names}
        self._cols[DEADLETTER] = {c: [] for c in TABLES[DEADLETTER].column_names}
        self.rows = 0

    def add_all(self, entries: Iterable[Entry]) -> int:
        """Add every entry; returns how many rows they gave."""
        return sum(self.add(entry) for entry in entries)

    def add(self, entry: Entry) -> int:
        """Add the rows of ``entry``; returns how many (0 for kinds without a table)."""
        kind = entry.record.kind
        if kind == SECURITY_KIND:
            added = self._add_security(entry)
        elif kind == OPLOG_KIND:
            added = self._add_oplog(entry)
        elif kind == DEADLETTER_KIND:
            header = entry.record.header
            index = header("event_index")
            self._add_deadletter(
                entry, header("reason") or "", int(index) if index is not None else None
            )
            added = 1
        else:
            added = 0
        self.rows += added
        return added

    def build(self) -> dict[str, pa.Table]:
        """Arrow tables of the rows added since the last build (tables with rows only)."""
        out = {}
        for name, cols in self._cols.items():
            if cols["TimeGenerated"]:
                schema = INGEST_SCHEMA if name == RAW else arrow_schema(TABLES[name])
                out[name] = pa.Table.from_pydict(cols, schema=schema)
        self.reset()
        return out

    def _add_security(self, entry: Entry) -> int:
        record = entry.record
        try:
            message = decode_message(record.body).message
        except (MessageInvalid, MessageTooLarge) as exc:
            self._add_deadletter(entry, f"workspace could not decode the message: {exc}", None)
            return 1
        header = record.header
        enqueued = header("enqueued_time")
        stamp = _micros(float(enqueued) if enqueued is not None else record.timestamp)
        device = header("device_id") or record.key
        module = header("module_id")
        hub = self.hub
        c = self._cols[RAW]
        hot = {name: c[name] for name in _HOT_NAMES}
        agent_id, agent_version = message.agent_id, message.agent_version
        added = 0
        for event in message.events:
            name = event.name
            local = event.timestamp_local
            offset = local.utcoffset()
            offset_minutes = int(offset.total_seconds() // 60) if offset else 0
            skew = round((local - event.timestamp_utc).total_seconds() * 1_000_000)
            aggregation = aggregation_of(event)
            hits = aggregation.hit_count if aggregation else 1
            rows: tuple[object, ...] = event.payload or (None,)
            for index, row in enumerate(rows):
                c["TimeGenerated"].append(event.timestamp_utc)
                c["TimeStamp"].append(stamp)
                c["AgentVersion"].append(agent_version)
                c["AgentId"].append(agent_id)
                c["AssociatedResourceId"].append(hub.resource_id)
                c["AzureSubscriptionId"].append(hub.subscription_id)
                c["HubName"].append(hub.hub_name)
                c["DeviceId"].append(device)
                c["ModuleId"].append(module)
                c["EventId"].append(event.id)
                c["EventIdText"].append(None)
                c["RowIndex"].append(index)
                c["RawEventName"].append(name)
                c["RawEventCategory"].append(event.category)
                c["RawEventType"].append(event.event_type)
                c["IsEmpty"].append(event.is_empty)
                c["LocalOffset"].append(offset_minutes)
                c["LocalSkew"].append(skew or None)
                c["HitCount"].append(hits)
                c["Details"].append(_payload_columns(row, hot))
            added += len(rows)
        return added

    def _add_oplog(self, entry: Entry) -> int:
        try:
            op = _oplog_decoder.decode(entry.record.body)
        except msgspec.DecodeError as exc:
            self._add_deadletter(entry, f"workspace could not decode the oplog entry: {exc}", None)
            return 1
        c = self._cols[OPLOG]
        values: tuple[tuple[str, object], ...] = (
            ("TimeGenerated", _micros(op.time)),
            ("OperationId", f"{entry.partition}:{entry.offset}"),
            ("ResourceId", self.hub.resource_id),
            ("Category", op.category),
            ("OperationName", op.operation),
            ("Level", "Error" if op.result == "Failure" else "Information"),
            ("ResultType", op.result),
            ("ResultDescription", op.reason),
            ("Detail", op.detail),
            ("DeviceId", op.device_id),
            ("ModuleId", op.module_id),
            ("Protocol", op.protocol),
            ("CallerIpAddress", op.source_ip),
            ("Properties", _encode(op.properties)),
            ("Type", OPLOG),
        )
        for column, value in values:
            c[column].append(value)
        return 1

    def _add_deadletter(self, entry: Entry, reason: str, event_index: int | None) -> None:
        record = entry.record
        c = self._cols[DEADLETTER]
        values: tuple[tuple[str, object], ...] = (
            ("TimeGenerated", _micros(record.timestamp)),
            ("DeadLetterId", f"{entry.partition}:{entry.offset}"),
            ("ResourceId", self.hub.resource_id),
            ("DeviceId", record.header("device_id") or record.key),
            ("ModuleId", record.header("module_id")),
            ("Protocol", record.header("protocol")),
            ("Reason", reason),
            ("EventIndex", event_index),
            ("Body", record.body.decode("utf-8", "replace")),
            ("Type", DEADLETTER),
        )
        for column, value in values:
            c[column].append(value)
