"""The state file: what was learned survives a restart; bad files raise StateError."""

from __future__ import annotations

import doctest
import json
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

from iotsec.analytics import StateError
from iotsec.analytics.baseline import (
    LearningPolicy,
    NoveltyConfig,
    NoveltyDetector,
    OutlierDetector,
    RateDetector,
    StateStore,
)
from iotsec.analytics.baseline import state as state_module
from iotsec.analytics.fleet import DeviceOnboardedDetector, DeviceSilentDetector
from iotsec.analytics.recommendations import Recommendations, RecommendationTracker
from tests.analytics.baseline.test_outlier import CONFIG as OUTLIER_CONFIG
from tests.analytics.baseline.test_outlier import Fleet, _exfiltration
from tests.analytics.baseline.test_rates import CONFIG as RATE_CONFIG
from tests.analytics.baseline.test_rates import GRACE, _busy_hours
from tests.analytics.obsfactory import DAY, HOUR, T0, obs, process, snapshot


def test_doctests() -> None:
    assert doctest.testmod(state_module).failed == 0


def test_novelty_survives_a_restart(tmp_path: Path) -> None:
    config = NoveltyConfig(learning=LearningPolicy(period=DAY, min_observations=2))
    before = NoveltyDetector(config)
    for hour in range(30):
        before.observe(process("/usr/bin/python3", hour * HOUR))
    store = StateStore(tmp_path / "state.db")
    store.save({"novelty": before})
    after = NoveltyDetector(config)
    assert store.load({"novelty": after}) == {"novelty": 1 + 1}  # the device and its group
    assert after.observe(process("/usr/bin/python3", 2 * DAY)) == []
    [hit] = after.observe(process("/tmp/x", 2 * DAY))
    assert (
        "during its 1-day learning period it ran 1 executable, e.g. /usr/bin/python3"
        in hit.description
    )


def test_rate_history_and_open_windows_survive_a_restart(tmp_path: Path) -> None:
    before = RateDetector(RATE_CONFIG)
    _busy_hours(before, 30)
    for n in range(100):  # half the spike before the restart, half after
        before.observe(process("/bin/sh", 30 * HOUR + n * timedelta(seconds=10)))
    store = StateStore(tmp_path / "state.db")
    store.save({"rates": before})
    after = RateDetector(RATE_CONFIG)
    store.load({"rates": after})
    for n in range(100):
        after.observe(
            process("/bin/sh", 30 * HOUR + timedelta(minutes=20) + n * timedelta(seconds=10))
        )
    [hit] = after.tick(T0 + 31 * HOUR + GRACE)
    assert hit.properties["Count"] == "200"
    # the restored watermark still refuses the closed windows
    after.observe(process("/bin/sh", 3 * HOUR))
    assert after.late("dev-7") == 1


def test_the_outlier_model_is_retrained_identically_from_stored_rows(tmp_path: Path) -> None:
    fleet = Fleet(OutlierDetector(OUTLIER_CONFIG))
    fleet.hours(0, 72)
    store = StateStore(tmp_path / "state.db")
    store.save({"outlier": fleet.detector})
    restored = OutlierDetector(OUTLIER_CONFIG)
    store.load({"outlier": restored})
    assert restored.threshold == fleet.detector.threshold
    twin = Fleet(restored)
    twin.rng = fleet.rng  # the same noise for both from here
    state = fleet.rng.bit_generator.state
    original = [d.description for d in fleet.hour(72, _exfiltration)]
    fleet.rng.bit_generator.state = state
    again = [d.description for d in twin.hour(72, _exfiltration)]
    assert original == again and len(original) == 1


def test_fleet_detectors_survive_a_restart(tmp_path: Path) -> None:
    silent, onboarded = DeviceSilentDetector(), DeviceOnboardedDetector()
    beat = obs("MessageStatistics", {}, at=timedelta(0))
    silent.observe(beat)
    onboarded.observe(beat)
    store = StateStore(tmp_path / "state.db")
    store.save({"silent": silent, "onboarded": onboarded})
    silent2, onboarded2 = DeviceSilentDetector(), DeviceOnboardedDetector()
    store.load({"silent": silent2, "onboarded": onboarded2})
    assert onboarded2.observe(obs("MessageStatistics", {}, at=HOUR)) == []
    [alert] = silent2.tick(T0 + 4 * DAY)
    assert alert.evidence == (beat.evidence_id,)


