"""The KQL the console runs on the workspace, built with values quoted by ``kql_string``.

>>> kql_string('dev "1"\\n')
'"dev \\\\"1\\\\"\\\\n"'
>>> print(alert_by_id("a-1"))
SecurityAlert | where SystemAlertId == "a-1" | take 1
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "alert_by_id",
    "alert_counts_by_device",
    "alert_timeline",
    "alerts",
    "device_rows",
    "events_by_id",
    "kql_string",
    "last_seen_by_device",
    "raw_events",
    "recommendations",
]

_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t", "\0": "\\0"}

ALERT_COLUMNS = (
    "TimeGenerated, SystemAlertId, AlertName, DisplayName, AlertSeverity, AlertType, Description,"
    " ProviderName, DeviceId, StartTime, EndTime, RemediationSteps, ExtendedProperties, Entities,"
    " Status, Tactics, Techniques"
)
RAW_COLUMNS = (
    "TimeGenerated, IoTRawEventId, DeviceId, RawEventName, RawEventCategory, RawEventType,"
    " EventDetails"
)
_OPEN = '("New", "Active")'
# Most severe first, whatever the alphabet says.
_SEVERITY_ORDER = (
    '| extend _rank = case(RecommendationSeverity == "High", 0, '
    'RecommendationSeverity == "Medium", 1, RecommendationSeverity == "Low", 2, 3)'
)


def kql_string(value: str) -> str:
    """``value`` as a KQL string literal: double-quoted, with every special character escaped."""
    return '"' + "".join(_ESCAPES.get(ch, ch) for ch in value) + '"'


def device_rows() -> str:
    """The Device table: group, status, first and last seen, risk (and tags with its reasons)."""
    return (
        "Device | project DeviceId, SecurityGroup, Status, AuthType, FirstSeen, LastSeen,"
        " RiskScore, RiskLevel, Tags"
    )


def last_seen_by_device(days: int = 30) -> str:
    """When each device last sent a security event, for devices the Device table lacks."""
    return (
        f"SecurityIoTRawEvent | where TimeGenerated > ago({days}d)"
        " | summarize LastSeen = max(TimeGenerated) by DeviceId"
    )


def alert_counts_by_device() -> str:
    """Open alerts per device, and how many of them are High."""
    return (
        f"SecurityAlert | where Status in {_OPEN}"
        ' | summarize Open = count(), High = countif(AlertSeverity == "High") by DeviceId'
    )


def alerts(*, device_id: str | None, open_only: bool, limit: int) -> str:
    """Alerts, newest first; optionally one device's, optionally open ones only."""
    text = "SecurityAlert"
    if device_id is not None:
        text += f" | where DeviceId == {kql_string(device_id)}"
    if open_only:
        text += f" | where Status in {_OPEN}"
    return f"{text} | order by TimeGenerated desc | take {int(limit)} | project {ALERT_COLUMNS}"


def alert_by_id(alert_id: str) -> str:
    """One alert by its SystemAlertId."""
    return f"SecurityAlert | where SystemAlertId == {kql_string(alert_id)} | take 1"


def alert_timeline(days: int) -> str:
    """Alerts per day and severity over the last ``days`` days."""
    return (
        f"SecurityAlert | where TimeGenerated > ago({int(days)}d)"
        " | summarize Count = count() by Day = bin(TimeGenerated, 1d), AlertSeverity"
        " | order by Day asc"
    )


def recommendations(*, device_id: str | None, active_only: bool, limit: int) -> str:
    """Recommendations, most severe and then newest first."""
    text = "SecurityRecommendation"
    if device_id is not None:
        text += f" | where DeviceId == {kql_string(device_id)}"
    if active_only:
        text += ' | where RecommendationState == "Active"'
    return (
        f"{text} {_SEVERITY_ORDER} | order by _rank asc, TimeGenerated desc | take {int(limit)}"
        " | project-away _rank"
    )


def raw_events(device_id: str, limit: int) -> str:
    """A device's latest raw events."""
    return (
        f"SecurityIoTRawEvent | where DeviceId == {kql_string(device_id)}"
        f" | order by TimeGenerated desc | take {int(limit)} | project {RAW_COLUMNS}"
    )


def events_by_id(raw_event_ids: Sequence[str]) -> str:
    """The raw events with these ids, oldest first."""
    ids = ", ".join(kql_string(i) for i in raw_event_ids)
    return (
        f"SecurityIoTRawEvent | where IoTRawEventId in ({ids})"
        f" | order by TimeGenerated asc | project {RAW_COLUMNS}"
    )
