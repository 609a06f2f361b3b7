"""The rules one (event name, group) meets, and which of them pass for the values they read.

A fleet repeats itself: the same cron jobs, health checks and programs, the same few ports and
users, so observations of one name and group mostly carry values already seen. A rule's gate
(``iotsec.analytics.rules.runners``) is a function of the fields it reads, unless it asks
threat intelligence (whose answer changes when a feed reloads), so a ``Bucket`` remembers, for
the values its pure gates read, which of those gates pass: most observations then cost one
dictionary lookup, however many rules they meet.

The key is the values and their types (``1``, ``1.0`` and ``true`` are equal in Python but
not to every operator). Observations with a map, a list or a float in a key field (``0.0`` and
``-0.0`` are equal too, but read ``0.0`` and ``-0.0``), or a long text, are evaluated rule by
rule and not remembered. Where values rarely repeat (a field that is new in most observations,
such as a random port), remembering costs more than it saves: a bucket that answered fewer
than half of ``MEMO_CHECK`` lookups from memory evaluates rule by rule for the next
``MEMO_PAUSE`` observations, then tries again.
"""

from __future__ import annotations

from collections.abc import Sequence

from iotsec.analytics.observation import Observation
from iotsec.analytics.rules.conditions import Predicate, field_getter
from iotsec.analytics.rules.fields import CONTEXT_FIELDS
from iotsec.analytics.rules.runners import Compiled, Runner

__all__ = ["MEMO_CHECK", "MEMO_KEYS", "MEMO_PAUSE", "MEMO_VALUE", "Bucket", "Plan"]

#: Value combinations a bucket remembers; a full memory is emptied and refilled.
MEMO_KEYS = 2_048
#: Observations with a text longer than this in a key field are not remembered.
MEMO_VALUE = 256
#: Lookups after which a bucket checks that at least half were answered from memory.
MEMO_CHECK = 4_096
#: Observations a bucket whose values did not repeat evaluates rule by rule before it tries
#: remembering again.
MEMO_PAUSE = 65_536

#: What to run for an observation: (gate, runner), the gate None when it is known to pass.
Plan = tuple[tuple[Predicate | None, Runner], ...]


class Bucket:
    """The rules of one (event name, group), in file order, with a memory of their answers."""

    __slots__ = (
        "_hits",
        "_memo",
        "_misses",
        "_other",
        "_paused",
        "_plain",
        "_pure",
        "_rules",
        "entries",
    )

    def __init__(self, compiled: Sequence[Compiled]) -> None:
        self._rules = tuple((c.gate, c.runner) for c in compiled)
        #: Every rule's (gate, runner), to evaluate one by one.
        self.entries: Plan = self._rules
        self._pure = tuple(c.reads is not None for c in compiled)
        paths = sorted({path for c in compiled for path in c.reads or ()})
        # Payload fields are read in one pass (``map``); context names and paths one by one.
        self._plain = tuple(p for p in paths if "." not in p and p not in CONTEXT_FIELDS)
        self._other = tuple(field_getter(p) for p in paths if p not in self._plain)
        self._memo: dict[object, Plan] | None = {} if any(self._pure) else None
        self._misses = self._hits = self._paused = 0

    def plan(self, observation: Observation) -> Plan:
        """What to run for ``observation``: its pure rules already decided where remembered."""
        memo = self._memo
        if memo is None:
            return self.entries
        if self._paused:
            self._paused -= 1
            return self.entries
        values = tuple(map(observation.fields.get, self._plain))
        if self._other:
            values += tuple([get(observation) for get in self._other])
        types = tuple(map(type, values))
        try:
            plan = None if float in types else memo.get((values, types))
        except TypeError:  # a map or list: unhashable, so evaluated rule by rule
            return self.entries
        if plan is None:
            plan = self._decide(observation)
            self._remember(memo, values, types, plan)
        else:
            self._hits += 1
        return plan

    def _remember(
        self,
        memo: dict[object, Plan],
        values: tuple[object, ...],
        types: tuple[type, ...],
        plan: Plan,
    ) -> None:
        """Keep ``plan`` for these values (unless they are not to be kept, or memory pauses)."""
        self._misses += 1
        if self._misses + self._hits >= MEMO_CHECK:
            if self._misses > self._hits:
                self._paused = MEMO_PAUSE  # values rarely repeat here: not worth remembering
                memo.clear()
            self._misses = self._hits = 0
            return
        if float in types:
            return
        for value in values:
            if type(value) is str and len(value) > MEMO_VALUE:
                return
        if len(memo) >= MEMO_KEYS:
            memo.clear()
        memo[(values, types)] = plan

    def _decide(self, observation: Observation) -> Plan:
        """The plan for ``observation``: pure gates evaluated now, the others left to run."""
        plan: list[tuple[Predicate | None, Runner]] = []
        for (gate, runner), pure in zip(self._rules, self._pure, strict=True):
            if not pure:
                plan.append((gate, runner))
            elif gate(observation):
                plan.append((None, runner))
        return tuple(plan)
