"""Custom alerts per device security group, as the hub keeps them: one JSON document a group.

ASC stores custom alerts as ``deviceSecurityGroups`` resources under the IoT Hub; iotsec keeps
them with the hub configuration (the registry's ``settings`` table, one row a group) and serves
them at ``/securityGroups/{group}/customAlerts``. The hub does not know what the rules mean:
that belongs to the analytics pipeline, which the hub must not import. So the hub checks only
the document's shape (``check_shape``), and the composition root (``iotsec.cli``) passes in a
``CustomAlertValidator`` that parses the document with the analytics model and answers the
document to store, or raises ``CustomAlertsInvalid`` naming each JSON path and reason.

Group names follow the device id rule and compare case-insensitively (as ASC's do): the store
is keyed by the case-folded name and keeps the spelling of the last write.

>>> check_shape({"timeWindowRules": [{"ruleType": "X", "isEnabled": True}]})["allowlistRules"]
[]
>>> check_shape({"timeWindowRule": []})
Traceback (most recent call last):
...
iotsec.hub.customalerts.CustomAlertsInvalid: timeWindowRule: unknown rule family; expected \
thresholdRules, timeWindowRules, allowlistRules or denylistRules
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from iotsec.hub.errors import HubConfigError
from iotsec.hub.registry import check_id

__all__ = [
    "FAMILIES",
    "CustomAlertValidator",
    "CustomAlertsInvalid",
    "check_group",
    "check_shape",
    "group_key",
    "rule_counts",
]

FAMILIES = ("thresholdRules", "timeWindowRules", "allowlistRules", "denylistRules")


class CustomAlertsInvalid(HubConfigError):
    """A custom-alerts document the hub refuses; ``issues`` are (JSON path, reason) pairs."""

    def __init__(self, issues: Sequence[tuple[str, str]]) -> None:
        self.issues = tuple(issues)
        text = "; ".join(f"{path}: {reason}" if path else reason for path, reason in self.issues)
        super().__init__(text or "invalid custom alerts")


#: Parses a group's document; returns the document to store, or raises ``CustomAlertsInvalid``.
CustomAlertValidator = Callable[[Any], dict[str, Any]]


def check_group(name: str) -> str:
    """``name`` if it can name a security group (the device id rule), else ``InvalidIdentity``."""
    return check_id(name, "group")


def group_key(name: str) -> str:
    """The key a group is stored under: its case-folded name."""
    return name.casefold()


def check_shape(document: Any) -> dict[str, Any]:
    """The document with all four families, when its shape is right (the default validator).

    Checks that it is an object of the four rule families (or ARM's ``{"properties": {...}}``
    around one), each a list of objects with a string ``ruleType`` and a boolean ``isEnabled``;
    the rest is for the injected validator.
    """
    if isinstance(document, dict) and isinstance(document.get("properties"), dict):
        document = document["properties"]  # ARM's resource shape; id, name and type ignored
    if not isinstance(document, dict):
        raise CustomAlertsInvalid([("", "the custom alerts must be a JSON object")])
    issues: list[tuple[str, str]] = []
    for key in document:
        if key not in FAMILIES:
            expected = f"{', '.join(FAMILIES[:-1])} or {FAMILIES[-1]}"
            issues.append((str(key), f"unknown rule family; expected {expected}"))
    shaped: dict[str, Any] = {}
    for family in FAMILIES:
        rules = document.get(family, [])
        if not isinstance(rules, list):
            issues.append((family, "must be a list"))
            continue
        for index, rule in enumerate(rules):
            where = f"{family}[{index}]"
            if not isinstance(rule, dict):
                issues.append((where, "must be a JSON object"))
                continue
            if not isinstance(rule.get("ruleType"), str):
                issues.append((f"{where}.ruleType", "is required (a string)"))
            if not isinstance(rule.get("isEnabled"), bool):
                issues.append((f"{where}.isEnabled", "is required: true or false"))
        shaped[family] = rules
    if issues:
        raise CustomAlertsInvalid(issues)
    return shaped


def rule_counts(document: dict[str, Any]) -> dict[str, int]:
    """How many rules each family of a stored document has."""
    return {family: len(document.get(family) or []) for family in FAMILIES}
