"""The engine's windows and runs across a restart: dump, load, and the state file."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from iotsec.analytics import Detection, StateError
from iotsec.analytics.baseline.state import StateStore
from iotsec.analytics.rules import RuleEngine
from tests.analytics.rules.conftest import at
from tests.analytics.rules.test_engine import SEQUENCE, engine, fail, feed, success

THRESHOLD = """\
rules:
  - id: Brute
    name: Brute force
    severity: Low
    description: "{count} failures from {RemoteAddress}"
    match: {event: Login, field: Result, equals: Fail}
    threshold: {count: 5, window: 10m, by: [DeviceId, RemoteAddress]}
"""


def restarted(before: RuleEngine, rules: str) -> RuleEngine:
    after = engine(rules)
    after.load_state(before.dump_state())
    return after


def test_a_threshold_keeps_its_count_across_a_restart() -> None:
    before = engine(THRESHOLD)
    assert feed(before, [fail(0), fail(10), fail(20)]) == []
    after = restarted(before, THRESHOLD)
    assert after.state_keys == {"Brute": 1}
    (found,) = feed(after, [fail(30), fail(40)])
    assert found.description == "5 failures from 198.51.100.1"
    assert found.first_time == at(0)
    assert found.evidence[0] == "f0-198.51.100.1-dev-1:0"
    assert feed(engine(THRESHOLD), [fail(30), fail(40)]) == []  # without the load: 2 of 5


def test_a_fired_threshold_stays_fired_across_a_restart() -> None:
    before = engine(THRESHOLD)
    assert len(feed(before, [fail(t) for t in range(5)])) == 1
    assert feed(restarted(before, THRESHOLD), [fail(5), fail(6)]) == []


def test_a_sequence_keeps_its_run_across_a_restart() -> None:
    before = engine(SEQUENCE)
    assert feed(before, [fail(0), fail(10), fail(20)]) == []
    (found,) = restarted(before, SEQUENCE).observe(success(30))
    assert found.evidence == (
        "f0-198.51.100.1-dev-1:0",
        "f10-198.51.100.1-dev-1:0",
        "f20-198.51.100.1-dev-1:0",
        "s30:0",
    )
    assert found.first_time == at(0)
    assert engine(SEQUENCE).observe(success(30)) == []  # without the load: no failures seen


def test_a_loaded_run_still_needs_its_steps_within_the_window() -> None:
    before = engine(SEQUENCE)
    feed(before, [fail(0), fail(10), fail(20)])
    assert restarted(before, SEQUENCE).observe(success(601)) == []  # 10m after the first


def test_loaded_windows_expire_on_the_next_tick() -> None:
    before = engine(THRESHOLD)
    feed(before, [fail(0), fail(10, ip="203.0.113.9")])
    after = restarted(before, THRESHOLD)
    after.tick(at(605))
    assert after.state_keys == {"Brute": 1}
    after.tick(at(611))
    assert after.state_keys == {"Brute": 0}


def test_entries_of_unknown_rules_and_other_kinds_are_skipped() -> None:
    threshold = engine(THRESHOLD)
    feed(threshold, [fail(0)])
    sequence = engine(SEQUENCE)
    feed(sequence, [fail(0)])
    # "Brute" is a sequence now; "BruteSuccess" no longer exists.
    other_kind = engine(SEQUENCE.replace("BruteSuccess", "Brute"))
    other_kind.load_state({**threshold.dump_state(), **sequence.dump_state()})
    assert other_kind.state_keys == {"Brute": 0}
    feed(other_kind, [fail(10), fail(20)])
    assert other_kind.observe(success(30)) == []  # the threshold's failure is not a step


def test_a_sequence_whose_steps_changed_is_skipped() -> None:
    before = engine(SEQUENCE)
    feed(before, [fail(0)])
    fewer = SEQUENCE.split("        - name: success")[0]
    after = engine(fewer.replace("count: 3", "count: 1") + _SECOND_STEP + _THIRD_STEP)
    after.load_state(before.dump_state())
    assert after.state_keys == {"BruteSuccess": 0}


_SECOND_STEP = """\
        - name: success
          match: {event: Login, field: Result, equals: Success}
"""
_THIRD_STEP = """\
        - name: again
          match: {event: Login, field: Result, equals: Success}
"""


@pytest.mark.parametrize(
    "data",
    [
        b"not json",
        b"{}",
        b'{"version": 2, "state": {"type": "threshold", "windows": []}}',
        b'{"version": 1, "state": {"type": "nonsense", "windows": []}}',
        b'{"version": 1, "state": {"type": "threshold", "windows": [{"key": 1}]}}',
        b'{"version": 1, "state": {"type": "threshold", "windows": [{"key": "a",'
        b' "newest": 1.0, "fired_count": false, "fired_max": false, "done": false,'
        b' "entries": [[1.0, 0, "e"]]}]}}',
        b'{"version": 1, "state": {"type": "threshold", "windows": [{"key": "a",'
        b' "newest": 1.0, "fired_count": false, "fired_max": false, "done": false,'
        b' "entries": [[1e20, 1, "e"]]}]}}',
        b'{"version": 1, "state": {"type": "sequence", "steps": 2, "arrivals": 1, "runs":'
        b' [{"key": null, "newest": 1.0, "entries": [[1.0, 1, 4, 1, "e"]]}]}}',
    ],
)
def test_bad_entries_raise_value_error(data: bytes) -> None:
    rules = engine(THRESHOLD + SEQUENCE.removeprefix("rules:\n"))
    entry = "BruteSuccess" if b"sequence" in data else "Brute"
    with pytest.raises(ValueError):
        rules.load_state({entry: data})


def test_the_state_round_trips_through_a_state_file(tmp_path: Path) -> None:
    both = THRESHOLD + SEQUENCE.removeprefix("rules:\n")
    before = engine(both)
    feed(before, [fail(0), fail(10), fail(20), fail(30, ip="203.0.113.9")])
    store = StateStore(tmp_path / "analytics-state.db")
    store.save({"rules": before})
    after = engine(both)
    assert store.load({"rules": after}) == {"rules": 2}
    assert after.state_keys == before.state_keys == {"Brute": 2, "BruteSuccess": 2}
    found: list[Detection] = feed(after, [fail(40), success(50), fail(60)])
    assert sorted(d.rule_id for d in found) == ["Brute", "BruteSuccess"]
    assert after.dump_state().keys() == before.dump_state().keys()


def test_a_bad_entry_in_the_state_file_is_a_state_error(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "analytics-state.db")
    store.save({"rules": _Fixed({"Brute": b"{}"})})
    with pytest.raises(StateError, match="component rules"):
        store.load({"rules": engine(THRESHOLD)})


class _Fixed:
    def __init__(self, entries: dict[str, bytes]) -> None:
        self.entries = entries

    def dump_state(self) -> dict[str, bytes]:
        return self.entries

    def load_state(self, entries: Mapping[str, bytes]) -> None:
        raise AssertionError("not loaded")
