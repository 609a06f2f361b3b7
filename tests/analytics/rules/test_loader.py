"""Rule files to typed rules: what loads, and every problem with its exact file:line:col."""

from __future__ import annotations

import re
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from iotsec.analytics.errors import RuleError
from iotsec.analytics.rules import (
    AnyOf,
    EventIs,
    FieldTest,
    RuleErrors,
    RuleSet,
    load_rules,
    load_rules_text,
)
from iotsec.analytics.rules.model import AllOf, Not, SourceIs

SPEC = """\
rules:
  - id: IoT_ReverseShell
    name: Reverse shell
    severity: High
    tactic: Execution
    technique: T1059.004
    description: >-
      {Executable} on {DeviceId} opened a reverse shell: {CommandLine}
    remediation:
      - Isolate the device and review the process tree of {Executable}.
    dedup: 1h
    match:
      event: ProcessCreate
      any:
        - field: CommandLine
          regex: '(?i)\\bbash\\s+-i\\s*>&?\\s*/dev/(tcp|udp)/'
        - field: CommandLine
          regex: '(?i)\\bnc(at)?\\b.*\\s-e\\s'

suppressions:
  - rule: IoT_LocalLoginSuccess
    scope: {device: dev-7}
    expires: 2027-01-01T00:00:00Z
    reason: lab device, logins expected
    match: {field: UserName, equals: ci}
"""

HEAD = """\
rules:
  - id: R1
    name: a rule
    severity: Low
"""


def problems(text: str, source: str = "t.yaml") -> list[str]:
    """``line:col: reason`` for every problem loading ``text`` (empty when it loads)."""
    try:
        load_rules_text(text, source=source)
    except RuleErrors as exc:
        assert all(e.source == source for e in exc.errors)
        return [f"{e.line}:{e.column}: {e.reason}" for e in exc.errors]
    return []


def rule_problems(body: str) -> list[str]:
    """Problems of one rule: ``HEAD`` plus ``body`` (indented as rule keys, from line 5)."""
    return problems(HEAD + textwrap.indent(textwrap.dedent(body), "    "))


def test_the_reference_example_loads_into_typed_frozen_rules() -> None:
    ruleset = load_rules_text(SPEC, source="spec.yaml")
    (rule,) = ruleset.rules
    assert (rule.id, rule.name, rule.severity) == ("IoT_ReverseShell", "Reverse shell", "High")
    assert (rule.tactics, rule.techniques) == (("Execution",), ("T1059.004",))
    assert rule.dedup == timedelta(hours=1)
    assert rule.description.names == ("Executable", "DeviceId", "CommandLine")
    assert [t.names for t in rule.remediation] == [("Executable",)]
    assert str(rule.location) == "spec.yaml:2:5"
    assert isinstance(rule.match, AllOf)
    event, any_of = rule.match.items
    assert event == EventIs(frozenset({"ProcessCreate"}), event.location)
    assert isinstance(any_of, AnyOf)
    first = any_of.items[0]
    assert isinstance(first, FieldTest) and first.pattern is not None
    assert first.pattern.flags & re.IGNORECASE
    assert str(first.location) == "spec.yaml:15:18"
    (suppression,) = ruleset.suppressions
    assert suppression.scope == "device" and suppression.target == "dev-7"
    assert suppression.expires == datetime(2027, 1, 1, tzinfo=UTC)
    assert suppression.id == "spec.yaml:21:5"
    with pytest.raises(AttributeError):
        rule.id = "other"  # type: ignore[misc]


def test_an_empty_file_is_an_empty_ruleset() -> None:
    assert len(load_rules_text("")) == 0
    assert len(load_rules_text("# only a comment\n")) == 0
    assert len(load_rules_text("rules: []\n")) == 0


