"""Firewall rules and policies from nft JSON and iptables-save, captured from real tools."""

from __future__ import annotations

import contextlib
import doctest
import json
import os
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iotsec.agent.collectors.firewall import (
    FIREWALL_SPEC,
    IPTABLES_SAVE,
    NFT_LIST_RULESET,
    FirewallCollector,
    parse_iptables_save,
    parse_nft_ruleset,
)
from iotsec.agent.errors import HostReadError, ParseError
from iotsec.agent.hostroot import CommandResult, FakeHostRoot, HostRoot, SubprocessCommands
from iotsec.schema import (
    Event,
    FirewallConfiguration,
    FirewallConfigurationEvent,
    SecurityMessage,
    encode_message,
)
from tests.msschema import validate_with_microsoft_schema

# Captured with nft 1.0.6 and iptables 1.8.9 (nf_tables) in a private network namespace;
# rules.nft is the ruleset loaded for nft-ruleset.json.
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "firewall"
NOW = datetime(2024, 3, 4, tzinfo=UTC)


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def summary(rows: Sequence[FirewallConfiguration]) -> list[tuple[object, ...]]:
    return [
        (
            r.chain_name,
            r.priority,
            r.action,
            r.direction,
            r.protocol,
            r.source_address,
            r.destination_address,
            r.destination_port,
        )
        for r in rows
    ]


def assert_schema_valid(events: Sequence[Event]) -> None:
    message = SecurityMessage.create(events, agent_id="b97faf0a-0f57-471f-9dab-46a8e1764946")
    validate_with_microsoft_schema(json.loads(encode_message(message)))


def test_the_spec() -> None:
    assert (FIREWALL_SPEC.name, FIREWALL_SPEC.category, FIREWALL_SPEC.default_priority) == (
        "FirewallConfiguration",
        "Periodic",
        "Low",
    )


def test_nft_rules_then_the_chain_policy() -> None:
    rows = parse_nft_ruleset(fixture("nft-ruleset.json"))
    assert summary(rows) == [
        ("input", 0, "Allow", "In", None, None, None, None),
        ("input", 1, "Allow", "In", None, None, None, None),
        ("input", 2, "Deny", "In", None, "198.51.100.7,203.0.113.9", None, None),
        ("input", 3, "Allow", "In", "tcp", "10.0.0.0/8", None, "22"),
        ("input", 4, "Allow", "In", "tcp", None, None, "80,443"),
        ("input", 5, "Deny", "In", "udp", None, None, "1000-2000"),
        ("input", 6, "Deny", "In", "tcp", "!192.168.1.0/24", None, "8080"),
        ("input", 7, "Allow", "In", "icmp", None, None, None),
        ("input", 8, "Allow", "In", "ipv6-icmp", None, None, None),
        ("input", 9, "Other", "In", None, None, None, None),
        ("input", 10, "Deny", "In", None, None, None, None),
        ("iot", 0, "Allow", None, "tcp", "192.168.1.10-192.168.1.20", None, "1883"),
        ("iot", 1, "Other", None, None, None, None, None),
        ("forward", 0, "Deny", None, None, None, None, None),
        ("output", 0, "Deny", "Out", None, None, "203.0.113.0/24", None),
        ("output", 1, "Allow", "Out", None, None, None, None),
        ("postrouting", 0, "Other", None, None, None, None, None),
    ]
    details = [r.extra_details for r in rows]
    assert details[0]["State"] == "established,related"
    assert details[1]["InInterface"] == "lo"
    assert details[3]["Comment"] == "ssh from lan"
    assert details[9]["Action"] == "jump iot"
    assert details[10] == {"Family": "inet", "Table": "filter", "Hook": "input", "Policy": "drop"}
    assert details[16]["Action"] == "masquerade"
    assert "Policy" not in details[16]  # a nat chain's policy is no filtering policy
    assert all(r.enabled for r in rows)


