"""The custom-alert detector: time windows, allow and deny lists, hub counts, reloads."""

from __future__ import annotations

import asyncio
import itertools
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from iotsec.analytics import Detection, DeviceContext, Observation
from iotsec.analytics.alertstore import AlertStore
from iotsec.analytics.custom import (
    CustomAlertDetector,
    DocumentSource,
    StaticCustomAlerts,
    watch_custom_alerts,
)
from iotsec.analytics.customrules import WINDOW_RULE_TYPES, CustomAlertSet
from tests.analytics import test_detector_conformance as conformance

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)  # a multiple of every window size used here
_ids = itertools.count()


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def agent(
    name: str,
    minutes: float,
    device: str = "dev-1",
    group: str = "cameras",
    hits: int = 1,
    **fields: Any,
) -> Observation:
    return Observation(
        source="agent",
        name=name,
        time=at(minutes),
        device=DeviceContext(device, group=group, hub="/hubs/h1"),
        fields=fields,
        event_id=f"ev-{next(_ids)}",
        hit_count=hits,
    )


def hub(
    operation: str,
    minutes: float,
    device: str = "dev-1",
    group: str = "cameras",
    *,
    category: str = "DeviceTelemetry",
    result: str = "Success",
    **fields: Any,
) -> Observation:
    return Observation(
        source="hub",
        name=operation,
        time=at(minutes),
        device=DeviceContext(device, group=group),
        fields={"Category": category, "Operation": operation, "Result": result, **fields},
        event_id=f"oplog:0:{next(_ids)}",
        category=category,
        event_type="Hub",
    )


def window(
    rule_type: str, low: int = 0, high: int = 2, size: str = "PT5M", **kw: Any
) -> dict[str, Any]:
    return {
        "ruleType": rule_type,
        "isEnabled": kw.get("enabled", True),
        "minThreshold": low,
        "maxThreshold": high,
        "timeWindowSize": size,
    }


def detector(group: str = "cameras", **families: list[dict[str, Any]]) -> CustomAlertDetector:
    return CustomAlertDetector({group: CustomAlertSet.from_json(families)})


def run(det: CustomAlertDetector, observations: list[Observation]) -> list[Detection]:
    found: list[Detection] = []
    for observation in observations:
        found += det.observe(observation)
    return found


def connection(minutes: float, **kw: Any) -> Observation:
    fields = {"RemoteAddress": "198.51.100.7", "RemotePort": "443", "Direction": "Out"}
    fields.update(kw.pop("fields", {}))
    return agent("ConnectionCreate", minutes, **kw, **fields)


# -- time windows ------------------------------------------------------------------------------


def test_counts_above_the_maximum_fire_once_per_window() -> None:
    det = detector(timeWindowRules=[window("ActiveConnectionsNotInAllowedRange", 0, 2)])
    seen = [connection(m) for m in (0.5, 1, 2, 3, 4)]
    [found] = run(det, seen)
    assert found.rule_id == "IoT_CA_ActiveConnectionsNotInAllowedRange"
    assert found.display_name == (
        "Custom alert - number of active connections is outside the allowed range"
    )
    assert (found.severity, found.origin) == ("Low", "custom")
    assert found.time == at(2) and found.first_time == T0
    assert found.evidence == tuple(o.evidence_id for o in seen[:3])
    assert found.properties["Count"] == "3" and found.properties["Time Window"] == "PT5M"
    assert found.properties["Security Group"] == "cameras"
    assert found.dedup_key == "custom/cameras/ActiveConnectionsNotInAllowedRange/above/dev-1"
    assert "3 active connections on device dev-1" in found.description
    assert "above the maximum of 2" in found.description
    # The next window starts over.
    assert run(det, [connection(5), connection(6)]) == []
    [again] = run(det, [connection(7)])
    assert again.first_time == at(5)


def test_aggregated_events_count_their_hits() -> None:
    det = detector(timeWindowRules=[window("ActiveConnectionsNotInAllowedRange", 0, 10)])
    assert run(det, [connection(1, hits=10)]) == []
    assert len(run(det, [connection(2, hits=1)])) == 1