def test_every_problem_is_collected_in_file_order() -> None:
    text = (
        HEAD
        + "    description: d\n    match: {event: ProcessCreate, feild: x}\n"
        + (
            "  - id: R2\n    name: b\n    severity: Urgent\n    description: d\n"
            "    match: {event: Login, field: Result, equals: Fail}\n"
        )
    )
    with pytest.raises(RuleErrors) as caught:
        load_rules_text(text, source="many.yaml")
    errors = caught.value.errors
    assert [(e.line, e.column, e.rule_id) for e in errors] == [(6, 35, "R1"), (9, 15, "R2")]
    assert isinstance(caught.value, RuleError)
    assert str(caught.value).splitlines() == [str(e) for e in errors]
    assert str(errors[0]) == (
        "many.yaml:6:35: unknown key 'feild' in a condition; did you mean 'field'? (rule R1)"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("rules: [\n", "2:1: YAML: while parsing a flow node expected the node content"),
        ("- a\n- b\n", "1:1: a rule file must be a mapping (key: value), not a list"),
        ("rule: []\n", "1:1: unknown key 'rule' in a rule file; did you mean 'rules'?"),
        ("rules: {}\n", "1:8: rules must be a list, not a mapping"),
        ("rules: [1]\n", "1:9: a rule must be a mapping (key: value), not '1'"),
        ("rules: []\nrules: []\n", "2:1: duplicate key 'rules' (first at line 1)"),
        (
            "rules: !!python/object:os.system []\n",
            "1:8: unsupported YAML tag 'tag:yaml.org,2002:python/object:os.system' in rules",
        ),
        ("rules:\n  - id: !!binary aGk=\n", "2:9: unsupported YAML tag 'tag:yaml.org,2002:binary'"),
        ("a: &x [*x]\n", "1:4: YAML: an alias refers to a value that contains it"),
        ("base: &b {a: 1}\nrules:\n  - <<: *b\n", "3:5: YAML merge keys (<<) are not"),
        ("---\nrules: []\n---\nrules: []\n", "3:1: YAML: expected a single document"),
    ],
)
def test_file_level_problems(text: str, expected: str) -> None:
    found = problems(text)
    assert any(p.startswith(expected) for p in found), found


def test_a_billion_laughs_document_is_refused_before_it_is_walked() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    found = problems("\n".join(lines) + "\n")
    assert len(found) == 1
    assert "document too large" in found[0]


def test_a_deeply_nested_document_is_refused() -> None:
    found = problems("rules: " + "[" * 70 + "]" * 70 + "\n")
    assert len(found) == 1 and "too deep" in found[0]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        # keys of a rule
        ("description: d\nmatch: {event: Login}\nseverty: High\n", "7:5: unknown key 'severty'"),
        ("match: {event: Login}\n", "2:5: a rule needs 'description'"),
        ("description: d\n", "2:5: a rule needs match (or sequence)"),
        ("description: d\ntactic: Exection\nmatch: {event: Login}\n", "6:13: unknown MITRE"),
        ("description: d\ntechnique: [T1059, 1059]\nmatch: {event: Login}\n", "6:24: bad MITRE"),
        ("description: d\ndedup: 5 minutes\nmatch: {event: Login}\n", "6:12: dedup: '5 minutes'"),
        ("description: d\ndedup: 0s\nmatch: {event: Login}\n", "6:12: dedup must be longer"),
        ("description: d\ndedup: 400d\nmatch: {event: Login}\n", "6:12: dedup must be at most"),
        (
            "description: d\nkey: [Nope]\nmatch: {event: Login}\n",
            "6:11: Login observations have no field 'Nope'",
        ),
        ("description: d\nmatch: {event: Login}\nthreshold: {count: 2}\n", "7:16: threshold needs"),
        # conditions
        ("description: d\nmatch: {}\n", "6:12: match: an empty condition"),
        ("description: d\nmatch: [event: Login]\n", "6:12: match (a condition) must be a mapping"),
        ("description: d\nmatch: {equals: x}\n", "6:13: operator 'equals' needs a 'field'"),
        ("description: d\nmatch: {field: Name}\n", "6:13: a field test needs one operator"),
        ("description: d\nmatch: {field: Name, equals: a, in: [b]}\n", "6:37: a field test takes"),
        ("description: d\nmatch: {field: Name, gt: 1, case: sensitive}\n", "6:33: 'case' does not"),
        ("description: d\nmatch: {field: Name, equals: a, case: upper}\n", "6:43: case must be"),
        ("description: d\nmatch: {field: Name, equals: [a]}\n", "6:34: equals takes one value"),
        ("description: d\nmatch: {field: Name, equals: ~}\n", "6:34: equals is empty"),
        ("description: d\nmatch: {field: Name, in: a}\n", "6:30: in takes a list"),
        ("description: d\nmatch: {field: Name, in: []}\n", "6:30: in must not be empty"),
        ("description: d\nmatch: {field: Name, contains: ''}\n", "6:36: contains must not be"),
        ("description: d\nmatch: {field: Name, exists: yes please}\n", "6:34: exists must be true"),
        ("description: d\nmatch: {field: Name, gte: ten}\n", "6:31: gte must be a number"),
        ("description: d\nmatch: {field: Name, gte: .nan}\n", "6:31: gte must be a finite"),
        (
            "description: d\nmatch: {field: Name, intel: ipp}\n",
            "6:33: unknown indicator kind 'ipp'",
        ),
        ("description: d\nmatch: {source: device}\n", "6:21: source must be agent or hub"),
        ("description: d\nmatch: {all: []}\n", "6:18: all must not be empty"),
        ("description: d\nmatch: {not: [a]}\n", "6:18: not (a condition) must be"),
        ("description: d\nmatch: {field: 'a..b', exists: true}\n", "6:20: bad field path"),
        ("description: d\nmatch: {event: ProcesCreate}\n", "6:20: unknown event 'ProcesCreate'"),
        ("description: d\nmatch: {event: login}\n", "6:20: unknown event 'login'"),
        # fields the observations cannot have
        (
            "description: d\nmatch: {event: ProcessCreate, field: ComandLine, exists: true}\n",
            "6:42: ProcessCreate observations have no field 'ComandLine'; did you mean "
            "'CommandLine'?",
        ),
        (
            "description: d\nmatch: {event: Login, field: Result.Code, exists: true}\n",
            "6:34: field 'Result' has no sub-fields",
        ),
        (
            "description: d\nmatch: {source: hub, field: CommandLine, exists: true}\n",
            "6:33: hub observations have no field 'CommandLine'",
        ),
    ],
)
def test_rule_problems_at_their_position(body: str, expected: str) -> None:
    found = rule_problems(body)
    assert any(p.startswith(expected) for p in found), found


