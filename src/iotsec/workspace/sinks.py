"""How the analytics pipeline hands alerts and recommendations to the workspace.

Two one-method protocols; ``WorkspaceStore`` implements both. Rows are typed values (msgspec
Structs whose encoded names are the table's column names) and go in as one Arrow batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

import msgspec
import pyarrow as pa  # type: ignore[import-untyped]  # pyarrow ships no type hints

from iotsec.workspace.rows import arrow_schema, conform
from iotsec.workspace.tables import TABLES

__all__ = ["AlertRow", "AlertSink", "RecommendationRow", "RecommendationSink", "rows_to_arrow"]


class AlertRow(msgspec.Struct, frozen=True, kw_only=True, rename="pascal"):
    """One SecurityAlert row; ``system_alert_id`` makes writing it twice harmless."""

    time_generated: datetime
    system_alert_id: str
    alert_name: str
    alert_severity: str
    display_name: str | None = None
    alert_type: str | None = None
    description: str | None = None
    provider_name: str = "IoTSecurity"
    vendor_name: str = "iotsec"
    vendor_original_id: str | None = None
    resource_id: str | None = None
    device_id: str | None = None
    confidence_level: str | None = None
    confidence_score: float | None = None
    is_incident: bool = False
    start_time: datetime | None = None
    end_time: datetime | None = None
    processing_end_time: datetime | None = None
    remediation_steps: list[str] = msgspec.field(default_factory=list)
    extended_properties: dict[str, Any] = msgspec.field(default_factory=dict)
    entities: list[Any] = msgspec.field(default_factory=list)
    product_name: str = "Azure Security Center for IoT"
    status: str = "New"
    compromised_entity: str | None = None
    tactics: str | None = None
    techniques: str | None = None


class RecommendationRow(msgspec.Struct, frozen=True, kw_only=True, rename="pascal"):
    """One SecurityRecommendation row, keyed by ``recommendation_id``."""

    time_generated: datetime
    recommendation_id: str
    recommendation_name: str
    recommendation_severity: str
    recommendation_state: str = "Active"
    assessed_resource_id: str | None = None
    device_id: str | None = None
    recommendation_display_name: str | None = None
    description: str | None = None
    recommendation_additional_data: dict[str, Any] = msgspec.field(default_factory=dict)
    discovered_time_utc: datetime | None = msgspec.field(default=None, name="DiscoveredTimeUTC")
    resolved_time_utc: datetime | None = msgspec.field(default=None, name="ResolvedTimeUTC")
    first_evaluation_date: datetime | None = None
    status_change_date: datetime | None = None
    provider_name: str = "IoTSecurity"
    properties: dict[str, Any] = msgspec.field(default_factory=dict)
    is_snapshot: bool = False


class AlertSink(Protocol):
    """Where the analytics pipeline writes alerts."""

    def write_alerts(self, rows: Sequence[AlertRow]) -> int:
        """Store ``rows``; returns how many were new."""


class RecommendationSink(Protocol):
    """Where the analytics pipeline writes recommendations."""

    def write_recommendations(self, rows: Sequence[RecommendationRow]) -> int:
        """Store ``rows``; returns how many were new."""


_encode = msgspec.json.Encoder().encode


def rows_to_arrow(table: str, rows: Sequence[msgspec.Struct]) -> pa.Table:
    """The Arrow table of ``rows`` for workspace table ``table`` (dynamic values as JSON)."""
    spec = TABLES[table]
    if not rows:
        return arrow_schema(spec).empty_table()
    columns: dict[str, list[object]] = {}
    for field in msgspec.structs.fields(type(rows[0])):
        column = spec.column(field.encode_name)
        if column is None:
            raise ValueError(f"{table} has no column {field.encode_name!r}")
        values = [getattr(row, field.name) for row in rows]
        if column.type == "dynamic":
            values = [_encode(v).decode() for v in values]
        columns[field.encode_name] = values
    schema = pa.schema([arrow_schema(spec).field(name) for name in columns])
    return conform(spec, pa.Table.from_pydict(columns, schema=schema))
