"""The engine's shortcuts never change an answer: a naive reading of docs/rules.md agrees.

The compiled conditions index ``startswith``/``endswith`` targets, read numbers without a regex
where they can, prefilter regexes by several literal sets and remember regex answers per text;
the engine remembers, per (event name, group), which rules pass for the values they read, and
moves ``Group`` tests (nested in ``all`` too) into a filter it evaluates once per group. Here
each of them is checked against a plain interpreter of the rule language.
"""

from __future__ import annotations

import gc
import ipaddress
import math
import re
from dataclasses import fields, replace
from typing import get_args

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iotsec.analytics import Observation
from iotsec.analytics.indicators import NO_INTEL
from iotsec.analytics.rules import RuleEngine, RuleSet, buckets, conditions
from iotsec.analytics.rules.conditions import MAX_REGEX_TEXT, compile_condition
from iotsec.analytics.rules.model import (
    AllOf,
    AnyOf,
    Condition,
    EventIs,
    FieldTest,
    Not,
    Operator,
    Rule,
    Scalar,
    SourceIs,
    SourceLocation,
)
from iotsec.analytics.rules.prefilter import factors
from iotsec.analytics.rules.runners import compile_rule
from iotsec.analytics.rules.templates import parse_template
from tests.analytics.rules.conftest import make_obs

HERE = SourceLocation("test", 1, 1)
_NUMBER = re.compile(r"\s*[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\s*")


# --- a naive interpreter of docs/rules.md ---------------------------------------------------


def _as_text(value: object) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    return None


def _as_number(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)) or (isinstance(value, str) and _NUMBER.fullmatch(value)):
        try:
            number = float(value)
        except OverflowError:
            return None
        return number if math.isfinite(number) else None
    return None


def _address(value: object) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if not isinstance(value, str):
        return None
    text = value.strip().removeprefix("[").removesuffix("]")
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def naive(condition: Condition, obs: Observation) -> bool:
    """What docs/rules.md says ``condition`` means for ``obs``, evaluated the slow way."""
    if isinstance(condition, EventIs):
        return obs.name in condition.names
    if isinstance(condition, SourceIs):
        return obs.source == condition.source
    if isinstance(condition, AllOf):
        return all(naive(c, obs) for c in condition.items)
    if isinstance(condition, AnyOf):
        return any(naive(c, obs) for c in condition.items)
    if isinstance(condition, Not):
        return not naive(condition.item, obs)
    value = obs.get(condition.field)
    op = condition.operator
    if op == "exists":
        return (value is not None) is condition.values[0]
    if op in ("gte", "lte", "gt", "lt"):
        number, bound = _as_number(value), float(condition.values[0])
        if number is None:
            return False
        return {"gte": number >= bound, "lte": number <= bound, "gt": number > bound}.get(
            op, number < bound
        )
    if op == "cidr":
        address = _address(value)
        return address is not None and any(address in net for net in condition.networks)
    text = _as_text(value)
    if text is None:
        return False
    if op == "regex":
        assert condition.pattern is not None
        return condition.pattern.search(text[:MAX_REGEX_TEXT]) is not None

    def fold(s: str) -> str:
        return s if condition.case_sensitive else s.casefold()

    targets = [fold(t) for t in map(_as_text, condition.values) if t is not None]
    if op in ("equals", "in"):
        if fold(text) in targets:
            return True
        number = _as_number(value)
        return number is not None and number in [_as_number(v) for v in condition.values]
    if op == "contains":
        return any(t in fold(text) for t in targets)
    if op == "startswith":
        return any(fold(text).startswith(t) for t in targets)
    return any(fold(text).endswith(t) for t in targets)  # endswith


# --- conditions -----------------------------------------------------------------------------

