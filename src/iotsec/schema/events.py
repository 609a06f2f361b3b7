"""The event envelope, one typed event class per event name, and the event registry.

``Name`` on the wire selects the event class (a tagged union), and each class pins the
``Category`` and ``EventType`` that Microsoft's schema pins for it. Aggregated events arrive
with ``Category: Aggregated``; decode normalizes them to ``Triggered`` and keeps the hit count
and window in the row's ``ExtraDetails``, which is where both ASC agents put them, so the
encoded form stays valid against Microsoft's schema (see ``aggregation_of``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal, Self

import msgspec

from iotsec.schema.payloads import (
    ConfigurationError,
    ConnectedHardware,
    ConnectionCreate,
    Diagnostic,
    DroppedEventsStatistics,
    FirewallConfiguration,
    Guid,
    ListeningPorts,
    LocalUsers,
    Login,
    MessageStatistics,
    OSBaseline,
    ProcessCreate,
    ProcessTerminate,
    SystemInformation,
)

__all__ = [
    "AGGREGATION_KEYS",
    "EVENT_TYPES",
    "Aggregation",
    "Category",
    "ConfigurationErrorEvent",
    "ConnectedHardwareEvent",
    "ConnectionCreateEvent",
    "DiagnosticEvent",
    "DroppedEventsStatisticsEvent",
    "Event",
    "EventKind",
    "FirewallConfigurationEvent",
    "ListeningPortsEvent",
    "LocalUsersEvent",
    "LoginEvent",
    "MessageStatisticsEvent",
    "OSBaselineEvent",
    "ProcessCreateEvent",
    "ProcessTerminateEvent",
    "SystemInformationEvent",
    "aggregation_of",
]

Category = Literal["Periodic", "Triggered"]
EventKind = Literal["Security", "Operational", "Diagnostic"]
# ExtraDetails keys that carry an aggregated event's hit count and window (reference §1.6).
AGGREGATION_KEYS = ("HitCount", "StartTimeLocal", "StartTimeUtc", "EndTimeLocal", "EndTimeUtc")


class _Event(
    msgspec.Struct,
    frozen=True,
    gc=False,
    kw_only=True,
    forbid_unknown_fields=True,
    rename="pascal",
    tag_field="Name",
):
    """Fields every event carries. Subclasses pin Category, EventType and the payload row type."""

    id: Guid
    timestamp_local: datetime
    timestamp_utc: datetime = msgspec.field(name="TimestampUTC")
    is_empty: bool = False
    payload_schema_version: Literal["1.0"] = "1.0"

    row_type: ClassVar[type[msgspec.Struct]]

    @property
    def name(self) -> str:
        """The wire ``Name`` of this event."""
        return type(self).__struct_config__.tag  # type: ignore[return-value]  # tag is a str here

    @classmethod
    def create(
        cls,
        payload: Iterable[Any],
        *,
        at: datetime | None = None,
        event_id: str | None = None,
    ) -> Self:
        """Build an event at ``at`` (aware; default now) with a fresh id.

        >>> ev = ListeningPortsEvent.create([ListeningPorts(protocol="TCP", local_port="22")])
        >>> (ev.name, ev.category, ev.is_empty)
        ('ListeningPorts', 'Periodic', False)
        """
        rows = tuple(payload)
        for row in rows:
            if not isinstance(row, cls.row_type):
                raise TypeError(f"{cls.__name__} takes {cls.row_type.__name__} rows, got {row!r}")
        when = at if at is not None else datetime.now(UTC)
        if when.tzinfo is None:
            raise ValueError("event time must be timezone-aware")
        return cls(
            id=event_id or str(uuid.uuid4()),
            timestamp_local=when.astimezone(),
            timestamp_utc=when.astimezone(UTC),
            is_empty=not rows,
            payload=rows,  # type: ignore[call-arg]  # every concrete subclass declares payload
        )


class _Triggered(_Event, frozen=True, kw_only=True):
    # "Aggregated" is accepted on the wire and normalized to "Triggered" by the codec.
    category: Literal["Triggered", "Aggregated"] = "Triggered"


class _Periodic(_Event, frozen=True, kw_only=True):
    category: Literal["Periodic"] = "Periodic"


class ProcessCreateEvent(_Triggered, frozen=True, kw_only=True, tag="ProcessCreate"):
    """Processes started."""

    row_type = ProcessCreate
    event_type: Literal["Security"] = "Security"
    payload: tuple[ProcessCreate, ...]


class ProcessTerminateEvent(_Triggered, frozen=True, kw_only=True, tag="ProcessTerminate"):
    """Processes ended."""

    row_type = ProcessTerminate
    event_type: Literal["Security"] = "Security"
    payload: tuple[ProcessTerminate, ...]


class ConnectionCreateEvent(_Triggered, frozen=True, kw_only=True, tag="ConnectionCreate"):
    """Network connections made or accepted."""

    row_type = ConnectionCreate
    event_type: Literal["Security"] = "Security"
    payload: tuple[ConnectionCreate, ...]


class LoginEvent(_Triggered, frozen=True, kw_only=True, tag="Login"):
    """Login attempts."""

    row_type = Login
    event_type: Literal["Security"] = "Security"
    payload: tuple[Login, ...]


class ListeningPortsEvent(_Periodic, frozen=True, kw_only=True, tag="ListeningPorts"):
    """Snapshot of listening sockets."""

    row_type = ListeningPorts
    event_type: Literal["Security"] = "Security"
    payload: tuple[ListeningPorts, ...]


class FirewallConfigurationEvent(_Periodic, frozen=True, kw_only=True, tag="FirewallConfiguration"):
    """Snapshot of firewall rules."""

    row_type = FirewallConfiguration
    event_type: Literal["Security"] = "Security"
    payload: tuple[FirewallConfiguration, ...]


class LocalUsersEvent(_Periodic, frozen=True, kw_only=True, tag="LocalUsers"):
    """Snapshot of local accounts."""

    row_type = LocalUsers
    event_type: Literal["Security"] = "Security"
    payload: tuple[LocalUsers, ...]


class ConnectedHardwareEvent(_Periodic, frozen=True, kw_only=True, tag="ConnectedHardware"):
    """Snapshot of connected hardware."""

    row_type = ConnectedHardware
    event_type: Literal["Security"] = "Security"
    payload: tuple[ConnectedHardware, ...]


class OSBaselineEvent(_Periodic, frozen=True, kw_only=True, tag="OSBaseline"):
    """Baseline checks that did not pass; empty when all passed."""

    row_type = OSBaseline
    event_type: Literal["Security"] = "Security"
    payload: tuple[OSBaseline, ...]


class SystemInformationEvent(_Periodic, frozen=True, kw_only=True, tag="SystemInformation"):
    """Snapshot of system information."""

    row_type = SystemInformation
    event_type: Literal["Security"] = "Security"
    payload: tuple[SystemInformation, ...]


class DiagnosticEvent(_Triggered, frozen=True, kw_only=True, tag="Diagnostic"):
    """Agent diagnostic messages."""

    row_type = Diagnostic
    event_type: Literal["Diagnostic"] = "Diagnostic"
    payload: tuple[Diagnostic, ...]


class ConfigurationErrorEvent(_Triggered, frozen=True, kw_only=True, tag="ConfigurationError"):
    """Configuration values the agent could not use."""

    row_type = ConfigurationError
    event_type: Literal["Operational"] = "Operational"
    payload: tuple[ConfigurationError, ...]


class DroppedEventsStatisticsEvent(
    _Periodic, frozen=True, kw_only=True, tag="DroppedEventsStatistics"
):
    """Collected and dropped event counts per queue."""

    row_type = DroppedEventsStatistics
    event_type: Literal["Operational"] = "Operational"
    payload: tuple[DroppedEventsStatistics, ...]


class MessageStatisticsEvent(_Periodic, frozen=True, kw_only=True, tag="MessageStatistics"):
    """Messages sent and failed."""

    row_type = MessageStatistics
    event_type: Literal["Operational"] = "Operational"
    payload: tuple[MessageStatistics, ...]


Event = (
    ProcessCreateEvent
    | ProcessTerminateEvent
    | ConnectionCreateEvent
    | LoginEvent
    | ListeningPortsEvent
    | FirewallConfigurationEvent
    | LocalUsersEvent
    | ConnectedHardwareEvent
    | OSBaselineEvent
    | SystemInformationEvent
    | DiagnosticEvent
    | ConfigurationErrorEvent
    | DroppedEventsStatisticsEvent
    | MessageStatisticsEvent
)

#: Event classes by wire name: the one registry of event kinds.
EVENT_TYPES: dict[str, type[Event]] = {
    str(cls.__struct_config__.tag): cls for cls in Event.__args__
}


@dataclass(frozen=True, slots=True)
class Aggregation:
    """How many identical events an aggregated event stands for, and over which window."""

    hit_count: int
    start_utc: datetime
    end_utc: datetime


def aggregation_of(event: Event) -> Aggregation | None:
    """The aggregation carried by ``event``'s first row, or None for a plain event."""
    if not event.payload:
        return None
    details = event.payload[0].extra_details
    count = details.get("HitCount")
    if count is None:
        return None
    start = details.get("StartTimeUtc")
    end = details.get("EndTimeUtc")
    return Aggregation(
        hit_count=int(count),
        start_utc=datetime.fromisoformat(start) if start else event.timestamp_utc,
        end_utc=datetime.fromisoformat(end) if end else event.timestamp_utc,
    )
