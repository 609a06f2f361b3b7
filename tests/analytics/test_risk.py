"""The device risk score: exact examples of the documented formula."""

from __future__ import annotations

import doctest
from datetime import timedelta

import pytest

from iotsec.analytics import DeviceContext, Finding, Severity
from iotsec.analytics import risk as risk_module
from iotsec.analytics.risk import RiskAlert, RiskPolicy, device_risk, fleet_risk, risk_level
from tests.analytics.obsfactory import DAY, HOUR, T0

NOW = T0 + 10 * DAY


def alert(severity: Severity, age: timedelta, device: str = "dev-7") -> RiskAlert:
    return RiskAlert(device, f"IoT_{severity}", f"{severity} alert", severity, NOW - age)


def finding(
    kind: str, severity: Severity, key: str = "", device: str = "dev-7", **data: object
) -> Finding:
    return Finding(
        kind=kind, display_name=kind, severity=severity, device=DeviceContext(device), time=NOW,
        description="", key=key, additional_data=data,
    )  # fmt: skip


def test_doctests() -> None:
    assert doctest.testmod(risk_module).failed == 0


def test_nothing_active_is_zero() -> None:
    risk = device_risk("dev-7", alerts=[], findings=[], now=NOW)
    assert (risk.score, risk.level, risk.contributions) == (0, "Low", ())


def test_alert_points_by_severity_and_decay() -> None:
    assert device_risk("d", alerts=[alert("High", timedelta(0))], findings=[], now=NOW).score == 50
    assert (
        device_risk("d", alerts=[alert("Medium", timedelta(0))], findings=[], now=NOW).score == 25
    )
    assert device_risk("d", alerts=[alert("Low", timedelta(0))], findings=[], now=NOW).score == 10
    assert (
        device_risk("d", alerts=[alert("Informational", timedelta(0))], findings=[], now=NOW).score
        == 0
    )
    # halved every 24 hours: 50 -> 25 -> 12.5 -> 6.25 (rounded to 6.3)
    ages = [
        device_risk("d", alerts=[alert("High", a * DAY)], findings=[], now=NOW).score
        for a in range(4)
    ]
    assert ages == [50, 25, 13, 6]
    assert device_risk("d", alerts=[alert("High", 8 * DAY)], findings=[], now=NOW).score == 0
    # an alert "from the future" (clock skew) counts as fresh, not more
    assert device_risk("d", alerts=[alert("High", -HOUR)], findings=[], now=NOW).score == 50


def test_recommendations_and_exposure() -> None:
    findings = [
        finding("IoT_OpenPorts", "Medium", Endpoints=[f"0.0.0.0:{p}/tcp" for p in range(10)]),
        finding("IoT_PermissiveFirewallPolicy", "Medium", key="INPUT"),
        finding("IoT_PermissiveFirewallPolicy", "Medium", key="OUTPUT"),
        finding("IoT_PermissiveInputFirewallRules", "Medium"),
        finding("IoT_SharedCredentials", "High", key="sha256:abc"),
        finding("IoT_AgentSendsUnutilizedMessages", "Low"),
    ]
    risk = device_risk("dev-7", alerts=[], findings=findings, now=NOW)
    # recommendations 7 * 4 + 15 + 2 = 45; exposure 15 (capped) + 10 + 5 + 10 = 40
    assert risk.score == 85
    assert risk.level == "Critical"
    exposure = {c.name: c.points for c in risk.contributions if c.source == "exposure"}
    assert exposure == {
        "10 open ports on non-loopback addresses": 15.0,
        "input chain accepts by default": 10.0,
        "permissive input firewall rules": 5.0,
        "credential shared with other devices": 10.0,
    }
    assert sum(c.points for c in risk.contributions) == 85


def test_the_score_is_capped_and_explained() -> None:
    alerts = [alert("High", timedelta(0)) for _ in range(3)]
    risk = device_risk("dev-7", alerts=alerts, findings=[], now=NOW)
    assert (risk.score, risk.level) == (100, "Critical")
    assert risk.explain().splitlines() == [
        "dev-7: risk 100 (Critical)",
        "  +50 alert: High alert (IoT_High, 0 h ago)",
        "  +50 alert: High alert (IoT_High, 0 h ago)",
        "  +50 alert: High alert (IoT_High, 0 h ago)",
    ]


def test_levels() -> None:
    assert [risk_level(s) for s in (0, 24.9, 25, 49, 50, 74, 75, 100)] == [
        "Low", "Low", "Medium", "Medium", "High", "High", "Critical", "Critical",
    ]  # fmt: skip


def test_a_custom_policy() -> None:
    policy = RiskPolicy(half_life=timedelta(hours=1), open_port_points=10.0, open_port_cap=10.0)
    findings = [finding("IoT_OpenPorts", "Informational", Endpoints=["a", "b"])]
    risk = device_risk(
        "d", alerts=[alert("High", 2 * HOUR)], findings=findings, now=NOW, policy=policy
    )
    assert [c.points for c in risk.contributions] == [12.5, 10.0]
    assert risk.score == 23  # 22.5 rounds half up


def test_fleet_risk_groups_by_device() -> None:
    scores = fleet_risk(
        alerts=[alert("High", timedelta(0), "a"), alert("Low", timedelta(0), "b")],
        findings=[
            finding("IoT_Baseline", "Medium", device="b"),
            finding("IoT_IPFilter_DenyAll", "Medium", device="$hub"),
        ],
        now=NOW,
    )
    assert {k: v.score for k, v in scores.items()} == {"$hub": 7, "a": 50, "b": 17}


def test_the_result_is_deterministic() -> None:
    inputs = {
        "alerts": [alert("Medium", timedelta(hours=5))],
        "findings": [finding("IoT_Baseline", "Medium")],
    }
    assert device_risk("d", now=NOW, **inputs) == device_risk("d", now=NOW, **inputs)  # type: ignore[arg-type]


def test_bad_policy() -> None:
    with pytest.raises(ValueError):
        RiskPolicy(half_life=timedelta(0))
