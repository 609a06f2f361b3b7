"""Device-side recommendations from real collector output: ports, firewall, OS baseline."""

from __future__ import annotations

import doctest
import json
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import msgspec
import pytest

from iotsec.agent.collectors.firewall import parse_iptables_save, parse_nft_ruleset
from iotsec.analytics import Finding
from iotsec.analytics.recommendations import DeviceRecommendations, RecommendationConfig
from iotsec.analytics.recommendations import device as device_module
from iotsec.analytics.recommendations import firewall as firewall_module
from iotsec.analytics.recommendations import snapshots as snapshots_module
from iotsec.analytics.recommendations.firewall import wide_address, wide_ports
from tests.analytics.obsfactory import DAY, HOUR, T0, snapshot

FIXTURES = Path(__file__).resolve().parents[2] / "agent" / "fixtures" / "firewall"


def evaluate(
    rows_by_name: dict[str, Sequence[dict[str, object]]], **config: object
) -> list[Finding]:
    device = DeviceRecommendations(RecommendationConfig(**config))  # type: ignore[arg-type]
    for name, rows in rows_by_name.items():
        for o in snapshot(name, rows, HOUR):
            device.observe(o)
    return device.evaluate(T0 + DAY)


def firewall_rows(text: str, parse: object) -> list[dict[str, object]]:
    return [msgspec.to_builtins(row) for row in parse(text)]  # type: ignore[operator]


def test_doctests() -> None:
    for module in (device_module, firewall_module, snapshots_module):
        assert doctest.testmod(module).failed == 0


def test_open_ports_lists_non_loopback_endpoints() -> None:
    rows = [
        {
            "Protocol": "tcp",
            "LocalAddress": "0.0.0.0",
            "LocalPort": "22",
            "ExtraDetails": {"Pid": "611"},
        },
        {"Protocol": "tcp6", "LocalAddress": "::", "LocalPort": "80"},
        {"Protocol": "tcp", "LocalAddress": "127.0.0.1", "LocalPort": "631"},
        {"Protocol": "udp", "LocalAddress": "::1", "LocalPort": "323"},
        {"Protocol": "udp", "LocalAddress": "192.168.1.20", "LocalPort": "5353"},
    ]
    [finding] = evaluate({"ListeningPorts": rows})
    assert finding.kind == "IoT_OpenPorts"
    assert finding.severity == "Medium"
    assert finding.time == T0 + HOUR
    assert finding.additional_data["Endpoints"] == [
        "0.0.0.0:22/tcp",
        "192.168.1.20:5353/udp",
        "[::]:80/tcp",
    ]
    assert finding.description == (
        "dev-7 listens on 3 non-loopback endpoints: "
        "0.0.0.0:22/tcp, 192.168.1.20:5353/udp, [::]:80/tcp"
    )


def test_loopback_only_or_nothing_listening_holds_no_finding() -> None:
    assert (
        evaluate(
            {"ListeningPorts": [{"Protocol": "tcp", "LocalAddress": "127.0.0.1", "LocalPort": "1"}]}
        )
        == []
    )
    assert evaluate({"ListeningPorts": []}) == []


def test_the_newest_snapshot_wins_and_older_ones_are_ignored() -> None:
    device = DeviceRecommendations()
    open_22 = [{"Protocol": "tcp", "LocalAddress": "0.0.0.0", "LocalPort": "22"}]
    for o in snapshot("ListeningPorts", open_22, HOUR):
        device.observe(o)
    for o in snapshot("ListeningPorts", [], 2 * HOUR):
        device.observe(o)
    assert device.evaluate(T0 + DAY) == []
    for o in snapshot("ListeningPorts", open_22, HOUR + timedelta(minutes=30)):  # late, older
        device.observe(o)
    assert device.evaluate(T0 + DAY) == []


def test_iptables_policies_and_rules() -> None:
    rows = firewall_rows((FIXTURES / "iptables-save.txt").read_text(), parse_iptables_save)
    found = {(f.kind, f.key): f for f in evaluate({"FirewallConfiguration": rows})}
    assert set(found) == {
        ("IoT_PermissiveFirewallPolicy", "OUTPUT"),
        ("IoT_PermissiveInputFirewallRules", ""),
    }
    policy = found["IoT_PermissiveFirewallPolicy", "OUTPUT"]
    assert policy.description == "dev-7's OUTPUT chain accepts by default (ipv4; chains OUTPUT)"
    rules = found["IoT_PermissiveInputFirewallRules", ""]
    # ssh from a /8, http(s) from anywhere; not established, loopback, ICMP, 1883 from a range
    assert [(r["SourceAddress"], r["DestinationPort"]) for r in rules.additional_data["Rules"]] == [
        ("10.0.0.0/8", "22"),
        ("", "80,443"),
    ]
    assert "INPUT#3 tcp any -> any 80,443" in rules.description


def test_nft_ruleset() -> None:
    rows = firewall_rows((FIXTURES / "nft-ruleset.json").read_text(), parse_nft_ruleset)
    kinds = sorted((f.kind, f.key) for f in evaluate({"FirewallConfiguration": rows}))
    assert kinds == [
        ("IoT_PermissiveFirewallPolicy", "OUTPUT"),
        ("IoT_PermissiveInputFirewallRules", ""),
    ]


