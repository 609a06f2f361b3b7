"""The outlier model's cost: training, and scoring per device-window in a batch vs one by one.

A simulated fleet (``--devices``) learns for a week of hourly windows, the model is trained, and
then one hour closes for every device at once: ``tick`` scores all their windows in one
``score_samples`` call. For comparison, the same windows are scored one call each, which is what
the design forbids.

    .venv/bin/python bench/baseline_outlier.py --devices 1000
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime, timedelta

import numpy as np

from iotsec.analytics import DeviceContext, Observation
from iotsec.analytics.baseline import LearningPolicy, OutlierConfig, OutlierDetector

T0 = datetime(2025, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)


def _hour(
    detector: OutlierDetector, devices: list[DeviceContext], hour: int, rng: np.random.Generator
) -> None:
    at = T0 + hour * HOUR
    for n, device in enumerate(devices):
        rate = 5 + n % 40
        for exe in ("/usr/bin/python3", "/bin/sh", "/usr/sbin/cron"):
            detector.observe(
                Observation(
                    source="agent", name="ProcessCreate", time=at, device=device,
                    fields={"Executable": exe}, event_id=f"p{hour}-{n}-{exe}",
                    hit_count=int(rng.poisson(rate)) + 1,
                )
            )  # fmt: skip
        for k in range(3):
            detector.observe(
                Observation(
                    source="agent", name="ConnectionCreate", time=at, device=device,
                    fields={"RemoteAddress": f"10.0.{k}.1", "RemotePort": "443",
                            "Direction": "Out"},
                    event_id=f"c{hour}-{n}-{k}", hit_count=int(rng.poisson(rate / 2)) + 1,
                )
            )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--days", type=int, default=7)
    args = parser.parse_args()
    config = OutlierConfig(
        learning=LearningPolicy(period=timedelta(days=args.days), min_observations=10),
        grace=timedelta(0),
    )
    detector = OutlierDetector(config)
    devices = [DeviceContext(f"dev-{n:05d}") for n in range(args.devices)]
    rng = np.random.default_rng(0)
    hours = args.days * 24 + 2  # the learning days, the hour that trains, the hour measured
    started = time.perf_counter()
    for hour in range(hours):
        _hour(detector, devices, hour, rng)
        if hour < hours - 1:
            tick_started = time.perf_counter()
            detector.tick(T0 + (hour + 1) * HOUR)
            tick_seconds = time.perf_counter() - tick_started
    elapsed = time.perf_counter() - started
    print(f"learning: {hours - 1} hours x {args.devices} devices in {elapsed:.1f} s")
    print(f"  the tick that trained the model: {tick_seconds * 1000:.0f} ms")
    assert detector.threshold is not None, "no model was trained"

    # One hour closes for every device: one batch.
    scored = detector.scored
    tick_started = time.perf_counter()
    detector.tick(T0 + hours * HOUR)
    batch_seconds = time.perf_counter() - tick_started
    windows = detector.scored - scored
    print(
        f"batch tick: {windows} device-windows in {batch_seconds * 1000:.1f} ms "
        f"= {batch_seconds / windows * 1e6:.1f} us per device-window (closing, scoring, explaining)"
    )

    # The forest alone, batch against one call per window.
    forest = detector._forest  # the benchmark measures the model itself
    rows = np.random.default_rng(1).normal(0, 0.2, size=(windows, 14))
    started = time.perf_counter()
    forest.score_samples(rows)
    batch = time.perf_counter() - started
    single_rows = rows[: min(200, windows)]
    started = time.perf_counter()
    for row in single_rows:
        forest.score_samples(row.reshape(1, -1))
    single = (time.perf_counter() - started) / len(single_rows)
    print(
        f"score_samples: batch {batch / windows * 1e6:.1f} us per window; "
        f"one at a time {single * 1e6:.0f} us per window ({single / (batch / windows):.0f}x)"
    )


if __name__ == "__main__":
    main()
