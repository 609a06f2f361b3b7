"""Conditions as written to typed condition trees (docs/rules.md "Conditions").

``read_condition`` reads one condition mapping: the ``event``/``source`` keys, one field test
(``field`` plus exactly one operator, and ``case``), and the ``all``/``any``/``not``
combinators; several keys in one mapping mean all of them. Operands are checked and compiled
here, once: regular expressions (a bad one is reported at the character that is wrong), CIDR
networks, indicator kinds and numbers.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Sequence
from typing import get_args

from yaml.nodes import Node, ScalarNode

from iotsec.analytics.indicators import IndicatorKind
from iotsec.analytics.rules.fields import suggest, unknown_event
from iotsec.analytics.rules.model import (
    AllOf,
    AnyOf,
    Condition,
    EventIs,
    FieldTest,
    Network,
    Not,
    Operator,
    Scalar,
    SourceIs,
)
from iotsec.analytics.rules.yamlnodes import Entry, Reader

__all__ = ["FIELD_PATH", "OPERATORS", "read_condition"]

OPERATORS: tuple[Operator, ...] = get_args(Operator)
#: A field name, or a dotted path into a map (``ExtraDetails.HitCount``).
FIELD_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[^.\s{}]+)*")
_CONDITION_KEYS = ("event", "source", "field", "case", "all", "any", "not", *OPERATORS)
_STRING_OPERATORS = ("equals", "in", "contains", "startswith", "endswith", "regex")
_INTEL_KINDS: tuple[IndicatorKind, ...] = get_args(IndicatorKind)


def read_condition(r: Reader, node: Node, what: str) -> Condition | None:
    """One condition (docs/rules.md "Conditions"); None after recording its problems."""
    entries = r.mapping(node, f"{what} (a condition)")
    if entries is None:
        return None
    if not entries:
        r.error(node, f"{what}: an empty condition (write event:, field:, all:, any: or not:)")
        return None
    start = len(r.errors)
    r.known_keys(entries, _CONDITION_KEYS, "a condition")
    items = [
        *_event(r, entries),
        *_source(r, entries),
        *_field(r, entries),
        *_combined(r, entries),
    ]
    if len(r.errors) > start:
        return None
    return items[0] if len(items) == 1 else AllOf(tuple(items), r.at(node))


def _event(r: Reader, entries: dict[str, Entry]) -> list[Condition]:
    if "event" not in entries:
        return []
    names: list[str] = []
    for item, name in r.texts(entries["event"][1], "event") or ():
        problem = unknown_event(name.strip())
        if problem:
            r.error(item, problem)
        names.append(name.strip())
    return [EventIs(frozenset(names), r.at(entries["event"][1]))]


def _source(r: Reader, entries: dict[str, Entry]) -> list[Condition]:
    if "source" not in entries:
        return []
    node = entries["source"][1]
    source = r.text(node, "source")
    if source == "agent":
        return [SourceIs("agent", r.at(node))]
    if source == "hub":
        return [SourceIs("hub", r.at(node))]
    if source is not None:
        r.error(node, f"source must be agent or hub, not {source!r}")
    return []


def _field(r: Reader, entries: dict[str, Entry]) -> list[Condition]:
    operators = [k for k in entries if k in OPERATORS]
    if "field" in entries:
        test = _field_test(r, entries, operators)
        return [test] if test is not None else []
    if operators:
        r.error(entries[operators[0]][0], f"operator {operators[0]!r} needs a 'field'")
    elif "case" in entries:
        r.error(entries["case"][0], "'case' applies to a field test")
    return []


def _combined(r: Reader, entries: dict[str, Entry]) -> list[Condition]:
    found: list[Condition] = []
    for key, combine in (("all", AllOf), ("any", AnyOf)):
        if key in entries:
            parts = []
            for child in r.sequence(entries[key][1], key) or ():
                part = read_condition(r, child, key)
                if part is not None:
                    parts.append(part)
            found.append(combine(tuple(parts), r.at(entries[key][1])))
    if "not" in entries:
        inner = read_condition(r, entries["not"][1], "not")
        if inner is not None:
            found.append(Not(inner, r.at(entries["not"][1])))
    return found


def _field_test(r: Reader, entries: dict[str, Entry], operators: Sequence[str]) -> FieldTest | None:
    field_key, field_node = entries["field"]
    path = r.text(field_node, "field")
    if path is not None and not FIELD_PATH.fullmatch(path.strip()):
        r.error(field_node, f"bad field path {path!r}")
        path = None
    if not operators:
        r.error(field_key, "a field test needs one operator: " + ", ".join(OPERATORS))
        return None
    if len(operators) > 1:
        r.error(
            entries[operators[1]][0],
            f"a field test takes one operator, found {operators[0]!r} and {operators[1]!r} "
            "(use all: or any: to combine tests)",
        )
        return None
    op: Operator = next(o for o in OPERATORS if o == operators[0])
    case_sensitive = _case(r, entries, op)
    operand = _OPERANDS[op](r, entries[op][1], case_sensitive, op)
    if path is None or operand is None:
        return None
    values, pattern, networks, kind = operand
    return FieldTest(
        path.strip(),
        op,
        values,
        r.at(field_node),
        case_sensitive=case_sensitive,
        pattern=pattern,
        networks=networks,
        intel=kind,
    )


def _case(r: Reader, entries: dict[str, Entry], op: Operator) -> bool:
    """True for ``case: sensitive``; ``case`` is only for the string operators."""
    if "case" not in entries:
        return False
    key, node = entries["case"]
    case = r.text(node, "case")
    if op not in _STRING_OPERATORS:
        r.error(key, f"'case' does not apply to {op!r}")
    elif case is not None and case not in ("sensitive", "insensitive"):
        r.error(node, f"case must be sensitive or insensitive, not {case!r}")
    return case == "sensitive"


_Operand = tuple[
    tuple[Scalar, ...], re.Pattern[str] | None, tuple[Network, ...], IndicatorKind | None
]


def _equals(r: Reader, node: Node, _case: bool, _op: str) -> _Operand | None:
    value = r.scalar(node, "equals")
    if value is None:
        if not isinstance(node, ScalarNode):
            r.error(node, "equals takes one value (use in: for a list)")
        return None
    return (value,), None, (), None


def _in(r: Reader, node: Node, _case: bool, _op: str) -> _Operand | None:
    if isinstance(node, ScalarNode):
        r.error(node, "in takes a list (use equals: for one value)")
        return None
    values = [r.scalar(item, "in") for item in r.sequence(node, "in") or ()]
    if not values or any(v is None for v in values):
        return None
    return tuple(v for v in values if v is not None), None, (), None


def _texts(r: Reader, node: Node, _case: bool, op: str) -> _Operand | None:
    texts = r.texts(node, op)
    return None if texts is None else (tuple(t for _n, t in texts), None, (), None)


def _intel(r: Reader, node: Node, _case: bool, _op: str) -> _Operand | None:
    kind = r.text(node, "intel")
    if kind is None:
        return None
    for known in _INTEL_KINDS:
        if kind == known:
            return (kind,), None, (), known
    r.error(node, f"unknown indicator kind {kind!r}{suggest(kind, _INTEL_KINDS)}")
    return None


def _exists(r: Reader, node: Node, _case: bool, _op: str) -> _Operand | None:
    flag = r.boolean(node, "exists")
    return None if flag is None else ((flag,), None, (), None)


def _number(r: Reader, node: Node, _case: bool, op: str) -> _Operand | None:
    number = r.number(node, op)
    return None if number is None else ((number,), None, (), None)


def _regex(r: Reader, node: Node, case_sensitive: bool, _op: str) -> _Operand | None:
    pattern = r.text(node, "regex")
    if pattern is None or not isinstance(node, ScalarNode):
        return None
    try:
        compiled = re.compile(pattern, 0 if case_sensitive else re.IGNORECASE)
    except re.error as exc:
        where = r.offset(node, exc.pos) if exc.pos is not None else r.at(node)
        suffix = f" at position {exc.pos}" if exc.pos is not None else ""
        r.error(where, f"bad regular expression: {exc.msg}{suffix}")
        return None
    except (OverflowError, RecursionError):
        r.error(node, "bad regular expression: too large or too deeply nested")
        return None
    return (pattern,), compiled, (), None


def _networks(r: Reader, node: Node, _case: bool, _op: str) -> _Operand | None:
    texts = r.texts(node, "cidr")
    if texts is None:
        return None
    networks: list[Network] = []
    ok = True
    for item, text in texts:
        written = text.strip()
        try:
            networks.append(ipaddress.ip_network(written, strict=True))
        except ValueError:
            ok = False
            try:
                loose = ipaddress.ip_network(written, strict=False)
            except ValueError:
                r.error(item, f"cidr: {written!r} is not an IPv4 or IPv6 network")
            else:
                r.error(item, f"cidr: {written!r} has host bits set; did you mean '{loose}'?")
    if not ok:
        return None
    return tuple(t for _n, t in texts), None, tuple(networks), None


#: How each operator's operand is read: (reader, node, case sensitive, operator) -> operand.
_OPERANDS: dict[str, Callable[[Reader, Node, bool, str], _Operand | None]] = {
    "equals": _equals,
    "in": _in,
    "contains": _texts,
    "startswith": _texts,
    "endswith": _texts,
    "regex": _regex,
    "cidr": _networks,
    "intel": _intel,
    "exists": _exists,
    "gte": _number,
    "lte": _number,
    "gt": _number,
    "lt": _number,
}