def test_unknown_keys_list_the_choices_when_nothing_is_close() -> None:
    (found,) = rule_problems("description: d\nmatch: {event: Login}\nzzz: 1\n")
    assert found == (
        "7:5: unknown key 'zzz' in a rule; expected one of: id, name, severity, tactic, "
        "technique, description, remediation, dedup, key, match, threshold, sequence"
    )


@pytest.mark.parametrize(
    ("line", "column"),
    [
        ("      regex: ab(c\n", 16),  # plain: '(' is the 3rd character
        ("      regex: 'it''s(x'\n", 20),  # '' is one character
        ('      regex: "\\\\d\\t(x"\n', 20),  # \\ and \t are one character each
    ],
)
def test_a_bad_regex_points_at_the_character(line: str, column: int) -> None:
    text = HEAD + "    description: d\n    match:\n      field: CommandLine\n" + line
    (found,) = problems(text)
    assert found.startswith(f"8:{column}: bad regular expression: missing ), unterminated"), found


def test_a_bad_regex_in_a_literal_block_points_at_its_line() -> None:
    text = HEAD + (
        "    description: d\n    match:\n      field: CommandLine\n      regex: |-\n"
        "        first\n        sec(ond\n"
    )
    (found,) = problems(text)
    assert found.startswith("10:12: bad regular expression: missing )"), found


def test_cidr_problems_name_the_network() -> None:
    found = rule_problems(
        "description: d\nmatch: {field: RemoteAddress, cidr: [10.0.0.1/8, nope, '::1/129']}\n"
    )
    assert found == [
        "6:42: cidr: '10.0.0.1/8' has host bits set; did you mean '10.0.0.0/8'?",
        "6:54: cidr: 'nope' is not an IPv4 or IPv6 network",
        "6:60: cidr: '::1/129' is not an IPv4 or IPv6 network",
    ]


@pytest.mark.parametrize(
    ("written", "seconds"),
    [("30s", 30), ("5m", 300), ("1h", 3600), ("2d", 172800), ("1h30m", 5400), ("PT5M", 300)],
)
def test_durations(written: str, seconds: int) -> None:
    ruleset = load_rules_text(
        HEAD
        + f"    description: d\n    dedup: {written}\n    match: {{}}\n".replace(
            "{}", "{event: Login}"
        )
    )
    assert ruleset.rules[0].dedup == timedelta(seconds=seconds)


def test_names_are_canonicalised() -> None:
    text = HEAD.replace("Low", "informational") + (
        "    tactic: [CommandAndControl, defense evasion]\n    technique: t1059.004\n"
        "    description: d\n    match: {event: Login}\n"
    )
    (rule,) = load_rules_text(text).rules
    assert rule.severity == "Informational"
    assert rule.tactics == ("Command and Control", "Defense Evasion")
    assert rule.techniques == ("T1059.004",)


