"""ASC custom alerts per device security group: typed rules, and their JSON in ARM's shape.

A group's document is ``{"thresholdRules": [], "timeWindowRules": [...], "allowlistRules":
[...], "denylistRules": [...]}`` (ARM's ``DeviceSecurityGroupProperties``; a body wrapped in
``{"properties": {...}}`` is accepted too). Every rule has ``ruleType`` and ``isEnabled``:

- time-window rules add ``minThreshold``, ``maxThreshold`` (0 <= min <= max) and
  ``timeWindowSize`` (ISO 8601, ``PT5M``; ``PT05M`` as ARM's examples write it is fine);
- allow-list and deny-list rules add ``allowlistValues`` / ``denylistValues``; the value type
  (``IpCidr`` or ``String``) follows from the rule type.

``displayName``, ``description`` and ``valueType`` are read-only: accepted on input (a
``valueType`` must agree) and written on output. ASC defines no threshold-only rule type, so
``thresholdRules`` must be empty. A document is validated as a whole and every problem is
reported with its JSON path (``timeWindowRules[0].timeWindowSize: ...``).

>>> rules = CustomAlertSet.from_json({"timeWindowRules": [{
...     "ruleType": "ActiveConnectionsNotInAllowedRange", "isEnabled": True,
...     "minThreshold": 0, "maxThreshold": 30, "timeWindowSize": "PT05M"}]})
>>> rules.time_window_rules[0].time_window_size
datetime.timedelta(seconds=300)
>>> rules.to_json()["timeWindowRules"][0]["timeWindowSize"]
'PT5M'
>>> bad = {"timeWindowRules": [{"ruleType": "ActiveConnectionsNotInAllowedRange",
...     "isEnabled": True, "minThreshold": 5, "maxThreshold": 1, "timeWindowSize": "5 minutes"}]}
>>> try:
...     CustomAlertSet.from_json(bad)
... except CustomAlertInvalid as exc:
...     for issue in exc.issues:
...         print(issue)
timeWindowRules[0].timeWindowSize: '5 minutes' is not an ISO 8601 duration such as PT5M or P1D
timeWindowRules[0].maxThreshold: must be at least minThreshold (5)
"""

from __future__ import annotations

import difflib
import ipaddress
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from iotsec.analytics.customtypes import (
    FAMILIES,
    LIST_RULE_TYPES,
    RULE_TYPES,
    WINDOW_RULE_TYPES,
    DataSource,
    Family,
    ListFamily,
    ListRuleType,
    RuleTypeInfo,
    ValueType,
    WindowRuleType,
    format_duration,
    parse_duration,
)
from iotsec.analytics.errors import AnalyticsError

__all__ = [
    "FAMILIES",
    "LIST_RULE_TYPES",
    "MAX_WINDOW",
    "MIN_WINDOW",
    "RULE_TYPES",
    "WINDOW_RULE_TYPES",
    "CustomAlertInvalid",
    "CustomAlertSet",
    "DataSource",
    "Family",
    "Issue",
    "ListFamily",
    "ListRule",
    "ListRuleType",
    "RuleTypeInfo",
    "TimeWindowRule",
    "ValueType",
    "WindowRuleType",
    "format_duration",
    "parse_duration",
]

#: Shortest and longest time window. Shorter than a minute is below the hub's message-count
#: granularity (accepted messages are tallied per minute).
MIN_WINDOW = timedelta(minutes=1)
MAX_WINDOW = timedelta(days=7)
_MAX_THRESHOLD = 2**31 - 1  # ARM's int32
_MAX_VALUES = 10_000
_MAX_VALUE_LENGTH = 1024
#: Addresses whose allow- or deny-list answer a rule remembers (then it starts over).
_ANSWERS_KEPT = 4096


