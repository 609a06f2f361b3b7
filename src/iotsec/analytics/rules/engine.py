"""``RuleEngine``: runs a ``RuleSet`` over observations, as a ``Detector``.

Rules are compiled once, when the engine is built, and indexed by the observation names they
can match and by the device groups they are for (custom alerts are per group), so an
observation only meets the rules that could fire on it (``iotsec.analytics.rules.runners``
says how a rule is split into index keys and a gate); for the values an observation carries,
each (name, group) remembers which of its rules pass (``iotsec.analytics.rules.buckets``).
Threshold and sequence rules keep per-key state (``iotsec.analytics.rules.windows``), bounded
by ``EngineLimits``; ``tick`` expires it, and ``dump_state``/``load_state`` carry it across
restarts (the ``Stateful`` protocol, one JSON entry per rule id). Suppressions drop detections
after a rule fires and count what each one dropped.

>>> from datetime import UTC, datetime
>>> from iotsec.analytics import DeviceContext, Observation
>>> from iotsec.analytics.rules import load_rules_text
>>> rules = load_rules_text('''
... rules:
...   - id: Demo_Netcat
...     name: Netcat started
...     severity: Medium
...     description: "{Executable} started on {DeviceId}"
...     match: {event: ProcessCreate, field: Executable, endswith: /nc}
... ''')
>>> engine = RuleEngine(rules)
>>> obs = Observation("agent", "ProcessCreate", datetime(2025, 1, 1, tzinfo=UTC),
...                   DeviceContext("dev-1"), {"Executable": "/bin/nc"}, "e1")
>>> [d.description for d in engine.observe(obs)]
['/bin/nc started on dev-1']
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType

import msgspec

from iotsec.analytics.detection import Detection
from iotsec.analytics.indicators import NO_INTEL, IntelLookup
from iotsec.analytics.observation import Observation
from iotsec.analytics.rules.buckets import Bucket
from iotsec.analytics.rules.model import RuleSet
from iotsec.analytics.rules.runners import Compiled, WindowState, compile_rule, stamp
from iotsec.analytics.rules.suppressions import Suppressor

__all__ = ["EngineLimits", "RuleEngine"]

#: Distinct (event name, group) pairs whose rule lists are cached; past this the lists are
#: built per observation (a fleet has a handful of groups, so this is never reached in practice).
MAX_BUCKETS = 4096

#: The format of a saved rule's state; an entry of another version is refused.
STATE_VERSION = 1


class _Saved(msgspec.Struct, forbid_unknown_fields=True):
    """One rule's saved state."""

    version: int
    state: WindowState


@dataclass(frozen=True, slots=True)
class EngineLimits:
    """Bounds on the engine's state, so a flood of distinct keys cannot exhaust memory."""

    #: Keys (``by`` values) a threshold or sequence rule tracks; the least recently updated
    #: key is evicted beyond this (``RuleEngine.evicted`` counts them).
    max_keys_per_rule: int = 10_000
    #: Observations one sequence key keeps within its ``within``.
    max_sequence_entries: int = 1_000
    #: Evidence ids one detection cites.
    max_evidence: int = 50

    def __post_init__(self) -> None:
        if min(self.max_keys_per_rule, self.max_sequence_entries, self.max_evidence) < 1:
            raise ValueError("engine limits must be at least 1")


