"""Every recommendation appears, stays Active while it holds, and resolves with a time."""

from __future__ import annotations

import doctest
from datetime import datetime, timedelta

from iotsec.analytics import DeviceContext, Finding
from iotsec.analytics.recommendations import (
    KINDS,
    HubDevice,
    HubState,
    IpFilterRule,
    Recommendations,
    RecommendationTracker,
    credential_fingerprint,
)
from iotsec.analytics.recommendations import engine as engine_module
from iotsec.analytics.recommendations import tracker as tracker_module
from tests.analytics.obsfactory import DAY, HOUR, T0, obs, snapshot

OPEN = [{"Protocol": "tcp", "LocalAddress": "0.0.0.0", "LocalPort": "22"}]
IPTABLES_OPEN = [
    {"ChainName": "INPUT", "Action": "Allow", "Direction": "In", "Priority": 0, "Protocol": "tcp",
     "DestinationPort": "22", "Enabled": True, "ExtraDetails": {"Family": "ip", "Table": "filter"}},
    {"ChainName": "OUTPUT", "Action": "Allow", "Direction": "Out", "Priority": 0, "Enabled": True,
     "ExtraDetails": {"Family": "ip", "Table": "filter"}},
    {"ChainName": "INPUT", "Action": "Allow", "Direction": "In", "Priority": 1, "Enabled": True,
     "ExtraDetails": {"Family": "ip", "Table": "filter", "Policy": "ACCEPT"}},
    {"ChainName": "OUTPUT", "Action": "Allow", "Direction": "Out", "Priority": 1, "Enabled": True,
     "ExtraDetails": {"Family": "ip", "Table": "filter", "Policy": "ACCEPT"}},
    {"ChainName": "FORWARD", "Action": "Allow", "Enabled": True, "Priority": 0,
     "ExtraDetails": {"Family": "ip", "Table": "filter", "Policy": "ACCEPT"}},
]  # fmt: skip
IPTABLES_CLOSED = [
    {"ChainName": name, "Action": "Deny", "Priority": 0, "Enabled": True,
     "ExtraDetails": {"Family": "ip", "Table": "filter", "Policy": "DROP"}}
    for name in ("INPUT", "OUTPUT", "FORWARD")
]  # fmt: skip
FAILED = [
    {
        "Description": "d",
        "CceId": "CCE-4325-7",
        "Result": "Fail",
        "Error": "",
        "Severity": "Critical",
    }
]
CONFLICT = {
    "ConfigurationName": "maxLocalCacheSizeInBytes",
    "ErrorType": "Conflict",
    "UsedConfiguration": "1",
    "Message": "MaxLocalCacheSize is smaller than MaxMessageSize",
}
NOT_OPTIMAL = {**CONFLICT, "ConfigurationName": "maxMessageSizeInBytes", "ErrorType": "NotOptimal"}
KEY = credential_fingerprint("shared")


def bad_hub() -> HubState:
    return HubState(
        hub="hub-1",
        devices=(
            HubDevice(DeviceContext("dev-7"), credentials=(KEY,), created=T0),
            HubDevice(DeviceContext("twin"), credentials=(KEY,), created=T0),
        ),
        ip_filter_rules=(IpFilterRule("all", "Accept", "0.0.0.0/0"),),
        min_tls_version="1.1",
    )


def good_hub() -> HubState:
    return HubState(
        hub="hub-1",
        devices=(
            HubDevice(
                DeviceContext("dev-7"), credentials=(credential_fingerprint("a"),), created=T0
            ),
            HubDevice(
                DeviceContext("twin"), credentials=(credential_fingerprint("b"),), created=T0
            ),
        ),
        ip_filter_default="Reject",
        min_tls_version="1.2",
    )


def feed(engine: Recommendations, at: timedelta, *, bad: bool) -> None:
    for name, rows in (
        ("ListeningPorts", OPEN if bad else []),
        ("FirewallConfiguration", IPTABLES_OPEN if bad else IPTABLES_CLOSED),
        ("OSBaseline", FAILED if bad else []),
        ("ConfigurationError", [CONFLICT, NOT_OPTIMAL] if bad else []),
    ):
        for o in snapshot(name, rows, at):
            engine.observe(o)
    sent, under = (100, 90) if bad else (100, 0)
    engine.observe(
        obs("MessageStatistics", {"MessagesSent": sent, "MessagesUnder4KB": under}, at=at)
    )


def test_doctests() -> None:
    for module in (engine_module, tracker_module):
        assert doctest.testmod(module).failed == 0