OPERATORS = [op for op in get_args(Operator) if op != "intel"]  # intel: never remembered
FIELDS = ["Executable", "CommandLine", "RemotePort", "UserName", "ExtraDetails.Parent"]
LONG_S = "\u017f"  # under IGNORECASE it matches "s", which lower-casing does not reproduce
WORDS = ["/bin/sh", "/usr/bin/nmap", "/tmp/x", "nc", "NMAP", "bin", f"{LONG_S}h", "22", "022"]
TARGETS = [*WORDS, "/hydra", "/john", "/ncat", "/nmap", "sh", "/SH", "x", "", ".py", "/tmp/"]
PATTERNS = [
    r"(?i)(?:^|[\s/])(?:nc|ncat)\s+-e",
    r"(?i)/(?:nmap|masscan|hydra)$",
    r"(?:cp|mv)\s.*\s/usr/bin/ls$",
    r"(?i)>(?<![<>&\d]>)>?\s*/s?bin/",
    r"\d{3}",
    r"(?i)sh\s+-c\s+.*\|\s*(?:nc|telnet)\b",
]
values = st.one_of(
    st.sampled_from(WORDS),
    st.sampled_from(
        ["/bin/sh -c 'nc -e /bin/sh 1.2.3.4'", "cp x /usr/bin/ls", "echo > /bin/ls", "9" * 400]
    ),
    st.text(alphabet="/abchnms -0129." + LONG_S, max_size=12),
    st.integers(-3, 3000),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.just({"x": "y"}),
)
scalars: st.SearchStrategy[Scalar] = st.one_of(
    st.sampled_from(TARGETS), st.integers(0, 30), st.just(1.5), st.booleans()
)


@st.composite
def field_tests(draw: st.DrawFn) -> FieldTest:
    field = draw(st.sampled_from(FIELDS))
    op = draw(st.sampled_from(OPERATORS))
    sensitive = draw(st.booleans())
    if op == "regex":
        pattern = draw(st.sampled_from(PATTERNS))
        flags = 0 if sensitive else re.IGNORECASE
        return FieldTest(field, op, (pattern,), HERE, sensitive, re.compile(pattern, flags))
    if op == "cidr":
        nets = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("2001:db8::/32"))
        return FieldTest(field, op, ("10.0.0.0/8", "2001:db8::/32"), HERE, networks=nets)
    if op == "exists":
        return FieldTest(field, op, (draw(st.booleans()),), HERE)
    if op in ("gte", "lte", "gt", "lt"):
        return FieldTest(field, op, (draw(st.integers(-5, 500)),), HERE)
    if op == "equals":
        return FieldTest(field, op, (draw(scalars),), HERE, sensitive)
    if op == "in":
        return FieldTest(field, op, tuple(draw(st.lists(scalars, min_size=1, max_size=5))), HERE)
    # Many targets, so that the affix index is used as well as the plain tuple test.
    many = draw(st.lists(st.sampled_from(TARGETS), min_size=1, max_size=14))
    return FieldTest(field, op, tuple(many), HERE, sensitive)


def _combine(children: st.SearchStrategy[Condition]) -> st.SearchStrategy[Condition]:
    items = st.lists(children, min_size=1, max_size=4).map(tuple)
    return st.one_of(
        items.map(lambda c: AllOf(c, HERE)),
        items.map(lambda c: AnyOf(c, HERE)),
        children.map(lambda c: Not(c, HERE)),
    )


leaves: st.SearchStrategy[Condition] = st.one_of(
    field_tests(),
    st.sampled_from(["ProcessCreate", "Login"]).map(lambda n: EventIs(frozenset({n}), HERE)),
    st.sampled_from(["agent", "hub"]).map(lambda s: SourceIs(s, HERE)),  # type: ignore[arg-type]
    st.sampled_from(["cameras", "gateways"]).map(
        lambda g: FieldTest("Group", "equals", (g,), HERE)
    ),
)
trees = st.recursive(leaves, _combine, max_leaves=8)


