"""A device's risk score, 0 to 100, with the items that make it up.

The score is the sum of points, capped at 100 and rounded half up; every point comes from an
item in the explanation, so the items always add up to the score (before the cap):

- **Active alerts**: by severity (High 50, Medium 25, Low 10, Informational 0), halved every
  ``half_life`` (24 h) since the alert was last seen; alerts last seen more than ``max_age``
  (7 days) ago count nothing.
- **Active recommendations**: by severity (High 15, Medium 7, Low 2, Informational 0).
- **Exposure**, on top of the recommendations that reveal it: 3 points per endpoint listening
  on a non-loopback address (at most 15), 10 for an input chain that accepts by default, 5 for
  permissive input rules, and 10 for a credential shared with other devices.

Levels: Low below 25, Medium from 25, High from 50, Critical from 75. So one fresh High alert
makes a device High, and a device with only hygiene findings stays Low or Medium.

>>> from datetime import UTC, datetime, timedelta
>>> from iotsec.analytics import DeviceContext, Finding
>>> now = datetime(2025, 1, 2, tzinfo=UTC)
>>> a_day_ago = now - timedelta(hours=24)
>>> shell = RiskAlert("dev-7", "IoT_ReverseShell", "Reverse shell", "High", a_day_ago)
>>> ports = Finding(kind="IoT_OpenPorts", display_name="Open Ports on device",
...     severity="Medium", device=DeviceContext("dev-7"), time=now, description="",
...     additional_data={"Endpoints": ["0.0.0.0:22/tcp", "0.0.0.0:80/tcp"]})
>>> risk = device_risk("dev-7", alerts=[shell], findings=[ports], now=now)
>>> risk.score, risk.level
(38, 'Medium')
>>> for item in risk.contributions:
...     print(f"{item.points:5.1f}  {item.source:14}  {item.name}")
 25.0  alert           Reverse shell
  7.0  recommendation  Open Ports on device
  6.0  exposure        2 open ports on non-loopback addresses
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal, Protocol

from iotsec.analytics.detection import Finding, Severity

__all__ = [
    "AlertLike",
    "RiskAlert",
    "RiskContribution",
    "RiskLevel",
    "RiskPolicy",
    "RiskScore",
    "device_risk",
    "fleet_risk",
    "risk_level",
]

RiskLevel = Literal["Low", "Medium", "High", "Critical"]
ContributionSource = Literal["alert", "recommendation", "exposure"]


class AlertLike(Protocol):
    """What the score reads from an active alert (``iotsec.analytics.alerts.Alert`` has it)."""

    @property
    def device_id(self) -> str: ...
    @property
    def rule_id(self) -> str: ...
    @property
    def display_name(self) -> str: ...
    @property
    def severity(self) -> Severity: ...
    @property
    def end_time(self) -> datetime:
        """When the alert was last seen."""
        ...


@dataclass(frozen=True, slots=True)
class RiskAlert:
    """An active alert as the score needs it, for callers without lifecycle alerts."""

    device_id: str
    rule_id: str
    display_name: str
    severity: Severity
    end_time: datetime


def _points(high: float, medium: float, low: float) -> Mapping[Severity, float]:
    return {"High": high, "Medium": medium, "Low": low, "Informational": 0.0}


@dataclass(frozen=True, slots=True)
class RiskPolicy:
    """The weights of the score (see the module docstring)."""

    alert_points: Mapping[Severity, float] = field(default_factory=lambda: _points(50, 25, 10))
    half_life: timedelta = timedelta(hours=24)
    max_age: timedelta = timedelta(days=7)
    recommendation_points: Mapping[Severity, float] = field(
        default_factory=lambda: _points(15, 7, 2)
    )
    open_port_points: float = 3.0
    open_port_cap: float = 15.0
    permissive_input_policy_points: float = 10.0
    permissive_input_rules_points: float = 5.0
    shared_credentials_points: float = 10.0

    def __post_init__(self) -> None:
        if self.half_life <= timedelta(0) or self.max_age < timedelta(0):
            raise ValueError("half_life must be positive and max_age zero or more")


@dataclass(frozen=True, slots=True)
class RiskContribution:
    """One item of the explanation: where the points come from."""

    source: ContributionSource
    name: str
    points: float
    severity: Severity | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class RiskScore:
    """A device's score, its level, and the items that make it up (largest first)."""

    device_id: str
    score: int
    level: RiskLevel
    contributions: tuple[RiskContribution, ...]

    def explain(self) -> str:
        """The score and its items as text, one per line."""
        lines = [f"{self.device_id}: risk {self.score} ({self.level})"]
        lines += [
            f"  +{c.points:g} {c.source}: {c.name}" + (f" ({c.detail})" if c.detail else "")
            for c in self.contributions
        ]
        return "\n".join(lines)


