"""The typed rule tree: what a rule file means, once parsed.

Every value here is frozen and keeps the ``SourceLocation`` it was read from, so the engine,
``iotsec rules check`` and an alert's explanation can all point back at the line that said it.
Values are valid by construction: the loader (``iotsec.analytics.rules.loader``) is the only
place that reads YAML, and it builds these only from checked input.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Literal

from iotsec.analytics.detection import Severity
from iotsec.analytics.indicators import IndicatorKind
from iotsec.analytics.observation import Source

__all__ = [
    "AllOf",
    "AnyOf",
    "Condition",
    "EventIs",
    "FieldTest",
    "Network",
    "Not",
    "Operator",
    "Rule",
    "RuleSet",
    "Scalar",
    "Scope",
    "Sequence",
    "SourceIs",
    "SourceLocation",
    "Step",
    "Suppression",
    "Template",
    "Threshold",
]

Scalar = str | int | float | bool
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Operator = Literal[
    "equals",
    "in",
    "contains",
    "startswith",
    "endswith",
    "regex",
    "cidr",
    "intel",
    "exists",
    "gte",
    "lte",
    "gt",
    "lt",
]


@dataclass(frozen=True, slots=True)
class SourceLocation:
    """Where something was written: file (or source name), 1-based line and column."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True, slots=True)
class EventIs:
    """The observation's ``Name`` (agent event or hub operation) is one of ``names``."""

    names: frozenset[str]
    location: SourceLocation


@dataclass(frozen=True, slots=True)
class SourceIs:
    """The observation came from the agent or from the hub."""

    source: Source
    location: SourceLocation


@dataclass(frozen=True, slots=True)
class FieldTest:
    """One operator applied to the value at ``field`` (a name or a dotted path).

    ``values`` holds the operand(s) as written (one for ``equals``, ``regex``, ``intel``,
    ``exists`` and the comparisons); ``pattern``, ``networks`` and ``intel`` hold the compiled
    operand of ``regex``, ``cidr`` and ``intel``.
    """

    field: str
    operator: Operator
    values: tuple[Scalar, ...]
    location: SourceLocation
    case_sensitive: bool = False
    pattern: re.Pattern[str] | None = None
    networks: tuple[Network, ...] = ()
    intel: IndicatorKind | None = None


@dataclass(frozen=True, slots=True)
class AllOf:
    """Every condition holds (also what a mapping with several keys means)."""

    items: tuple[Condition, ...]
    location: SourceLocation


@dataclass(frozen=True, slots=True)
class AnyOf:
    """At least one condition holds."""

    items: tuple[Condition, ...]
    location: SourceLocation


@dataclass(frozen=True, slots=True)
class Not:
    """The condition does not hold."""

    item: Condition
    location: SourceLocation


Condition = EventIs | SourceIs | FieldTest | AllOf | AnyOf | Not


@dataclass(frozen=True, slots=True)
class Template:
    """Text with ``{Field}`` placeholders: ``parts`` alternate literal text and field names.

    ``parts[0]`` is literal, ``parts[1]`` a name, ``parts[2]`` literal, and so on; it is built
    by ``iotsec.analytics.rules.templates.parse_template``.
    """

    text: str
    parts: tuple[str, ...]
    location: SourceLocation

    @property
    def names(self) -> tuple[str, ...]:
        """The placeholder names, in order of appearance."""
        return self.parts[1::2]


@dataclass(frozen=True, slots=True)
class Threshold:
    """Fire when at least ``count`` (or more than ``max``) matches fall within ``window``."""

    count: int | None
    window: timedelta
    by: tuple[str, ...]
    location: SourceLocation
    max: int | None = None
    #: The window as the rule wrote it (``5m``), for ``{window}`` in templates.
    window_text: str = ""


@dataclass(frozen=True, slots=True)
class Step:
    """One step of a sequence: ``count`` observations matching ``match``."""

    name: str
    match: Condition
    location: SourceLocation
    count: int = 1


@dataclass(frozen=True, slots=True)
class Sequence:
    """Steps that must happen in order within ``within``, on the same values of ``by``."""

    within: timedelta
    by: tuple[str, ...]
    steps: tuple[Step, ...]
    location: SourceLocation
    within_text: str = ""


@dataclass(frozen=True, slots=True)
class Rule:
    """A detection rule, as written: a match (possibly counted) or a sequence."""

    id: str
    name: str
    severity: Severity
    description: Template
    location: SourceLocation
    match: Condition | None = None
    threshold: Threshold | None = None
    sequence: Sequence | None = None
    tactics: tuple[str, ...] = ()
    techniques: tuple[str, ...] = ()
    remediation: tuple[Template, ...] = ()
    dedup: timedelta = timedelta(hours=1)
    #: Fields whose values tell one alert of this rule from another on a device (dedup key);
    #: empty means the ``by`` fields of a threshold or sequence, or none.
    key: tuple[str, ...] = ()

    @property
    def dedup_fields(self) -> tuple[str, ...]:
        """The fields whose values join rule id and device in the dedup key."""
        if self.key:
            return self.key
        if self.threshold is not None:
            return self.threshold.by
        if self.sequence is not None:
            return self.sequence.by
        return ()


Scope = Literal["device", "group", "everywhere"]


@dataclass(frozen=True, slots=True)
class Suppression:
    """Drops detections of ``rule`` (or of every rule, ``*``) in a scope until ``expires``."""

    id: str
    rule: str
    scope: Scope
    expires: datetime
    reason: str
    location: SourceLocation
    #: The device id or group name the scope names (empty for ``everywhere``).
    target: str = ""
    match: Condition | None = None

    def expired(self, now: datetime) -> bool:
        """True once ``now`` is at or past the expiry."""
        return now >= self.expires


@dataclass(frozen=True, slots=True)
class RuleSet:
    """Rules and suppressions, immutable; ``merge`` builds a new set.

    Rule ids are unique within a set (the loader and ``merge`` refuse duplicates).
    """

    rules: tuple[Rule, ...] = ()
    suppressions: tuple[Suppression, ...] = ()
    _by_id: Mapping[str, Rule] = field(
        default_factory=lambda: MappingProxyType({}), repr=False, compare=False
    )

    def __post_init__(self) -> None:
        by_id = {rule.id: rule for rule in self.rules}
        if len(by_id) != len(self.rules):
            # Imported lazily: errors.py needs SourceLocation from here.
            from iotsec.analytics.rules.errors import duplicate_ids  # noqa: PLC0415

            raise duplicate_ids(self.rules)
        object.__setattr__(self, "_by_id", MappingProxyType(by_id))

    def __iter__(self) -> Iterator[Rule]:
        return iter(self.rules)

    def __len__(self) -> int:
        return len(self.rules)

    def __contains__(self, rule_id: object) -> bool:
        return rule_id in self._by_id

    def get(self, rule_id: str) -> Rule | None:
        """The rule with ``rule_id``, or None."""
        return self._by_id.get(rule_id)

    @property
    def ids(self) -> tuple[str, ...]:
        """Rule ids, in file order."""
        return tuple(self._by_id)

    def merge(self, other: RuleSet) -> RuleSet:
        """A set with both sets' rules and suppressions; a rule id in both raises ``RuleErrors``."""
        return RuleSet(self.rules + other.rules, self.suppressions + other.suppressions)
