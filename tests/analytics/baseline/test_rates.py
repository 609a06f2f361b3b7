"""Rate bands: exact windows, learning, the band formula, one alert per window outside it."""

from __future__ import annotations

import doctest
from dataclasses import replace
from datetime import timedelta

import pytest

from iotsec.analytics.baseline import LearningPolicy, RateConfig, RateDetector
from iotsec.analytics.baseline import rates as rates_module
from iotsec.analytics.baseline import windows as windows_module
from iotsec.analytics.baseline.rates import rate_band
from tests.analytics.obsfactory import DAY, HOUR, T0, d2c, login, process

GRACE = timedelta(minutes=5)
# 30 hourly windows of learning (a day plus), on at least 20 observations
CONFIG = RateConfig(
    learning=LearningPolicy(period=DAY, min_observations=20), min_windows=24, grace=GRACE
)
USUAL = [8, 10, 12, 9, 11, 10]  # processes per hour, repeating


def _busy_hours(detector: RateDetector, hours: int, start: int = 0) -> None:
    for hour in range(start, start + hours):
        for n in range(USUAL[hour % len(USUAL)]):
            detector.observe(process("/bin/sh", hour * HOUR + n * timedelta(minutes=5)))
        assert detector.tick(T0 + (hour + 1) * HOUR + GRACE) == []


def test_doctests() -> None:
    assert doctest.testmod(rates_module).failed == 0
    assert doctest.testmod(windows_module).failed == 0


def test_the_band_formula() -> None:
    quiet = rate_band([0] * 30, k=5.0)
    assert (quiet.median, quiet.mad, quiet.low, quiet.high) == (0.0, 0.0, 0.0, 5.0)
    busy = rate_band([100, 110, 90, 100, 105, 95, 100], k=5.0)
    # MAD 5 -> 1.4826 * 5 = 7.413 < sqrt(100) = 10: the Poisson floor wins
    assert (busy.median, busy.mad, busy.low, busy.high) == (100.0, 5.0, 50.0, 150.0)
    spread = rate_band([10, 50, 100, 150, 200], k=3.0)
    assert spread.mad == 50.0 and spread.high == pytest.approx(100 + 3 * 1.4826 * 50)


def test_a_spike_after_learning_fires_once_at_the_window_close() -> None:
    detector = RateDetector(CONFIG)
    _busy_hours(detector, 30)
    status = detector.status("dev-7")
    assert status is not None and not status.learning
    for n in range(200):
        detector.observe(process("/bin/sh", 30 * HOUR + n * timedelta(seconds=10)))
    end = T0 + 31 * HOUR
    assert detector.tick(end) == []  # the window is still open for late events
    assert detector.tick(end + GRACE - timedelta(seconds=1)) == []
    [hit] = detector.tick(end + GRACE)
    assert hit.rule_id == "IoT_Baseline_ProcessRate"
    assert hit.time == T0 + 30 * HOUR
    assert hit.description == (
        "dev-7 created 200 processes in 2025-01-02 06:00-07:00 UTC, above its usual band of "
        "0-25.8 per 1-hour window (median 10, MAD 1, over 30 active windows)"
    )
    assert hit.properties["Count"] == "200"
    assert len(hit.evidence) == 10
    assert detector.tick(end + 2 * GRACE) == []  # judged once


def test_no_alert_while_learning() -> None:
    detector = RateDetector(CONFIG)
    _busy_hours(detector, 10)
    for n in range(500):
        detector.observe(process("/bin/sh", 10 * HOUR + n * timedelta(seconds=5)))
    assert detector.tick(T0 + 11 * HOUR + GRACE) == []
    status = detector.status("dev-7")
    assert status is not None and status.learning


def test_a_device_needs_enough_active_windows_besides_the_period() -> None:
    detector = RateDetector(CONFIG)
    for day in range(5):  # one busy hour a day for five days: period over, 5 active windows
        for n in range(30):
            detector.observe(process("/bin/sh", day * DAY + n * timedelta(minutes=1)))
        detector.tick(T0 + day * DAY + HOUR + GRACE)
    status = detector.status("dev-7")
    assert status is not None and status.learning