@dataclass(frozen=True, slots=True)
class Issue:
    """One problem in a custom-alerts document: where (JSON path) and why."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}" if self.path else self.reason


class CustomAlertInvalid(AnalyticsError):
    """A custom-alerts document that cannot be used; ``issues`` lists every problem."""

    def __init__(self, issues: tuple[Issue, ...] | list[Issue]) -> None:
        self.issues = tuple(issues)
        shown = "; ".join(map(str, self.issues[:5]))
        more = f" (and {len(self.issues) - 5} more)" if len(self.issues) > 5 else ""
        count = len(self.issues)
        head = f"{count} problems: " if count > 1 else ""
        super().__init__(f"{head}{shown}{more}")


# -- rules -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TimeWindowRule:
    """Alert when a device's count of the rule type's activity in a window is outside
    [``min_threshold``, ``max_threshold``]."""

    rule_type: WindowRuleType
    is_enabled: bool
    min_threshold: int
    max_threshold: int
    time_window_size: timedelta

    def __post_init__(self) -> None:
        issues = _check_window(self)
        if issues:
            raise CustomAlertInvalid(issues)

    @property
    def info(self) -> RuleTypeInfo:
        """The rule type's data source and alert name."""
        return RULE_TYPES[self.rule_type]

    def to_json(self) -> dict[str, Any]:
        """The rule in ARM's shape, read-only fields included."""
        return {
            "ruleType": self.rule_type,
            "isEnabled": self.is_enabled,
            "minThreshold": self.min_threshold,
            "maxThreshold": self.max_threshold,
            "timeWindowSize": format_duration(self.time_window_size),
            "displayName": self.info.display_name,
            "description": self.info.description,
        }


def _check_window(rule: TimeWindowRule) -> list[Issue]:
    issues = []
    if rule.rule_type not in WINDOW_RULE_TYPES:
        issues.append(Issue("ruleType", f"{rule.rule_type!r} is not a time-window rule type"))
    for name, value in (("minThreshold", rule.min_threshold), ("maxThreshold", rule.max_threshold)):
        if isinstance(value, bool) or not isinstance(value, int):
            issues.append(Issue(name, "must be an integer"))
        elif not 0 <= value <= _MAX_THRESHOLD:
            issues.append(Issue(name, f"must be between 0 and {_MAX_THRESHOLD}"))
    if not issues and rule.max_threshold < rule.min_threshold:
        issues.append(
            Issue("maxThreshold", f"must be at least minThreshold ({rule.min_threshold})")
        )
    size = rule.time_window_size
    if size % timedelta(seconds=1):
        issues.append(Issue("timeWindowSize", "must be whole seconds"))
    elif not MIN_WINDOW <= size <= MAX_WINDOW:
        issues.append(
            Issue(
                "timeWindowSize",
                f"{format_duration(size)} is outside {format_duration(MIN_WINDOW)}.."
                f"{format_duration(MAX_WINDOW)}",
            )
        )
    return issues