@st.composite
def observations(draw: st.DrawFn) -> Observation:
    fields = draw(st.dictionaries(st.sampled_from(FIELDS[:4]), values, max_size=4))
    if draw(st.booleans()):
        fields["ExtraDetails"] = {"Parent": draw(values)}
    # Agent events come from agents, hub operations from the hub (the index relies on it).
    name = draw(st.sampled_from(["ProcessCreate", "Login", "authenticate"]))
    source = "hub" if name == "authenticate" else "agent"
    return make_obs(
        name, fields, group=draw(st.sampled_from(["cameras", "gateways"])), source=source
    )


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(trees, st.lists(observations(), min_size=1, max_size=6))
def test_compiled_conditions_agree_with_the_naive_reading(
    condition: Condition, seen: list[Observation]
) -> None:
    compiled = compile_condition(condition, NO_INTEL)
    for obs in [*seen, *seen]:  # twice: remembered answers must be the same answers
        assert compiled(obs) is naive(condition, obs), (condition, obs.fields)


def _rule(index: int, match: Condition) -> Rule:
    return Rule(
        id=f"R{index}",
        name="r",
        severity="Low",
        description=parse_template("d", HERE),
        location=HERE,
        match=match,
    )


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(trees, min_size=1, max_size=6),
    st.lists(observations(), min_size=1, max_size=8),
    st.integers(1, 3),
)
def test_the_engine_fires_exactly_the_rules_whose_match_holds(
    matches: list[Condition], seen: list[Observation], repeat: int
) -> None:
    rules = [_rule(i, m) for i, m in enumerate(matches)]
    engine = RuleEngine(RuleSet(tuple(rules)))
    for obs in seen * repeat:  # repeated values: answered from the engine's memory
        fired = [d.rule_id for d in engine.observe(obs)]
        assert fired == [r.id for r in rules if r.match is not None and naive(r.match, obs)]


# --- memories are bounded, and stop when values do not repeat ------------------------------


