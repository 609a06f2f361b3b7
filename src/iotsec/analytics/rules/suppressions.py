"""Suppressions at run time: which detections they drop, and how many each one dropped."""

from __future__ import annotations

from iotsec.analytics.indicators import IntelLookup
from iotsec.analytics.observation import Observation
from iotsec.analytics.rules.conditions import Predicate, compile_condition
from iotsec.analytics.rules.model import Suppression
from iotsec.analytics.rules.runners import stamp

__all__ = ["Suppressor"]

_Entry = tuple[Suppression, float, Predicate | None]


class Suppressor:
    """Suppressions by rule id, compiled; ``counts`` says what each one dropped."""

    def __init__(self, suppressions: tuple[Suppression, ...], intel: IntelLookup) -> None:
        self.counts: dict[str, int] = {s.id: 0 for s in suppressions}
        compiled = [
            (s, stamp(s.expires), compile_condition(s.match, intel) if s.match else None)
            for s in suppressions
        ]
        self._everyone = tuple(entry for entry in compiled if entry[0].rule == "*")
        by_rule: dict[str, list[_Entry]] = {}
        for entry in compiled:
            if entry[0].rule != "*":
                by_rule.setdefault(entry[0].rule, []).append(entry)
        # Those naming the rule first, then those for every rule, each in file order.
        self._by_rule = {rule: (*entries, *self._everyone) for rule, entries in by_rule.items()}

    def __bool__(self) -> bool:
        return bool(self.counts)

    def drops(self, rule_id: str, observation: Observation) -> bool:
        """True (and counted) when a live suppression covers this rule's detection."""
        candidates = self._by_rule.get(rule_id, self._everyone)
        if not candidates:
            return False
        when = stamp(observation.time)
        device = observation.device
        for suppression, expires, predicate in candidates:
            if when >= expires:
                continue
            if suppression.scope == "device" and device.device_id != suppression.target:
                continue
            if suppression.scope == "group" and device.group != suppression.target:
                continue
            if predicate is not None and not predicate(observation):
                continue
            self.counts[suppression.id] += 1
            return True
        return False