def test_iptables_nft_rules_seen_through_nft_are_marked_untranslated() -> None:
    rows = parse_nft_ruleset(fixture("nft-iptables-nft.json"))
    multiport = rows[2]
    assert (multiport.protocol, multiport.destination_port) == ("tcp", None)
    assert multiport.extra_details["Untranslated"] == "match:multiport"
    # Only INPUT is filtered: OUTPUT and FORWARD accept everything.
    implicit = [(r.chain_name, r.action) for r in rows if r.extra_details.get("Implicit")]
    assert implicit == [("OUTPUT", "Allow"), ("FORWARD", "Allow")]


def test_an_empty_ruleset_accepts_everything() -> None:
    rows = parse_nft_ruleset(fixture("nft-empty.json"))
    assert summary(rows) == [
        ("INPUT", 0, "Allow", "In", None, None, None, None),
        ("OUTPUT", 0, "Allow", "Out", None, None, None, None),
        ("FORWARD", 0, "Allow", None, None, None, None, None),
    ]
    assert all(r.extra_details == {"Implicit": "true", "Policy": "accept"} for r in rows)


def test_iptables_save_filter_table() -> None:
    rows = parse_iptables_save(fixture("iptables-save.txt"))
    assert summary(rows) == [
        ("INPUT", 0, "Allow", "In", None, None, None, None),
        ("INPUT", 1, "Allow", "In", None, None, None, None),
        ("INPUT", 2, "Allow", "In", "tcp", "10.0.0.0/8", None, "22"),
        ("INPUT", 3, "Allow", "In", "tcp", None, None, "80,443"),
        ("INPUT", 4, "Deny", "In", "udp", None, None, "1000-2000"),
        ("INPUT", 5, "Deny", "In", "tcp", "!192.168.1.0/24", None, "8080"),
        ("INPUT", 6, "Allow", "In", "icmp", None, None, None),
        ("INPUT", 7, "Allow", "In", "tcp", "192.168.1.10-192.168.1.20", None, "1883"),
        ("INPUT", 8, "Other", "In", None, None, None, None),
        ("INPUT", 9, "Deny", "In", None, None, None, None),
        ("FORWARD", 0, "Other", None, None, None, None, None),
        ("FORWARD", 1, "Deny", None, None, None, None, None),
        ("OUTPUT", 0, "Deny", "Out", None, None, "203.0.113.0/24", None),
        ("OUTPUT", 1, "Allow", "Out", None, None, None, None),
        ("DOCKER-USER", 0, "Other", None, None, None, None, None),
    ]
    details = [r.extra_details for r in rows]
    assert details[0]["State"] == "RELATED,ESTABLISHED"
    assert details[2]["Comment"] == "ssh from lan"
    assert details[5]["TargetOptions"] == "--reject-with tcp-reset"
    assert details[8]["Action"] == "LOG"
    assert details[9]["Policy"] == "DROP"
    assert details[10]["Action"] == "DOCKER-USER"


def test_iptables_without_a_filter_table_accepts_everything() -> None:
    rows = parse_iptables_save("*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n")
    assert [(r.chain_name, r.action) for r in rows] == [
        ("INPUT", "Allow"),
        ("OUTPUT", "Allow"),
        ("FORWARD", "Allow"),
    ]


@pytest.mark.parametrize(
    ("dump", "reason"),
    [
        ("-A INPUT -j ACCEPT\n", "outside a \\*table"),
        ("*filter\n:INPUT\nCOMMIT\n", "chain"),
        ("*filter\n-I INPUT -j ACCEPT\nCOMMIT\n", "-A CHAIN"),
        ('*filter\n-A INPUT -m comment --comment "open\nCOMMIT\n', "cannot split"),
        ("*filter\n-A INPUT -j\nCOMMIT\n", "without a target"),
    ],
)
def test_bad_iptables_dumps_name_the_line(dump: str, reason: str) -> None:
    with pytest.raises(ParseError, match=reason) as caught:
        parse_iptables_save(dump)
    assert caught.value.line is not None


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[]",
        '{"nftables": {}}',
        '{"nftables": [1]}',
        '{"nftables": [{"rule": {"family": "ip", "table": "t", "chain": "c", "expr": 5}}]}',
        '{"nftables": [{"rule": {"chain": "c", "expr": [{"match": {"right": true}}]}}]}',
    ],
)
def test_bad_nft_json(text: str) -> None:
    with pytest.raises(ParseError):
        parse_nft_ruleset(text)


