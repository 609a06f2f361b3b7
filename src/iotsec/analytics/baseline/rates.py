"""Rate bands: how many processes, connections, failed logins and messages per window.

Metrics: ``processes`` (ProcessCreate), ``connections`` (ConnectionCreate, in and out),
``failed_logins`` (Login with Result Fail), ``messages`` (device-to-cloud messages, from the
hub's ``d2c`` tallies) and, when asked for, ``events`` (every security event); aggregated events
count their ``hit_count``.

Each device's counts per window (``WindowBook``, 1 hour by default) are kept for its last
``history`` active windows (windows in which it reported something; a silent device is the
fleet detector's business, not a rate of zero). The band is robust, from the median and the median
absolute deviation (MAD)::

    scale = max(1.4826 * MAD, sqrt(median), 1)
    band  = [max(0, median - k * scale), median + k * scale]        (k = 5 by default)

``1.4826 * MAD`` estimates the standard deviation of normal data and ignores up to half of the
windows being odd; ``sqrt(median)`` is the Poisson noise of a count, so a quiet metric (a median
of 0 or 2 failed logins) still gets a sensible width. A device is judged once its learning
period has passed and it has ``min_windows`` active windows; a closed window whose count is
above the band (below too, with ``directions="both"``) yields one ``Detection`` per metric,
with the band and the count. Windows close in ``tick``, for all devices at once.

>>> band = rate_band([98, 100, 102, 97, 103, 100, 99, 101], k=5.0)
>>> band.median, band.low, band.high, band.contains(150), band.contains(40)
(100.0, 50.0, 150.0, True, False)
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

import msgspec

from iotsec.analytics.baseline.learning import (
    BaselineStatus,
    LearningPolicy,
    learned_at,
    span_text,
    window_text,
)
from iotsec.analytics.baseline.windows import Closed, WindowBook
from iotsec.analytics.detection import Detection, Severity
from iotsec.analytics.observation import Observation

__all__ = [
    "DEFAULT_METRICS",
    "METRICS",
    "Metric",
    "RateBand",
    "RateConfig",
    "RateDetector",
    "rate_band",
]

Metric = Literal["processes", "connections", "failed_logins", "events", "messages"]
METRICS: tuple[Metric, ...] = ("processes", "connections", "failed_logins", "events", "messages")
#: Metrics judged by default (``events`` counts every security event, and so repeats the others).
DEFAULT_METRICS: tuple[Metric, ...] = ("processes", "connections", "failed_logins", "messages")


@dataclass(frozen=True, slots=True)
class _Meaning:
    counts: tuple[str, ...]
    rule_id: str
    display_name: str
    severity: Severity
    phrase: str  # "created {n} processes"


_METRICS: Mapping[Metric, _Meaning] = {
    "processes": _Meaning(
        ("processes",), "IoT_Baseline_ProcessRate", "Unusual number of processes", "Low",
        "created {n} processes",
    ),
    "connections": _Meaning(
        ("connections_out", "connections_in"), "IoT_Baseline_ConnectionRate",
        "Unusual number of connections", "Low", "made {n} connections",
    ),
    "failed_logins": _Meaning(
        ("logins_failed",), "IoT_Baseline_FailedLoginRate", "Unusual number of failed logins",
        "Medium", "had {n} failed logins",
    ),
    "events": _Meaning(
        ("events",), "IoT_Baseline_EventRate", "Unusual number of security events", "Low",
        "reported {n} security events",
    ),
    "messages": _Meaning(
        ("d2c_messages",), "IoT_Baseline_MessageRate", "Unusual number of device messages",
        "Low", "sent {n} device-to-cloud messages",
    ),
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class RateConfig:
    """Window size, learning, history and band width of the rate detector."""

    learning: LearningPolicy = field(default_factory=LearningPolicy)
    window: timedelta = timedelta(hours=1)
    #: How long after its end a window stays open for late observations.
    grace: timedelta = timedelta(minutes=5)
    metrics: tuple[Metric, ...] = DEFAULT_METRICS
    #: Active windows kept per device (a week of hours).
    history: int = 168
    #: Active windows needed before a band is trusted.
    min_windows: int = 24
    k: float = 5.0
    directions: Literal["high", "both"] = "high"

    def __post_init__(self) -> None:
        unknown = sorted(set(self.metrics) - set(METRICS))
        if unknown:
            raise ValueError(f"unknown rate metric {unknown[0]!r}; known: {METRICS}")
        if self.history < 1 or not 1 <= self.min_windows <= self.history:
            raise ValueError("history must be at least 1 and min_windows in [1, history]")
        if self.k <= 0:
            raise ValueError("k must be positive")
        if self.directions not in ("high", "both"):
            raise ValueError("directions must be 'high' or 'both'")


@dataclass(frozen=True, slots=True)
class RateBand:
    """What is usual for one metric of one device, per window."""

    median: float
    mad: float
    low: float
    high: float
    windows: int

    def contains(self, count: float) -> bool:
        """True when ``count`` is within the band."""
        return self.low <= count <= self.high


def rate_band(history: Sequence[int], k: float) -> RateBand:
    """The robust band of ``history`` (see the module docstring for the formula)."""
    median = float(statistics.median(history))
    mad = float(statistics.median(abs(x - median) for x in history))
    scale = max(1.4826 * mad, math.sqrt(median), 1.0)
    return RateBand(
        median=median,
        mad=mad,
        low=max(0.0, median - k * scale),
        high=median + k * scale,
        windows=len(history),
    )


def _num(value: float) -> str:
    """A band value for people: one decimal at most (25.8114 -> '25.8', 10.0 -> '10')."""
    return f"{round(value, 1):g}"


class _Device(msgspec.Struct):
    first_time: datetime
    observations: int = 0
    #: The first window judged (its start is at or after the end of the learning period).
    learned_from: int | None = None
    history: dict[str, list[int]] = msgspec.field(default_factory=dict)


class RateDetector:
    """Learns each device's usual counts per window and flags windows outside the band."""

    def __init__(self, config: RateConfig | None = None) -> None:
        self.config = config or RateConfig()
        self._book = WindowBook(self.config.window, self.config.grace)
        self._devices: dict[str, _Device] = {}

    def observe(self, observation: Observation) -> Sequence[Detection]:
        """Count ``observation`` in its window; windows are judged in ``tick``."""
        device_id, time = observation.device.device_id, observation.time
        device = self._devices.get(device_id)
        if device is None:
            device = self._devices[device_id] = _Device(time)
        elif time < device.first_time:
            device.first_time = time
        device.observations += 1
        self._book.add(observation)
        return []

    def tick(self, now: datetime) -> Sequence[Detection]:
        """Close the windows due at ``now`` for every device and judge them."""
        found: list[Detection] = []
        for closed in self._book.close(now):
            found += self._judge(closed)
        return found

    def band(self, device_id: str, metric: Metric) -> RateBand | None:
        """The current band of ``metric`` for ``device_id`` (None without history)."""
        device = self._devices.get(device_id)
        history = device.history.get(metric) if device else None
        return rate_band(history, self.config.k) if history else None

    def status(self, device_id: str) -> BaselineStatus | None:
        """Where ``device_id`` stands (None if never seen)."""
        device = self._devices.get(device_id)
        if device is None:
            return None
        return BaselineStatus(
            device_id=device_id,
            learning=device.learned_from is None,
            first_time=device.first_time,
            observations=device.observations,
            learned_at=None
            if device.learned_from is None
            else self._book.start(device.learned_from),
        )

    def late(self, device_id: str) -> int:
        """Observations of ``device_id`` dropped because their window had closed."""
        return self._book.late(device_id)

    def dump_state(self) -> dict[str, bytes]:
        """Histories, learning state and open windows, as JSON entries."""
        entries = {f"device:{k}": msgspec.json.encode(v) for k, v in self._devices.items()}
        return entries | self._book.dump_state()

    def load_state(self, entries: Mapping[str, bytes]) -> None:
        """Replace the state with ``entries`` (from ``dump_state``); raises on bad data."""
        devices = {
            key.removeprefix("device:"): msgspec.json.decode(data, type=_Device)
            for key, data in entries.items()
            if key.startswith("device:")
        }
        self._book.load_state({k: v for k, v in entries.items() if not k.startswith("device:")})
        self._devices = devices

    def _judge(self, closed: Closed) -> list[Detection]:
        device = self._devices.get(closed.device.device_id)
        if device is None:  # windows restored without their device: nothing to compare to
            device = self._devices[closed.device.device_id] = _Device(closed.start)
        config = self.config
        if device.learned_from is None:
            end = learned_at(device.first_time, config.learning)
            active = min((len(h) for h in device.history.values()), default=0)
            if (
                end is not None
                and closed.start >= end
                and active >= config.min_windows
                and device.observations >= config.learning.min_observations
            ):
                device.learned_from = closed.index
        found: list[Detection] = []
        for metric in config.metrics:
            meaning = _METRICS[metric]
            count = sum(closed.tally.value(name) for name in meaning.counts)
            history = device.history.setdefault(metric, [])
            if device.learned_from is not None and history:
                band = rate_band(history, config.k)
                if count > band.high or (config.directions == "both" and count < band.low):
                    found.append(self._detection(closed, metric, count, band))
            history.append(count)
            del history[: -config.history]
        return found

    def _detection(self, closed: Closed, metric: Metric, count: int, band: RateBand) -> Detection:
        meaning = _METRICS[metric]
        device_id = closed.device.device_id
        span = span_text(self.config.window)
        when = window_text(closed.start, self.config.window)
        direction = "above" if count > band.high else "below"
        low, high, median, mad = (_num(x) for x in (band.low, band.high, band.median, band.mad))
        description = (
            f"{device_id} {meaning.phrase.format(n=count)} in {when}, {direction} its usual "
            f"band of {low}-{high} per {span} window (median {median}, MAD {mad}, over "
            f"{band.windows} active windows)"
        )
        return Detection(
            rule_id=meaning.rule_id,
            display_name=meaning.display_name,
            severity=meaning.severity,
            device=closed.device,
            time=closed.start,
            description=description,
            evidence=closed.tally.evidence_for(*meaning.counts),
            dedup_key=f"{meaning.rule_id}|{device_id}|{closed.index}",
            origin="baseline",
            remediation=(
                f"Compare {device_id}'s activity in {when} with its usual activity; look for "
                "a new job, a software update or an intrusion.",
            ),
            properties={
                "Metric": metric,
                "Count": str(count),
                "BandLow": low,
                "BandHigh": high,
                "Median": median,
                "WindowStart": closed.start.isoformat(),
            },
            dedup_seconds=self.config.window.total_seconds(),
        )