class RuleEngine:
    """Evaluates a ``RuleSet`` over observations (the ``Detector`` protocol).

    Args:
        ruleset: the rules and suppressions to run.
        intel: answers ``intel:`` tests (``NO_INTEL``: nothing is an indicator).
        limits: bounds on per-key state.
    """

    def __init__(
        self,
        ruleset: RuleSet,
        intel: IntelLookup = NO_INTEL,
        *,
        limits: EngineLimits | None = None,
    ) -> None:
        self.ruleset = ruleset
        self.limits = limits or EngineLimits()
        self._compiled = tuple(
            compile_rule(
                rule,
                intel,
                max_keys=self.limits.max_keys_per_rule,
                max_entries=self.limits.max_sequence_entries,
                max_evidence=self.limits.max_evidence,
            )
            for rule in ruleset
        )
        self._suppressor = Suppressor(ruleset.suppressions, intel)
        self._stateful = tuple(c.runner for c in self._compiled if c.stateful)
        # Rules by the observation names they can match, in file order; rules that can match
        # any name are in every list, and are all that a name no rule names meets.
        anywhere = [c for c in self._compiled if c.names is None]
        named: dict[str, list[Compiled]] = {}
        for compiled in self._compiled:
            for name in compiled.names or ():
                named.setdefault(name, [])
        for compiled in self._compiled:
            for name, bucket in named.items():
                if compiled.names is None or name in compiled.names:
                    bucket.append(compiled)
        self._by_name = {name: tuple(bucket) for name, bucket in named.items()}
        self._anywhere = tuple(anywhere)
        self._buckets: dict[tuple[str, str], Bucket] = {}

    def _bucket(self, observation: Observation) -> Bucket:
        """The rules this observation's name and group can meet."""
        candidates = self._by_name.get(observation.name, self._anywhere)
        # A group filter reads only the group, so this observation answers it for the group.
        bucket = Bucket([c for c in candidates if c.group is None or c.group(observation)])
        if len(self._buckets) < MAX_BUCKETS:
            self._buckets[(observation.name, observation.device.group)] = bucket
        return bucket

    def observe(self, observation: Observation) -> list[Detection]:
        """Detections this observation completes (after suppressions)."""
        bucket = self._buckets.get((observation.name, observation.device.group))
        if bucket is None:
            bucket = self._bucket(observation)
        found: list[Detection] = []
        if not bucket.entries:
            return found  # most snapshot rows: no rule is about them
        for gate, runner in bucket.plan(observation):
            if gate is not None and not gate(observation):
                continue
            detection = runner.fire(observation)
            if detection is None:
                continue
            if self._suppressor and self._suppressor.drops(runner.rule.id, observation):
                continue
            found.append(detection)
        return found

    def tick(self, now: datetime) -> list[Detection]:
        """Expire windows and runs that can no longer fire; rules fire only on observations."""
        when = stamp(now)
        for runner in self._stateful:
            runner.expire(when)
        return []

    @property
    def suppressed(self) -> Mapping[str, int]:
        """Detections dropped so far, per suppression id (every suppression listed)."""
        return MappingProxyType(self._suppressor.counts)

    @property
    def evicted(self) -> Mapping[str, int]:
        """Keys evicted so far because a rule held ``max_keys_per_rule`` keys, per rule id."""
        return MappingProxyType({r.rule.id: r.evicted for r in self._stateful if r.evicted})

    @property
    def state_keys(self) -> Mapping[str, int]:
        """Keys each threshold or sequence rule holds now, per rule id."""
        return MappingProxyType({r.rule.id: r.keys for r in self._stateful})

    def dump_state(self) -> dict[str, bytes]:
        """Each threshold and sequence rule's windows or runs, as JSON entries per rule id."""
        entries: dict[str, bytes] = {}
        for runner in self._stateful:
            state = runner.dump()
            if state is not None:
                entries[runner.rule.id] = msgspec.json.encode(_Saved(STATE_VERSION, state))
        return entries

    def load_state(self, entries: Mapping[str, bytes]) -> None:
        """Replace the state of the rules in ``entries`` (from ``dump_state``).

        Entries of rules that no longer exist, or are now of another kind (or a sequence with
        other steps), are skipped. Rules with no entry keep their state. Raises ValueError (or a
        msgspec error) on bad data.
        """
        saved: dict[str, WindowState] = {}
        for rule_id, data in entries.items():
            found = msgspec.json.decode(data, type=_Saved)
            if found.version != STATE_VERSION:
                raise ValueError(
                    f"rule {rule_id}: state version {found.version}, expected {STATE_VERSION}"
                )
            saved[rule_id] = found.state
        for runner in self._stateful:
            state = saved.get(runner.rule.id)
            if state is not None:
                runner.load(state)