def fake_host(tmp_path: Path, commands: dict[tuple[str, ...], tuple[str, int]]) -> FakeHostRoot:
    host = FakeHostRoot.build(tmp_path)
    for argv, (stdout, code) in commands.items():
        host.fake_commands.add(argv, stdout, returncode=code, stderr="" if code == 0 else "denied")
    return host


def test_the_collector_prefers_nft(tmp_path: Path) -> None:
    host = fake_host(
        tmp_path,
        {
            NFT_LIST_RULESET: (fixture("nft-ruleset.json"), 0),
            IPTABLES_SAVE: (fixture("iptables-save.txt"), 0),
        },
    )
    collector = FirewallCollector(host)
    (event,) = collector.collect(NOW)
    assert isinstance(event, FirewallConfigurationEvent)
    assert event.payload[0].chain_name == "input"
    assert host.fake_commands.calls == [NFT_LIST_RULESET]
    assert collector.errors == []
    assert_schema_valid([event])


def test_a_failing_nft_falls_back_to_iptables_save(tmp_path: Path) -> None:
    host = fake_host(
        tmp_path,
        {NFT_LIST_RULESET: ("", 1), IPTABLES_SAVE: (fixture("iptables-save.txt"), 0)},
    )
    collector = FirewallCollector(host)
    (event,) = collector.collect(NOW)
    assert isinstance(event, FirewallConfigurationEvent)
    assert event.payload[0].chain_name == "INPUT"
    (error,) = collector.errors
    assert isinstance(error, HostReadError) and error.reason == "denied"
    assert_schema_valid([event])


def test_no_firewall_tool_is_an_error_not_an_empty_firewall(tmp_path: Path) -> None:
    with pytest.raises(HostReadError, match="nft is not installed; iptables-save is not installed"):
        FirewallCollector(fake_host(tmp_path, {})).collect(NOW)
    failing = fake_host(tmp_path, {IPTABLES_SAVE: ("", 4)})
    with pytest.raises(HostReadError, match="iptables-save: denied"):
        FirewallCollector(failing).collect(NOW)


def test_a_ruleset_that_does_not_parse_raises(tmp_path: Path) -> None:
    with pytest.raises(ParseError):
        FirewallCollector(fake_host(tmp_path, {NFT_LIST_RULESET: ("{", 0)})).collect(NOW)


# --- property tests -------------------------------------------------------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
_expressions = st.lists(
    st.dictionaries(
        st.sampled_from(["match", "accept", "drop", "jump", "xt", "counter", "log", "set"]),
        _json,
        min_size=1,
        max_size=1,
    ),
    max_size=4,
)


@settings(max_examples=300)
@given(st.text(max_size=300) | _json.map(json.dumps))
def test_arbitrary_nft_output_raises_only_parse_error(text: str) -> None:
    with contextlib.suppress(ParseError):
        parse_nft_ruleset(text)


@settings(max_examples=300)
@given(_expressions, st.sampled_from(["input", "output", None]), _json)
def test_arbitrary_nft_rules_raise_only_parse_error(
    expressions: list[object], hook: str | None, policy: object
) -> None:
    chain = {
        "family": "inet",
        "table": "t",
        "name": "c",
        "hook": hook,
        "type": "filter",
        "policy": policy,
    }
    rule = {"family": "inet", "table": "t", "chain": "c", "handle": 1, "expr": expressions}
    with contextlib.suppress(ParseError):
        parse_nft_ruleset(json.dumps({"nftables": [{"chain": chain}, {"rule": rule}]}))


