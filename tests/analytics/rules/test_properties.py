"""Property tests: the loader fails only with RuleError; the engine never raises."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iotsec.analytics import DeviceContext, Observation
from iotsec.analytics.errors import RuleError
from iotsec.analytics.rules import RuleEngine, RuleErrors, load_rules_text
from tests.analytics.rules.conftest import FakeIntel

RULE_WORDS = [
    "rules", "suppressions", "id", "name", "severity", "tactic", "technique", "description",
    "remediation", "dedup", "key", "match", "threshold", "sequence", "event", "source", "field",
    "all", "any", "not", "case", "equals", "in", "contains", "startswith", "endswith", "regex",
    "cidr", "intel", "exists", "gte", "lt", "count", "window", "by", "max", "within", "steps",
    "rule", "scope", "expires", "reason", "device", "group", "Login", "ProcessCreate", "High",
    "CommandLine", "RemoteAddress", "10.0.0.0/8", "5m", "(", "{x}", "*", "everywhere",
]  # fmt: skip

scalars = st.one_of(
    st.sampled_from(RULE_WORDS),
    st.text(max_size=12),
    st.integers(-5, 100),
    st.booleans(),
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True),
)
trees = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.sampled_from(RULE_WORDS), inner, max_size=5),
    ),
    max_leaves=30,
)


def _loads_or_rule_error(text: str) -> None:
    try:
        load_rules_text(text, source="fuzz.yaml")
    except RuleErrors as exc:
        assert exc.errors
        assert all(isinstance(e, RuleError) and e.source == "fuzz.yaml" for e in exc.errors)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300))
def test_the_loader_raises_only_rule_errors_on_arbitrary_text(text: str) -> None:
    _loads_or_rule_error(text)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(trees)
def test_the_loader_raises_only_rule_errors_on_rule_shaped_yaml(tree: object) -> None:
    _loads_or_rule_error(yaml.safe_dump({"rules": [tree]}))
    _loads_or_rule_error(yaml.safe_dump(tree))


RULES = """\
rules:
  - id: A
    name: every operator
    severity: High
    description: "{Executable} {CommandLine} {ExtraDetails.HitCount} {Tags.site} {UserName}"
    remediation: ["{RemoteAddress} {RemotePort}"]
    key: [Executable]
    match:
      any:
        - {field: Executable, equals: /bin/nc}
        - {field: Executable, in: [1, "2", true, 1.5]}
        - {field: CommandLine, contains: [wget, curl]}
        - {field: CommandLine, startswith: x, case: sensitive}
        - {field: CommandLine, endswith: [.sh]}
        - {field: CommandLine, regex: 'a.*b'}
        - {field: RemoteAddress, cidr: [10.0.0.0/8, "2001:db8::/32"]}
        - {field: CommandLine, intel: url}
        - {field: CommandLine, intel: domain}
        - {field: RemoteAddress, intel: ip}
        - {field: ExtraDetails.Hash, intel: hash}
        - {field: RemotePort, gte: 10}
        - {field: RemotePort, lt: 3}
        - {not: {field: UserName, exists: true}}
        - {field: Tags.site, equals: north}
  - id: B
    name: threshold
    severity: Low
    description: "{count} in {window} by {RemoteAddress}"
    match: {field: Result, in: [Fail, Failure]}
    threshold: {count: 2, max: 3, window: 1m, by: [RemoteAddress, UserName]}
  - id: C
    name: sequence
    severity: Medium
    description: "{count} in {window}"
    sequence:
      within: 5m
      by: [DeviceId, ExtraDetails]
      steps:
        - {match: {field: Result, equals: Fail}, count: 2}
        - {match: {field: Result, equals: Success}}
suppressions:
  - rule: "*"
    scope: {group: g}
    expires: 2030-01-01
    reason: r
    match: {field: Executable, exists: true}
  - {rule: B, scope: {device: d}, expires: 2030-01-01, reason: r}
"""

RULESET = load_rules_text(RULES)
NAMES = ["ProcessCreate", "Login", "ConnectionCreate", "authenticate", "Other", ""]
FIELDS = [
    "Executable", "CommandLine", "RemoteAddress", "RemotePort", "UserName", "Result",
    "ExtraDetails", "Hash", "x",
]  # fmt: skip
json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(),
        st.text(max_size=20),
        st.sampled_from(["10.1.2.3", "::ffff:10.0.0.1", "http://evil.example/a", "Fail", "nc"]),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)
observations = st.builds(
    Observation,
    source=st.sampled_from(["agent", "hub"]),
    name=st.sampled_from(NAMES),
    time=st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    )
    | st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)),
    device=st.builds(
        DeviceContext,
        device_id=st.sampled_from(["d", "e", "x|y"]),
        group=st.sampled_from(["g", "default"]),
        tags=st.dictionaries(st.sampled_from(["site", "zone"]), st.text(max_size=5), max_size=2),
    ),
    fields=st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=6),
    event_id=st.text(max_size=8),
    row_index=st.integers(0, 5),
    hit_count=st.integers(-3, 10**6),
)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(observations, max_size=12), st.integers(0, 10**6))
def test_the_engine_never_raises_on_arbitrary_observations(
    seen: list[Observation], tick: int
) -> None:
    intel = FakeIntel({"ip": {"10.1.2.3"}, "url": {"http://evil.example/a"}, "domain": {"a.b"}})
    engine = RuleEngine(RULESET, intel)
    for obs in seen:
        for detection in engine.observe(obs):
            assert detection.rule_id in ("A", "B", "C")
            assert detection.evidence and detection.dedup_key.startswith(detection.rule_id)
    engine.tick(datetime(2000, 1, 1, tzinfo=UTC) + timedelta(seconds=tick))
    assert sum(engine.suppressed.values()) >= 0
