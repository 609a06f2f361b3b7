"""The state behind counting rules: sliding threshold windows and sequence runs, per key.

Both keep their keys in a dict ordered by last update, which gives two bounds for free: when a
rule has ``max_keys`` keys the least recently updated one is evicted (and counted), and expiry
on ``tick`` walks from the oldest key and stops at the first live one.

Times are POSIX seconds of observation time (not arrival time). A window or ``within`` is
inclusive: two observations exactly ``window`` apart are in the same window.

``dump`` and ``load`` give the state as plain ``msgspec`` values (times as POSIX floats), so the
engine can save it across restarts; a load keeps the bounds (``max_keys``, ``max_entries``), and
what has expired meanwhile is dropped by the next ``expire``.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass
from datetime import UTC, datetime
from math import isfinite
from typing import Literal

import msgspec

from iotsec.analytics.rules.model import Sequence, Threshold

__all__ = [
    "Fired",
    "SequenceState",
    "SequenceTracker",
    "ThresholdCounter",
    "ThresholdState",
]

#: One observation as the windows keep it: (time, hit count, evidence id, time as datetime).
_Entry = tuple[float, int, str, datetime]
#: One step observation of a sequence: (time, arrival number, steps matched as bits, hit count,
#: evidence id, time as datetime); the arrival number orders equal times.
_StepEntry = tuple[float, int, int, int, str, datetime]


@dataclass(frozen=True, slots=True)
class Fired:
    """A threshold or sequence that just fired: how many observations, and which."""

    count: int
    evidence: tuple[str, ...]
    first_time: datetime
    level: Literal["count", "max", "sequence"]


#: A window key as JSON: one ``by`` value (a string or null), or a list of them.
_JsonKey = str | None | list[str | None]


class _SavedWindow(msgspec.Struct, forbid_unknown_fields=True):
    key: _JsonKey
    newest: float
    fired_count: bool
    fired_max: bool
    done: bool
    #: (time, hit count, evidence id) per observation, in time order.
    entries: list[tuple[float, int, str]]


class ThresholdState(msgspec.Struct, tag="threshold", forbid_unknown_fields=True):
    """A ``ThresholdCounter``'s windows, least recently updated first."""

    windows: list[_SavedWindow]


class _SavedRun(msgspec.Struct, forbid_unknown_fields=True):
    key: _JsonKey
    newest: float
    #: (time, arrival number, steps matched as bits, hit count, evidence id), in order.
    entries: list[tuple[float, int, int, int, str]]


class SequenceState(msgspec.Struct, tag="sequence", forbid_unknown_fields=True):
    """A ``SequenceTracker``'s runs, least recently updated first, for a rule of ``steps``."""

    steps: int
    arrivals: int
    runs: list[_SavedRun]


def _json_key(key: Hashable) -> _JsonKey:
    if isinstance(key, tuple):
        return [None if part is None else str(part) for part in key]
    return None if key is None else str(key)


def _key(key: _JsonKey) -> Hashable:
    return tuple(key) if isinstance(key, list) else key


def _time(when: float) -> float:
    if not isfinite(when):
        raise ValueError(f"time {when} is not finite")
    return when


