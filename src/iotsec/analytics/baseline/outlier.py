"""The outlier model: an IsolationForest over per-device window features, scored in batches.

Every closed window (``WindowBook``) of a device gives a vector of ``FEATURES``: counts per
event kind (processes, inbound and outbound connections, failed and successful logins,
diagnostics, security events, device-to-cloud messages and bytes, hub failures) and distinct
values (executables, destinations, destination ports, login sources).

A device learns for its learning period and at least ``min_device_windows`` active windows;
its *usual* window is then the median of ``log1p`` of its learning vectors. One model serves
the whole fleet: it is trained on every learned device's learning windows expressed as
deviations from that device's own median (``log1p(x) - median``), so a busy gateway and a quiet
sensor are judged against themselves, and the model learns what joint deviations are normal.
The alert threshold is the ``score_quantile`` of the training windows' anomaly scores.

Windows close in ``tick`` for all devices at once and are scored in one ``score_samples``
call (scoring one window at a time costs about a millisecond each; see
``bench/baseline_outlier.py``).

An isolation forest cannot see past its training data: a split falls between the values it was
trained on, so a window far beyond the most extreme training window of a feature isolates no
faster than that window did, and a feature that never varied in training (a device that always
talks to the same 3 destinations) is never split on at all. So a window is a candidate when its
score reaches the threshold, *or* when one of its deviations lies ``range_margin`` beyond the
training rows' range for that feature. A candidate fires when one of its top deviating features
is material (at least ``min_ratio`` times, or a ``min_ratio``-th of, the usual value, and
``min_delta`` away from it); the alert names those features with their observed and usual
values, and says which ones were beyond any training window.

The model is never stored: its inputs are (``dump_state``), and ``load_state`` retrains it on
the same rows with the same ``seed``, which gives the same forest.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import msgspec
import numpy as np
from numpy.typing import NDArray
from sklearn.ensemble import IsolationForest  # type: ignore[import-untyped]  # no type hints

from iotsec.analytics.baseline.learning import (
    BaselineStatus,
    LearningPolicy,
    learned_at,
    window_text,
)
from iotsec.analytics.baseline.windows import COUNTS, DISTINCT, Closed, Tally, WindowBook
from iotsec.analytics.detection import Detection
from iotsec.analytics.observation import Observation

__all__ = ["FEATURES", "OutlierConfig", "OutlierDetector", "feature_vector"]

#: The features of a device window, in vector order.
FEATURES: tuple[str, ...] = COUNTS + DISTINCT
_EVIDENCE_OF = {
    "executables": ("processes",),
    "destinations": ("connections_out",),
    "destination_ports": ("connections_out",),
    "login_sources": ("logins_failed", "logins_succeeded"),
}
_Matrix = NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class OutlierConfig:
    """Windows, learning, the forest and the alert threshold of the outlier model."""

    learning: LearningPolicy = field(default_factory=LearningPolicy)
    window: timedelta = timedelta(hours=1)
    grace: timedelta = timedelta(minutes=5)
    #: The forest's random_state, and the seed of the training-row sample.
    seed: int = 0
    trees: int = 100
    min_device_windows: int = 24
    #: Learning windows kept per device (the most recent).
    max_device_windows: int = 336
    min_training_rows: int = 200
    max_training_rows: int = 20_000
    #: Training windows scoring above this quantile would have fired.
    score_quantile: float = 0.99
    min_ratio: float = 3.0
    min_delta: float = 10.0
    #: Windows between refits when more devices have finished learning.
    refit_every: int = 24
    #: Features an alert names.
    top: int = 3
    #: A deviation this far (in log1p units; 0.7 is about 2x) beyond the most extreme training
    #: row of its feature fires even when the forest's score does not (see the module docs).
    range_margin: float = 0.7

    def __post_init__(self) -> None:
        if self.trees < 1 or self.min_device_windows < 1 or self.top < 1:
            raise ValueError("trees, min_device_windows and top must be at least 1")
        if self.max_device_windows < self.min_device_windows:
            raise ValueError("max_device_windows must be at least min_device_windows")
        if not 2 <= self.min_training_rows <= self.max_training_rows:
            raise ValueError("need 2 <= min_training_rows <= max_training_rows")
        if not 0.0 < self.score_quantile <= 1.0:
            raise ValueError("score_quantile must be in (0, 1]")
        if self.min_ratio < 1.0 or self.min_delta < 0 or self.refit_every < 0:
            raise ValueError("min_ratio >= 1, min_delta >= 0 and refit_every >= 0")
        if self.range_margin < 0:
            raise ValueError("range_margin must be zero or more")


def feature_vector(tally: Tally) -> list[float]:
    """The window's ``FEATURES`` values, in order."""
    return [float(tally.value(name)) for name in FEATURES]