def test_every_recommendation_appears_and_resolves() -> None:
    engine, tracker = Recommendations(hub=bad_hub()), RecommendationTracker()
    feed(engine, timedelta(0), bad=True)
    at = T0 + 2 * HOUR
    changes = tracker.update(engine.evaluate(at), at)
    assert all(c.change == "Discovered" for c in changes)
    assert {c.recommendation.finding.kind for c in changes} == set(
        KINDS
    )  # every kind, once at least
    active = {(t.finding.device.device_id, t.finding.kind, t.finding.key) for t in tracker.active()}
    assert ("twin", "IoT_InstallAgent", "") in active
    assert ("dev-7", "IoT_PermissiveFirewallPolicy", "FORWARD") in active
    assert all(c.recommendation.state == "Active" for c in changes)
    assert all(c.recommendation.discovered <= at for c in changes)

    later = T0 + DAY + 2 * HOUR
    assert tracker.update(engine.evaluate(later - DAY // 2), later - DAY // 2) == ()  # still holds

    engine.update_hub(good_hub())
    feed(engine, DAY + HOUR, bad=False)
    engine.observe(obs("SystemInformation", {}, at=DAY + HOUR, device="twin"))
    resolved = tracker.update(engine.evaluate(later), later)
    assert {c.change for c in resolved} == {"Resolved"}
    assert len(resolved) == len(changes)
    assert all(c.recommendation.resolved == later for c in resolved)
    assert all(c.recommendation.status_changed == later for c in resolved)
    assert tracker.active() == ()


def test_discovered_time_is_the_evidence_time_and_ids_are_per_occurrence() -> None:
    engine, tracker = Recommendations(), RecommendationTracker()
    for o in snapshot("ListeningPorts", OPEN, HOUR):
        engine.observe(o)
    [first] = tracker.update(engine.evaluate(T0 + 5 * HOUR), T0 + 5 * HOUR)
    row = first.recommendation
    assert (row.discovered, row.first_evaluated, row.status_changed) == (
        T0 + HOUR,
        T0 + 5 * HOUR,
        T0 + HOUR,
    )
    for o in snapshot("ListeningPorts", [], 6 * HOUR):
        engine.observe(o)
    [gone] = tracker.update(engine.evaluate(T0 + 7 * HOUR), T0 + 7 * HOUR)
    assert gone.recommendation.recommendation_id == row.recommendation_id
    for o in snapshot("ListeningPorts", OPEN, 8 * HOUR):
        engine.observe(o)
    [back] = tracker.update(engine.evaluate(T0 + 9 * HOUR), T0 + 9 * HOUR)
    assert back.change == "Discovered"
    assert back.recommendation.recommendation_id != row.recommendation_id


def test_a_changed_finding_is_updated_not_rediscovered() -> None:
    engine, tracker = Recommendations(), RecommendationTracker()
    for o in snapshot("ListeningPorts", OPEN, HOUR):
        engine.observe(o)
    [first] = tracker.update(engine.evaluate(T0 + 2 * HOUR), T0 + 2 * HOUR)
    more = [*OPEN, {"Protocol": "tcp", "LocalAddress": "0.0.0.0", "LocalPort": "80"}]
    for o in snapshot("ListeningPorts", more, 3 * HOUR):
        engine.observe(o)
    [update] = tracker.update(engine.evaluate(T0 + 4 * HOUR), T0 + 4 * HOUR)
    assert update.change == "Updated"
    assert update.recommendation.recommendation_id == first.recommendation.recommendation_id
    assert update.recommendation.discovered == T0 + HOUR
    assert update.recommendation.finding.additional_data["Endpoints"] == [
        "0.0.0.0:22/tcp",
        "0.0.0.0:80/tcp",
    ]


def finding(kind: str, device: str, at: datetime, key: str = "") -> Finding:
    return Finding(
        kind=kind, display_name=kind, severity="Medium", device=DeviceContext(device), time=at,
        description=f"{kind} on {device}", key=key,
    )  # fmt: skip


def test_an_update_limited_to_some_kinds_leaves_the_others_alone() -> None:
    tracker = RecommendationTracker()
    tracker.update(
        [finding("IoT_OpenPorts", "a", T0), finding("IoT_IPFilter_DenyAll", "$hub", T0)], T0
    )
    changes = tracker.update([], T0 + HOUR, kinds={"IoT_IPFilter_DenyAll"})
    assert [(c.change, c.recommendation.finding.kind) for c in changes] == [
        ("Resolved", "IoT_IPFilter_DenyAll")
    ]
    assert [t.finding.kind for t in tracker.active()] == ["IoT_OpenPorts"]


def test_a_tracker_restored_from_active_rows() -> None:
    first = RecommendationTracker()
    first.update([finding("IoT_OpenPorts", "a", T0)], T0)
    again = RecommendationTracker(first.active())
    assert again.update([finding("IoT_OpenPorts", "a", T0 + HOUR)], T0 + HOUR) == ()


def test_a_finding_from_the_future_is_discovered_now() -> None:
    tracker = RecommendationTracker()
    [change] = tracker.update([finding("IoT_OpenPorts", "a", T0 + DAY)], T0)
    assert change.recommendation.discovered == T0
