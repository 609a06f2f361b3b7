"""Alerts: what detections become once deduplicated, with a status and their evidence.

A ``Detection`` is one firing; an ``Alert`` is what an operator works with. Detections with the
same ``dedup_key`` whose time falls within ``dedup_seconds`` of the alert's first time fold into
that alert: its ``count`` goes up, ``end_time`` moves on, new evidence ids are appended (up to a
cap; ``evidence_total`` keeps counting), and the first time, and so the id, stay.

Statuses: ``Active`` (new), ``Dismissed`` (an operator said it needs no action: repeats within
its window still fold into it, quietly), ``Resolved`` (dealt with: a recurrence opens a new
alert). The id is a UUID5 of the dedup key and the first time, so processing the same
detections again (after a crash, from the last committed log position) yields the same ids, and
evidence already folded in is recognised and not counted twice.

This module is I/O-free: ``fold`` and ``open_alert`` are plain functions; ``AlertStore``
(``iotsec.analytics.alertstore``) keeps alerts in SQLite and applies them.

>>> from datetime import UTC, datetime, timedelta
>>> from iotsec.analytics import Detection, DeviceContext
>>> t0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
>>> d = Detection(
...     rule_id="IoT_ReverseShell", display_name="Reverse shell", severity="High",
...     device=DeviceContext("dev-1"), time=t0, description="bash -i >& /dev/tcp/...",
...     evidence=("e1:0",), dedup_key="IoT_ReverseShell/dev-1",
... )
>>> alert = open_alert(d, now=t0)
>>> alert.status, alert.count, alert.evidence
('Active', 1, ('e1:0',))
>>> again = replace(d, time=t0 + timedelta(minutes=5), evidence=("e2:0",))
>>> folded = fold(alert, again, now=t0)
>>> folded.count, folded.evidence, folded.alert_id == alert.alert_id
(2, ('e1:0', 'e2:0'), True)
>>> fold(folded, again, now=t0) is folded   # the same evidence again: a replay, no change
True
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any, Literal, Protocol

from iotsec.analytics.detection import Detection, Origin, Severity
from iotsec.analytics.errors import AnalyticsError

__all__ = [
    "ALERT_NAMESPACE",
    "EVIDENCE_CAP",
    "RECENT_CAP",
    "STATUSES",
    "Alert",
    "AlertError",
    "AlertNotFound",
    "AlertSink",
    "AlertStatus",
    "alert_id",
    "change_status",
    "fold",
    "is_replay",
    "open_alert",
    "within_window",
]

AlertStatus = Literal["Active", "Dismissed", "Resolved"]
STATUSES: tuple[AlertStatus, ...] = ("Active", "Dismissed", "Resolved")

#: The UUID5 namespace of alert ids (fixed forever: ids must be the same on every run).
ALERT_NAMESPACE = uuid.UUID("5b0f2f4e-3c1a-5d7e-9a53-1f0c2e6b8d41")
#: Evidence ids an alert lists; past this, ``evidence_total`` still counts.
EVIDENCE_CAP = 100
#: The latest evidence ids remembered past the cap, to recognise a replay after a crash.
RECENT_CAP = 256

_NONE: Mapping[str, str] = MappingProxyType({})


class AlertError(AnalyticsError):
    """An alert operation that cannot be done (a resolved alert cannot be dismissed)."""

    def __init__(self, alert_id: str, reason: str) -> None:
        super().__init__(f"alert {alert_id}: {reason}")
        self.alert_id = alert_id
        self.reason = reason


class AlertNotFound(AlertError):
    """No alert has this id."""

    def __init__(self, alert_id: str) -> None:
        super().__init__(alert_id, "not found")


def alert_id(dedup_key: str, first_time: datetime) -> str:
    """The stable id of the alert for ``dedup_key`` that started at ``first_time``."""
    return str(uuid.uuid5(ALERT_NAMESPACE, f"{dedup_key}\n{_iso(first_time)}"))


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert as it is now: what fired, on which device, how often, why, and its status."""

    alert_id: str
    dedup_key: str
    #: The rule id, which is the alert type (``IoT_ReverseShell``, ``IoT_CA_<ruleType>``, ...).
    rule_id: str
    display_name: str
    severity: Severity
    origin: Origin
    device_id: str
    module_id: str | None
    group: str
    hub: str
    #: What the first detection saw (later repeats add evidence and count, not text).
    description: str
    start_time: datetime
    end_time: datetime
    count: int
    evidence: tuple[str, ...]
    #: Evidence ids seen in all, including those past the cap.
    evidence_total: int
    status: AlertStatus
    #: Processing time of the last change (the row's TimeGenerated).
    updated: datetime
    dedup_seconds: float = 3600.0
    remediation: tuple[str, ...] = ()
    tactics: tuple[str, ...] = ()
    techniques: tuple[str, ...] = ()
    properties: Mapping[str, str] = field(default_factory=lambda: _NONE)
    status_reason: str | None = None
    status_by: str | None = None
    status_time: datetime | None = None
    #: Evidence ids seen past the cap, newest last (replay recognition only; not shown).
    recent_evidence: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("start_time", "end_time", "updated", "status_time"):
            value = getattr(self, name)
            if value is not None and value.utcoffset() is None:
                raise ValueError(f"Alert.{name} must be timezone-aware, got {value!r}")
        if self.status not in STATUSES:
            raise ValueError(f"Alert.status must be one of {', '.join(STATUSES)}")
        if self.count < 1:
            raise ValueError("Alert.count must be at least 1")

    @property
    def window_end(self) -> datetime:
        """Until when repeats fold into this alert."""
        return self.start_time + timedelta(seconds=self.dedup_seconds)

    def to_json(self) -> dict[str, Any]:
        """The alert as outputs send it and the store keeps it (camelCase, ISO 8601 UTC)."""
        return {
            "alertId": self.alert_id,
            "alertType": self.rule_id,
            "displayName": self.display_name,
            "severity": self.severity,
            "status": self.status,
            "description": self.description,
            "deviceId": self.device_id,
            "moduleId": self.module_id,
            "securityGroup": self.group,
            "hub": self.hub,
            "origin": self.origin,
            "startTime": _iso(self.start_time),
            "endTime": _iso(self.end_time),
            "count": self.count,
            "evidence": list(self.evidence),
            "evidenceTotal": self.evidence_total,
            "properties": dict(self.properties),
            "remediation": list(self.remediation),
            "tactics": list(self.tactics),
            "techniques": list(self.techniques),
            "statusReason": self.status_reason,
            "statusBy": self.status_by,
            "statusTime": None if self.status_time is None else _iso(self.status_time),
            "updated": _iso(self.updated),
            "dedupKey": self.dedup_key,
            "dedupSeconds": self.dedup_seconds,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, recent: Sequence[str] = ()) -> Alert:
        """Read back what ``to_json`` wrote (the store's rows)."""
        status_time = data.get("statusTime")
        return cls(
            alert_id=data["alertId"],
            dedup_key=data["dedupKey"],
            rule_id=data["alertType"],
            display_name=data["displayName"],
            severity=data["severity"],
            origin=data["origin"],
            device_id=data["deviceId"],
            module_id=data.get("moduleId"),
            group=data["securityGroup"],
            hub=data.get("hub", ""),
            description=data["description"],
            start_time=datetime.fromisoformat(data["startTime"]),
            end_time=datetime.fromisoformat(data["endTime"]),
            count=int(data["count"]),
            evidence=tuple(data.get("evidence", ())),
            evidence_total=int(data.get("evidenceTotal", 0)),
            status=data["status"],
            updated=datetime.fromisoformat(data["updated"]),
            dedup_seconds=float(data.get("dedupSeconds", 3600.0)),
            remediation=tuple(data.get("remediation", ())),
            tactics=tuple(data.get("tactics", ())),
            techniques=tuple(data.get("techniques", ())),
            properties=MappingProxyType(dict(data.get("properties", {}))),
            status_reason=data.get("statusReason"),
            status_by=data.get("statusBy"),
            status_time=None if status_time is None else datetime.fromisoformat(status_time),
            recent_evidence=tuple(recent),
        )