def risk_level(score: float) -> RiskLevel:
    """The level of ``score``.

    >>> [risk_level(s) for s in (0, 24, 25, 50, 75, 100)]
    ['Low', 'Low', 'Medium', 'High', 'Critical', 'Critical']
    """
    if score >= 75:
        return "Critical"
    if score >= 50:
        return "High"
    if score >= 25:
        return "Medium"
    return "Low"


def _alert_item(alert: AlertLike, now: datetime, policy: RiskPolicy) -> RiskContribution | None:
    age = max(now - alert.end_time, timedelta(0))
    if age > policy.max_age:
        return None
    points = policy.alert_points.get(alert.severity, 0.0) * 0.5 ** (age / policy.half_life)
    points = round(points, 1)
    if points <= 0:
        return None
    hours = age.total_seconds() / 3600
    return RiskContribution(
        "alert", alert.display_name, points, alert.severity, f"{alert.rule_id}, {hours:.0f} h ago"
    )


def _exposure(findings: Iterable[Finding], policy: RiskPolicy) -> list[RiskContribution]:
    items = []
    for finding in findings:
        if finding.kind == "IoT_OpenPorts":
            endpoints = finding.additional_data.get("Endpoints")
            count = len(endpoints) if isinstance(endpoints, list | tuple) else 1
            points = min(policy.open_port_cap, count * policy.open_port_points)
            name = f"{count} open port{'' if count == 1 else 's'} on non-loopback addresses"
            items.append(RiskContribution("exposure", name, points))
        elif finding.kind == "IoT_PermissiveFirewallPolicy" and finding.key == "INPUT":
            points = policy.permissive_input_policy_points
            items.append(RiskContribution("exposure", "input chain accepts by default", points))
        elif finding.kind == "IoT_PermissiveInputFirewallRules":
            points = policy.permissive_input_rules_points
            items.append(RiskContribution("exposure", "permissive input firewall rules", points))
        elif finding.kind == "IoT_SharedCredentials":
            points = policy.shared_credentials_points
            items.append(
                RiskContribution("exposure", "credential shared with other devices", points)
            )
    return items


def device_risk(
    device_id: str,
    *,
    alerts: Iterable[AlertLike],
    findings: Iterable[Finding],
    now: datetime,
    policy: RiskPolicy | None = None,
) -> RiskScore:
    """The risk of ``device_id`` from its active ``alerts`` and active ``findings``."""
    policy = policy or RiskPolicy()
    found = list(findings)
    items = [item for alert in alerts if (item := _alert_item(alert, now, policy)) is not None]
    items += [
        RiskContribution("recommendation", f.display_name, points, f.severity, f.kind)
        for f in found
        if (points := policy.recommendation_points.get(f.severity, 0.0)) > 0
    ]
    items += [item for item in _exposure(found, policy) if item.points > 0]
    items.sort(key=lambda c: (-c.points, c.source, c.name))
    score = min(100, math.floor(sum(c.points for c in items) + 0.5))
    return RiskScore(device_id, score, risk_level(score), tuple(items))


def fleet_risk(
    *,
    alerts: Iterable[AlertLike],
    findings: Iterable[Finding],
    now: datetime,
    policy: RiskPolicy | None = None,
) -> dict[str, RiskScore]:
    """``device_risk`` of every device that has an alert or a finding, by device id."""
    by_alert: dict[str, list[AlertLike]] = {}
    by_finding: dict[str, list[Finding]] = {}
    for alert in alerts:
        by_alert.setdefault(alert.device_id, []).append(alert)
    for finding in findings:
        by_finding.setdefault(finding.device.device_id, []).append(finding)
    return {
        device_id: device_risk(
            device_id,
            alerts=by_alert.get(device_id, ()),
            findings=by_finding.get(device_id, ()),
            now=now,
            policy=policy,
        )
        for device_id in sorted(by_alert.keys() | by_finding.keys())
    }