@dataclass(frozen=True, slots=True)
class ListRule:
    """An allow list (alert on a value not in ``values``) or a deny list (alert on one in it).

    ``IpCidr`` values are addresses or CIDR blocks, IPv4 or IPv6; ``String`` values are exact
    (user names, and process names: a value with a ``/`` is an executable's full path, one
    without is matched against the executable's file name).
    """

    family: ListFamily
    rule_type: ListRuleType
    is_enabled: bool
    values: tuple[str, ...]
    _networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = field(
        default=(), init=False, repr=False, compare=False
    )
    # Lookups built once: exact values (full paths for processes), process file names, and
    # the answers for addresses already checked (the stream asks about the same few often).
    _exact: frozenset[str] = field(default=frozenset(), init=False, repr=False, compare=False)
    _names: frozenset[str] = field(default=frozenset(), init=False, repr=False, compare=False)
    _cidr: bool = field(default=False, init=False, repr=False, compare=False)
    _answers: dict[str, bool] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        issues: list[Issue] = []
        if self.family not in ("allowlistRules", "denylistRules"):
            issues.append(Issue("", f"{self.family!r} is not a list family"))
        if self.rule_type not in LIST_RULE_TYPES:
            issues.append(Issue("ruleType", f"{self.rule_type!r} is not a list rule type"))
        if issues:
            raise CustomAlertInvalid(issues)
        networks = []
        where = self.values_key
        if len(self.values) > _MAX_VALUES:
            issues.append(Issue(where, f"at most {_MAX_VALUES} values"))
        for index, value in enumerate(self.values):
            if not isinstance(value, str) or not value.strip():
                issues.append(Issue(f"{where}[{index}]", "must be a non-empty string"))
            elif len(value) > _MAX_VALUE_LENGTH:
                issues.append(Issue(f"{where}[{index}]", f"longer than {_MAX_VALUE_LENGTH}"))
            elif self.value_type == "IpCidr":
                try:
                    networks.append(ipaddress.ip_network(value.strip(), strict=False))
                except ValueError:
                    reason = f"{value!r} is not an IPv4 or IPv6 address or CIDR block"
                    issues.append(Issue(f"{where}[{index}]", reason))
        if issues:
            raise CustomAlertInvalid(issues)
        object.__setattr__(self, "_networks", tuple(networks))
        object.__setattr__(self, "_cidr", self.value_type == "IpCidr")
        if self.rule_type == "ProcessNotAllowed":
            object.__setattr__(self, "_exact", frozenset(v for v in self.values if "/" in v))
            object.__setattr__(self, "_names", frozenset(v for v in self.values if "/" not in v))
        else:
            object.__setattr__(self, "_exact", frozenset(self.values))

    @property
    def info(self) -> RuleTypeInfo:
        """The rule type's data source and alert name."""
        return RULE_TYPES[self.rule_type]

    @property
    def value_type(self) -> ValueType:
        """``IpCidr`` or ``String``, from the rule type."""
        kind = self.info.value_type
        assert kind is not None
        return kind

    @property
    def values_key(self) -> str:
        """``allowlistValues`` or ``denylistValues``."""
        return "allowlistValues" if self.family == "allowlistRules" else "denylistValues"

    def listed(self, value: str) -> bool:
        """True when ``value`` is in the list (an address within a listed block, for IpCidr)."""
        if self._cidr:
            answers = self._answers
            answer = answers.get(value)
            if answer is None:
                if len(answers) >= _ANSWERS_KEPT:
                    answers.clear()
                answer = answers[value] = self._in_networks(value)
            return answer
        if value in self._exact:
            return True
        return bool(self._names) and value.rsplit("/", 1)[-1] in self._names

    def _in_networks(self, value: str) -> bool:
        try:
            address = ipaddress.ip_address(value.strip().strip("[]"))
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address.version == net.version and address in net for net in self._networks)

    def fires_on(self, value: str) -> bool:
        """True when ``value`` breaks the rule: unlisted on an allow list, listed on a deny list."""
        listed = self.listed(value)
        return not listed if self.family == "allowlistRules" else listed

    def to_json(self) -> dict[str, Any]:
        """The rule in ARM's shape, read-only fields included."""
        return {
            "ruleType": self.rule_type,
            "isEnabled": self.is_enabled,
            self.values_key: list(self.values),
            "valueType": self.value_type,
            "displayName": self.info.display_name,
            "description": self.info.description,
        }


@dataclass(frozen=True, slots=True)
class CustomAlertSet:
    """One security group's custom alerts."""

    time_window_rules: tuple[TimeWindowRule, ...] = ()
    allowlist_rules: tuple[ListRule, ...] = ()
    denylist_rules: tuple[ListRule, ...] = ()

    @property
    def rule_count(self) -> int:
        """How many rules, enabled or not."""
        return len(self.time_window_rules) + len(self.allowlist_rules) + len(self.denylist_rules)

    def to_json(self) -> dict[str, Any]:
        """The document in ARM's shape, all four families present."""
        return {
            "thresholdRules": [],
            "timeWindowRules": [r.to_json() for r in self.time_window_rules],
            "allowlistRules": [r.to_json() for r in self.allowlist_rules],
            "denylistRules": [r.to_json() for r in self.denylist_rules],
        }

    @classmethod
    def from_json(cls, data: Any) -> CustomAlertSet:
        """Parse a group's document, checking all of it.

        Raises:
            CustomAlertInvalid: every problem, each with its JSON path.
        """
        return _Parser().document(data)