class AlertSink(Protocol):
    """Where alerts go after the lifecycle (the workspace, through an adapter; the outputs)."""

    def write_alerts(self, alerts: Sequence[Alert]) -> int:
        """Take ``alerts`` (new or updated; the same id may come again with a higher count);
        returns how many were accepted."""
        ...


def _aware(value: datetime, what: str) -> datetime:
    if value.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, got {value!r}")
    return value.astimezone(UTC)


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def _start_of(detection: Detection) -> datetime:
    first = detection.first_time if detection.first_time is not None else detection.time
    return _aware(first, "Detection.first_time")


def within_window(alert: Alert, detection: Detection) -> bool:
    """True when ``detection`` falls in the alert's dedup window (from its first time)."""
    time = _aware(detection.time, "Detection.time")
    return time < alert.window_end


def open_alert(detection: Detection, *, now: datetime, evidence_cap: int = EVIDENCE_CAP) -> Alert:
    """A new Active alert for ``detection``."""
    start = _start_of(detection)
    time = _aware(detection.time, "Detection.time")
    evidence = tuple(dict.fromkeys(detection.evidence))
    device = detection.device
    return Alert(
        alert_id=alert_id(detection.dedup_key, start),
        dedup_key=detection.dedup_key,
        rule_id=detection.rule_id,
        display_name=detection.display_name,
        severity=detection.severity,
        origin=detection.origin,
        device_id=device.device_id,
        module_id=device.module_id,
        group=device.group,
        hub=device.hub,
        description=detection.description,
        start_time=start,
        end_time=max(start, time),
        count=1,
        evidence=evidence[:evidence_cap],
        evidence_total=len(evidence),
        status="Active",
        updated=_aware(now, "now"),
        dedup_seconds=detection.dedup_seconds,
        remediation=detection.remediation,
        tactics=detection.tactics,
        techniques=detection.techniques,
        properties=MappingProxyType(dict(detection.properties)),
        recent_evidence=evidence[evidence_cap:][-RECENT_CAP:],
    )