def _datetime(when: float) -> datetime:
    try:
        return datetime.fromtimestamp(when, UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise ValueError(f"time {when} is out of range") from exc


def _hits(hits: int) -> int:
    if hits < 1:
        raise ValueError(f"hit count {hits} is below 1")
    return hits


def _evidence(ids: list[str], trigger: str, cap: int) -> tuple[str, ...]:
    """At most ``cap`` ids, keeping the earliest ones and always the trigger."""
    if len(ids) <= cap:
        return tuple(ids)
    return (*ids[: cap - 1], trigger)


class _Window:
    __slots__ = ("done", "entries", "fired_count", "fired_max", "newest", "total")

    def __init__(self) -> None:
        self.entries: deque[_Entry] = deque()
        self.total = 0
        self.newest = float("-inf")
        self.fired_count = False
        self.fired_max = False
        #: Every level has fired: only ``newest`` matters until the window empties.
        self.done = False


class ThresholdCounter:
    """Sliding windows of one threshold rule, one per ``by`` key."""

    def __init__(self, threshold: Threshold, *, max_keys: int, max_evidence: int) -> None:
        self.window = threshold.window.total_seconds()
        self.count = threshold.count
        self.max = threshold.max
        self.max_keys = max_keys
        self.max_evidence = max_evidence
        #: Keys dropped because the rule held ``max_keys`` keys.
        self.evicted = 0
        self._keys: dict[Hashable, _Window] = {}

    def __len__(self) -> int:
        return len(self._keys)

    def add(
        self, key: Hashable, when: float, hits: int, evidence: str, time: datetime
    ) -> Fired | None:
        """Count one matching observation; what fired, if anything."""
        keys = self._keys
        window = keys.pop(key, None)
        if window is None:
            if len(keys) >= self.max_keys:
                del keys[next(iter(keys))]
                self.evicted += 1
            window = _Window()
        elif when - window.newest > self.window:
            window = _Window()  # the window emptied since the last match: armed again
        keys[key] = window
        span = self.window
        if when < window.newest - span:
            return None  # late, and outside the current window
        if window.done:
            window.newest = max(window.newest, when)
            return None
        entries = window.entries
        entry = (when, hits, evidence, time)
        if not entries or when >= entries[-1][0]:
            entries.append(entry)
        else:  # late but inside the window: keep time order
            position = bisect_left([e[0] for e in entries], when)
            entries.insert(position, entry)
        window.total += hits
        window.newest = max(window.newest, when)
        cutoff = window.newest - span
        while entries[0][0] < cutoff:
            window.total -= entries.popleft()[1]
        return self._fire(window, evidence)

    def _fire(self, window: _Window, trigger: str) -> Fired | None:
        level: Literal["count", "max"] | None = None
        if self.count is not None and not window.fired_count and window.total >= self.count:
            window.fired_count = True
            level = "count"
        if self.max is not None and not window.fired_max and window.total > self.max:
            window.fired_max = True
            level = "max"
        if level is None:
            return None
        entries = window.entries
        fired = Fired(
            window.total,
            _evidence([e[2] for e in entries], trigger, self.max_evidence),
            entries[0][3],
            level,
        )
        if (self.count is None or window.fired_count) and (self.max is None or window.fired_max):
            window.done = True
            entries.clear()
        return fired

    def expire(self, now: float) -> int:
        """Drop windows with no match within the window before ``now``; how many."""
        keys = self._keys
        dropped = 0
        while keys:
            key = next(iter(keys))
            if now - keys[key].newest <= self.window:
                break
            del keys[key]
            dropped += 1
        return dropped

    def dump(self) -> ThresholdState:
        """The windows, as plain values."""
        return ThresholdState(
            [
                _SavedWindow(
                    _json_key(key),
                    window.newest,
                    window.fired_count,
                    window.fired_max,
                    window.done,
                    [(e[0], e[1], e[2]) for e in window.entries],
                )
                for key, window in self._keys.items()
            ]
        )

    def load(self, state: ThresholdState) -> None:
        """Replace the windows with ``state`` (the newest ``max_keys``); ValueError if bad."""
        keys: dict[Hashable, _Window] = {}
        for saved in state.windows[-self.max_keys :]:
            window = _Window()
            window.newest = _time(saved.newest)
            window.fired_count, window.fired_max = saved.fired_count, saved.fired_max
            window.done = saved.done
            entries = sorted(saved.entries, key=lambda e: e[0])
            window.entries.extend(
                (when, _hits(hits), evidence, _datetime(when)) for when, hits, evidence in entries
            )
            window.total = sum(e[1] for e in window.entries)
            keys[_key(saved.key)] = window
        self._keys = keys


class _Run:
    __slots__ = ("entries", "newest")

    def __init__(self) -> None:
        self.entries: list[_StepEntry] = []
        self.newest = float("-inf")


class SequenceTracker:
    """Partial runs of one sequence rule, one per ``by`` key."""

    def __init__(
        self, sequence: Sequence, *, max_keys: int, max_entries: int, max_evidence: int
    ) -> None:
        self.within = sequence.within.total_seconds()
        self.counts = tuple(step.count for step in sequence.steps)
        self.last_bit = 1 << (len(self.counts) - 1)
        self.max_keys = max_keys
        self.max_entries = max_entries
        self.max_evidence = max_evidence
        self.evicted = 0
        self._keys: dict[Hashable, _Run] = {}
        self._arrivals = 0

    def __len__(self) -> int:
        return len(self._keys)

    def add(
        self,
        key: Hashable,
        when: float,
        *,
        steps: int,
        hits: int,
        evidence: str,
        time: datetime,
    ) -> Fired | None:
        """Record an observation matching the steps in bit set ``steps``; what fired, if any."""
        keys = self._keys
        run = keys.pop(key, None)
        if run is None:
            if len(keys) >= self.max_keys:
                del keys[next(iter(keys))]
                self.evicted += 1
            run = _Run()
        keys[key] = run
        within = self.within
        if when < run.newest - within:
            return None
        self._arrivals += 1
        entry = (when, self._arrivals, steps, hits, evidence, time)
        entries = run.entries
        in_order = not entries or when >= entries[-1][0]
        if in_order:
            entries.append(entry)
        else:
            insort(entries, entry)
        run.newest = max(run.newest, when)
        stale = bisect_left(entries, (run.newest - within,))
        if stale:
            del entries[:stale]
        if len(entries) > self.max_entries:
            del entries[: len(entries) - self.max_entries]
        if in_order and not steps & self.last_bit:
            return None  # only a last step (or a late arrival) can complete a run
        picked = self._chain(entries)
        if picked is None:
            return None
        del keys[key]  # fired: the next alert needs a whole new run
        return Fired(
            sum(e[3] for e in picked),
            _evidence([e[4] for e in picked], evidence, self.max_evidence),
            picked[0][5],
            "sequence",
        )

    def _chain(self, entries: list[_StepEntry]) -> list[_StepEntry] | None:
        """The latest-starting run in ``entries`` (all within ``within``), or None.

        Works backwards: the last step takes its most recent matches, each earlier step the
        most recent matches before the earliest one its successor took.
        """
        end = len(entries)
        picked: list[_StepEntry] = []
        for step in range(len(self.counts) - 1, -1, -1):
            bit = 1 << step
            need = self.counts[step]
            index = end - 1
            while index >= 0 and need > 0:
                entry = entries[index]
                if entry[2] & bit:
                    picked.append(entry)
                    need -= entry[3]
                    end = index
                index -= 1
            if need > 0:
                return None
        picked.reverse()
        return picked

    def expire(self, now: float) -> int:
        """Drop runs whose newest observation is more than ``within`` before ``now``."""
        keys = self._keys
        dropped = 0
        while keys:
            key = next(iter(keys))
            if now - keys[key].newest <= self.within:
                break
            del keys[key]
            dropped += 1
        return dropped

    def dump(self) -> SequenceState:
        """The runs, as plain values."""
        return SequenceState(
            len(self.counts),
            self._arrivals,
            [
                _SavedRun(_json_key(key), run.newest, [e[:5] for e in run.entries])
                for key, run in self._keys.items()
            ],
        )

    def load(self, state: SequenceState) -> None:
        """Replace the runs with ``state`` (the newest ``max_keys``); ValueError if bad."""
        if state.steps != len(self.counts):
            raise ValueError(f"{state.steps} steps saved, the rule has {len(self.counts)}")
        every = (1 << len(self.counts)) - 1
        keys: dict[Hashable, _Run] = {}
        arrivals = state.arrivals
        for saved in state.runs[-self.max_keys :]:
            run = _Run()
            run.newest = _time(saved.newest)
            for when, arrival, steps, hits, evidence in sorted(saved.entries)[-self.max_entries :]:
                if not 0 < steps <= every:
                    raise ValueError(f"step bits {steps} outside 1..{every}")
                time = _datetime(when)
                run.entries.append((when, arrival, steps, _hits(hits), evidence, time))
                arrivals = max(arrivals, arrival)
            keys[_key(saved.key)] = run
        self._keys, self._arrivals = keys, arrivals
