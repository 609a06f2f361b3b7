"""Recommendation lifecycle: Active while the condition holds, then Resolved, with the times.

``RecommendationTracker.update(findings, now)`` takes the complete set of findings that hold at
``now`` (from ``Recommendations.evaluate``) and returns what changed since the previous
update: a finding not seen before is *Discovered* (Active), an active one whose text, data or
severity changed is *Updated*, and an active one missing from the set is *Resolved* at ``now``.
Each change carries the row the workspace's SecurityRecommendation table needs: the id (one
per occurrence, so a recommendation that comes back after being resolved is a new row), the
state, and the discovered, resolved and status-change times.

A finding is identified by (device, kind, key). ``kinds`` restricts an update to some kinds,
for evaluators that run at their own pace (hub findings when the hub state changes).

>>> from datetime import UTC, datetime
>>> from iotsec.analytics import DeviceContext, Finding
>>> t0, t1 = datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 1, 2, tzinfo=UTC)
>>> ports = Finding(kind="IoT_OpenPorts", display_name="Open Ports on device",
...     severity="Medium", device=DeviceContext("dev-7"), time=t0, description="22/tcp")
>>> tracker = RecommendationTracker()
>>> [(c.change, c.recommendation.state) for c in tracker.update([ports], t0)]
[('Discovered', 'Active')]
>>> tracker.update([ports], t0)
()
>>> [(c.change, c.recommendation.resolved) for c in tracker.update([], t1)]
[('Resolved', datetime.datetime(2025, 1, 2, 0, 0, tzinfo=datetime.timezone.utc))]
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from types import MappingProxyType
from typing import Any, Literal

import msgspec

from iotsec.analytics.detection import Finding, Severity
from iotsec.analytics.records import ContextRecord

__all__ = [
    "RECOMMENDATION_NAMESPACE",
    "ChangeKind",
    "RecommendationChange",
    "RecommendationState",
    "RecommendationTracker",
    "TrackedRecommendation",
    "recommendation_id",
]

RecommendationState = Literal["Active", "Resolved"]
ChangeKind = Literal["Discovered", "Updated", "Resolved"]
#: The UUID5 namespace of recommendation ids (fixed forever: ids must be stable).
RECOMMENDATION_NAMESPACE = uuid.UUID("a3a0c0de-6a55-5f0e-8b1c-7d1e2f3a4b5c")

_Key = tuple[str, str, str]


def recommendation_id(finding: Finding, discovered: datetime) -> str:
    """The id of the occurrence of ``finding`` discovered at ``discovered``."""
    device = finding.device
    name = "\n".join(
        (device.hub, device.device_id, finding.kind, finding.key, discovered.isoformat())
    )
    return str(uuid.uuid5(RECOMMENDATION_NAMESPACE, name))


@dataclass(frozen=True, slots=True)
class TrackedRecommendation:
    """A finding with its lifecycle: one SecurityRecommendation row."""

    recommendation_id: str
    finding: Finding
    state: RecommendationState
    #: When it was first seen to hold (the evidence's time, never after the evaluation).
    discovered: datetime
    #: The evaluation that first found it.
    first_evaluated: datetime
    status_changed: datetime
    resolved: datetime | None = None

    @property
    def key(self) -> _Key:
        """(device id, kind, key): what identifies it across evaluations."""
        return self.finding.device.device_id, self.finding.kind, self.finding.key


@dataclass(frozen=True, slots=True)
class RecommendationChange:
    """What happened to a recommendation in one update."""

    change: ChangeKind
    recommendation: TrackedRecommendation


def _same(a: Finding, b: Finding) -> bool:
    return (
        a.severity == b.severity
        and a.display_name == b.display_name
        and a.description == b.description
        and dict(a.additional_data) == dict(b.additional_data)
    )


class _FindingRecord(msgspec.Struct):
    kind: str
    display_name: str
    severity: Severity
    device: ContextRecord
    time: datetime
    description: str
    key: str
    additional_data: dict[str, Any]
    remediation: list[str]


class _TrackedRecord(msgspec.Struct):
    recommendation_id: str
    finding: _FindingRecord
    discovered: datetime
    first_evaluated: datetime
    status_changed: datetime


def _record(tracked: TrackedRecommendation) -> _TrackedRecord:
    f = tracked.finding
    return _TrackedRecord(
        recommendation_id=tracked.recommendation_id,
        finding=_FindingRecord(
            kind=f.kind,
            display_name=f.display_name,
            severity=f.severity,
            device=ContextRecord.of(f.device),
            time=f.time,
            description=f.description,
            key=f.key,
            additional_data=msgspec.to_builtins(dict(f.additional_data)),
            remediation=list(f.remediation),
        ),
        discovered=tracked.discovered,
        first_evaluated=tracked.first_evaluated,
        status_changed=tracked.status_changed,
    )


def _tracked(record: _TrackedRecord) -> TrackedRecommendation:
    f = record.finding
    finding = Finding(
        kind=f.kind,
        display_name=f.display_name,
        severity=f.severity,
        device=f.device.context(),
        time=f.time,
        description=f.description,
        key=f.key,
        additional_data=MappingProxyType(f.additional_data),
        remediation=tuple(f.remediation),
    )
    return TrackedRecommendation(
        recommendation_id=record.recommendation_id,
        finding=finding,
        state="Active",
        discovered=record.discovered,
        first_evaluated=record.first_evaluated,
        status_changed=record.status_changed,
    )


class RecommendationTracker:
    """Compares successive evaluations and reports Discovered, Updated and Resolved changes."""

    def __init__(self, active: Iterable[TrackedRecommendation] = ()) -> None:
        self._active: dict[_Key, TrackedRecommendation] = {
            t.key: t for t in active if t.state == "Active"
        }

    def update(
        self, findings: Iterable[Finding], now: datetime, *, kinds: Collection[str] | None = None
    ) -> tuple[RecommendationChange, ...]:
        """The changes since the last update, given every finding of ``kinds`` holding now."""
        current: dict[_Key, Finding] = {}
        for finding in findings:
            if kinds is None or finding.kind in kinds:
                current[finding.device.device_id, finding.kind, finding.key] = finding
        changes: list[RecommendationChange] = []
        for key in sorted(current):
            finding = current[key]
            known = self._active.get(key)
            if known is None:
                discovered = min(finding.time, now)
                tracked = TrackedRecommendation(
                    recommendation_id=recommendation_id(finding, discovered),
                    finding=finding,
                    state="Active",
                    discovered=discovered,
                    first_evaluated=now,
                    status_changed=discovered,
                )
                changes.append(RecommendationChange("Discovered", tracked))
            elif not _same(known.finding, finding):
                tracked = replace(known, finding=finding)
                changes.append(RecommendationChange("Updated", tracked))
            else:
                continue
            self._active[key] = tracked
        gone = [
            key
            for key, tracked in self._active.items()
            if key not in current and (kinds is None or tracked.finding.kind in kinds)
        ]
        for key in sorted(gone):
            resolved = replace(
                self._active.pop(key), state="Resolved", resolved=now, status_changed=now
            )
            changes.append(RecommendationChange("Resolved", resolved))
        return tuple(changes)

    def active(self) -> tuple[TrackedRecommendation, ...]:
        """The recommendations active now, by device, kind and key."""
        return tuple(self._active[key] for key in sorted(self._active))

    def dump_state(self) -> dict[str, bytes]:
        """The active recommendations, as JSON entries keyed by recommendation id."""
        return {t.recommendation_id: msgspec.json.encode(_record(t)) for t in self._active.values()}

    def load_state(self, entries: Mapping[str, bytes]) -> None:
        """Replace the active recommendations with ``entries`` (from ``dump_state``)."""
        tracked = [_tracked(msgspec.json.decode(v, type=_TrackedRecord)) for v in entries.values()]
        self._active = {t.key: t for t in tracked}