def is_replay(alert: Alert, detection: Detection) -> bool:
    """True when ``detection`` was already folded into ``alert`` (processed again after a crash).

    With evidence: every evidence id is already known. Without (a tick-time detection): its
    time is the alert's end time exactly.
    """
    if detection.evidence:
        known = set(alert.evidence)
        known.update(alert.recent_evidence)
        return all(e in known for e in detection.evidence)
    return _aware(detection.time, "Detection.time") == alert.end_time


def fold(
    alert: Alert, detection: Detection, *, now: datetime, evidence_cap: int = EVIDENCE_CAP
) -> Alert:
    """``alert`` with the repeat ``detection`` folded in; ``alert`` itself for a replay.

    The caller checks the window (``within_window``) and the status (a Resolved alert does not
    take repeats); the status and first time are kept.
    """
    if is_replay(alert, detection):
        return alert
    known = set(alert.evidence)
    known.update(alert.recent_evidence)
    new = [e for e in dict.fromkeys(detection.evidence) if e not in known]
    room = max(0, evidence_cap - len(alert.evidence))
    shown = alert.evidence + tuple(new[:room])
    recent = (alert.recent_evidence + tuple(new[room:]))[-RECENT_CAP:]
    time = _aware(detection.time, "Detection.time")
    return replace(
        alert,
        count=alert.count + 1,
        end_time=max(alert.end_time, time),
        evidence=shown,
        evidence_total=alert.evidence_total + len(new),
        recent_evidence=recent,
        updated=_aware(now, "now"),
    )


def change_status(
    alert: Alert, status: AlertStatus, *, reason: str, by: str, now: datetime
) -> Alert:
    """``alert`` dismissed or resolved by ``by`` for ``reason``.

    Raises:
        AlertError: an empty reason or actor, or dismissing a Resolved alert.
    """
    reason, by = reason.strip(), by.strip()
    if not reason:
        raise AlertError(alert.alert_id, f"a reason is required to set the status {status}")
    if not by:
        raise AlertError(alert.alert_id, f"who sets the status {status} is required")
    if status == "Dismissed" and alert.status == "Resolved":
        raise AlertError(alert.alert_id, "the alert is Resolved; a resolved alert stays resolved")
    if status == "Active":
        raise AlertError(alert.alert_id, "an alert is made Active only by a detection")
    if alert.status == "Resolved" and status == "Resolved":
        return alert
    return replace(
        alert,
        status=status,
        status_reason=reason[:1000],
        status_by=by[:200],
        status_time=_aware(now, "now"),
        updated=_aware(now, "now"),
    )