def test_hub_operations_and_their_fields() -> None:
    (rule,) = load_rules_text(
        HEAD
        + "    description: '{SourceIp} failed: {Reason} ({Properties.Thumbprint})'\n"
        + "    match: {event: authenticate, source: hub, field: Result, equals: Failure}\n"
    ).rules
    assert rule.description.names == ("SourceIp", "Reason", "Properties.Thumbprint")


def test_template_problems() -> None:
    found = rule_problems(
        "description: '{Executable} saw {ComandLine} {count}'\n"
        "remediation: ['ok {ExtraDetails.HitCount} {Tags.site}', 'oops }']\n"
        "match: {event: ProcessCreate}\n"
    )
    assert found == [
        "5:36: ProcessCreate observations have no field 'ComandLine'; did you mean 'CommandLine'?",
        "5:49: {count} is only for threshold and sequence rules",
        "6:67: remediation: unmatched '}' (write '}}' for a literal brace)",
    ]


def test_templates_of_counting_and_intel_rules() -> None:
    load_rules_text(
        HEAD
        + "    description: '{count} in {window} from {RemoteAddress} ({indicator}, {feed})'\n"
        + "    match: {event: Login, field: RemoteAddress, intel: ip}\n"
        + "    threshold: {count: 3, window: 1m, by: [RemoteAddress]}\n"
    )
    found = rule_problems("description: '{feed}'\nmatch: {event: Login}\n")
    assert found == ["5:19: {feed} is only for rules with an intel test"]


def test_threshold_problems() -> None:
    found = rule_problems(
        "description: d\nmatch: {event: Login}\n"
        "threshold: {count: 0, window: 5m, by: [RemoteAddres], max: 1, size: 2}\n"
    )
    assert found == [
        "7:24: count must be at least 1",
        "7:67: unknown key 'size' in threshold; expected one of: count, window, by, max",
    ]
    found = rule_problems(
        "description: d\nmatch: {event: Login}\nthreshold: {count: 5, window: 5m, max: 2}\n"
    )
    assert found == ["7:44: max (2) must be at least count (5)"]
    found = rule_problems(
        "description: d\nmatch: {event: Login}\n"
        "threshold: {count: 5, window: 5m, by: [RemoteAddres]}\n"
    )
    assert found == [
        "7:44: Login observations have no field 'RemoteAddres'; did you mean 'RemoteAddress'?"
    ]


def test_threshold_defaults_and_max_only() -> None:
    (rule,) = load_rules_text(
        HEAD + "    description: d\n    match: {event: ConnectionCreate}\n"
        "    threshold: {max: 30, window: PT5M}\n"
    ).rules
    assert rule.threshold is not None
    assert (rule.threshold.count, rule.threshold.max) == (None, 30)
    assert rule.threshold.by == ("DeviceId",)
    assert rule.dedup_fields == ("DeviceId",)


SEQUENCE = """\
    description: '{UserName} from {RemoteAddress} after {count}'
    sequence:
      within: 10m
      by: [DeviceId, RemoteAddress]
      steps:
        - name: failures
          match: {event: Login, field: Result, equals: Fail}
          count: 5
        - name: success
          match: {event: Login, field: Result, equals: Success}
"""


def test_a_sequence_loads() -> None:
    (rule,) = load_rules_text(HEAD + SEQUENCE).rules
    assert rule.sequence is not None and rule.match is None
    assert [(s.name, s.count) for s in rule.sequence.steps] == [("failures", 5), ("success", 1)]
    assert rule.sequence.within == timedelta(minutes=10)


def test_sequence_problems() -> None:
    found = problems(HEAD + SEQUENCE + "    match: {event: Login}\n")
    assert found == ["15:5: a sequence rule has no top-level match (steps match)"]
    found = problems(
        HEAD
        + SEQUENCE.replace("name: success", "name: failures").replace(
            "by: [DeviceId, RemoteAddress]", "by: [DeviceId, RemoteAddress]"
        )
    )
    assert found == ["13:11: duplicate step name 'failures'"]
    found = problems(
        HEAD
        + SEQUENCE.replace(
            "{event: Login, field: Result, equals: Success}", "{event: ProcessCreate}"
        )
    )
    assert found == [
        "8:22: ProcessCreate observations of step 'success' have no field 'RemoteAddress'"
    ]
    one_step = "    description: d\n    sequence:\n      within: 1m\n      steps:\n" + (
        "        - match: {event: Login}\n"
    )
    assert problems(HEAD + one_step) == ["9:9: a sequence needs at least two steps"]