def test_hit_counts_of_aggregated_events_count() -> None:
    detector = RateDetector(CONFIG)
    _busy_hours(detector, 30)
    detector.observe(process("/bin/sh", 30 * HOUR, hits=300))
    [hit] = detector.tick(T0 + 31 * HOUR + GRACE)
    assert hit.properties["Count"] == "300"


def test_failed_logins_band_from_zero() -> None:
    detector = RateDetector(CONFIG)
    _busy_hours(detector, 30)
    for n in range(12):
        detector.observe(login("root", 30 * HOUR + n * timedelta(minutes=1), result="Fail"))
    hits = detector.tick(T0 + 31 * HOUR + GRACE)
    assert [(h.rule_id, h.severity) for h in hits] == [("IoT_Baseline_FailedLoginRate", "Medium")]
    assert "had 12 failed logins" in hits[0].description
    assert "band of 0-5 per 1-hour window (median 0, MAD 0" in hits[0].description


def test_device_to_cloud_messages_from_the_hub() -> None:
    detector = RateDetector(CONFIG)
    for hour in range(30):
        detector.observe(process("/bin/sh", hour * HOUR))
        detector.observe(d2c(60, hour * HOUR + timedelta(minutes=30)))
        assert detector.tick(T0 + (hour + 1) * HOUR + GRACE) == []
    detector.observe(d2c(5000, 30 * HOUR))
    [hit] = detector.tick(T0 + 31 * HOUR + GRACE)
    assert hit.rule_id == "IoT_Baseline_MessageRate"
    assert "sent 5000 device-to-cloud messages" in hit.description


def test_drops_below_the_band_only_when_asked() -> None:
    for directions, expected in (("high", 0), ("both", 1)):
        detector = RateDetector(
            RateConfig(
                learning=CONFIG.learning,
                grace=GRACE,
                directions=directions,
                metrics=("processes",),  # type: ignore[arg-type]
            )
        )
        for hour in range(30):
            for n in range(100):
                detector.observe(process("/bin/sh", hour * HOUR + n * timedelta(seconds=30)))
            detector.tick(T0 + (hour + 1) * HOUR + GRACE)
        detector.observe(process("/bin/sh", 30 * HOUR))  # 1 instead of 100
        hits = detector.tick(T0 + 31 * HOUR + GRACE)
        assert len(hits) == expected
        if hits:
            assert "below its usual band of 50-150" in hits[0].description


def test_late_observations_are_dropped_and_counted_not_refired() -> None:
    detector = RateDetector(CONFIG)
    _busy_hours(detector, 30)
    for n in range(200):
        detector.observe(process("/bin/sh", 30 * HOUR + n * timedelta(seconds=10)))
    assert len(detector.tick(T0 + 31 * HOUR + GRACE)) == 1
    for n in range(200):  # the same window, replayed after it closed
        detector.observe(process("/bin/sh", 30 * HOUR + n * timedelta(seconds=10)))
    assert detector.tick(T0 + 32 * HOUR + GRACE) == []
    assert detector.late("dev-7") == 200


def test_windows_of_all_devices_close_together() -> None:
    detector = RateDetector(CONFIG)
    for device in ("a", "b", "c"):
        detector.observe(process("/bin/sh", 5 * HOUR, device=device))
    detector.tick(T0 + 6 * HOUR + GRACE)
    for device in ("a", "b", "c"):
        band = detector.band(device, "processes")
        assert band is not None and band.windows == 1


@pytest.mark.parametrize(
    "bad",
    [{"history": 0}, {"min_windows": 500}, {"k": 0}, {"metrics": ("cpu",)}, {"directions": "low"}],
)
def test_bad_configuration_is_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        RateConfig(**bad)  # type: ignore[arg-type]


def test_the_rows_of_one_event_count_in_one_window_until_it_closes() -> None:
    # Rows share their event's time and device context: the book keeps the last window for
    # them; a window that closed in between makes the next row late, not counted.
    book = windows_module.WindowBook(width=HOUR, grace=timedelta(0))
    first = process("/bin/sh", timedelta(minutes=10))
    rows = [replace(first, row_index=n, event_id="e1") for n in range(3)]
    assert [book.add(row) for row in rows[:2]] == [True, True]
    [closed] = book.close(T0 + HOUR)
    assert closed.tally.value("processes") == 2 and closed.tally.value("events") == 1
    assert book.add(rows[2]) is False
    assert book.late("dev-7") == 1