def test_counts_below_the_minimum_fire_when_the_window_closes() -> None:
    det = detector(timeWindowRules=[window("FailedLocalLoginsNotInAllowedRange", 2, 5)])
    fail = {"Result": "Fail", "UserName": "root"}
    assert run(det, [agent("Login", 1, **fail)]) == []
    # A later window's observation closes the first one: 1 < 2.
    [low] = run(det, [agent("Login", 6, **fail), agent("Login", 7, **fail)])
    assert low.time == at(5) and low.first_time == T0
    assert "below the minimum of 2" in low.description
    assert low.dedup_key.endswith("/below/dev-1")
    assert det.tick(at(10) + det.grace) == []  # 2 in [5, 10): fine


def test_a_silent_device_fires_on_tick_after_the_grace() -> None:
    det = detector(timeWindowRules=[window("MqttD2CMessagesNotInAllowedRange", 1, 1000)])
    tally = hub("d2c", 1, Protocol="mqtt", Properties={"count": "40"})
    assert run(det, [tally]) == []
    assert det.tick(at(5)) == []
    assert det.tick(at(10) + det.grace - timedelta(seconds=1)) == []  # [5, 10) in its grace
    [first] = det.tick(at(10) + det.grace)
    assert (first.first_time, first.time) == (at(5), at(10))
    assert "0 device to cloud messages in MQTT protocol" in first.description
    assert first.properties["Count"] == "0"
    assert first.evidence == (tally.evidence_id,)  # the device's last sign of life
    # Longer silence: one detection for all the windows closed since.
    [later] = det.tick(at(40) + det.grace)
    assert (later.first_time, later.time) == (at(10), at(40))
    assert "(PT5M windows)" in later.description
    assert det.tick(at(40) + det.grace) == []


def test_devices_seen_in_the_group_are_watched_for_too_little() -> None:
    det = detector(timeWindowRules=[window("TwinUpdatesNotInAllowedRange", 1, 100)])
    run(det, [agent("ProcessCreate", 1, device="quiet", Executable="/bin/true")])
    found = det.tick(at(30))
    assert {d.device.device_id for d in found} == {"quiet"}
    det.forget_after = timedelta(minutes=10)
    assert det.tick(at(60)) == []  # forgotten: no observation for longer than forget_after


def test_hub_counts_by_protocol_and_kind() -> None:
    rules = [
        window("MqttD2CMessagesNotInAllowedRange", 0, 100),
        window("HttpD2CMessagesNotInAllowedRange", 0, 2),
        window("MqttC2DMessagesNotInAllowedRange", 0, 1),
        window("HttpC2DMessagesNotInAllowedRange", 0, 1),
        window("HttpC2DRejectedMessagesNotInAllowedRange", 0, 0),
        window("TwinUpdatesNotInAllowedRange", 0, 2),
        window("UnauthorizedOperationsNotInAllowedRange", 0, 1),
    ]
    det = detector(timeWindowRules=rules)
    observations = [
        hub("d2c", 1, Protocol="mqtt", Properties={"count": "60", "protocol": "mqtt"}),
        hub("d2c", 1, Protocol="mqtt", Properties={"count": "41", "protocol": "mqtt"}),
        hub("d2c", 1, Protocol="https", Properties={"count": "3", "protocol": "https"}),
        hub("deliver", 1, category="C2DCommands", Protocol="mqtt", Properties={"messageId": "a"}),
        hub("deliver", 1, category="C2DCommands", Protocol="mqtt", Properties={"messageId": "b"}),
        hub("receive", 1, category="C2DCommands", Protocol="https", Properties={"messages": "0"}),
        hub("receive", 1, category="C2DCommands", Protocol="https", Properties={"messageId": "c"}),
        hub(
            "settle",
            1,
            category="C2DCommands",
            Protocol="https",
            Properties={"outcome": "complete"},
        ),
        hub(
            "settle", 1, category="C2DCommands", Protocol="https", Properties={"outcome": "reject"}
        ),
        hub("updateTwin", 1, category="C2DTwinOperations", Protocol="service"),
        hub("patch-reported", 1, category="D2CTwinOperations", Protocol="mqtt"),
        hub("replaceModuleTwin", 1, category="C2DTwinOperations", Protocol="service"),
        hub("authenticate", 1, category="Connections", result="Failure", Reason="bad-signature"),
        hub("authorize", 1, category="Connections", result="Failure", Reason="topic-not-allowed"),
        hub("d2c", 1, result="Failure", Protocol="mqtt", Reason="rate limited"),
    ]
    fired = {d.rule_id.removeprefix("IoT_CA_") for d in run(det, observations)}
    assert fired == {
        "MqttD2CMessagesNotInAllowedRange",  # 101 > 100
        "HttpD2CMessagesNotInAllowedRange",  # 3 > 2
        "MqttC2DMessagesNotInAllowedRange",  # 2 > 1
        "HttpC2DRejectedMessagesNotInAllowedRange",  # 1 > 0
        "TwinUpdatesNotInAllowedRange",  # 3 > 2
        "UnauthorizedOperationsNotInAllowedRange",  # 2 > 1
    }  # HttpC2D: the empty receive does not count, so 1 is not above 1


