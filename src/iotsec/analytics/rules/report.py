"""Turning a rule that fired into a ``Detection``: rendered text, evidence, keys, properties.

The dedup key is ``<rule id>|<device id>|<value>...`` where the values are those of the rule's
``key`` fields, or else its ``by`` fields, other than ``DeviceId`` (a ``|`` or ``\\`` inside a
value is escaped), so "the same alert" means the same rule, device and counted key.
"""

from __future__ import annotations

from collections.abc import Hashable
from datetime import datetime
from types import MappingProxyType

from iotsec.analytics.detection import Detection
from iotsec.analytics.indicators import IntelLookup, IntelMatch
from iotsec.analytics.observation import Observation
from iotsec.analytics.rules.conditions import Getter, field_getter, find_intel
from iotsec.analytics.rules.fields import field_tests
from iotsec.analytics.rules.model import Condition, Rule
from iotsec.analytics.rules.templates import render, text
from iotsec.analytics.rules.windows import Fired

__all__ = ["MAX_TESTED_PROPERTIES", "Reporter", "dedup_key"]

#: A match rule's detection shows at most this many of the fields its conditions test.
MAX_TESTED_PROPERTIES = 8


def _key_value(value: object) -> Hashable:
    return value if value is None or type(value) is str else text(value)


def _escape(value: str) -> str:
    if "|" in value or "\\" in value:
        return value.replace("\\", "\\\\").replace("|", "\\|")
    return value


def dedup_key(rule_id: str, device_id: str, values: tuple[object, ...]) -> str:
    """``rule|device|v1|v2...``, with ``|`` and ``\\`` in the parts escaped."""
    parts = [_escape(rule_id), _escape(device_id), *(_escape(text(v)) for v in values)]
    return "|".join(parts)


class Reporter:
    """What a rule needs, precomputed, to describe what it saw."""

    def __init__(self, rule: Rule, intel: IntelLookup) -> None:
        self.rule = rule
        self.intel = intel
        window = rule.threshold or rule.sequence
        self._by = tuple(field_getter(name) for name in window.by) if window else ()
        # The device is always part of the key; "DeviceId" in ``by`` would only repeat it.
        self._key = tuple(
            (name, field_getter(name)) for name in rule.dedup_fields if name != "DeviceId"
        )
        self._window_text = (
            rule.threshold.window_text
            if rule.threshold
            else rule.sequence.within_text
            if rule.sequence
            else ""
        )
        conditions: list[Condition] = [rule.match] if rule.match else []
        if rule.sequence:
            conditions.extend(step.match for step in rule.sequence.steps)
        tests = [t for c in conditions for t in field_tests(c)]
        self._intel = tuple((field_getter(t.field), t.intel) for t in tests if t.intel)
        shown: dict[str, Getter] = {}
        if window is None:
            for test in tests:
                if test.field not in shown and len(shown) < MAX_TESTED_PROPERTIES:
                    shown[test.field] = field_getter(test.field)
        self._shown = tuple(
            (name, get) for name, get in shown.items() if name not in dict(self._key)
        )
        self._dedup_seconds = rule.dedup.total_seconds()

    def window_key(self, observation: Observation) -> Hashable:
        """The ``by`` values of ``observation``: which window or run it belongs to."""
        by = self._by
        if len(by) == 1:
            return _key_value(by[0](observation))
        return tuple(_key_value(get(observation)) for get in by)

    def _intel_match(self, observation: Observation) -> IntelMatch | None:
        for get, kind in self._intel:
            match = find_intel(get, kind, self.intel, observation)
            if match is not None:
                return match
        return None

    def detection(
        self,
        observation: Observation,
        evidence: tuple[str, ...],
        first_time: datetime | None,
        fired: Fired | None,
    ) -> Detection:
        """The detection for ``observation`` (the one that completed the rule)."""
        rule = self.rule
        properties: dict[str, str] = {}
        key_values = []
        for name, get in self._key:
            value = get(observation)
            key_values.append(value)
            properties[name] = text(value)
        for name, get in self._shown:
            value = get(observation)
            if value is not None:
                properties[name] = text(value)
        count = fired.count if fired is not None else None
        if fired is not None:
            properties["Count"] = str(fired.count)
            properties["Window"] = self._window_text
            if fired.level == "max" and rule.threshold is not None:
                properties["Threshold"] = f"more than {rule.threshold.max}"
            elif fired.level == "count" and rule.threshold is not None:
                properties["Threshold"] = f"at least {rule.threshold.count}"
        match = self._intel_match(observation) if self._intel else None
        if match is not None:
            properties["Indicator"] = match.indicator
            properties["Feed"] = match.feed
            properties["IndicatorValue"] = match.value
            if match.indicator_id:
                properties["IndicatorId"] = match.indicator_id
        window_text = self._window_text

        def lookup(name: str) -> object:
            if name == "count":
                return count
            if name == "window":
                return window_text
            if name == "indicator":
                return match.indicator if match else None
            if name == "feed":
                return match.feed if match else None
            return observation.get(name)

        device = observation.device
        return Detection(
            rule_id=rule.id,
            display_name=rule.name,
            severity=rule.severity,
            device=device,
            time=observation.time,
            description=render(rule.description, lookup),
            evidence=evidence,
            dedup_key=dedup_key(rule.id, device.device_id, tuple(key_values)),
            origin="rule",
            first_time=first_time or observation.time,
            remediation=tuple(render(step, lookup) for step in rule.remediation),
            tactics=rule.tactics,
            techniques=rule.techniques,
            properties=MappingProxyType(properties),
            dedup_seconds=self._dedup_seconds,
        )
