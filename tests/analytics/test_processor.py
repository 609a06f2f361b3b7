"""The processor: detectors to alerts to sinks, recommendations, risk and inventory."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

from iotsec.analytics.alerts import Alert
from iotsec.analytics.alertstore import AlertStore
from iotsec.analytics.baseline.state import StateStore
from iotsec.analytics.detection import Detection
from iotsec.analytics.observation import Observation
from iotsec.analytics.processor import AnalyticsProcessor, DeviceRecord
from iotsec.analytics.recommendations import RecommendationChange, Recommendations
from tests.analytics.obsfactory import T0, obs


class Netcat:
    """A detector that fires on every nc process, with the observation as evidence."""

    def observe(self, observation: Observation) -> Sequence[Detection]:
        if observation.get("Executable") != "/bin/nc":
            return []
        return [
            Detection(
                rule_id="Test_Netcat",
                display_name="netcat",
                severity="High",
                device=observation.device,
                time=observation.time,
                description="nc ran",
                evidence=(observation.evidence_id,),
                dedup_key=f"Test_Netcat|{observation.device.device_id}",
            )
        ]

    def tick(self, now: object) -> Sequence[Detection]:
        return []


class Sinks:
    """Keeps what each sink received."""

    def __init__(self) -> None:
        self.alerts: list[Alert] = []
        self.changes: list[RecommendationChange] = []
        self.devices: list[DeviceRecord] = []

    def write_alerts(self, alerts: Sequence[Alert]) -> int:
        self.alerts.extend(alerts)
        return len(alerts)

    def write_recommendations(self, changes: Sequence[RecommendationChange]) -> int:
        self.changes.extend(changes)
        return len(changes)

    def write_devices(self, records: Sequence[DeviceRecord]) -> int:
        self.devices.extend(records)
        return len(records)


def _ports(at: timedelta, *ports: str) -> list[Observation]:
    if not ports:  # an empty snapshot: one observation with no fields, as the enricher gives
        return [obs("ListeningPorts", {}, at=at, event_id="lp-empty")]
    return [
        obs("ListeningPorts", {"Protocol": "TCP", "LocalAddress": "0.0.0.0", "LocalPort": p},
            at=at, event_id="lp-" + str(at), row=i)
        for i, p in enumerate(ports)
    ]  # fmt: skip


def _processor(tmp_path: Path, sinks: Sinks) -> AnalyticsProcessor:
    return AnalyticsProcessor(
        detectors=[Netcat()],
        alerts=AlertStore(tmp_path / "alerts.db"),
        alert_sinks=[sinks],
        recommendations=Recommendations(),
        recommendation_sinks=[sinks],
        device_sinks=[sinks],
        state=StateStore(tmp_path / "state.db"),
    )


def test_detections_become_alerts_written_once_per_change(tmp_path: Path) -> None:
    sinks = Sinks()
    processor = _processor(tmp_path, sinks)
    nc = [obs("ProcessCreate", {"Executable": "/bin/nc"}, at=timedelta(seconds=s)) for s in (1, 2)]
    processor.process([*nc, obs("ProcessCreate", {"Executable": "/bin/ls"})], T0)
    [alert] = sinks.alerts  # two detections, one alert, written once with both
    assert alert.count == 2 and alert.evidence == tuple(o.evidence_id for o in nc)
    processor.process(nc, T0)  # a replay changes nothing visible
    assert {a.alert_id for a in sinks.alerts} == {alert.alert_id}
    assert processor.detections == 2 and processor.repeats == 2  # repeats never reach detectors


def test_recommendations_open_and_resolve_and_risk_follows(tmp_path: Path) -> None:
    sinks = Sinks()
    processor = _processor(tmp_path, sinks)
    processor.process(_ports(timedelta(0), "22", "8080"), T0)
    processor.evaluate_now(T0 + timedelta(minutes=1))
    opened = [c for c in sinks.changes if c.change == "Discovered"]
    assert {c.recommendation.finding.kind for c in opened} == {"IoT_OpenPorts"}
    [record] = sinks.devices
    assert record.device_id == "dev-7" and record.risk is not None and record.risk.score > 0
    assert record.first_seen == T0 and record.last_seen == T0
    processor.process(_ports(timedelta(hours=1)), T0 + timedelta(hours=1))  # nothing listens
    processor.evaluate_now(T0 + timedelta(hours=1, minutes=1))
    assert any(c.change == "Resolved" for c in sinks.changes)
    assert sinks.devices[-1].risk is not None
    assert sinks.devices[-1].risk.score < record.risk.score


def test_active_recommendations_survive_a_restart(tmp_path: Path) -> None:
    sinks = Sinks()
    first = _processor(tmp_path, sinks)
    first.process(_ports(timedelta(0), "22"), T0)
    first.evaluate_now(T0 + timedelta(minutes=1))
    first.close()
    first.alerts.close()
    again = Sinks()
    second = _processor(tmp_path, again)
    assert [t.finding.kind for t in second.tracker.active()] == ["IoT_OpenPorts"]
    second.process(_ports(timedelta(hours=1), "22"), T0 + timedelta(hours=1))
    second.evaluate_now(T0 + timedelta(hours=1, minutes=1))
    assert not [c for c in again.changes if c.change == "Discovered"]
