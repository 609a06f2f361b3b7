"""Fleet detectors: device silent (once per silence, re-armed) and device onboarded (once)."""

from __future__ import annotations

import doctest
from datetime import timedelta

import pytest

from iotsec.analytics import DeviceContext
from iotsec.analytics import fleet as fleet_module
from iotsec.analytics.fleet import DeviceOnboardedDetector, DeviceSilentDetector, KnownDevice
from tests.analytics.obsfactory import DAY, HOUR, T0, obs

LIMIT = timedelta(hours=72)


def beat(at: timedelta, device: str = "dev-7") -> object:
    return obs("MessageStatistics", {"MessagesSent": 1}, at=at, device=device)


def test_doctests() -> None:
    assert doctest.testmod(fleet_module).failed == 0


def test_silence_fires_once_at_the_exact_limit() -> None:
    silent = DeviceSilentDetector()
    last = obs("ProcessCreate", {"Executable": "/bin/sh"}, at=5 * HOUR)
    silent.observe(last)
    assert silent.tick(T0 + 5 * HOUR + LIMIT - timedelta(seconds=1)) == []
    [alert] = silent.tick(T0 + 5 * HOUR + LIMIT)
    assert alert.rule_id == "IoT_DeviceSilent"
    assert alert.severity == "Low"
    assert alert.time == T0 + 5 * HOUR + LIMIT
    assert alert.first_time == T0 + 5 * HOUR
    assert alert.evidence == (last.evidence_id,)
    assert alert.description == (
        "dev-7 has sent no security telemetry for 72 hours (last seen 2025-01-01 05:00 UTC)"
    )
    assert silent.tick(T0 + 10 * DAY) == []


def test_a_late_tick_reports_the_time_the_silence_began_to_count() -> None:
    silent = DeviceSilentDetector()
    silent.observe(beat(timedelta(0)))
    [alert] = silent.tick(T0 + 30 * DAY)
    assert alert.time == T0 + LIMIT


def test_speaking_again_rearms() -> None:
    silent = DeviceSilentDetector()
    silent.observe(beat(timedelta(0)))
    [first] = silent.tick(T0 + 4 * DAY)
    silent.observe(beat(5 * DAY))
    assert silent.tick(T0 + 6 * DAY) == []
    [second] = silent.tick(T0 + 8 * DAY)
    assert second.first_time == T0 + 5 * DAY
    assert first.dedup_key != second.dedup_key


def test_an_old_observation_does_not_rearm() -> None:
    silent = DeviceSilentDetector()
    silent.observe(beat(2 * DAY))
    assert len(silent.tick(T0 + 6 * DAY)) == 1
    silent.observe(beat(DAY))  # a late, older event: not the device speaking again
    assert silent.tick(T0 + 9 * DAY) == []
    assert silent.last_seen("dev-7") == T0 + 2 * DAY


def test_each_device_has_its_own_clock() -> None:
    silent = DeviceSilentDetector(silent_after=timedelta(hours=1))
    silent.observe(beat(timedelta(0), "a"))
    silent.observe(beat(timedelta(minutes=30), "b"))
    assert [a.device.device_id for a in silent.tick(T0 + timedelta(minutes=70))] == ["a"]
    assert [a.device.device_id for a in silent.tick(T0 + timedelta(minutes=95))] == ["b"]


def test_devices_from_the_directory() -> None:
    known = [
        KnownDevice(DeviceContext("cam-1", group="cameras"), last_seen=T0, last_evidence="e:0"),
        KnownDevice(DeviceContext("cam-2", group="cameras")),  # registered, never heard from
    ]
    silent, onboarded = DeviceSilentDetector(known), DeviceOnboardedDetector(known)
    [alert] = silent.tick(T0 + 10 * DAY)
    assert (alert.device.device_id, alert.device.group, alert.evidence) == (
        "cam-1",
        "cameras",
        ("e:0",),
    )
    assert onboarded.observe(beat(DAY, "cam-1")) == []
    [hello] = onboarded.observe(beat(DAY, "cam-2"))
    assert hello.device.device_id == "cam-2"


def test_hub_observations_are_not_telemetry() -> None:
    silent, onboarded = DeviceSilentDetector(), DeviceOnboardedDetector()
    hub = obs("authenticate", {"Result": "Success"}, source="hub")
    assert onboarded.observe(hub) == []
    silent.observe(hub)
    assert silent.tick(T0 + 10 * DAY) == []


def test_onboarded_fires_once_per_device() -> None:
    onboarded = DeviceOnboardedDetector()
    first = obs("SystemInformation", {"OSName": "Linux"}, at=timedelta(minutes=3))
    [hello] = onboarded.observe(first)
    assert hello.rule_id == "IoT_DeviceOnboarded"
    assert hello.severity == "Informational"
    assert hello.evidence == (first.evidence_id,)
    assert hello.description == (
        "dev-7 sent its first security telemetry (SystemInformation) at 2025-01-01 00:03:00 UTC"
    )
    assert onboarded.observe(beat(HOUR)) == []
    assert onboarded.tick(T0 + DAY) == []


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        DeviceSilentDetector(silent_after=timedelta(0))
    with pytest.raises(ValueError):
        KnownDevice(DeviceContext("d"), last_seen=T0.replace(tzinfo=None))
