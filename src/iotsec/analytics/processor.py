"""The analytics processor: detectors, the alert lifecycle, recommendations, risk and inventory.

``AnalyticsProcessor`` implements the pipeline's ``Processor``. For a batch of observations it
runs every detector (in a fixed order), folds the detections into alerts (``AlertStore``) and
writes the alerts that changed to every alert sink, then returns: the pipeline commits the log
positions only after that. On ``tick`` it runs the detectors' clocks (silence, windows), and
every ``evaluate_every`` seconds it evaluates recommendations, tracks them (Active until the
condition clears, then Resolved), recomputes the risk of the devices whose alerts or
recommendations changed, and writes the device inventory (first and last seen, group, risk).

Sinks are protocols: the composition root adapts them to the workspace tables, the webhook and
syslog outputs, or anything else. Detector state is saved to a ``StateStore`` every
``save_every`` seconds and at ``close``, so baselines survive a restart.

The hub appends what devices send, so an agent that sends again after a lost acknowledgement
puts the same events in the log twice; the processor drops the observations of an event whose
id it saw among the last ``ProcessorPolicy.repeat_memory`` events, so detectors never count or
chain an event twice (a sequence rule would otherwise pair a repeat with a later step).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from iotsec.analytics.alerts import Alert, AlertSink
from iotsec.analytics.alertstore import AlertStore
from iotsec.analytics.baseline.state import Stateful, StateStore
from iotsec.analytics.detection import Detection, Detector, Finding
from iotsec.analytics.observation import Observation
from iotsec.analytics.recommendations import (
    RecommendationChange,
    Recommendations,
    RecommendationTracker,
)
from iotsec.analytics.risk import RiskScore, device_risk

__all__ = [
    "AnalyticsProcessor",
    "DeviceRecord",
    "DeviceSink",
    "ProcessorPolicy",
    "RecommendationSink",
]

log = logging.getLogger("iotsec.analytics.processor")

#: What makes an observation's event the same event again: its id (the rows of an event come
#: together, in order, from its message; hub observations have an id per log entry).
Key = str


class RecommendationSink(Protocol):
    """Where recommendation changes go (the workspace's SecurityRecommendation table)."""

    def write_recommendations(self, changes: Sequence[RecommendationChange]) -> int:
        """Store the recommendations as they are after ``changes``; returns rows written."""
        ...


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    """One device's inventory row: when it was seen, its group, and its risk."""

    device_id: str
    group: str
    hub: str
    first_seen: datetime | None
    last_seen: datetime | None
    risk: RiskScore | None
    updated: datetime


class DeviceSink(Protocol):
    """Where the device inventory goes (the workspace's Device table)."""

    def write_devices(self, records: Sequence[DeviceRecord]) -> int:
        """Insert or update ``records``; returns rows written."""
        ...


@dataclass(frozen=True, slots=True)
class ProcessorPolicy:
    """How often recommendations are evaluated and state is saved (seconds)."""

    evaluate_every: float = 10.0
    save_every: float = 300.0
    #: Event ids remembered to drop repeated events (0: keep every repeat).
    repeat_memory: int = 200_000


@dataclass
class _Seen:
    group: str
    hub: str
    first: datetime
    last: datetime


@dataclass
class AnalyticsProcessor:
    """Runs detectors over observations and keeps alerts, recommendations and risk current."""

    detectors: Sequence[Detector]
    alerts: AlertStore
    alert_sinks: Sequence[AlertSink] = ()
    recommendations: Recommendations | None = None
    recommendation_sinks: Sequence[RecommendationSink] = ()
    device_sinks: Sequence[DeviceSink] = ()
    state: StateStore | None = None
    #: Detector state saved under these names (each has dump_state/load_state).
    stateful: Mapping[str, Stateful] = field(default_factory=dict)
    policy: ProcessorPolicy = field(default_factory=ProcessorPolicy)
    clock: Callable[[], datetime] | None = None

    def __post_init__(self) -> None:
        self.tracker = RecommendationTracker()
        self._seen: dict[str, _Seen] = {}
        self._dirty: set[str] = set()
        self._last_evaluation: datetime | None = None
        self._last_save: datetime | None = None
        self._lock = threading.Lock()
        self._recent: OrderedDict[Key, None] = OrderedDict()
        #: Observations dropped as repeats of ones already processed.
        self.repeats = 0
        #: Detections, alerts written and recommendation changes so far.
        self.detections = 0
        self.alerts_written = 0
        self.recommendation_changes = 0
        if self.recommendations is not None:
            # Active recommendations survive a restart, so none is "discovered" twice.
            self.stateful = {**self.stateful, "recommendation-tracker": self.tracker}
        if self.state is not None and self.stateful:
            loaded = self.state.load(dict(self.stateful))
            if loaded:
                log.info("analytics state loaded: %s", loaded)

    def process(self, observations: Sequence[Observation], now: datetime) -> None:
        """Detect over ``observations`` and write the alerts that changed."""
        with self._lock:
            found: list[Detection] = []
            recommendations = self.recommendations
            fresh, keys = self._fresh(observations)
            observers = [detector.observe for detector in self.detectors]
            note = self._note
            for observation in fresh:
                note(observation)
                for observe in observers:
                    detected = observe(observation)
                    if detected:
                        found.extend(detected)
                if recommendations is not None:
                    recommendations.observe(observation)
            self._emit(found, now)
            self._remember(keys)

    def tick(self, now: datetime) -> None:
        """Run the detectors' clocks; evaluate recommendations, risk and inventory when due."""
        with self._lock:
            found = [d for detector in self.detectors for d in detector.tick(now)]
            self._emit(found, now)
            last = self._last_evaluation
            if last is None or (now - last).total_seconds() >= self.policy.evaluate_every:
                self._last_evaluation = now
                self._evaluate(now)
            saved = self._last_save
            if saved is None:
                self._last_save = now
            elif (now - saved).total_seconds() >= self.policy.save_every:
                self._last_save = now
                self._save()

    def evaluate_now(self, now: datetime) -> None:
        """Evaluate recommendations, risk and inventory at once (tests, shutdown)."""
        with self._lock:
            self._last_evaluation = now
            self._evaluate(now)

    def close(self) -> None:
        """Save detector state (the alert store is closed by its owner)."""
        with self._lock:
            self._save()

    def _fresh(self, observations: Sequence[Observation]) -> tuple[list[Observation], list[Key]]:
        """The observations of events not seen before (nor earlier in the batch), and the ids
        of those events."""
        if self.policy.repeat_memory <= 0:
            return list(observations), []
        recent = self._recent
        fresh: list[Observation] = []
        keys: list[Key] = []
        batch: set[Key] = set()
        current: Key | None = None
        repeat = False
        for observation in observations:
            event_id = observation.event_id
            if event_id != current or observation.row_index == 0:  # an event starts
                current = event_id
                repeat = event_id in recent or event_id in batch
                if not repeat:
                    batch.add(event_id)
                    keys.append(event_id)
            if repeat:
                self.repeats += 1
                continue
            fresh.append(observation)
        return fresh, keys

    def _remember(self, keys: list[Key]) -> None:
        # Only once the batch's results are written: a batch that failed is read again, and
        # must then be processed again.
        recent = self._recent
        for key in keys:
            recent[key] = None
        while len(recent) > self.policy.repeat_memory:
            recent.popitem(last=False)

    def _note(self, observation: Observation) -> None:
        device = observation.device
        seen = self._seen.get(device.device_id)
        when = observation.time
        if seen is None:
            self._seen[device.device_id] = _Seen(device.group, device.hub, when, when)
            self._dirty.add(device.device_id)
            return
        if when > seen.last:
            seen.last = when
        elif when < seen.first:
            seen.first = when
        seen.group = device.group
        self._dirty.add(device.device_id)

    def _emit(self, detections: Sequence[Detection], now: datetime) -> None:
        if not detections:
            return
        self.detections += len(detections)
        changed: dict[str, Alert] = {}
        for alert in self.alerts.process(detections):
            changed[alert.alert_id] = alert
        alerts = list(changed.values())
        for sink in self.alert_sinks:
            sink.write_alerts(alerts)
        self.alerts_written += len(alerts)
        self._dirty.update(alert.device_id for alert in alerts)

    def _evaluate(self, now: datetime) -> None:
        findings: tuple[Finding, ...] = ()
        if self.recommendations is not None:
            findings = self.recommendations.evaluate(now)
            changes = self.tracker.update(findings, now)
            if changes:
                self.recommendation_changes += len(changes)
                for sink in self.recommendation_sinks:
                    sink.write_recommendations(changes)
                self._dirty.update(c.recommendation.finding.device.device_id for c in changes)
        if not self._dirty:
            return
        active = [t.finding for t in self.tracker.active()]
        records = []
        for device_id in sorted(self._dirty):
            alerts = self.alerts.list(status="Active", device_id=device_id, limit=1000)
            risk = device_risk(
                device_id,
                alerts=alerts,
                findings=[f for f in active if f.device.device_id == device_id],
                now=now,
            )
            seen = self._seen.get(device_id)
            records.append(
                DeviceRecord(
                    device_id=device_id,
                    group=seen.group if seen else "",
                    hub=seen.hub if seen else "",
                    first_seen=seen.first if seen else None,
                    last_seen=seen.last if seen else None,
                    risk=risk,
                    updated=now,
                )
            )
        self._dirty.clear()
        for device_sink in self.device_sinks:
            device_sink.write_devices(records)

    def _save(self) -> None:
        if self.state is not None and self.stateful:
            self.state.save(dict(self.stateful))