def test_rule_types_this_hub_cannot_see_never_fire() -> None:
    never = [t for t in WINDOW_RULE_TYPES if t.startswith("Amqp")] + [
        "MqttC2DRejectedMessagesNotInAllowedRange",
        "DirectMethodInvokesNotInAllowedRange",
        "FileUploadsNotInAllowedRange",
        "QueuePurgesNotInAllowedRange",
    ]
    det = detector(timeWindowRules=[window(t, 5, 10) for t in never])
    run(det, [hub("d2c", 1, Protocol="mqtt", Properties={"count": "500"}), connection(1)])
    assert det.tick(at(120)) == []


def test_disabled_rules_and_other_groups_are_left_alone() -> None:
    det = detector(
        timeWindowRules=[window("ActiveConnectionsNotInAllowedRange", 0, 0, enabled=False)],
        allowlistRules=[
            {"ruleType": "ProcessNotAllowed", "isEnabled": True, "allowlistValues": ["sshd"]}
        ],
    )
    assert run(det, [connection(1), connection(2)]) == []
    assert run(det, [agent("ProcessCreate", 1, group="gateways", Executable="/bin/nc")]) == []
    assert run(det, [agent("ProcessCreate", 1, device="$hub", Executable="/bin/nc")]) == []
    # Group names compare case-insensitively.
    assert len(run(det, [agent("ProcessCreate", 1, group="CAMERAS", Executable="/bin/nc")])) == 1


def test_late_observations_are_counted_as_late() -> None:
    det = detector(timeWindowRules=[window("ActiveConnectionsNotInAllowedRange", 0, 1)])
    run(det, [connection(6)])
    assert run(det, [connection(1), connection(2)]) == []
    assert det.late == 2


# -- allow and deny lists ----------------------------------------------------------------------


def test_outbound_connections_to_ips_not_allowed() -> None:
    allow = {
        "ruleType": "ConnectionToIpNotAllowed",
        "isEnabled": True,
        "allowlistValues": ["10.0.0.0/8", "2001:db8::/32"],
    }
    det = detector(allowlistRules=[allow])
    found = run(
        det,
        [
            connection(1, fields={"RemoteAddress": "10.1.2.3"}),
            connection(1, fields={"RemoteAddress": "::ffff:10.1.2.3"}),
            connection(1, fields={"RemoteAddress": "2001:db8::7"}),
            connection(1, fields={"RemoteAddress": "203.0.113.5", "Direction": "In"}),
            connection(2, fields={"RemoteAddress": "203.0.113.5", "RemotePort": "4444"}),
        ],
    )
    [bad] = found
    assert bad.rule_id == "IoT_CA_ConnectionToIpNotAllowed"
    assert bad.display_name == (
        "Custom alert - outbound connection to an IP that isn't allowed was created"
    )
    assert bad.properties["Value"] == "203.0.113.5"
    assert bad.properties["Remote Port"] == "4444"
    assert bad.properties["List"] == "allow"
    assert "does not allow" in bad.description
    assert bad.dedup_key == (
        "custom/cameras/ConnectionToIpNotAllowed/allowlistRules/dev-1/203.0.113.5"
    )


