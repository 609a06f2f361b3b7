"""Agent-side and hub-side recommendations: each appears on its condition and not otherwise."""

from __future__ import annotations

import doctest
from datetime import timedelta

import pytest

from iotsec.analytics import DeviceContext
from iotsec.analytics.recommendations import (
    AgentRecommendations,
    HubDevice,
    HubState,
    IpFilterRule,
    RecommendationConfig,
    credential_fingerprint,
    hub_findings,
    tls_version,
)
from iotsec.analytics.recommendations import agent as agent_module
from iotsec.analytics.recommendations import hub as hub_module
from iotsec.analytics.recommendations import kinds as kinds_module
from tests.analytics.obsfactory import DAY, HOUR, T0, obs, snapshot


def stats(sent: int, under: int, at: timedelta, device: str = "dev-7") -> object:
    fields = {"MessagesSent": sent, "MessagesUnder4KB": under, "TotalFailed": 0}
    return obs("MessageStatistics", fields, at=at, device=device)


def test_doctests() -> None:
    for module in (agent_module, hub_module, kinds_module):
        assert doctest.testmod(module).failed == 0


# --- unutilized messages ------------------------------------------------------------------


def test_unutilized_messages_over_the_last_day() -> None:
    agent = AgentRecommendations()
    for hour in range(24):
        agent.observe(stats(10, 1, hour * HOUR))  # 10% under 4 KB: exactly the limit
    [finding] = agent.evaluate(T0 + 23 * HOUR, ())
    assert finding.kind == "IoT_AgentSendsUnutilizedMessages"
    assert finding.severity == "Low"
    assert finding.additional_data["MessagesSent"] == 240
    assert finding.additional_data["MessagesUnder4KB"] == 24
    assert (
        finding.description == "dev-7 sent 24 of 240 messages (10%) under 4 KB in the last 24 hours"
    )


def test_unutilized_messages_below_the_ratio_or_too_few() -> None:
    agent = AgentRecommendations()
    agent.observe(stats(100, 9, timedelta(0)))
    agent.observe(stats(5, 5, timedelta(0), device="tiny"))  # 100%, but only 5 messages
    assert agent.evaluate(T0 + HOUR, ()) == []


def test_unutilized_messages_clears_when_the_day_rolls_over() -> None:
    agent = AgentRecommendations()
    agent.observe(stats(50, 40, timedelta(0)))
    assert len(agent.evaluate(T0 + HOUR, ())) == 1
    agent.observe(stats(50, 0, 20 * HOUR))
    assert len(agent.evaluate(T0 + 23 * HOUR, ())) == 1  # 40 of 100
    assert agent.evaluate(T0 + DAY + HOUR, ()) == []  # the first period left the window


def test_replayed_statistics_are_counted_once() -> None:
    agent = AgentRecommendations()
    row = stats(50, 40, timedelta(0))
    agent.observe(row)
    agent.observe(row)
    [finding] = agent.evaluate(T0 + HOUR, ())
    assert finding.additional_data["MessagesSent"] == 50


# --- twin configuration -------------------------------------------------------------------


def config_errors(rows: list[dict[str, object]], at: timedelta) -> list[object]:
    return snapshot("ConfigurationError", rows, at)


NOT_OPTIMAL = {
    "ConfigurationName": "maxMessageSizeInBytes",
    "ErrorType": "NotOptimal",
    "UsedConfiguration": "5000",
    "Message": "Message size should be multiple of 4096",
}
CONFLICT = {
    "ConfigurationName": "highPriorityMessageFrequency",
    "ErrorType": "Conflict",
    "UsedConfiguration": "PT2H",
    "Message": "high priority frequency is higher than low priority frequency",
}
TYPE_MISMATCH = {
    "ConfigurationName": "TwinConfiguration",
    "ErrorType": "TypeMismatch",
    "UsedConfiguration": "{}",
    "Message": "Couldn't parse",
}


def test_twin_configuration_not_optimal_and_conflict() -> None:
    agent = AgentRecommendations()
    for o in config_errors([NOT_OPTIMAL, CONFLICT, TYPE_MISMATCH], HOUR):
        agent.observe(o)
    found = agent.evaluate(T0 + 2 * HOUR, ())
    assert [(f.kind, f.key) for f in found] == [
        ("IoT_SecurityTwinConfigurationNotOptimal", "maxMessageSizeInBytes"),
        ("IoT_SecurityTwinConfigurationConflict", "highPriorityMessageFrequency"),
    ]
    assert found[0].description == (
        "dev-7's security agent reports maxMessageSizeInBytes: Message size should be multiple "
        "of 4096 (using 5000)"
    )


def test_a_newer_configuration_error_event_replaces_the_set() -> None:
    agent = AgentRecommendations()
    for o in config_errors([NOT_OPTIMAL, CONFLICT], HOUR):
        agent.observe(o)
    for o in config_errors([CONFLICT], 2 * HOUR):
        agent.observe(o)
    assert [f.key for f in agent.evaluate(T0 + 3 * HOUR, ())] == ["highPriorityMessageFrequency"]


def test_a_configuration_problem_not_reported_again_expires() -> None:
    agent = AgentRecommendations(RecommendationConfig(config_error_ttl=timedelta(days=7)))
    for o in config_errors([CONFLICT], HOUR):
        agent.observe(o)
    assert len(agent.evaluate(T0 + 7 * DAY + HOUR, ())) == 1
    assert agent.evaluate(T0 + 7 * DAY + 2 * HOUR, ()) == []