def test_suppression_forms() -> None:
    text = """\
suppressions:
  - id: lab
    rule: "*"
    scope: everywhere
    expires: 2030-01-01
    reason: lab
  - rule: IoT_X
    scope: {group: cameras}
    expires: 2030-01-01T10:00:00
    reason: tuning
"""
    first, second = load_rules_text(text, source="s.yaml").suppressions
    assert (first.id, first.rule, first.scope) == ("lab", "*", "everywhere")
    assert first.expires == datetime(2030, 1, 1, tzinfo=UTC)
    assert (second.id, second.scope, second.target) == ("s.yaml:7:5", "group", "cameras")
    assert second.expires == datetime(2030, 1, 1, 10, tzinfo=UTC)


def test_suppression_problems() -> None:
    text = """\
suppressions:
  - rule: "bad id!"
    scope: {device: a, group: b}
    expires: next year
  - id: x
    rule: "*"
    scope: somewhere
    expires: 2030-01-01
    reason: r
    match: {field: UserNme, equals: x}
  - id: y
    rule: "*"
    scope: everywhere
    expires: 2030-01-01
    reason: r
  - id: y
    rule: "*"
    scope: everywhere
    expires: 2030-01-01
    reason: r
"""
    assert problems(text) == [
        "2:5: a suppression needs 'reason'",
        "2:11: rule must be a rule id or '*', not 'bad id!'",
        "3:12: scope names exactly one of device or group",
        "4:14: expires: 'next year' is not an ISO 8601 time (2027-01-01T00:00:00Z)",
        "7:12: scope must be {device: id}, {group: name} or everywhere, not 'somewhere'",
        "10:20: observations have no field 'UserNme'; did you mean 'UserName'?",
        "16:5: duplicate suppression id 'y' (first defined at t.yaml:11:5)",
    ]


def test_duplicate_rule_ids_in_one_file_and_across_files(tmp_path: Path) -> None:
    rule = (
        "  - id: Same\n    name: n\n    severity: Low\n    description: d\n"
        "    match: {event: Login}\n"
    )
    assert problems("rules:\n" + rule + rule) == [
        "7:5: duplicate rule id 'Same' (first defined at t.yaml:2:5)"
    ]
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("rules:\n" + rule)
    b.write_text("rules:\n" + rule)
    with pytest.raises(RuleErrors) as caught:
        load_rules([a, b])
    (error,) = caught.value.errors
    assert (error.source, error.line, error.column) == (str(b), 2, 5)
    assert f"first defined at {a}:2:5" in error.reason


def test_files_that_cannot_be_read(tmp_path: Path) -> None:
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"rules: [\xff]\n")
    with pytest.raises(RuleErrors) as caught:
        load_rules([tmp_path / "missing.yaml", binary])
    first, second = caught.value.errors
    assert first.reason.startswith("cannot read: No such file")
    assert second.reason == "not UTF-8 text (byte 8)"


def test_merge_builds_a_new_set_and_refuses_duplicate_ids() -> None:
    one = load_rules_text(HEAD + "    description: d\n    match: {event: Login}\n", source="a")
    other = load_rules_text(
        HEAD.replace("R1", "R2") + "    description: d\n    match: {event: Login}\n", source="b"
    )
    merged = one.merge(other)
    assert isinstance(merged, RuleSet) and merged.ids == ("R1", "R2")
    assert one.ids == ("R1",)
    assert "R2" in merged and merged.get("R2") is other.rules[0]
    with pytest.raises(RuleErrors, match="duplicate rule id 'R1'"):
        merged.merge(one)


def test_condition_trees() -> None:
    (rule,) = load_rules_text(
        HEAD
        + "    description: d\n    match:\n      source: agent\n"
        + "      not: {field: UserName, in: [root, admin], case: sensitive}\n"
    ).rules
    assert isinstance(rule.match, AllOf)
    source, negation = rule.match.items
    assert isinstance(source, SourceIs) and source.source == "agent"
    assert isinstance(negation, Not) and isinstance(negation.item, FieldTest)
    assert negation.item.values == ("root", "admin") and negation.item.case_sensitive


def test_scalar_types_are_kept_for_equals() -> None:
    (rule,) = load_rules_text(
        HEAD + "    description: d\n    match:\n      any:\n"
        "        - {field: RemotePort, equals: 22}\n        - {field: Name, equals: 'yes'}\n"
        "        - {field: Name, equals: true}\n        - {field: Name, in: [1.5, x]}\n"
    ).rules
    assert isinstance(rule.match, AnyOf)
    values = [t.values for t in rule.match.items if isinstance(t, FieldTest)]
    assert values == [(22,), ("yes",), (True,), (1.5, "x")]