def test_no_firewall_at_all_is_permissive_everywhere() -> None:
    rows = firewall_rows((FIXTURES / "nft-empty.json").read_text(), parse_nft_ruleset)
    keys = sorted(f.key for f in evaluate({"FirewallConfiguration": rows}))
    assert keys == ["FORWARD", "INPUT", "OUTPUT"]


def test_an_accept_policy_ending_in_a_catch_all_drop_is_not_permissive() -> None:
    dump = (
        "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -s 10.1.2.0/24 -p tcp --dport 22 -j ACCEPT\n"
        "-A INPUT -j DROP\nCOMMIT\n"
    )
    rows = firewall_rows(dump, parse_iptables_save)
    assert evaluate({"FirewallConfiguration": rows}, policy_chains=("INPUT",)) == []


def test_a_chain_accepting_on_every_base_chain_of_a_family_only() -> None:
    # IPv4 passes an ip table that accepts and an inet table that drops: not permissive for v4;
    # IPv6 passes only the inet table: not permissive either.
    ruleset = {
        "nftables": [
            {
                "chain": {
                    "family": "ip",
                    "table": "a",
                    "name": "in",
                    "type": "filter",
                    "hook": "input",
                    "policy": "accept",
                }
            },
            {
                "chain": {
                    "family": "inet",
                    "table": "b",
                    "name": "in",
                    "type": "filter",
                    "hook": "input",
                    "policy": "drop",
                }
            },
            {
                "chain": {
                    "family": "ip6",
                    "table": "c",
                    "name": "in6",
                    "type": "filter",
                    "hook": "input",
                    "policy": "accept",
                }
            },
        ]
    }
    rows = firewall_rows(json.dumps(ruleset), parse_nft_ruleset)
    found = evaluate({"FirewallConfiguration": rows}, policy_chains=("INPUT",))
    assert found == []
    ruleset["nftables"] = ruleset["nftables"][::2]  # without the inet drop, both accept
    rows = firewall_rows(json.dumps(ruleset), parse_nft_ruleset)
    [finding] = evaluate({"FirewallConfiguration": rows}, policy_chains=("INPUT",))
    assert finding.additional_data["AddressFamilies"] == ["ipv4", "ipv6"]


def test_output_rules() -> None:
    dump = (
        "*filter\n:OUTPUT DROP [0:0]\n-A OUTPUT -p tcp --dport 443 -j ACCEPT\n"
        "-A OUTPUT -d 10.0.0.5 -p udp --dport 123 -j ACCEPT\nCOMMIT\n"
    )
    [finding] = evaluate({"FirewallConfiguration": firewall_rows(dump, parse_iptables_save)})
    assert finding.kind == "IoT_PermissiveOutputFirewallRules"
    assert [r["DestinationPort"] for r in finding.additional_data["Rules"]] == ["443"]


@pytest.mark.parametrize(
    ("text", "wide"),
    [
        ("", True), ("0.0.0.0/0", True), ("::/0", True), ("!192.168.1.0/24", True),
        ("10.0.0.0/8", True), ("10.1.0.0/16", False), ("10.1.2.3", False),
        ("10.0.0.1-10.0.255.255", False), ("10.0.0.0-10.1.255.255", True),
        ("2001:db8::/32", True), ("2001:db8:1::/48", False), ("10.1.2.0/24;10.0.0.0/8", True),
        ("@trusted", False),
    ],
)  # fmt: skip
def test_wide_addresses(text: str, wide: bool) -> None:
    assert wide_address(text, 16, 48) is wide


@pytest.mark.parametrize(
    ("text", "wide"),
    [
        ("", True),
        ("22", False),
        ("80,443", False),
        ("1000-2000", False),
        ("1024-65535", True),
        ("1:65535", True),
        ("!22", True),
    ],
)
def test_wide_ports(text: str, wide: bool) -> None:
    assert wide_ports(text, 1024) is wide


def test_os_baseline_failures() -> None:
    rows = [
        {
            "Description": "Protocol 2 only",
            "CceId": "CCE-4325-7",
            "Result": "Fail",
            "Error": "",
            "Severity": "Critical",
        },
        {
            "Description": "No empty passwords",
            "CceId": "CCE-3660-8",
            "Result": "Err",
            "Error": "no sshd_config",
            "Severity": "Important",
        },
        {
            "Description": "Fine",
            "CceId": "CCE-1-1",
            "Result": "Pass",
            "Error": "",
            "Severity": "Warning",
        },
    ]
    [finding] = evaluate({"OSBaseline": rows})
    assert finding.kind == "IoT_Baseline"
    assert finding.additional_data["FailedChecks"] == ["CCE-3660-8", "CCE-4325-7"]
    assert finding.description == "dev-7 failed 2 OS baseline checks: CCE-3660-8, CCE-4325-7"
    assert evaluate({"OSBaseline": []}) == []  # IsEmpty: every check passed


def test_disabled_kinds_are_not_evaluated() -> None:
    rows = [{"Protocol": "tcp", "LocalAddress": "0.0.0.0", "LocalPort": "22"}]
    assert evaluate({"ListeningPorts": rows}, disabled=frozenset({"IoT_OpenPorts"})) == []
    with pytest.raises(ValueError, match="unknown recommendation kind"):
        RecommendationConfig(disabled=frozenset({"IoT_Nope"}))