def test_recommendations_and_their_tracker_survive_a_restart(tmp_path: Path) -> None:
    engine, tracker = Recommendations(), RecommendationTracker()
    rows = [{"Protocol": "tcp", "LocalPort": "22", "LocalAddress": "0.0.0.0"}]
    for o in snapshot("ListeningPorts", rows, timedelta(0)):
        engine.observe(o)
    [change] = tracker.update(engine.evaluate(T0 + HOUR), T0 + HOUR)
    store = StateStore(tmp_path / "state.db")
    store.save({"recommendations": engine, "tracker": tracker})
    engine2, tracker2 = Recommendations(), RecommendationTracker()
    store.load({"recommendations": engine2, "tracker": tracker2})
    assert tracker2.update(engine2.evaluate(T0 + 2 * HOUR), T0 + 2 * HOUR) == ()
    assert tracker2.active()[0].recommendation_id == change.recommendation.recommendation_id
    assert tracker2.active()[0].discovered == T0


def test_entries_are_json_not_pickles(tmp_path: Path) -> None:
    detector = NoveltyDetector()
    detector.observe(process("/bin/sh", timedelta(0)))
    StateStore(tmp_path / "state.db").save({"novelty": detector})
    with sqlite3.connect(tmp_path / "state.db") as db:
        for (data,) in db.execute("SELECT data FROM entries"):
            assert isinstance(json.loads(data), dict)


def test_a_save_replaces_the_previous_entries(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state.db")
    first = NoveltyDetector()
    first.observe(process("/bin/sh", timedelta(0), device="gone"))
    store.save({"novelty": first})
    store.save({"novelty": NoveltyDetector()})
    fresh = NoveltyDetector()
    assert store.load({"novelty": fresh}) == {"novelty": 0}
    assert fresh.status("gone") is None


def test_a_missing_file_is_a_fresh_start(tmp_path: Path) -> None:
    assert StateStore(tmp_path / "none.db").load({"novelty": NoveltyDetector()}) == {}


def test_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(StateError) as caught:
        StateStore(path).load({"novelty": NoveltyDetector()})
    assert caught.value.path == str(path)
    with pytest.raises(StateError):
        StateStore(path).save({"novelty": NoveltyDetector()})


def test_a_database_of_another_kind(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE t (x)")
    with pytest.raises(StateError, match="not an iotsec state file"):
        StateStore(path).load({"novelty": NoveltyDetector()})


def test_a_state_file_of_another_format(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    StateStore(path).save({"novelty": NoveltyDetector()})
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value = '99' WHERE key = 'format'")
    with pytest.raises(StateError, match="state format 99, expected 1"):
        StateStore(path).load({"novelty": NoveltyDetector()})
    with pytest.raises(StateError, match="state format 99"):
        StateStore(path).save({"novelty": NoveltyDetector()})


def test_a_corrupt_entry_names_its_component(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    detector = NoveltyDetector()
    detector.observe(process("/bin/sh", timedelta(0)))
    StateStore(path).save({"novelty": detector})
    with sqlite3.connect(path) as db:
        db.execute("UPDATE entries SET data = ? WHERE key = 'device:dev-7'", (b'{"context": 5}',))
    fresh = NoveltyDetector()
    with pytest.raises(StateError, match="component novelty"):
        StateStore(path).load({"novelty": fresh})
    assert fresh.status("dev-7") is None  # nothing half-loaded


def test_an_unwritable_location(tmp_path: Path) -> None:
    with pytest.raises(StateError, match="cannot save"):
        StateStore(tmp_path / "missing-dir" / "state.db").save({"novelty": NoveltyDetector()})
