"""Rule files to typed rules: ``load_rules``, ``load_rules_text``, and suppressions.

The grammar is docs/rules.md; rules are read by ``rule_reader``, their conditions by
``condition_reader``, and the YAML nodes under both by ``yamlnodes``. Every problem in a file
is collected (with its file, line and column, and the rule it belongs to) and raised together
as ``RuleErrors``, so one run of ``iotsec rules check`` shows them all. A rule with a problem
is left out; the rest of the file is still read so its problems are found too.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from yaml.nodes import Node, ScalarNode

from iotsec.analytics.errors import RuleError
from iotsec.analytics.rules.condition_reader import read_condition
from iotsec.analytics.rules.errors import RuleErrors, error_at
from iotsec.analytics.rules.fields import field_scope, field_tests
from iotsec.analytics.rules.model import (
    Rule,
    RuleSet,
    Scope,
    SourceLocation,
    Suppression,
)
from iotsec.analytics.rules.rule_reader import RULE_ID, check_path, read_rule, required
from iotsec.analytics.rules.yamlnodes import Entry, Reader, compose, node_text

__all__ = [
    "Document",
    "build_ruleset",
    "duplicates",
    "load_rules",
    "load_rules_text",
    "parse_document",
    "read_document",
]

_TOP_KEYS = ("rules", "suppressions")
_SUPPRESSION_KEYS = ("id", "rule", "scope", "expires", "reason", "match")
_SCOPE_KEYS = ("device", "group")


@dataclass(frozen=True, slots=True)
class Document:
    """What one file holds: the rules and suppressions that are valid, and every problem."""

    source: str
    rules: tuple[Rule, ...] = ()
    suppressions: tuple[Suppression, ...] = ()
    problems: tuple[RuleError, ...] = ()
    #: The id and place of every rule written, valid or not (for duplicate checks).
    ids: tuple[tuple[str, SourceLocation], ...] = ()


def parse_document(text: str, source: str) -> Document:
    """Parse one rule file's text; problems are returned, never raised.

    Duplicate ids are not checked here: they are a property of a set of files (``duplicates``).
    """
    try:
        root = compose(text, source)
    except RuleError as exc:
        return Document(source, problems=(exc,))
    if root is None:
        return Document(source)
    reader = Reader(source, text)
    top = reader.mapping(root, "a rule file")
    rules: list[Rule] = []
    ids: list[tuple[str, SourceLocation]] = []
    suppressions: list[Suppression] = []
    if top is not None:
        reader.known_keys(top, _TOP_KEYS, "a rule file")
        if "rules" in top:
            for node in reader.sequence(top["rules"][1], "rules", empty=True) or ():
                reader.rule_id = None
                rule = read_rule(reader, node)
                if rule is not None:
                    rules.append(rule)
                if reader.rule_id is not None:
                    ids.append((reader.rule_id, reader.at(node)))
            reader.rule_id = None
        if "suppressions" in top:
            for node in reader.sequence(top["suppressions"][1], "suppressions", empty=True) or ():
                suppression = _suppression(reader, node)
                if suppression is not None:
                    suppressions.append(suppression)
    problems = sorted(reader.errors, key=lambda e: (e.line or 0, e.column or 0))
    return Document(source, tuple(rules), tuple(suppressions), tuple(problems), tuple(ids))


def load_rules_text(text: str, source: str = "<rules>") -> RuleSet:
    """Rules from YAML text; ``source`` names it in errors.

    Raises:
        RuleErrors: every problem found, each with its file, line and column.
    """
    return build_ruleset([parse_document(text, source)])


def load_rules(paths: Iterable[Path]) -> RuleSet:
    """Rules from files, read as UTF-8; rule ids must be unique across all of them.

    Raises:
        RuleErrors: every problem in every file (an unreadable file is one problem).
    """
    return build_ruleset([read_document(path) for path in paths])


def read_document(path: Path) -> Document:
    """Parse the file at ``path``; an unreadable file is a document with one problem."""
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        return Document(
            source, problems=(RuleError(f"cannot read: {exc.strerror}", source=source),)
        )
    except UnicodeDecodeError as exc:
        reason = f"not UTF-8 text (byte {exc.start})"
        return Document(source, problems=(RuleError(reason, source=source),))
    return parse_document(text, source)


def build_ruleset(documents: Sequence[Document]) -> RuleSet:
    """One set from parsed documents; their problems and duplicate ids raise ``RuleErrors``."""
    problems = [p for doc in documents for p in doc.problems]
    rules = [r for doc in documents for r in doc.rules]
    suppressions = [s for doc in documents for s in doc.suppressions]
    problems.extend(duplicates(documents))
    if problems:
        raise RuleErrors(problems)
    return RuleSet(tuple(rules), tuple(suppressions))


def duplicates(documents: Sequence[Document]) -> list[RuleError]:
    """A problem for each rule or suppression whose id an earlier one already used."""
    problems: list[RuleError] = []
    seen: dict[str, SourceLocation] = {}
    for rule_id, location in (pair for doc in documents for pair in doc.ids):
        first = seen.setdefault(rule_id, location)
        if first is not location:
            reason = f"duplicate rule id {rule_id!r} (first defined at {first})"
            problems.append(error_at(reason, location, rule_id))
    seen.clear()
    for suppression in (s for doc in documents for s in doc.suppressions):
        first = seen.setdefault(suppression.id, suppression.location)
        if first is not suppression.location:
            reason = f"duplicate suppression id {suppression.id!r} (first defined at {first})"
            problems.append(error_at(reason, suppression.location))
    return problems


def _suppression(r: Reader, node: Node) -> Suppression | None:
    entries = r.mapping(node, "a suppression")
    if entries is None:
        return None
    start = len(r.errors)
    r.rule_id = None
    r.known_keys(entries, _SUPPRESSION_KEYS, "a suppression")
    location = r.at(node)
    ident = r.text(entries["id"][1], "id") if "id" in entries else str(location)
    rule_node = required(r, node, entries, "rule", "a suppression")
    rule = r.text(rule_node, "rule") if rule_node is not None else None
    if rule_node is not None and rule is not None and rule != "*" and not RULE_ID.fullmatch(rule):
        r.error(rule_node, f"rule must be a rule id or '*', not {rule!r}")
    r.rule_id = rule if rule != "*" else None
    scope = _scope(r, node, entries)
    expires_node = required(r, node, entries, "expires", "a suppression")
    expires = r.timestamp(expires_node, "expires") if expires_node is not None else None
    reason_node = required(r, node, entries, "reason", "a suppression")
    reason = r.text(reason_node, "reason") if reason_node is not None else None
    match = read_condition(r, entries["match"][1], "match") if "match" in entries else None
    if match is not None:
        for test in field_tests(match):
            check_path(r, test.field, field_scope(match), "observations", test.location)
    if len(r.errors) > start:
        return None
    assert ident is not None and rule is not None and scope is not None
    assert expires is not None and reason is not None
    kind, target = scope
    return Suppression(ident, rule, kind, expires, reason, location, target, match)


def _scope(  # noqa: PLR0911 - one return per way a scope can be written or wrong
    r: Reader, node: Node, entries: dict[str, Entry]
) -> tuple[Scope, str] | None:
    scope_node = required(r, node, entries, "scope", "a suppression")
    if scope_node is None:
        return None
    if isinstance(scope_node, ScalarNode):
        if scope_node.value == "everywhere":
            return "everywhere", ""
        r.error(
            scope_node,
            f"scope must be {{device: id}}, {{group: name}} or everywhere, "
            f"not {node_text(scope_node)!r}",
        )
        return None
    scope = r.mapping(scope_node, "scope")
    if scope is None:
        return None
    r.known_keys(scope, _SCOPE_KEYS, "scope")
    named = [k for k in _SCOPE_KEYS if k in scope]
    if len(named) != 1:
        r.error(scope_node, "scope names exactly one of device or group")
        return None
    target = r.text(scope[named[0]][1], named[0])
    if target is None:
        return None
    return ("device", target) if named[0] == "device" else ("group", target)
