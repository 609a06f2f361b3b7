"""The outlier model: a simulated fleet learns, then a burst is flagged and explained."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import numpy as np
import pytest

from iotsec.analytics import Detection
from iotsec.analytics.baseline import LearningPolicy, OutlierConfig, OutlierDetector
from iotsec.analytics.baseline.outlier import FEATURES
from tests.analytics.obsfactory import DAY, HOUR, T0, connection, d2c, login, process

GRACE = timedelta(minutes=5)
DEVICES = [f"dev-{n}" for n in range(8)]
CONFIG = OutlierConfig(
    learning=LearningPolicy(period=2 * DAY, min_observations=10),
    grace=GRACE,
    min_device_windows=24,
    min_training_rows=100,
    trees=50,
    seed=7,
)
Extra = Callable[[int, str, OutlierDetector], None]


class Fleet:
    """Eight devices with steady, device-specific activity; Poisson noise from a fixed seed."""

    def __init__(self, detector: OutlierDetector) -> None:
        self.detector = detector
        self.rng = np.random.default_rng(1)

    def hour(self, hour: int, extra: Extra | None = None) -> list[Detection]:
        for n, device in enumerate(DEVICES):
            rate = 5 + 4 * n
            at = hour * HOUR
            for exe in ("/usr/bin/python3", "/bin/sh", "/usr/sbin/cron"):
                hits = int(self.rng.poisson(rate)) + 1
                self.detector.observe(
                    process(exe, at + timedelta(minutes=1), device=device, hits=hits)
                )
            for k in range(3):
                hits = int(self.rng.poisson(rate / 2)) + 1
                self.detector.observe(
                    connection(
                        f"10.0.{k}.1", "443", at + timedelta(minutes=2), device=device, hits=hits
                    )
                )
            self.detector.observe(
                d2c(int(self.rng.poisson(30)) + 1, at + timedelta(minutes=3), device=device)
            )
            if extra is not None:
                extra(hour, device, self.detector)
        return list(self.detector.tick(T0 + (hour + 1) * HOUR + GRACE))

    def hours(self, start: int, stop: int) -> list[Detection]:
        return [d for hour in range(start, stop) for d in self.hour(hour)]


def _exfiltration(hour: int, device: str, detector: OutlierDetector) -> None:
    if device == "dev-3":
        for k in range(60):
            at = hour * HOUR + timedelta(minutes=10)
            detector.observe(connection(f"203.0.113.{k}", "4444", at, device=device, hits=7))


def _password_spray(hour: int, device: str, detector: OutlierDetector) -> None:
    if device == "dev-5":
        for k in range(25):
            at = hour * HOUR + timedelta(minutes=20)
            detector.observe(
                login("root", at, result="Fail", source=f"198.51.100.{k}", device=device)
            )


@pytest.fixture
def trained() -> Fleet:
    fleet = Fleet(OutlierDetector(CONFIG))
    assert fleet.hours(0, 72) == []  # two days of learning and a normal day
    return fleet


def test_learning_then_a_model(trained: Fleet) -> None:
    detector = trained.detector
    assert detector.threshold is not None and 0.0 < detector.threshold < 1.0
    status = detector.status("dev-3")
    assert status is not None and not status.learning


def test_a_normal_day_raises_nothing(trained: Fleet) -> None:
    assert trained.hours(72, 96) == []


def test_an_exfiltration_burst_is_flagged_and_explained(trained: Fleet) -> None:
    [hit] = trained.hour(72, _exfiltration)
    assert hit.rule_id == "IoT_Baseline_Outlier"
    assert hit.origin == "model"
    assert hit.device.device_id == "dev-3"
    assert hit.time == T0 + 72 * HOUR
    assert hit.description.startswith("dev-3's activity in 2025-01-04 00:00-01:00 UTC is unlike")
    assert "destinations 63 (usual 3, beyond any training window)" in hit.description
    assert "connections_out" in hit.properties["TopFeatures"]
    assert hit.evidence and all(e.endswith(":0") for e in hit.evidence)
    assert trained.hour(73) == []


def test_a_password_spray_is_flagged(trained: Fleet) -> None:
    [hit] = trained.hour(72, _password_spray)
    assert hit.device.device_id == "dev-5"
    assert "logins_failed 25 (usual 0" in hit.description
    assert "login_sources 25 (usual 0" in hit.description


def test_the_forest_score_alone_can_fire() -> None:
    fleet = Fleet(OutlierDetector(OutlierConfig(**{**_fields(CONFIG), "range_margin": 1e9})))
    assert fleet.hours(0, 72) == []
    found = [d for hour in range(72, 78) for d in fleet.hour(hour, _exfiltration)]
    assert found and all(d.device.device_id == "dev-3" for d in found)
    assert all(
        float(d.properties["AnomalyScore"]) >= float(d.properties["Threshold"]) for d in found
    )
    assert all(d.properties["BeyondTraining"] == "" for d in found)


def test_windows_are_scored_in_one_batch_per_tick(trained: Fleet) -> None:
    detector = trained.detector
    scored, batches = detector.scored, detector.batches
    trained.hour(72)
    assert (detector.scored - scored, detector.batches - batches) == (len(DEVICES), 1)


def test_the_same_seed_gives_the_same_model() -> None:
    thresholds = []
    for _ in range(2):
        fleet = Fleet(OutlierDetector(CONFIG))
        fleet.hours(0, 60)
        thresholds.append(fleet.detector.threshold)
    assert thresholds[0] is not None and thresholds[0] == thresholds[1]


def test_a_device_still_learning_is_not_scored(trained: Fleet) -> None:
    detector = trained.detector
    detector.observe(process("/bin/sh", 72 * HOUR, device="newcomer", hits=5000))
    found = trained.hour(72)
    assert found == []
    status = detector.status("newcomer")
    assert status is not None and status.learning


def test_features_are_named_in_vector_order() -> None:
    assert FEATURES[:2] == ("events", "processes")
    assert len(FEATURES) == len(set(FEATURES)) == 14


def _fields(config: OutlierConfig) -> dict[str, object]:
    return {name: getattr(config, name) for name in config.__dataclass_fields__}


@pytest.mark.parametrize(
    "bad",
    [
        {"trees": 0},
        {"score_quantile": 0.0},
        {"min_training_rows": 1},
        {"max_device_windows": 2},
        {"range_margin": -1.0},
    ],
)
def test_bad_configuration_is_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        OutlierConfig(**bad)  # type: ignore[arg-type]


def test_a_fleet_too_small_to_train_keeps_collecting_until_it_can() -> None:
    detector = OutlierDetector(CONFIG)  # 100 training rows needed; one device learns 48 windows
    for hour in range(120):
        detector.observe(process("/bin/sh", hour * HOUR, device="solo", hits=10 + hour % 3))
        assert detector.tick(T0 + (hour + 1) * HOUR + GRACE) == []
        if hour == 60:
            assert detector.threshold is None
    assert detector.threshold is not None
    detector.observe(process("/bin/sh", 120 * HOUR, device="solo", hits=900))
    [hit] = detector.tick(T0 + 121 * HOUR + GRACE)
    assert "processes 900 (usual 11" in hit.description