def test_users_and_processes_on_allow_and_deny_lists() -> None:
    det = detector(
        allowlistRules=[
            {"ruleType": "LocalUserNotAllowed", "isEnabled": True, "allowlistValues": ["pi", "ops"]}
        ],
        denylistRules=[
            {
                "ruleType": "ProcessNotAllowed",
                "isEnabled": True,
                "denylistValues": ["nc", "/usr/bin/socat"],
            }
        ],
    )
    found = run(
        det,
        [
            agent("Login", 1, Result="Success", UserName="pi"),
            agent("Login", 1, Result="Fail", UserName="eve"),  # not a login: no alert
            agent("Login", 2, Result="Success", UserName="eve"),
            agent("Login", 2, Result="Success", UserId="1001"),  # no name: the id is checked
            agent("ProcessCreate", 3, Executable="/bin/nc", CommandLine="nc -l 4444"),
            agent("ProcessCreate", 3, Executable="/usr/local/bin/socat"),
            agent("ProcessCreate", 3, Executable="/usr/bin/socat"),
        ],
    )
    assert [(d.rule_id, d.properties["Value"]) for d in found] == [
        ("IoT_CA_LocalUserNotAllowed", "eve"),
        ("IoT_CA_LocalUserNotAllowed", "1001"),
        ("IoT_CA_ProcessNotAllowed", "/bin/nc"),
        ("IoT_CA_ProcessNotAllowed", "/usr/bin/socat"),
    ]
    assert found[2].properties["Command Line"] == "nc -l 4444"
    assert "names" in found[2].description and found[2].properties["List"] == "deny"


# -- with the alert lifecycle ------------------------------------------------------------------


def test_detections_become_alerts_that_fold_across_windows(tmp_path: Any) -> None:
    det = detector(timeWindowRules=[window("ActiveConnectionsNotInAllowedRange", 0, 1)])
    found = run(det, [connection(m) for m in (0, 1, 5, 6, 10, 11)])
    assert len(found) == 3  # one per window
    with AlertStore(tmp_path / "a.db", clock=lambda: at(12)) as store:
        alerts = store.process(found)
    assert len({a.alert_id for a in alerts}) == 1
    assert alerts[-1].count == 3 and alerts[-1].severity == "Low"
    assert alerts[-1].rule_id == "IoT_CA_ActiveConnectionsNotInAllowedRange"


# -- reloading ---------------------------------------------------------------------------------


def test_update_swaps_rules_and_restarts_changed_windows() -> None:
    det = detector(timeWindowRules=[window("ActiveConnectionsNotInAllowedRange", 0, 2)])
    run(det, [connection(1), connection(2)])
    det.update(
        {
            "cameras": CustomAlertSet.from_json(
                {"timeWindowRules": [window("ActiveConnectionsNotInAllowedRange", 0, 3)]}
            )
        }
    )
    assert run(det, [connection(3), connection(3.5), connection(4)]) == []  # counting from 0
    assert len(run(det, [connection(4.5)])) == 1
    det.update({})
    assert run(det, [connection(6)] * 5) == []
    assert det.tick(at(60)) == []


def test_document_source_parses_changed_documents_and_skips_bad_ones(
    caplog: pytest.LogCaptureFixture,
) -> None:
    good = {"timeWindowRules": [window("ActiveConnectionsNotInAllowedRange")]}
    documents: dict[str, Any] = {
        "cameras": good,
        "broken": {"timeWindowRules": [{"ruleType": "X"}]},
    }
    source = DocumentSource(lambda: documents)
    with caplog.at_level(logging.ERROR):
        sets = source.custom_alerts()
    assert set(sets) == {"cameras"}
    assert "broken" in source.errors and "security group broken" in caplog.text
    first = sets["cameras"]
    assert source.custom_alerts()["cameras"] is first  # unchanged: not parsed again
    documents["cameras"] = {"denylistRules": []}
    assert source.custom_alerts()["cameras"] == CustomAlertSet()


