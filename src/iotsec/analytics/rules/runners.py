"""One compiled rule: where it can match (names, group), a cheap gate, and what fires.

``compile_rule`` splits a rule's top-level condition three ways, so the engine can do as little
as possible per observation:

- ``event`` tests become index keys: the engine only offers an observation to rules that name
  its event (the test itself is then dropped from the gate, the index having done it);
- tests on ``Group`` alone (custom alerts are per group), at the top or in an ``all`` at any
  depth, and ``not``/``any``/``all`` of such tests, become a group filter the engine evaluates
  once per group and caches;
- the rest is the gate, a compiled predicate; only when it passes does the runner count,
  sequence or report.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from iotsec.analytics.detection import Detection
from iotsec.analytics.indicators import IntelLookup
from iotsec.analytics.observation import Observation
from iotsec.analytics.rules.conditions import Predicate, compile_condition
from iotsec.analytics.rules.fields import event_names
from iotsec.analytics.rules.model import (
    AllOf,
    AnyOf,
    Condition,
    EventIs,
    FieldTest,
    Not,
    Rule,
    SourceIs,
)
from iotsec.analytics.rules.report import Reporter
from iotsec.analytics.rules.windows import (
    SequenceState,
    SequenceTracker,
    ThresholdCounter,
    ThresholdState,
)

__all__ = ["Compiled", "Runner", "WindowState", "compile_rule", "stamp"]

#: What a threshold or sequence rule saves across restarts.
WindowState = ThresholdState | SequenceState


def stamp(time: datetime) -> float:
    """POSIX seconds; a naive time is taken as UTC (observations should be aware)."""
    if time.tzinfo is None:
        time = time.replace(tzinfo=UTC)
    return time.timestamp()


def _hits(observation: Observation) -> int:
    count = observation.hit_count
    return count if isinstance(count, int) and count > 0 else 1


def _always(observation: Observation) -> bool:
    return True


class Runner:
    """What a rule does with an observation its gate let through."""

    __slots__ = ("reporter", "rule")

    def __init__(self, rule: Rule, reporter: Reporter) -> None:
        self.rule = rule
        self.reporter = reporter

    def fire(self, observation: Observation) -> Detection | None:
        """The detection ``observation`` completes, if any (before suppressions)."""
        return self.reporter.detection(observation, (observation.evidence_id,), None, None)

    def expire(self, now: float) -> None:
        """Drop state that can no longer fire."""

    def dump(self) -> WindowState | None:
        """The rule's windows or runs (None: a plain rule keeps none)."""
        return None

    def load(self, state: WindowState) -> bool:
        """Replace the rule's state with ``state``; False (and unchanged) when ``state`` is for
        another kind of rule. Raises ValueError on bad data."""
        return False

    @property
    def evicted(self) -> int:
        """Keys evicted because the rule held too many."""
        return 0

    @property
    def keys(self) -> int:
        """Keys held now."""
        return 0


class _ThresholdRunner(Runner):
    __slots__ = ("counter",)

    def __init__(self, rule: Rule, reporter: Reporter, counter: ThresholdCounter) -> None:
        super().__init__(rule, reporter)
        self.counter = counter

    def fire(self, observation: Observation) -> Detection | None:
        fired = self.counter.add(
            self.reporter.window_key(observation),
            stamp(observation.time),
            _hits(observation),
            observation.evidence_id,
            observation.time,
        )
        if fired is None:
            return None
        return self.reporter.detection(observation, fired.evidence, fired.first_time, fired)

    def expire(self, now: float) -> None:
        self.counter.expire(now)

    def dump(self) -> WindowState:
        return self.counter.dump()

    def load(self, state: WindowState) -> bool:
        if not isinstance(state, ThresholdState):
            return False
        self.counter.load(state)
        return True

    @property
    def evicted(self) -> int:
        return self.counter.evicted

    @property
    def keys(self) -> int:
        return len(self.counter)


class _SequenceRunner(Runner):
    __slots__ = ("steps", "tracker")

    def __init__(
        self,
        rule: Rule,
        reporter: Reporter,
        steps: tuple[Predicate, ...],
        tracker: SequenceTracker,
    ) -> None:
        super().__init__(rule, reporter)
        self.steps = tuple((1 << i, step) for i, step in enumerate(steps))
        self.tracker = tracker

    def fire(self, observation: Observation) -> Detection | None:
        matched = 0
        for bit, predicate in self.steps:
            if predicate(observation):
                matched |= bit
        if not matched:
            return None
        fired = self.tracker.add(
            self.reporter.window_key(observation),
            stamp(observation.time),
            steps=matched,
            hits=_hits(observation),
            evidence=observation.evidence_id,
            time=observation.time,
        )
        if fired is None:
            return None
        return self.reporter.detection(observation, fired.evidence, fired.first_time, fired)

    def expire(self, now: float) -> None:
        self.tracker.expire(now)

    def dump(self) -> WindowState:
        return self.tracker.dump()

    def load(self, state: WindowState) -> bool:
        if not isinstance(state, SequenceState) or state.steps != len(self.steps):
            return False  # the rule changed kind or steps since the save
        self.tracker.load(state)
        return True

    @property
    def evicted(self) -> int:
        return self.tracker.evicted

    @property
    def keys(self) -> int:
        return len(self.tracker)