# -- parsing -----------------------------------------------------------------------------------

_COMMON = ("ruleType", "isEnabled", "displayName", "description")
_WINDOW_KEYS = (*_COMMON, "minThreshold", "maxThreshold", "timeWindowSize")


def _did_you_mean(name: str, known: tuple[str, ...] | list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else f"; expected one of {', '.join(known)}"


class _Parser:
    def __init__(self) -> None:
        self.issues: list[Issue] = []

    def fail(self, path: str, reason: str) -> None:
        self.issues.append(Issue(path, reason))

    def document(self, data: Any) -> CustomAlertSet:
        if isinstance(data, dict) and "properties" in data:
            # ARM's resource shape: {"properties": {...}} (id, name and type are ignored).
            extra = sorted(set(data) - {"properties", "id", "name", "type"})
            for key in extra:
                self.fail(key, "unknown key next to properties")
            data = data["properties"]
            prefix = "properties."
        else:
            prefix = ""
        if not isinstance(data, dict):
            raise CustomAlertInvalid([Issue(prefix.rstrip("."), "must be a JSON object")])
        for key in sorted(set(data) - set(FAMILIES)):
            self.fail(f"{prefix}{key}", "unknown rule family" + _did_you_mean(key, FAMILIES))
        windows: list[TimeWindowRule] = []
        lists: dict[ListFamily, list[ListRule]] = {"allowlistRules": [], "denylistRules": []}
        for family in FAMILIES:
            rules = data.get(family, [])
            if not isinstance(rules, list):
                self.fail(f"{prefix}{family}", "must be a list")
                continue
            for rule in self.family(rules, family, f"{prefix}{family}"):
                if isinstance(rule, TimeWindowRule):
                    windows.append(rule)
                else:
                    lists[rule.family].append(rule)
        if self.issues:
            raise CustomAlertInvalid(self.issues)
        return CustomAlertSet(
            tuple(windows), tuple(lists["allowlistRules"]), tuple(lists["denylistRules"])
        )

    def family(
        self, rules: list[Any], family: Family, path: str
    ) -> list[TimeWindowRule | ListRule]:
        parsed: list[TimeWindowRule | ListRule] = []
        seen: dict[str, int] = {}
        for index, rule in enumerate(rules):
            where = f"{path}[{index}]"
            if not isinstance(rule, dict):
                self.fail(where, "must be a JSON object")
                continue
            rule_type = self.rule_type(rule, family, where)
            if rule_type is None:
                continue
            if rule_type in seen:
                reason = f"{rule_type} is already in {family}[{seen[rule_type]}]; one rule per type"
                self.fail(f"{where}.ruleType", reason)
                continue
            seen[rule_type] = index
            made: TimeWindowRule | ListRule | None
            if family == "timeWindowRules":
                made = self.window(rule, rule_type, where)
            else:
                assert family in ("allowlistRules", "denylistRules")
                made = self.list_rule(rule, family, rule_type, where)
            if made is not None:
                parsed.append(made)
        return parsed

    def rule_type(self, rule: dict[str, Any], family: Family, where: str) -> str | None:
        value = rule.get("ruleType")
        if value is None:
            self.fail(f"{where}.ruleType", "is required")
            return None
        if not isinstance(value, str):
            self.fail(f"{where}.ruleType", "must be a string")
            return None
        if family == "thresholdRules":
            hint = (
                f"; {value} is a time-window rule: put it in timeWindowRules with a timeWindowSize"
                if value in WINDOW_RULE_TYPES
                else ""
            )
            self.fail(f"{where}.ruleType", f"ASC defines no threshold-only rule types{hint}")
            return None
        allowed: tuple[str, ...] = (
            WINDOW_RULE_TYPES if family == "timeWindowRules" else LIST_RULE_TYPES
        )
        if value not in allowed:
            if value in RULE_TYPES:
                other = "timeWindowRules" if value in WINDOW_RULE_TYPES else "allowlistRules"
                self.fail(f"{where}.ruleType", f"{value} is not a {family} type; use {other}")
            else:
                self.fail(
                    f"{where}.ruleType",
                    f"unknown rule type {value!r}" + _did_you_mean(value, list(allowed)),
                )
            return None
        return value

    def keys(self, rule: dict[str, Any], known: tuple[str, ...], where: str) -> bool:
        ok = True
        for key in sorted(set(rule) - set(known)):
            self.fail(f"{where}.{key}", "unknown key" + _did_you_mean(key, known))
            ok = False
        enabled = rule.get("isEnabled")
        if not isinstance(enabled, bool):
            self.fail(f"{where}.isEnabled", "is required: true or false")
            ok = False
        for key in ("displayName", "description"):
            if key in rule and not isinstance(rule[key], str | None):
                self.fail(f"{where}.{key}", "must be a string (it is read-only and ignored)")
                ok = False
        return ok

    def window(self, rule: dict[str, Any], rule_type: str, where: str) -> TimeWindowRule | None:
        ok = self.keys(rule, _WINDOW_KEYS, where)
        values: dict[str, int] = {}
        for key in ("minThreshold", "maxThreshold"):
            value = rule.get(key)
            if value is None:
                self.fail(f"{where}.{key}", "is required")
                ok = False
            elif isinstance(value, bool) or not isinstance(value, int):
                self.fail(f"{where}.{key}", f"must be an integer, not {type(value).__name__}")
                ok = False
            elif not 0 <= value <= _MAX_THRESHOLD:
                self.fail(f"{where}.{key}", f"must be between 0 and {_MAX_THRESHOLD}")
                ok = False
            else:
                values[key] = value
        size: timedelta | None = None
        text = rule.get("timeWindowSize")
        if text is None:
            self.fail(f"{where}.timeWindowSize", "is required (ISO 8601, e.g. PT5M)")
        elif not isinstance(text, str):
            self.fail(f"{where}.timeWindowSize", "must be an ISO 8601 duration string")
        else:
            try:
                size = parse_duration(text)
            except ValueError as exc:
                self.fail(f"{where}.timeWindowSize", str(exc))
        if len(values) == 2 and values["maxThreshold"] < values["minThreshold"]:
            reason = f"must be at least minThreshold ({values['minThreshold']})"
            self.fail(f"{where}.maxThreshold", reason)
            ok = False
        if not ok or size is None or len(values) < 2:
            return None
        try:
            return TimeWindowRule(
                rule_type,  # type: ignore[arg-type]  # checked against WINDOW_RULE_TYPES above
                rule["isEnabled"],
                values["minThreshold"],
                values["maxThreshold"],
                size,
            )
        except CustomAlertInvalid as exc:
            self.issues += [Issue(f"{where}.{i.path}", i.reason) for i in exc.issues]
            return None

    def list_rule(
        self, rule: dict[str, Any], family: ListFamily, rule_type: str, where: str
    ) -> ListRule | None:
        values_key = "allowlistValues" if family == "allowlistRules" else "denylistValues"
        ok = self.keys(rule, (*_COMMON, values_key, "valueType"), where)
        expected = RULE_TYPES[rule_type].value_type
        given = rule.get("valueType")
        if given is not None and given != expected:
            self.fail(f"{where}.valueType", f"{rule_type} takes {expected} values, not {given!r}")
            ok = False
        values = rule.get(values_key)
        if values is None:
            self.fail(f"{where}.{values_key}", "is required (a list of strings)")
            return None
        if not isinstance(values, list):
            self.fail(f"{where}.{values_key}", "must be a list of strings")
            return None
        if not ok:
            return None
        try:
            return ListRule(
                family,
                rule_type,  # type: ignore[arg-type]  # checked against LIST_RULE_TYPES above
                rule["isEnabled"],
                tuple(values),
            )
        except CustomAlertInvalid as exc:
            self.issues += [Issue(f"{where}.{i.path}", i.reason) for i in exc.issues]
            return None