def test_a_bucket_pauses_remembering_while_values_do_not_repeat(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(buckets, "MEMO_CHECK", 8)
    monkeypatch.setattr(buckets, "MEMO_PAUSE", 10)
    match = AllOf(
        (
            EventIs(frozenset({"ProcessCreate"}), HERE),
            FieldTest("CommandLine", "contains", ("nc",), HERE),
        ),
        HERE,
    )
    engine = RuleEngine(RuleSet((_rule(0, match),)))
    bucket = engine._buckets.get(("ProcessCreate", "default"))
    for n in range(8):  # every value new: the check after 8 lookups pauses the memory
        command = f"nc -l {n}" if n % 2 else f"ls {n}"
        assert len(engine.observe(make_obs(fields={"CommandLine": command}))) == n % 2
    bucket = engine._buckets[("ProcessCreate", "default")]
    assert bucket._paused == 10 and not bucket._memo
    for n in range(30):  # paused, then remembering again: the same answers throughout
        command = ["nc -l 1", "ls"][n % 2]
        assert len(engine.observe(make_obs(fields={"CommandLine": command}))) == int(n % 2 == 0)
    assert bucket._paused == 0 and bucket._memo


def test_a_bucket_remembers_repeated_values_within_its_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(buckets, "MEMO_KEYS", 8)
    monkeypatch.setattr(buckets, "MEMO_CHECK", 64)
    match = FieldTest("CommandLine", "contains", ("nc",), HERE)
    engine = RuleEngine(RuleSet((_rule(0, match),)))
    for n in range(200):
        command = ["nc -l 1", "ls", "nc -e sh"][n % 3] if n % 10 else f"unique {n}"
        assert len(engine.observe(make_obs(fields={"CommandLine": command}))) == int(
            "nc" in command
        )
    memo = engine._buckets[("ProcessCreate", "default")]._memo
    assert memo is not None and 0 < len(memo) <= 8


def test_values_of_different_types_are_remembered_apart() -> None:
    # 1, 1.0 and True are equal in Python; to these operators they are "1", "1.0" and "true".
    match = FieldTest("RemotePort", "contains", ("1.0",), HERE)
    engine = RuleEngine(RuleSet((_rule(0, match),)))
    for value, fires in [(1, False), (1.0, True), (True, False), (1.0, True), (1, False)]:
        assert len(engine.observe(make_obs(fields={"RemotePort": value}))) == int(fires)
    negative = RuleEngine(RuleSet((_rule(0, FieldTest("RemotePort", "contains", ("-",), HERE)),)))
    for value, fires in [(0.0, False), (-0.0, True), (0.0, False), (-0.0, True)]:
        assert len(negative.observe(make_obs(fields={"RemotePort": value}))) == int(fires)


def test_the_regex_memory_is_bounded_and_skips_long_texts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(conditions, "MEMO_ENTRIES", 4)
    test = FieldTest("CommandLine", "regex", ("nc",), HERE, pattern=re.compile("nc"))
    compiled = compile_condition(test, NO_INTEL)
    for n in range(20):
        assert compiled(make_obs(fields={"CommandLine": f"nc {n}"}))
        assert not compiled(make_obs(fields={"CommandLine": f"ls {n}"}))
    long = "x" * (conditions.MEMO_TEXT + 1)
    assert compiled(make_obs(fields={"CommandLine": long + "nc"}))
    assert not compiled(make_obs(fields={"CommandLine": long}))


# --- the group filter ------------------------------------------------------------------------


NOT_PI = "{not: {field: UserName, equals: pi}}"


@pytest.mark.parametrize(
    ("match", "filtered"),
    [
        (f"{{event: ProcessCreate, field: Group, equals: cameras, not: {NOT_PI[6:-1]}}}", True),
        (f"{{event: ProcessCreate, all: [{{field: Group, equals: cameras}}, {NOT_PI}]}}", True),
        (f"{{all: [{{all: [{{not: {{field: Group, in: [gateways]}}}}]}}, {NOT_PI}]}}", True),
        (f"{{any: [{{field: Group, equals: cameras}}, {NOT_PI}]}}", False),
    ],
)
def test_group_tests_are_decided_once_per_group_wherever_they_sit_in_an_all(
    match: str, filtered: bool
) -> None:
    from iotsec.analytics.rules import load_rules_text  # noqa: PLC0415 - local to this test

    head = "rules:\n  - id: R\n    name: r\n    severity: Low\n    description: d\n"
    text = f"{head}    match: {match}\n"
    ruleset = load_rules_text(text)
    compiled = compile_rule(ruleset.rules[0], NO_INTEL, max_keys=9, max_entries=9, max_evidence=9)
    assert (compiled.group is not None) is filtered
    engine = RuleEngine(ruleset)
    for group, user in [("cameras", "root"), ("gateways", "root"), ("cameras", "pi")]:
        obs = make_obs(fields={"UserName": user}, group=group)
        assert_match = ruleset.rules[0].match
        assert assert_match is not None
        assert len(engine.observe(obs)) == int(naive(assert_match, obs))


# --- prefilter literal sets ----------------------------------------------------------------

texts = st.lists(
    st.one_of(
        st.text(alphabet=st.sampled_from(list("abcehilmnoprstuvy -|/>;.\u017f"))),
        st.sampled_from(["nc -e", "cp x /usr/bin/ls", "echo > /bin/ls", "sh -c x | telnet"]),
    ),
    max_size=5,
).map(" ".join)


@settings(max_examples=300)
@given(texts, st.sampled_from(PATTERNS))
def test_every_literal_set_is_in_every_match(text: str, pattern: str) -> None:
    compiled = re.compile(pattern)
    if text.isascii() and compiled.search(text):
        lowered = text.lower()
        for factor in factors(compiled):
            assert any(needle in lowered for needle in factor), (factor, text)


# --- observations ----------------------------------------------------------------------------


def test_observations_still_answer_dataclasses_and_stay_out_of_the_collector() -> None:
    obs = make_obs(fields={"Executable": "/bin/sh"})
    assert [f.name for f in fields(obs)][:6] == [
        "source", "name", "time", "device", "fields", "event_id",
    ]  # fmt: skip
    changed = replace(obs, event_id="e2", row_index=3)
    assert (changed.event_id, changed.row_index, changed.fields) == ("e2", 3, obs.fields)
    assert changed.evidence_id == "e2:3"
    assert not gc.is_tracked(obs)
    with pytest.raises(AttributeError):
        obs.name = "Login"  # type: ignore[misc]