@dataclass(frozen=True, slots=True)
class _Row:
    """One scored window: its values, the device's medians, deviations, score."""

    vector: list[float]
    median: list[float]
    deviation: _Matrix
    beyond: NDArray[np.bool_]
    score: float


def _number(value: float) -> str:
    """A count for people: whole from 100 up, else 3 significant digits (4.5, 28.1, 1520)."""
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"


class _Device(msgspec.Struct):
    first_time: datetime
    observations: int = 0
    learning: list[list[float]] = msgspec.field(default_factory=list)
    #: ``log1p`` medians of the learning windows, once learned.
    median: list[float] | None = None


class _Model(msgspec.Struct):
    trained_on: list[str] = msgspec.field(default_factory=list)
    fitted_index: int | None = None
    pending: bool = False


class OutlierDetector:
    """Flags device windows that an IsolationForest finds unlike the devices' usual windows."""

    def __init__(self, config: OutlierConfig | None = None) -> None:
        self.config = config or OutlierConfig()
        self._book = WindowBook(self.config.window, self.config.grace)
        self._devices: dict[str, _Device] = {}
        self._meta = _Model()
        self._forest: IsolationForest | None = None
        self._threshold = 1.0
        #: Per feature, the lowest and highest deviation among the training rows.
        self._low: _Matrix = np.zeros(len(FEATURES))
        self._high: _Matrix = np.zeros(len(FEATURES))
        #: Device windows scored, and the score_samples calls that scored them.
        self.scored = 0
        self.batches = 0

    def observe(self, observation: Observation) -> Sequence[Detection]:
        """Count ``observation`` in its window; windows are scored in ``tick``."""
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
        """Close the windows due at ``now``, learn or score them (one batch), maybe refit."""
        closed = self._book.close(now)
        if not closed:
            return []
        to_score: list[tuple[Closed, list[float], list[float]]] = []
        for window in closed:
            device = self._device(window)
            vector = feature_vector(window.tally)
            learned = device.median is not None or self._learned(device, window)
            if not learned or self._forest is None:
                # Still learning, or learned before any model exists: more training data.
                device.learning.append(vector)
                del device.learning[: -self.config.max_device_windows]
                self._meta.pending = self._meta.pending or learned
                continue
            assert device.median is not None
            to_score.append((window, vector, device.median))
        self._maybe_fit(closed[-1].index)
        if self._forest is None or not to_score:
            return []
        return self._score(to_score)

    @property
    def threshold(self) -> float | None:
        """The anomaly score at or above which a window may fire (None before a model)."""
        return None if self._forest is None else self._threshold

    def status(self, device_id: str) -> BaselineStatus | None:
        """Where ``device_id`` stands (None if never seen)."""
        device = self._devices.get(device_id)
        if device is None:
            return None
        return BaselineStatus(
            device_id=device_id,
            learning=device.median is None or self._forest is None,
            first_time=device.first_time,
            observations=device.observations,
        )

    def dump_state(self) -> dict[str, bytes]:
        """Learning vectors, medians, the model's inputs and open windows, as JSON entries."""
        entries = {f"device:{k}": msgspec.json.encode(v) for k, v in self._devices.items()}
        entries["model"] = msgspec.json.encode(self._meta)
        return entries | self._book.dump_state()

    def load_state(self, entries: Mapping[str, bytes]) -> None:
        """Replace the state with ``entries`` and retrain the model on the stored rows."""
        devices = {
            key.removeprefix("device:"): msgspec.json.decode(data, type=_Device)
            for key, data in entries.items()
            if key.startswith("device:")
        }
        meta = _Model()
        if "model" in entries:
            meta = msgspec.json.decode(entries["model"], type=_Model)
        missing = [d for d in meta.trained_on if devices.get(d) is None or not devices[d].median]
        if missing:
            raise ValueError(f"the model was trained on {missing[0]!r}, which has no learned data")
        self._book.load_state(
            {k: v for k, v in entries.items() if k != "model" and not k.startswith("device:")}
        )
        self._devices, self._meta = devices, meta
        self._forest = None
        if meta.trained_on:
            self._fit_on(meta.trained_on)

    # --- learning -------------------------------------------------------------------------

    def _device(self, window: Closed) -> _Device:
        device = self._devices.get(window.device.device_id)
        if device is None:  # windows restored without their device
            device = self._devices[window.device.device_id] = _Device(window.start)
        return device

    def _learned(self, device: _Device, window: Closed) -> bool:
        end = learned_at(device.first_time, self.config.learning)
        if (
            end is None
            or window.start < end
            or len(device.learning) < self.config.min_device_windows
            or device.observations < self.config.learning.min_observations
        ):
            return False
        device.median = np.median(np.log1p(np.array(device.learning)), axis=0).tolist()
        self._meta.pending = True
        return True

    def _maybe_fit(self, index: int) -> None:
        meta = self._meta
        if not meta.pending:
            return
        if (
            self._forest is not None
            and meta.fitted_index is not None
            and index - meta.fitted_index < self.config.refit_every
        ):
            return
        learned = sorted(k for k, d in self._devices.items() if d.median is not None)
        rows = sum(len(self._devices[k].learning) for k in learned)
        if rows < self.config.min_training_rows:
            return
        self._fit_on(learned)
        meta.trained_on, meta.fitted_index, meta.pending = learned, index, False

    def _fit_on(self, device_ids: Sequence[str]) -> None:
        parts = []
        for device_id in device_ids:
            device = self._devices[device_id]
            logs = np.log1p(np.array(device.learning))
            # The same rows give the same medians: a reload retrains on exactly what was used.
            median = np.median(logs, axis=0)
            device.median = median.tolist()
            parts.append(logs - median)
        rows: _Matrix = np.vstack(parts)
        if len(rows) > self.config.max_training_rows:
            pick = np.random.default_rng(self.config.seed).choice(
                len(rows), self.config.max_training_rows, replace=False
            )
            rows = rows[np.sort(pick)]
        forest = IsolationForest(
            n_estimators=self.config.trees,
            max_samples=min(256, len(rows)),
            random_state=self.config.seed,
        ).fit(rows)
        scores = -forest.score_samples(rows)
        self._threshold = float(np.quantile(scores, self.config.score_quantile))
        self._low, self._high = rows.min(axis=0), rows.max(axis=0)
        self._forest = forest

    # --- scoring --------------------------------------------------------------------------

    def _score(self, batch: list[tuple[Closed, list[float], list[float]]]) -> list[Detection]:
        values = np.array([vector for _, vector, _ in batch])
        medians = np.array([median for _, _, median in batch])
        deviations = np.log1p(values) - medians
        scores = -self._forest_scores(deviations)
        margin = self.config.range_margin
        beyond = (deviations > self._high + margin) | (deviations < self._low - margin)
        self.scored += len(batch)
        self.batches += 1
        found = []
        for row, (window, vector, median) in enumerate(batch):
            if scores[row] < self._threshold and not beyond[row].any():
                continue
            detection = self._explain(
                window,
                _Row(vector, median, deviations[row], beyond[row], float(scores[row])),
            )
            if detection is not None:
                found.append(detection)
        return found

    def _forest_scores(self, rows: _Matrix) -> _Matrix:
        assert self._forest is not None
        scores: _Matrix = self._forest.score_samples(rows)
        return scores

    def _explain(self, window: Closed, row: _Row) -> Detection | None:
        config = self.config
        order = sorted(range(len(FEATURES)), key=lambda i: (-abs(row.deviation[i]), i))
        top = [i for i in order[: config.top] if row.deviation[i] != 0]
        usual = {i: float(np.expm1(row.median[i])) for i in top}
        top = [
            i
            for i in top
            if abs(row.vector[i] - usual[i]) >= config.min_delta
            and max((row.vector[i] + 1) / (usual[i] + 1), (usual[i] + 1) / (row.vector[i] + 1))
            >= config.min_ratio
        ]
        if not top:
            return None
        device_id = window.device.device_id
        when = window_text(window.start, config.window)
        named = ", ".join(
            f"{FEATURES[i]} {_number(row.vector[i])} (usual {_number(usual[i])}"
            + (", beyond any training window)" if row.beyond[i] else ")")
            for i in top
        )
        description = (
            f"{device_id}'s activity in {when} is unlike its usual windows (anomaly score "
            f"{row.score:.2f}, alert threshold {self._threshold:.2f}): {named}"
        )
        cited = [c for i in top for c in _EVIDENCE_OF.get(FEATURES[i], (FEATURES[i],))]
        return Detection(
            rule_id="IoT_Baseline_Outlier",
            display_name="Unusual device behaviour",
            severity="Medium",
            device=window.device,
            time=window.start,
            description=description,
            evidence=window.tally.evidence_for(*cited),
            dedup_key=f"IoT_Baseline_Outlier|{device_id}|{window.index}",
            origin="model",
            remediation=(
                f"Review {device_id}'s processes, connections and logins in {when}; "
                "the features named are where it differed most from its usual windows.",
            ),
            properties={
                "AnomalyScore": f"{row.score:.4f}",
                "Threshold": f"{self._threshold:.4f}",
                "TopFeatures": ", ".join(FEATURES[i] for i in top),
                "BeyondTraining": ", ".join(FEATURES[i] for i in top if row.beyond[i]),
                "WindowStart": window.start.isoformat(),
            },
            dedup_seconds=config.window.total_seconds(),
        )