@dataclass(frozen=True, slots=True)
class Compiled:
    """A rule ready for the engine's index."""

    #: Observation names the rule can match; None when any name can.
    names: frozenset[str] | None
    #: A test on the observation's group alone, or None.
    group: Predicate | None
    #: The rest of the rule's condition.
    gate: Predicate
    runner: Runner
    #: True for threshold and sequence rules (they keep state).
    stateful: bool
    #: The fields (and context names) the gate reads, when its answer depends on nothing else
    #: (and on the observation's name); None when it asks threat intelligence.
    reads: frozenset[str] | None = None


def compile_rule(
    rule: Rule,
    intel: IntelLookup,
    *,
    max_keys: int,
    max_entries: int,
    max_evidence: int,
) -> Compiled:
    """``rule`` compiled against ``intel``, with the given bounds on its state."""
    reporter = Reporter(rule, intel)
    if rule.sequence is not None:
        steps = tuple(compile_condition(step.match, intel) for step in rule.sequence.steps)
        names: set[str] | None = set()
        for step in rule.sequence.steps:
            step_names = event_names(step.match)
            names = None if names is None or step_names is None else names | step_names
        tracker = SequenceTracker(
            rule.sequence,
            max_keys=max_keys,
            max_entries=max_entries,
            max_evidence=max_evidence,
        )
        runner: Runner = _SequenceRunner(rule, reporter, steps, tracker)
        either = AnyOf(tuple(s.match for s in rule.sequence.steps), rule.location)
        gate = compile_condition(either, intel)
        found = frozenset(names) if names is not None else None
        return Compiled(found, None, gate, runner, True, _reads(either))
    assert rule.match is not None  # the loader guarantees match or sequence
    names_found = event_names(rule.match)
    group, rest = _split(rule.match, indexed=names_found is not None)
    gate = compile_condition(AllOf(rest, rule.location), intel) if rest else _always
    group_test = compile_condition(AllOf(group, rule.location), intel) if group else None
    reads = _reads(AllOf(rest, rule.location))
    if rule.threshold is not None:
        counter = ThresholdCounter(rule.threshold, max_keys=max_keys, max_evidence=max_evidence)
        runner = _ThresholdRunner(rule, reporter, counter)
        return Compiled(names_found, group_test, gate, runner, True, reads)
    return Compiled(names_found, group_test, gate, Runner(rule, reporter), False, reads)


def _reads(condition: Condition) -> frozenset[str] | None:
    """The field paths ``condition`` reads (``Source`` for a source test), or None if it
    also depends on threat intelligence. Event tests read the name, which the index fixes."""
    if isinstance(condition, FieldTest):
        return None if condition.intel is not None else frozenset({condition.field})
    if isinstance(condition, SourceIs):
        return frozenset({"Source"})
    if isinstance(condition, EventIs):
        return frozenset()
    parts = [_reads(condition.item)] if isinstance(condition, Not) else map(_reads, condition.items)
    found: set[str] = set()
    for part in parts:
        if part is None:
            return None
        found |= part
    return frozenset(found)


def _split(
    condition: Condition, *, indexed: bool
) -> tuple[tuple[Condition, ...], tuple[Condition, ...]]:
    """(tests on Group alone, the rest) of a rule's condition, without index-implied events.

    The condition is split along its ``all``s, nested ones included (``all`` of ``all`` is one
    ``all``): it holds when each of their items holds, so items the index or the group filter
    already guarantee can leave the gate.
    """
    group: list[Condition] = []
    rest: list[Condition] = []
    for item in _conjuncts(condition):
        if indexed and isinstance(item, EventIs):
            continue  # the index only offers observations with one of these names
        if _group_only(item):
            group.append(item)
        else:
            rest.append(item)
    return tuple(group), tuple(rest)


def _conjuncts(condition: Condition) -> list[Condition]:
    """The conditions that must all hold for ``condition`` to hold (nested ``all`` opened)."""
    if isinstance(condition, AllOf):
        return [part for item in condition.items for part in _conjuncts(item)]
    return [condition]


def _group_only(condition: Condition) -> bool:
    """True for a condition that reads the observation's group and nothing else."""
    if isinstance(condition, FieldTest):
        # An intel answer can change when a feed reloads, so only a fixed test is cached.
        return condition.field == "Group" and condition.intel is None
    if isinstance(condition, Not):
        return _group_only(condition.item)
    if isinstance(condition, (AllOf, AnyOf)):
        return bool(condition.items) and all(map(_group_only, condition.items))
    return False