async def test_watch_reloads_off_the_stream_and_keeps_rules_when_a_read_fails(
    caplog: pytest.LogCaptureFixture,
) -> None:
    det = CustomAlertDetector()
    rules = {
        "cameras": CustomAlertSet.from_json(
            {
                "denylistRules": [
                    {"ruleType": "ProcessNotAllowed", "isEnabled": True, "denylistValues": ["nc"]}
                ]
            }
        )
    }

    class Flaky:
        def __init__(self) -> None:
            self.calls = 0

        def custom_alerts(self) -> dict[str, CustomAlertSet]:
            self.calls += 1
            if self.calls == 2:
                raise OSError("registry unavailable")
            return rules

    source = Flaky()
    stop = asyncio.Event()
    with caplog.at_level(logging.ERROR):
        task = asyncio.create_task(watch_custom_alerts(source, det, stop, every=0.01))
        while source.calls < 3:
            await asyncio.sleep(0.01)
        stop.set()
        await asyncio.wait_for(task, 5)
    assert "keeping the rules in use" in caplog.text
    assert len(det.observe(agent("ProcessCreate", 1, Executable="/bin/nc"))) == 1
    assert StaticCustomAlerts(rules).custom_alerts() is rules


# -- the detector conformance suite (tests/analytics/test_detector_conformance.py) -------------

CONFORMING_RULES = {
    group: CustomAlertSet.from_json(
        {
            "timeWindowRules": [
                window("ActiveConnectionsNotInAllowedRange", 1, 2, "PT10M"),
                window("FailedLocalLoginsNotInAllowedRange", 0, 1, "PT1M"),
                window("MqttD2CMessagesNotInAllowedRange", 1, 1000, "PT30M"),
                window("UnauthorizedOperationsNotInAllowedRange", 0, 0, "PT5M"),
            ],
            "allowlistRules": [
                {
                    "ruleType": "ConnectionToIpNotAllowed",
                    "isEnabled": True,
                    "allowlistValues": ["10.0.0.0/8"],
                },
                {"ruleType": "LocalUserNotAllowed", "isEnabled": True, "allowlistValues": ["pi"]},
            ],
            "denylistRules": [
                {"ruleType": "ProcessNotAllowed", "isEnabled": True, "denylistValues": ["x", "sh"]}
            ],
        }
    )
    for group in ("default", "Cameras")
}


def conforming() -> CustomAlertDetector:
    return CustomAlertDetector(CONFORMING_RULES, grace=timedelta(0))


@conformance.CONFORMANCE
@given(sequence=conformance.steps)
def test_conformance_never_raises_and_detections_are_complete(
    sequence: list[Observation | datetime],
) -> None:
    found = conformance.run(conforming(), sorted(sequence, key=conformance._when))
    assert len({conformance._identity(d) for d in found}) == len(found)


@conformance.CONFORMANCE
@given(sequence=conformance.steps, data=st.data())
def test_conformance_replays_never_repeat_a_detection(
    sequence: list[Observation | datetime], data: st.DataObject
) -> None:
    ordered = sorted(sequence, key=conformance._when)
    once = conformance.run(conforming(), ordered)
    twice = conformance.run(conforming(), [s for step in ordered for s in (step, step)])
    # In time order, every observation and tick delivered twice gives the same detections
    # (repeats of a dedup key across windows are the alert lifecycle's to fold).
    assert [conformance._identity(d) for d in twice] == [conformance._identity(d) for d in once]
    shuffled = data.draw(st.permutations(sequence))
    conformance.run(conforming(), [s for step in shuffled for s in (step, step)])
