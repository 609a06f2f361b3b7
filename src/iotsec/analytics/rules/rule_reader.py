"""One rule mapping to a typed ``Rule`` (docs/rules.md "A file", "Counting", "Sequences").

Besides the shape of each key, a rule is checked as a whole: every field it tests, counts
``by`` or names in a template must be a field its observations can have (the table in
``iotsec.analytics.rules.fields``), so a misspelt ``{ComandLine}`` is a load error with a
suggestion rather than a hole in every alert.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import get_args

from yaml.nodes import Node, ScalarNode

from iotsec.analytics.detection import Severity
from iotsec.analytics.rules.condition_reader import FIELD_PATH, read_condition
from iotsec.analytics.rules.fields import (
    check_field,
    field_scope,
    field_tests,
    scoped_tests,
    suggest,
)
from iotsec.analytics.rules.model import (
    AllOf,
    AnyOf,
    Condition,
    EventIs,
    Rule,
    Sequence,
    SourceIs,
    SourceLocation,
    Step,
    Template,
    Threshold,
)
from iotsec.analytics.rules.templates import TemplateSyntaxError, parse_template
from iotsec.analytics.rules.yamlnodes import Entry, Reader

__all__ = ["RULE_ID", "TACTICS", "TEMPLATE_WORDS", "check_path", "read_rule", "required"]

_RULE_KEYS = (
    "id",
    "name",
    "severity",
    "tactic",
    "technique",
    "description",
    "remediation",
    "dedup",
    "key",
    "match",
    "threshold",
    "sequence",
)
_THRESHOLD_KEYS = ("count", "window", "by", "max")
_SEQUENCE_KEYS = ("within", "by", "steps")
_STEP_KEYS = ("name", "match", "count")
_SEVERITIES: tuple[Severity, ...] = get_args(Severity)
#: What a rule id looks like (ASC's alert types fit: ``IoT_ReverseShell``).
RULE_ID = re.compile(r"[A-Za-z][A-Za-z0-9_.:-]{0,127}")
_TECHNIQUE = re.compile(r"T\d{4}(?:\.\d{3})?")
#: MITRE ATT&CK tactics (Enterprise, plus the ICS matrix's own); written with spaces.
TACTICS = (
    "Reconnaissance",
    "Resource Development",
    "Initial Access",
    "Execution",
    "Persistence",
    "Privilege Escalation",
    "Defense Evasion",
    "Credential Access",
    "Discovery",
    "Lateral Movement",
    "Collection",
    "Command and Control",
    "Exfiltration",
    "Impact",
    "Evasion",
    "Inhibit Response Function",
    "Impair Process Control",
)
_TACTIC_KEYS = {re.sub(r"[\s_-]", "", t).casefold(): t for t in TACTICS}
#: Template names that are not fields: counts and windows of threshold and sequence rules, and
#: the indicator and feed of a rule with an ``intel`` test.
TEMPLATE_WORDS = ("count", "window", "indicator", "feed")
#: ``by`` when a threshold or sequence does not say: per device.
_DEFAULT_BY = ("DeviceId",)


@dataclass(slots=True)
class _Parts:
    """What could be read of one rule, for the checks that need several keys at once."""

    match: Condition | None = None
    threshold: Threshold | None = None
    sequence: Sequence | None = None
    key: tuple[str, ...] = ()
    key_node: Node | None = None
    window_node: Node | None = None
    templates: list[tuple[Template, ScalarNode]] = field(default_factory=list)


def read_rule(r: Reader, node: Node) -> Rule | None:
    """One rule, or None after recording every problem found in it."""
    entries = r.mapping(node, "a rule")
    if entries is None:
        return None
    start = len(r.errors)
    rule_id = _rule_id(r, node, entries)
    r.rule_id = rule_id
    r.known_keys(entries, _RULE_KEYS, "a rule")
    name = required(r, node, entries, "name", "a rule")
    display = r.text(name, "name") if name is not None else None
    severity = _severity(r, node, entries)
    tactics = _tactics(r, entries)
    techniques = _techniques(r, entries)
    parts = _Parts()
    description_node = required(r, node, entries, "description", "a rule")
    description = _template(r, parts, description_node, "description")
    remediation = tuple(
        t
        for item in (r.one_or_more(entries["remediation"][1]) if "remediation" in entries else ())
        if (t := _template(r, parts, item, "remediation")) is not None
    )
    dedup = r.duration(entries["dedup"][1], "dedup") if "dedup" in entries else None
    if "key" in entries:
        parts.key_node = entries["key"][1]
        parts.key = _fields(r, parts.key_node, "key") or ()
    _read_body(r, node, entries, parts)
    _check_fields(r, parts)
    if len(r.errors) > start:
        return None
    assert rule_id is not None and display is not None and severity is not None
    assert description is not None
    return Rule(
        id=rule_id,
        name=display,
        severity=severity,
        description=description,
        location=r.at(node),
        match=parts.match,
        threshold=parts.threshold,
        sequence=parts.sequence,
        tactics=tactics,
        techniques=techniques,
        remediation=remediation,
        key=parts.key,
        **({"dedup": dedup[0]} if dedup else {}),
    )


def _read_body(r: Reader, node: Node, entries: dict[str, Entry], parts: _Parts) -> None:
    """``match`` with an optional ``threshold``, or ``sequence``."""
    if "match" in entries:
        parts.match = read_condition(r, entries["match"][1], "match")
    if "threshold" in entries:
        parts.window_node = entries["threshold"][1]
        parts.threshold = _threshold(r, parts.window_node)
        if "match" not in entries and "sequence" not in entries:
            r.error(entries["threshold"][0], "a threshold counts the observations of a match")
    if "sequence" in entries:
        parts.window_node = entries["sequence"][1]
        parts.sequence = _sequence(r, parts.window_node)
        if "match" in entries:
            r.error(entries["match"][0], "a sequence rule has no top-level match (steps match)")
        if "threshold" in entries:
            r.error(entries["threshold"][0], "a rule uses at most one of threshold and sequence")
    elif "match" not in entries and "threshold" not in entries:
        r.error(node, "a rule needs match (or sequence)")


def required(r: Reader, node: Node, entries: dict[str, Entry], key: str, what: str) -> Node | None:
    """The value node of ``key``, or None after recording that ``what`` needs it."""
    if key not in entries:
        r.error(node, f"{what} needs {key!r}")
        return None
    return entries[key][1]


def _rule_id(r: Reader, node: Node, entries: dict[str, Entry]) -> str | None:
    value_node = required(r, node, entries, "id", "a rule")
    if value_node is None:
        return None
    value = r.text(value_node, "id")
    if value is None:
        return None
    if not RULE_ID.fullmatch(value):
        r.error(
            value_node,
            f"bad rule id {value!r}: a letter, then letters, digits, '_', '.', ':' or '-' "
            "(at most 128)",
        )
        return None
    return value


def _severity(r: Reader, rule_node: Node, entries: dict[str, Entry]) -> Severity | None:
    node = required(r, rule_node, entries, "severity", "a rule")
    if node is None:
        return None
    value = r.text(node, "severity")
    if value is None:
        return None
    for severity in _SEVERITIES:
        if severity.casefold() == value.strip().casefold():
            return severity
    r.error(
        node,
        f"unknown severity {value!r}{suggest(value, _SEVERITIES)}"
        f" (one of {', '.join(_SEVERITIES)})",
    )
    return None


def _tactics(r: Reader, entries: dict[str, Entry]) -> tuple[str, ...]:
    if "tactic" not in entries:
        return ()
    found: list[str] = []
    for item, value in r.texts(entries["tactic"][1], "tactic") or ():
        tactic = _TACTIC_KEYS.get(re.sub(r"[\s_-]", "", value).casefold())
        if tactic is None:
            r.error(item, f"unknown MITRE ATT&CK tactic {value!r}{suggest(value, TACTICS)}")
        else:
            found.append(tactic)
    return tuple(found)


def _techniques(r: Reader, entries: dict[str, Entry]) -> tuple[str, ...]:
    if "technique" not in entries:
        return ()
    found: list[str] = []
    for item, value in r.texts(entries["technique"][1], "technique") or ():
        technique = value.strip().upper()
        if not _TECHNIQUE.fullmatch(technique):
            r.error(item, f"bad MITRE ATT&CK technique id {value!r} (write T1059 or T1059.004)")
        else:
            found.append(technique)
    return tuple(found)


def _template(r: Reader, parts: _Parts, node: Node | None, what: str) -> Template | None:
    if node is None:
        return None
    value = r.text(node, what)
    if value is None or not isinstance(node, ScalarNode):
        return None
    try:
        template = parse_template(value, r.at(node))
    except TemplateSyntaxError as exc:
        r.error(r.offset(node, exc.offset), f"{what}: {exc.reason}")
        return None
    parts.templates.append((template, node))
    return template


def _fields(r: Reader, node: Node, what: str) -> tuple[str, ...] | None:
    """A list of field paths (one name is accepted as a list of one); ``[]`` is allowed."""
    found: list[str] = []
    items = r.sequence(node, what, empty=True) if not isinstance(node, ScalarNode) else [node]
    for item in items or ():
        value = r.text(item, what)
        if value is None:
            continue
        if not FIELD_PATH.fullmatch(value):
            r.error(item, f"{what}: bad field path {value!r}")
            continue
        if value in found:
            r.error(item, f"{what}: {value!r} is listed twice")
            continue
        found.append(value)
    return tuple(found) if items is not None else None


def _threshold(r: Reader, node: Node) -> Threshold | None:
    entries = r.mapping(node, "threshold")
    if entries is None:
        return None
    start = len(r.errors)
    r.known_keys(entries, _THRESHOLD_KEYS, "threshold")
    count = r.integer(entries["count"][1], "count") if "count" in entries else None
    most = None
    if "max" in entries and _is_null(entries["max"][1]) is False:
        most = r.integer(entries["max"][1], "max", minimum=0)
    if "count" not in entries and most is None:
        r.error(node, "threshold needs count (or max)")
    if count is not None and most is not None and most < count:
        r.error(entries["max"][1], f"max ({most}) must be at least count ({count})")
    window = required(r, node, entries, "window", "threshold")
    span = r.duration(window, "window") if window is not None else None
    by = _fields(r, entries["by"][1], "by") if "by" in entries else _DEFAULT_BY
    if len(r.errors) > start or span is None or by is None:
        return None
    return Threshold(count, span[0], by, r.at(node), max=most, window_text=span[1])


def _is_null(node: Node) -> bool:
    return isinstance(node, ScalarNode) and node.tag == "tag:yaml.org,2002:null"


def _sequence(r: Reader, node: Node) -> Sequence | None:
    entries = r.mapping(node, "sequence")
    if entries is None:
        return None
    start = len(r.errors)
    r.known_keys(entries, _SEQUENCE_KEYS, "sequence")
    within = required(r, node, entries, "within", "sequence")
    span = r.duration(within, "within") if within is not None else None
    by = _fields(r, entries["by"][1], "by") if "by" in entries else _DEFAULT_BY
    steps: list[Step] = []
    steps_node = required(r, node, entries, "steps", "sequence")
    items = r.sequence(steps_node, "steps") if steps_node is not None else None
    if items is not None and len(items) < 2:
        r.error(steps_node or node, "a sequence needs at least two steps")
    names: dict[str, Node] = {}
    for index, item in enumerate(items or (), start=1):
        step = _step(r, item, index)
        if step is None:
            continue
        if step.name in names:
            r.error(item, f"duplicate step name {step.name!r}")
        names[step.name] = item
        steps.append(step)
    if len(r.errors) > start or span is None or by is None:
        return None
    return Sequence(span[0], by, tuple(steps), r.at(node), within_text=span[1])


def _step(r: Reader, node: Node, index: int) -> Step | None:
    entries = r.mapping(node, "a sequence step")
    if entries is None:
        return None
    start = len(r.errors)
    r.known_keys(entries, _STEP_KEYS, "a sequence step")
    name = r.text(entries["name"][1], "step name") if "name" in entries else f"step{index}"
    count = r.integer(entries["count"][1], "count") if "count" in entries else 1
    match_node = required(r, node, entries, "match", "a sequence step")
    match = read_condition(r, match_node, "match") if match_node is not None else None
    if len(r.errors) > start or name is None or count is None or match is None:
        return None
    return Step(name, match, r.at(node), count)


def _check_fields(r: Reader, parts: _Parts) -> None:
    """Every field, ``by``/``key`` name and template placeholder must be possible.

    Runs on whatever of the rule could be read, so these problems show up alongside others.
    """
    conditions: list[tuple[Condition, str]] = []
    if parts.match is not None:
        conditions.append((parts.match, _what(parts.match)))
    if parts.sequence is not None:
        conditions.extend(
            (step.match, f"{_what(step.match)} of step {step.name!r}")
            for step in parts.sequence.steps
        )
    if not conditions:
        return  # what the rule matches is unknown: nothing to check names against
    scope: frozenset[str] = frozenset()
    for condition, _label in conditions:
        scope |= field_scope(condition)
        for test, test_scope in scoped_tests(condition, field_scope(condition)):
            check_path(r, test.field, test_scope, _what(condition), test.location)
    window = parts.threshold or parts.sequence
    if window is not None and parts.window_node is not None:
        by_node = _child(parts.window_node, "by") or parts.window_node
        for name in window.by:
            # In a sequence, every step must have the fields the steps agree on.
            for condition, what in conditions:
                check_path(r, name, field_scope(condition), what, r.at(_item(by_node, name)))
    what = _what(parts.match) if parts.match is not None else "its steps' observations"
    if parts.key_node is not None:
        for name in parts.key:
            check_path(r, name, scope, what, r.at(_item(parts.key_node, name)))
    # A threshold or sequence with problems of its own still makes {count} a fair name.
    words = {"count", "window"} if window is not None or parts.window_node is not None else set()
    if any(t.intel is not None for c, _w in conditions for t in field_tests(c)):
        words |= {"indicator", "feed"}
    _check_templates(r, parts, words, scope, what)


def _check_templates(
    r: Reader, parts: _Parts, words: set[str], scope: frozenset[str], what: str
) -> None:
    for template, node in parts.templates:
        for name in template.names:
            reason = _placeholder_problem(name, words, scope, what)
            if reason is not None:
                r.error(r.offset(node, _placeholder_offset(template.text, name)), reason)


def _placeholder_problem(
    name: str, words: set[str], scope: frozenset[str], what: str
) -> str | None:
    if name in words:
        return None
    if name in ("count", "window"):
        return f"{{{name}}} is only for threshold and sequence rules"
    if name in ("indicator", "feed"):
        return f"{{{name}}} is only for rules with an intel test"
    reason = check_field(name, scope, what)
    if reason is not None and name.casefold() in words:
        return f"{what} have no field {name!r}; did you mean {name.casefold()!r}?"
    return reason


def _child(node: Node, key: str) -> Node | None:
    """The value node of ``key`` in a mapping node, or None."""
    for key_node, value in node.value if isinstance(node.value, list) else ():
        if isinstance(key_node, ScalarNode) and key_node.value == key:
            return value  # type: ignore[no-any-return]  # yaml's stubs type node values as Any
    return None


def _item(node: Node, value: str) -> Node:
    """The item of a list node that reads ``value`` (the node itself when it is not a list)."""
    for item in node.value if isinstance(node.value, list) else ():
        if isinstance(item, ScalarNode) and item.value == value:
            return item
    return node


def check_path(r: Reader, path: str, scope: frozenset[str], what: str, at: SourceLocation) -> None:
    """Record a problem at ``at`` when ``path`` is not a field in ``scope``."""
    reason = check_field(path, scope, what)
    if reason is not None:
        r.error(at, reason)


def _what(condition: Condition | None) -> str:
    names = sorted(_event_names(condition)) if condition is not None else []
    if not names:
        sources = _sources(condition) if condition is not None else set()
        return f"{sources.pop()} observations" if len(sources) == 1 else "its observations"
    return f"{', '.join(names[:3])}{' ...' if len(names) > 3 else ''} observations"


def _event_names(condition: Condition) -> set[str]:
    if isinstance(condition, EventIs):
        return set(condition.names)
    if isinstance(condition, (AllOf, AnyOf)):
        return {n for item in condition.items for n in _event_names(item)}
    return set()


def _sources(condition: Condition) -> set[str]:
    if isinstance(condition, SourceIs):
        return {condition.source}
    if isinstance(condition, AllOf):
        return {n for item in condition.items for n in _sources(item)}
    return set()


def _placeholder_offset(text: str, name: str) -> int:
    found = re.search(r"\{\s*" + re.escape(name) + r"\s*\}", text)
    return found.start() if found else 0
