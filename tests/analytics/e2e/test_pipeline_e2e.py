"""Hub -> durable log -> analytics -> workspace, with a simulated fleet over real TLS MQTT.

One system (``conftest.running``) serves the whole module. Two fleets are registered through the
service API and send what their agents would, each device over its own SDK connection:

- the **attack fleet**: four devices, each living two ordinary hours (snapshots, jobs, daemons'
  traffic, admin logins) with one attack replayed an hour in: ``bruteforce`` (30 failed SSH
  logins, then a success, from one address), ``reverse-shell``, ``miner`` and ``ti-connection``
  (beacons to an address of the simulator's STIX bundle, loaded as a ``stix-file`` feed);
- the **benign fleet**: five devices living an ordinary 24 hours; the third has a permissive
  firewall (as ``build_fleet`` makes every fifth device from the third).

Simulated time ends about now (event times are simulated; the wall-clock "device silent" check
then has nothing to say), and the behaviour baselines, which learn for seven days of observation
time, keep every device in learning: no baseline alert is expected.

``IoT_DeviceOnboarded`` (Informational) fires once per device on its first telemetry. It counts:
it is expected exactly once for every device, and it is the only alert a benign device may have.

The last test restarts the system with the analytics consumer rewound to the start of the log
and the attack sent again: alerts must come back unchanged (stable ids, no duplicates).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio

from iotsec.analytics.pipeline import CONSUMER as ANALYTICS
from iotsec.schema import Event
from iotsec.simulate import (
    ALERT_BRUTEFORCE_FAIL,
    ALERT_BRUTEFORCE_SUCCESS,
    ALERT_CRYPTO_MINER,
    ALERT_REVERSE_SHELL,
    ALERT_THREAT_INTEL_IP,
    Fleet,
    ScenarioRun,
    SimDevice,
    benign_day,
    benign_events,
    build_fleet,
    run_scenario,
    schedule,
)
from tests.analytics.e2e.conftest import FEED_NAME, RunningSystem, rewind

pytestmark = pytest.mark.asyncio(loop_scope="module")

ONBOARDED = "IoT_DeviceOnboarded"
ATTACKS = ("bruteforce", "reverse-shell", "miner", "ti-connection")
SEED = 3
ALERTS = "SecurityAlert | summarize n = count() by AlertName, DeviceId"
ALERT_STATE = (
    "SecurityAlert | project SystemAlertId, AlertName, DeviceId, Status,"
    " Count = toint(ExtendedProperties.Count),"
    " Evidence = tostring(ExtendedProperties.EvidenceEventIds)"
)
EVIDENCE = (
    "SecurityAlert"
    " | mv-expand Evidence = ExtendedProperties.EvidenceEventIds"
    " | project SystemAlertId, AlertName, DeviceId, Evidence = tostring(Evidence)"
    " | join kind=leftouter (SecurityIoTRawEvent | project IoTRawEventId,"
    " RawDevice = DeviceId, RawEventName, CommandLine, RemoteAddress)"
    " on $left.Evidence == $right.IoTRawEventId"
)
PERMISSIVE_POLICY = "IoT_PermissiveFirewallPolicy"


@dataclass(frozen=True)
class Replay:
    """What was sent, by whom, and which alerts it should raise, by device."""

    attack: Fleet
    day: Fleet
    sent: dict[str, list[Event]]
    runs: dict[str, ScenarioRun]
    expected: dict[str, frozenset[str]]
    #: The alert summary once the system settled: {(AlertName, DeviceId): rows}.
    alerts: dict[tuple[str, str], int]

    @property
    def devices(self) -> list[SimDevice]:
        return [*self.attack, *self.day]


def _attack_life(
    device: SimDevice, scenario: str, start: datetime
) -> tuple[list[Event], ScenarioRun]:
    """Two benign hours of ``device`` with ``scenario`` an hour in, as its agent sends them."""
    run = run_scenario(scenario, device, start + timedelta(hours=1), seed=SEED)
    life = benign_events(device, start, start + timedelta(hours=2), seed=SEED)
    return [t.event for t in schedule(device, [*life, *run.activity])], run


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def replayed(running: RunningSystem) -> Replay:
    """Both fleets registered, everything sent and acked, consumed, and the alerts settled."""
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    attack = build_fleet(len(ATTACKS), seed=5, prefix="atk")
    day = build_fleet(5, seed=11, prefix="day")
    await running.register([*attack, *day])
    sent: dict[str, list[Event]] = {}
    runs: dict[str, ScenarioRun] = {}
    expected: dict[str, frozenset[str]] = {}
    for device, scenario in zip(attack, ATTACKS, strict=True):
        sent[device.device_id], run = _attack_life(device, scenario, now - timedelta(hours=3))
        runs[device.device_id] = run
        expected[device.device_id] = run.expected_alerts | {ONBOARDED}
    for device_id, timed in benign_day(day, now - timedelta(hours=24), hours=24).items():
        sent[device_id] = [t.event for t in timed]
        expected[device_id] = frozenset({ONBOARDED})
    devices = [*attack, *day]
    await asyncio.gather(*(running.send(d, sent[d.device_id]) for d in devices))
    rows = await running.settle(ALERTS)
    alerts = {(r["AlertName"], r["DeviceId"]): r["n"] for r in rows}
    return Replay(attack, day, sent, runs, expected, alerts)


def _by_device(alerts: dict[tuple[str, str], int]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for name, device_id in alerts:
        found.setdefault(device_id, set()).add(name)
    return found


async def test_the_replayed_attack_raises_exactly_its_expected_alerts(replayed: Replay) -> None:
    wanted = {
        "bruteforce": {ALERT_BRUTEFORCE_FAIL, ALERT_BRUTEFORCE_SUCCESS},
        "reverse-shell": {ALERT_REVERSE_SHELL},
        "miner": {ALERT_CRYPTO_MINER},
        "ti-connection": {ALERT_THREAT_INTEL_IP},
    }
    found = _by_device(replayed.alerts)
    for device in replayed.attack:
        run = replayed.runs[device.device_id]
        assert wanted[run.scenario] <= run.expected_alerts  # the simulator's own expectation
        assert found[device.device_id] == run.expected_alerts | {ONBOARDED}, run.scenario
    # Nothing anywhere else (no hub-level or unknown-device alert), and each alert once.
    assert _by_device(replayed.alerts) == {d: set(e) for d, e in replayed.expected.items()}
    assert set(replayed.alerts.values()) == {1}


async def test_a_benign_day_raises_nothing_but_onboarding(
    running: RunningSystem, replayed: Replay
) -> None:
    found = _by_device(replayed.alerts)
    for device in replayed.day:
        assert found[device.device_id] == {ONBOARDED}
    origins = await running.service.query(
        "SecurityAlert | summarize n = count() by AlertName, Origin = tostring("
        "ExtendedProperties.Origin)"
    )
    learned = [r for r in origins if r["Origin"] in ("baseline", "model")]
    assert [r["AlertName"] for r in learned] == [ONBOARDED]  # no baseline deviation, no outlier
    raw = await running.service.query(
        "SecurityIoTRawEvent | summarize n = dcount(EventId) by DeviceId"
    )
    assert {r["DeviceId"]: r["n"] for r in raw} == {
        device_id: len({e.id for e in events}) for device_id, events in replayed.sent.items()
    }


async def test_every_alert_cites_raw_events_of_its_device(
    running: RunningSystem, replayed: Replay
) -> None:
    rows = await running.service.query(EVIDENCE)
    alerts = {(r["AlertName"], r["DeviceId"]) for r in rows}
    assert alerts == set(replayed.alerts)  # every alert has evidence
    unlinked = [r for r in rows if r["IoTRawEventId"] is None or r["RawDevice"] != r["DeviceId"]]
    assert unlinked == []
    cited: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        cited.setdefault((row["AlertName"], row["DeviceId"]), []).append(row)
    for device in replayed.attack:
        run = replayed.runs[device.device_id]
        facts, device_id = run.facts, device.device_id
        if run.scenario == "bruteforce":
            for name in (ALERT_BRUTEFORCE_FAIL, ALERT_BRUTEFORCE_SUCCESS):
                events = cited[(name, device_id)]
                assert {(r["RawEventName"], r["RemoteAddress"]) for r in events} == {
                    ("Login", facts["attacker"])
                }
        elif run.scenario == "reverse-shell":
            events = cited[(ALERT_REVERSE_SHELL, device_id)]
            assert all(facts["c2"] in r["CommandLine"] for r in events)
        elif run.scenario == "miner":
            events = cited[(ALERT_CRYPTO_MINER, device_id)]
            assert all("stratum+tcp://" in r["CommandLine"] for r in events)
        else:
            events = cited[(ALERT_THREAT_INTEL_IP, device_id)]
            assert {(r["RawEventName"], r["RemoteAddress"]) for r in events} == {
                ("ConnectionCreate", facts["address"])
            }


async def test_the_threat_intel_alert_names_its_indicator_and_feed(
    running: RunningSystem, replayed: Replay
) -> None:
    [row] = await running.service.query(
        f"SecurityAlert | where AlertName == '{ALERT_THREAT_INTEL_IP}'"
        " | project DeviceId, Description, Feed = tostring(ExtendedProperties.Feed),"
        " Value = tostring(ExtendedProperties.IndicatorValue),"
        " Group = tostring(ExtendedProperties.SecurityGroup)"
    )
    device = next(d for d in replayed.attack if replayed.runs[d.device_id].scenario == ATTACKS[3])
    address = replayed.runs[device.device_id].facts["address"]
    assert (row["DeviceId"], row["Feed"], row["Value"]) == (device.device_id, FEED_NAME, address)
    assert address in row["Description"] and FEED_NAME in row["Description"]
    # Enriched with the security group its twin was tagged with right after it was created.
    assert row["Group"] == device.group


async def test_recommendations_and_risk_reach_the_workspace(
    running: RunningSystem, replayed: Replay
) -> None:
    permissive = {d.device_id for d in replayed.devices if d.permissive_firewall}
    assert len(permissive) == 2  # the third device of each fleet

    def policies(rows: list[dict[str, Any]]) -> set[str]:
        return {
            r["DeviceId"]
            for r in rows
            if r["RecommendationName"] == PERMISSIVE_POLICY and r["RecommendationState"] == "Active"
        }

    # Recommendations are evaluated every few seconds, not per event: wait for them.
    await running.wait_for(
        "SecurityRecommendation | project RecommendationName, DeviceId, RecommendationState",
        lambda rows: policies(rows) >= permissive,
    )
    rows = await running.service.query(
        "SecurityRecommendation | project RecommendationName, DeviceId, RecommendationState"
    )
    assert policies(rows) == permissive

    everyone = {d.device_id for d in replayed.devices}

    def scored(rows: list[dict[str, Any]]) -> bool:
        risky = {r["DeviceId"]: r for r in rows if r["RiskScore"] is not None}
        return everyone <= set(risky) and all(
            any(" alert: " in line for line in risky[d.device_id]["Explanation"])
            for d in replayed.attack
        )

    devices = await running.wait_for(
        "Device | project DeviceId, RiskScore, RiskLevel, Explanation = Tags.RiskExplanation",
        scored,
    )
    risk = {r["DeviceId"]: r for r in devices}
    for device_id in everyone:
        assert 0 <= risk[device_id]["RiskScore"] <= 100 and risk[device_id]["RiskLevel"]
    for device in replayed.day:  # onboarding is informational: it adds no risk
        assert not any(" alert: " in line for line in risk[device.device_id]["Explanation"])
    for device_id in permissive:
        assert any("Permissive firewall policy" in line for line in risk[device_id]["Explanation"])


async def test_a_restart_and_a_replay_keep_the_alerts_as_they_were(
    running: RunningSystem, replayed: Replay
) -> None:
    def state(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        return sorted(tuple(r.values()) for r in rows)

    before = state(await running.service.query(ALERT_STATE))
    raw_before = await running.service.query("SecurityIoTRawEvent | count")
    await running.stop()
    await rewind(running.data_dir, ANALYTICS)  # analytics reads the whole log again
    await running.start()
    # ... and the attack fleet's agents send everything again (a retry after lost acks).
    await asyncio.gather(*(running.send(d, replayed.sent[d.device_id]) for d in replayed.attack))
    after = await running.settle(ALERT_STATE)
    assert state(after) == before
    assert Counter(r["SystemAlertId"] for r in after).most_common(1)[0][1] == 1
    assert await running.service.query("SecurityIoTRawEvent | count") == raw_before
