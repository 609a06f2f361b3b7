"""The workspace tables: ASC's names and columns (reference §6), plus iotsec's own three.

Each table is data: its columns with KQL types (and the DuckDB type that stores them), the key
that makes ingest idempotent, the time column and the default retention. Both the store (which
creates the tables) and the KQL compiler (which checks names and types) read this one registry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["TABLES", "Column", "KqlType", "Table"]

#: KQL scalar types, as the compiler reasons about them.
KqlType = Literal["string", "long", "real", "bool", "datetime", "timespan", "dynamic"]

_DUCKDB: dict[str, str] = {
    "string": "VARCHAR",
    "long": "BIGINT",
    "real": "DOUBLE",
    "bool": "BOOLEAN",
    "datetime": "TIMESTAMPTZ",
    "timespan": "INTERVAL",
    "dynamic": "JSON",
}


@dataclass(frozen=True, slots=True)
class Column:
    """One column: its name, its KQL type and what it holds."""

    name: str
    type: KqlType
    doc: str = ""

    @property
    def duckdb_type(self) -> str:
        """The DuckDB type that stores this column."""
        return _DUCKDB[self.type]


@dataclass(frozen=True, slots=True)
class Table:
    """A workspace table."""

    name: str
    columns: tuple[Column, ...]
    key: str
    time_column: str = "TimeGenerated"
    retention_days: int = 30
    doc: str = ""

    def column(self, name: str) -> Column | None:
        """The column called ``name`` (exact case), or None."""
        for column in self.columns:
            if column.name == name:
                return column
        return None

    @property
    def column_names(self) -> tuple[str, ...]:
        """Column names in table order."""
        return tuple(c.name for c in self.columns)


def _cols(*spec: tuple[str, KqlType] | tuple[str, KqlType, str]) -> tuple[Column, ...]:
    return tuple(Column(*item) for item in spec)


_RAW = Table(
    name="SecurityIoTRawEvent",
    key="IoTRawEventId",
    retention_days=30,
    doc="One row per payload row of every security event an agent sent.",
    columns=_cols(
        ("TimeGenerated", "datetime", "the event's TimestampUTC"),
        ("TimeStamp", "datetime", "when the hub received it"),
        ("AgentVersion", "string"),
        ("AgentId", "string"),
        ("AssociatedResourceId", "string", "the hub's resource id (hub name in lower case)"),
        ("AzureSubscriptionId", "string"),
        ("HubName", "string"),
        ("DeviceId", "string"),
        ("ModuleId", "string"),
        ("IoTRawEventId", "string", "event Id and row index: the idempotency key"),
        ("EventId", "string", "the event's Id"),
        ("RawEventName", "string", "ProcessCreate, Login, ListeningPorts, ..."),
        ("RawEventCategory", "string", "Periodic or Triggered"),
        ("RawEventType", "string", "Security, Operational or Diagnostic"),
        ("IsEmpty", "bool"),
        (
            "EventDetails",
            "dynamic",
            "the payload row plus the envelope fields (TimestampLocal, Id, ...)",
        ),
        ("Executable", "string"),
        ("CommandLine", "string"),
        ("ProcessId", "long"),
        ("ParentProcessId", "long"),
        ("UserName", "string"),
        ("UserId", "string"),
        ("RemoteAddress", "string"),
        ("RemotePort", "string"),
        ("LocalAddress", "string"),
        ("LocalPort", "string"),
        ("Protocol", "string"),
        ("Direction", "string"),
        ("Result", "string"),
        ("HitCount", "long", "1, or the hit count of an aggregated event"),
        ("Type", "string"),
    ),
)

_ALERT = Table(
    name="SecurityAlert",
    key="SystemAlertId",
    retention_days=365,
    doc="Alerts from the analytics pipeline.",
    columns=_cols(
        ("TimeGenerated", "datetime"),
        ("SystemAlertId", "string"),
        ("AlertName", "string"),
        ("DisplayName", "string"),
        ("AlertSeverity", "string", "High, Medium, Low or Informational"),
        ("AlertType", "string"),
        ("Description", "string"),
        ("ProviderName", "string"),
        ("VendorName", "string"),
        ("VendorOriginalId", "string"),
        ("ResourceId", "string", "the hub's resource id"),
        ("DeviceId", "string"),
        ("ConfidenceLevel", "string"),
        ("ConfidenceScore", "real"),
        ("IsIncident", "bool"),
        ("StartTime", "datetime"),
        ("EndTime", "datetime"),
        ("ProcessingEndTime", "datetime"),
        ("RemediationSteps", "dynamic"),
        ("ExtendedProperties", "dynamic", "DeviceId plus the alert's evidence"),
        ("Entities", "dynamic"),
        ("ProductName", "string"),
        ("Status", "string", "New, Dismissed or Resolved"),
        ("CompromisedEntity", "string"),
        ("Tactics", "string"),
        ("Techniques", "string"),
        ("Type", "string"),
    ),
)

_RECOMMENDATION = Table(
    name="SecurityRecommendation",
    key="RecommendationId",
    retention_days=365,
    doc="Recommendations from the analytics pipeline.",
    columns=_cols(
        ("TimeGenerated", "datetime"),
        ("RecommendationId", "string"),
        ("AssessedResourceId", "string", "the hub's resource id"),
        ("DeviceId", "string"),
        ("RecommendationName", "string"),
        ("RecommendationDisplayName", "string"),
        ("RecommendationSeverity", "string"),
        ("RecommendationState", "string", "Active or Resolved"),
        ("Description", "string"),
        ("RecommendationAdditionalData", "dynamic"),
        ("DiscoveredTimeUTC", "datetime"),
        ("ResolvedTimeUTC", "datetime"),
        ("FirstEvaluationDate", "datetime"),
        ("StatusChangeDate", "datetime"),
        ("ProviderName", "string"),
        ("Properties", "dynamic"),
        ("IsSnapshot", "bool"),
        ("Type", "string"),
    ),
)

_OPERATION_LOG = Table(
    name="OperationLog",
    key="OperationId",
    retention_days=90,
    doc="The hub's operation logs.",
    columns=_cols(
        ("TimeGenerated", "datetime"),
        ("OperationId", "string", "the durable-log position: the idempotency key"),
        ("ResourceId", "string"),
        ("Category", "string", "Connections, DeviceTelemetry, C2DCommands, ..."),
        ("OperationName", "string"),
        ("Level", "string", "Information or Error"),
        ("ResultType", "string", "Success or Failure"),
        ("ResultDescription", "string", "the reason of a failure"),
        ("Detail", "string"),
        ("DeviceId", "string"),
        ("ModuleId", "string"),
        ("Protocol", "string"),
        ("CallerIpAddress", "string"),
        ("Properties", "dynamic"),
        ("Type", "string"),
    ),
)

_DEVICE = Table(
    name="Device",
    key="DeviceId",
    time_column="TimeGenerated",
    retention_days=36500,
    doc="The device inventory: one row per device, updated in place.",
    columns=_cols(
        ("TimeGenerated", "datetime", "when the row last changed"),
        ("DeviceId", "string"),
        ("ResourceId", "string"),
        ("SecurityGroup", "string"),
        ("Status", "string", "enabled or disabled"),
        ("AuthType", "string"),
        ("FirstSeen", "datetime"),
        ("LastSeen", "datetime"),
        ("RiskScore", "real"),
        ("RiskLevel", "string"),
        ("Tags", "dynamic"),
        ("Type", "string"),
    ),
)

_DEAD_LETTER = Table(
    name="DeadLetter",
    key="DeadLetterId",
    retention_days=30,
    doc="Messages and events the hub refused, with their reasons.",
    columns=_cols(
        ("TimeGenerated", "datetime"),
        ("DeadLetterId", "string", "the durable-log position"),
        ("ResourceId", "string"),
        ("DeviceId", "string"),
        ("ModuleId", "string"),
        ("Protocol", "string"),
        ("Reason", "string"),
        ("EventIndex", "long"),
        ("Body", "string", "the refused bytes, as text"),
        ("Type", "string"),
    ),
)

#: Every workspace table by name.
TABLES: dict[str, Table] = {
    t.name: t for t in (_RAW, _ALERT, _RECOMMENDATION, _OPERATION_LOG, _DEVICE, _DEAD_LETTER)
}