_ipt_words = st.sampled_from(
    [
        "-A",
        "INPUT",
        "-p",
        "tcp",
        "!",
        "-s",
        "--dport",
        "22:80",
        "-j",
        "ACCEPT",
        "-m",
        '"x y"',
        "--x",
    ]
)


@settings(max_examples=300)
@given(st.text(max_size=300) | st.lists(_ipt_words, max_size=12).map(" ".join))
def test_arbitrary_iptables_save_raises_only_parse_error(text: str) -> None:
    with contextlib.suppress(ParseError):
        parse_iptables_save(text)
    with contextlib.suppress(ParseError):
        parse_iptables_save(f"*filter\n:INPUT DROP [0:0]\n{text}\nCOMMIT\n")


# --- live: a real nft in a private network namespace -----------------------------------------


class NetnsCommands:
    """Runs every command inside network namespace ``name`` (``ip netns exec``)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._host = SubprocessCommands()

    def run(self, argv: Sequence[str]) -> CommandResult:
        return self._host.run(["ip", "netns", "exec", self.name, *argv])

    def available(self, program: str) -> bool:
        return shutil.which(program) is not None


def _host_ruleset() -> str | None:
    done = subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True, check=False)
    return done.stdout if done.returncode == 0 else None


@pytest.fixture
def netns() -> Iterator[str]:
    if shutil.which("nft") is None:
        pytest.skip("nft is not installed (Debian package nftables)")
    if shutil.which("ip") is None:
        pytest.skip("ip is not installed (Debian package iproute2)")
    name = f"iotsec-fw-{os.getpid()}"
    added = subprocess.run(
        ["ip", "netns", "add", name], capture_output=True, text=True, check=False
    )
    if added.returncode != 0:
        pytest.skip(f"network namespaces are unavailable here: {added.stderr.strip()}")
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


def test_live_nft_rules_in_a_namespace(netns: str) -> None:
    before = _host_ruleset()
    commands = NetnsCommands(netns)
    for argv in (
        ["nft", "add", "table", "inet", "iotsec_test"],
        [
            "nft",
            "add",
            "chain",
            "inet",
            "iotsec_test",
            "input",
            "{ type filter hook input priority 0 ; policy drop ; }",
        ],
        [
            "nft",
            "add",
            "rule",
            "inet",
            "iotsec_test",
            "input",
            "ip",
            "saddr",
            "10.8.0.0/16",
            "tcp",
            "dport",
            "2222",
            "accept",
        ],
    ):
        done = commands.run(argv)
        assert done.returncode == 0, done.stderr
    events = FirewallCollector(HostRoot("/", commands)).collect(NOW)
    (event,) = events
    assert isinstance(event, FirewallConfigurationEvent)
    rule, policy = event.payload[0], event.payload[1]
    assert (rule.chain_name, rule.action, rule.direction, rule.protocol) == (
        "input",
        "Allow",
        "In",
        "tcp",
    )
    assert (rule.source_address, rule.destination_port, rule.priority) == ("10.8.0.0/16", "2222", 0)
    assert (policy.action, policy.extra_details["Policy"], policy.priority) == ("Deny", "drop", 1)
    assert rule.extra_details["Table"] == "iotsec_test"
    assert_schema_valid(events)
    assert _host_ruleset() == before  # the host's own firewall was never touched


def test_the_module_examples_run() -> None:
    import iotsec.agent.collectors.firewall as module  # noqa: PLC0415  # the module under doctest

    failed, attempted = doctest.testmod(module)
    assert (failed, attempted > 0) == (0, True)


def test_a_raised_error_is_not_repeated_in_errors(tmp_path: Path) -> None:
    collector = FirewallCollector(fake_host(tmp_path, {NFT_LIST_RULESET: ("", 1)}))
    with pytest.raises(HostReadError, match="nft -j list ruleset: denied"):
        collector.collect(NOW)
    assert collector.errors == []