# --- no agent -----------------------------------------------------------------------------


def test_install_agent_after_the_grace_until_telemetry_arrives() -> None:
    agent = AgentRecommendations()
    registry = (
        HubDevice(DeviceContext("new"), created=T0),
        HubDevice(DeviceContext("off"), created=T0, enabled=False),
        HubDevice(DeviceContext("dev-7"), created=T0),
    )
    agent.observe(stats(1, 0, timedelta(minutes=1)))  # dev-7 has an agent
    assert agent.evaluate(T0 + timedelta(minutes=59), registry) == []
    [finding] = agent.evaluate(T0 + HOUR, registry)
    assert (finding.kind, finding.device.device_id) == ("IoT_InstallAgent", "new")
    assert finding.description.startswith("new is registered (since 2025-01-01 00:00 UTC)")
    agent.observe(obs("SystemInformation", {}, at=2 * HOUR, device="new"))
    assert agent.evaluate(T0 + 3 * HOUR, registry) == []


def test_install_agent_without_a_creation_time_counts_from_the_first_listing() -> None:
    agent = AgentRecommendations()
    registry = (HubDevice(DeviceContext("new")),)
    assert agent.evaluate(T0, registry) == []
    assert agent.evaluate(T0 + timedelta(minutes=30), registry) == []
    assert len(agent.evaluate(T0 + HOUR, registry)) == 1


# --- hub ----------------------------------------------------------------------------------


def test_shared_credentials_name_the_other_devices() -> None:
    shared, own = credential_fingerprint("key-a"), credential_fingerprint("key-b")
    state = HubState(
        hub="hub-1",
        ip_filter_default="Reject",
        devices=(
            HubDevice(DeviceContext("a"), credentials=(shared,)),
            HubDevice(DeviceContext("b"), credentials=(own, shared)),
            HubDevice(DeviceContext("c"), credentials=(shared,)),
            HubDevice(DeviceContext("d"), credentials=(own + "x",)),
        ),
    )
    found = hub_findings(state, T0)
    assert [(f.device.device_id, f.additional_data["SharedWith"]) for f in found] == [
        ("a", ["b", "c"]),
        ("b", ["a", "c"]),
        ("c", ["a", "b"]),
    ]
    assert found[0].severity == "High"
    assert (
        found[0].description
        == f"a uses the same credential ({shared[:19]}...) as 2 other devices: b, c"
    )
    assert "key-a" not in repr(found)


def test_ip_filter_default_and_large_ranges() -> None:
    state = HubState(
        hub="hub-1",
        ip_filter_rules=(
            IpFilterRule("office", "Accept", "198.51.100.0/24"),
            IpFilterRule("everyone", "Accept", "0.0.0.0/0"),
            IpFilterRule("carrier", "Accept", "10.0.0.0/8"),
            IpFilterRule("block", "Reject", "0.0.0.0/1"),
            IpFilterRule("v6", "Accept", "2001:db8::/32"),
        ),
    )
    found = hub_findings(state, T0)
    assert [(f.kind, f.key) for f in found] == [
        ("IoT_IPFilter_DenyAll", ""),
        ("IoT_IPFilter_PermissiveRule", "everyone"),
        ("IoT_IPFilter_PermissiveRule", "carrier"),
        ("IoT_IPFilter_PermissiveRule", "v6"),
    ]
    assert all(f.device.device_id == "$hub" and f.device.hub == "hub-1" for f in found)
    assert found[2].description == (
        "IP filter rule carrier accepts 10.0.0.0/8 (16,777,216 addresses), a range larger than /16"
    )


def test_tls_minimum() -> None:
    old = HubState(ip_filter_default="Reject", min_tls_version="1.0")
    [finding] = hub_findings(old, T0)
    assert finding.kind == "IoT_VulnerableTLSCipherSuite"
    assert finding.additional_data["MinTlsVersion"] == "1.0"
    assert hub_findings(HubState(ip_filter_default="Reject", min_tls_version="TLSv1.2"), T0) == []
    assert tls_version("TLS1_3") == (1, 3)


def test_a_hardened_hub_holds_no_finding() -> None:
    state = HubState(
        ip_filter_default="Reject",
        ip_filter_rules=(IpFilterRule("site", "Accept", "203.0.113.0/24"),),
        min_tls_version="1.3",
        devices=(HubDevice(DeviceContext("a"), credentials=(credential_fingerprint("k"),)),),
    )
    assert hub_findings(state, T0) == []


@pytest.mark.parametrize(
    "build",
    [
        lambda: IpFilterRule("x", "Allow", "10.0.0.0/8"),  # type: ignore[arg-type]
        lambda: IpFilterRule("x", "Accept", "not-a-cidr"),
        lambda: HubState(min_tls_version="ssl3"),
        lambda: HubState(ip_filter_default="Drop"),  # type: ignore[arg-type]
        lambda: HubState(devices=(HubDevice(DeviceContext("a")), HubDevice(DeviceContext("a")))),
        lambda: HubDevice(DeviceContext("a"), created=T0.replace(tzinfo=None)),
    ],
)
def test_invalid_hub_values_are_refused(build: object) -> None:
    with pytest.raises(ValueError):
        build()  # type: ignore[operator]
