"""Benign activity: reproducible, valid on the wire, and nothing an attack detector should flag."""

from __future__ import annotations

import ipaddress
import itertools
import re
from collections import Counter
from datetime import timedelta

import pytest

from iotsec.schema import Event
from iotsec.simulate import (
    MANAGEMENT_SUBNET,
    PUBLIC_PEERS,
    SITE_SERVICES_SUBNET,
    THREAT_INTEL_ADDRESSES,
    BenignActivity,
    Cadence,
    Fleet,
    SimDevice,
    benign_day,
    benign_events,
)
from tests.simulate.conftest import START, assert_valid, by_kind, row

DAY = timedelta(days=1)
# What attack rules look for; none of it may appear in a benign command line.
SUSPICIOUS = re.compile(
    r"/dev/tcp|\bnc\b|\bncat\b|socat|\|\s*(ba)?sh\b|curl|wget|stratum|xmrig|miner|iptables|ufw"
    r"|nohup|useradd|chmod|/tmp/|history -c|rm -rf|\bgcc\b|base64|python3? -c|uname|whoami"
)
_SITE = [ipaddress.ip_network(n) for n in (SITE_SERVICES_SUBNET, "10.40.0.0/24", MANAGEMENT_SUBNET)]


@pytest.fixture(scope="module")
def days(fleet: Fleet) -> dict[str, list[Event]]:
    """Two days of every device of the fleet, as they happen."""
    return {d.device_id: benign_events(d, START, START + 2 * DAY, seed=11) for d in fleet}


def test_the_same_seed_gives_the_same_events(fleet: Fleet) -> None:
    device = by_kind(fleet)["gateway"]
    end = START + timedelta(hours=6)
    first = benign_events(device, START, end, seed=1)
    assert first == benign_events(device, START, end, seed=1)
    assert [e.id for e in first] != [e.id for e in benign_events(device, START, end, seed=2)]


def test_asking_in_pieces_gives_the_same_events(fleet: Fleet) -> None:
    device = by_kind(fleet)["sensor-hub"]
    end = START + timedelta(hours=3)
    whole = BenignActivity(device, START, seed=4).between(START, end)
    activity = BenignActivity(device, START, seed=4)
    pieces: list[Event] = []
    at = START
    while at < end:
        step = min(end, at + timedelta(seconds=97))
        pieces.extend(activity.between(at, step))
        at = step
    assert pieces == whole
    assert activity.between(START - timedelta(hours=1), START) == []  # nothing before the origin


def test_events_are_in_order_and_in_the_device_time_zone(days: dict[str, list[Event]]) -> None:
    for events in days.values():
        times = [e.timestamp_utc for e in events]
        assert times == sorted(times)
        assert all(START <= t < START + 2 * DAY for t in times)
    assert len(days) == 8


def test_every_event_is_valid_for_our_codec_and_microsoft_schema(fleet: Fleet) -> None:
    # Three hours of each device (every kind of event, plain and aggregated): the schema
    # validator is slow, and the other hours repeat these shapes.
    day = benign_day(fleet, START + timedelta(hours=9), hours=3)
    for device in fleet:
        sent = [t.event for t in day[device.device_id]]
        happened = benign_events(device, START + timedelta(hours=9), START + timedelta(hours=10))
        assert_valid(sent + happened, device.agent_id)


def test_every_kind_of_event_is_there(days: dict[str, list[Event]]) -> None:
    names = Counter(e.name for events in days.values() for e in events)
    assert set(names) >= {
        "SystemInformation",
        "LocalUsers",
        "ListeningPorts",
        "FirewallConfiguration",
        "OSBaseline",
        "MessageStatistics",
        "DroppedEventsStatistics",
        "ProcessCreate",
        "ProcessTerminate",
        "ConnectionCreate",
        "Login",
    }


def test_snapshots_and_statistics_come_every_hour_and_do_not_change(
    fleet: Fleet, days: dict[str, list[Event]]
) -> None:
    for device in fleet:
        events = days[device.device_id]
        for name in ("LocalUsers", "ListeningPorts", "FirewallConfiguration", "OSBaseline"):
            snapshots = [e for e in events if e.name == name]
            assert len(snapshots) == 48
            assert all(e.payload == snapshots[0].payload for e in snapshots), name
        statistics = [e for e in events if e.name == "MessageStatistics"]
        assert len(statistics) == 47  # the first comes an hour after the agent started
        gaps = {b.timestamp_utc - a.timestamp_utc for a, b in itertools.pairwise(statistics)}
        assert gaps == {timedelta(hours=1)}


def test_a_slower_cadence_sends_fewer_snapshots(fleet: Fleet) -> None:
    device = by_kind(fleet)["camera"]
    slow = Cadence(snapshot=timedelta(hours=13), statistics=timedelta(hours=6))
    events = benign_events(device, START, START + DAY, seed=1, cadence=slow)
    assert sum(e.name == "SystemInformation" for e in events) == 2
    assert sum(e.name == "MessageStatistics" for e in events) == 3


def test_firewalls_deny_by_default_except_the_permissive_devices(
    fleet: Fleet, days: dict[str, list[Event]]
) -> None:
    for device in fleet:
        snapshot = next(e for e in days[device.device_id] if e.name == "FirewallConfiguration")
        policies = {r.chain_name: r.action for r in snapshot.payload if _is_policy(r, snapshot)}
        if device.permissive_firewall:
            assert policies == {"INPUT": "Allow", "FORWARD": "Allow", "OUTPUT": "Allow"}
            assert len(snapshot.payload) == 3
        else:
            assert policies == {"INPUT": "Deny", "FORWARD": "Deny", "OUTPUT": "Deny"}
            ssh = [r for r in snapshot.payload if r.destination_port == "22"]
            assert [r.source_address for r in ssh] == [MANAGEMENT_SUBNET]
    assert any(d.permissive_firewall for d in fleet)
    assert sum(not d.permissive_firewall for d in fleet) > len(fleet) / 2


def _is_policy(rule: object, snapshot: Event) -> bool:
    chain = getattr(rule, "chain_name", None)
    same_chain = [r for r in snapshot.payload if getattr(r, "chain_name", None) == chain]
    return rule is same_chain[-1]


def test_baseline_failures_are_the_device_own(fleet: Fleet, days: dict[str, list[Event]]) -> None:
    for device in fleet:
        baseline = next(e for e in days[device.device_id] if e.name == "OSBaseline")
        assert {r.cce_id for r in baseline.payload} == {c.cce_id for c in device.baseline_failures}
        assert {r.result for r in baseline.payload} == {"Fail"}


def test_listening_ports_are_the_profile_services(fleet: Fleet) -> None:
    device = by_kind(fleet)["gateway"]
    snapshot = next(
        e
        for e in benign_events(device, START, START + timedelta(minutes=5))
        if e.name == "ListeningPorts"
    )
    ports = {(r.protocol, r.local_address, r.local_port) for r in snapshot.payload}
    assert ("TCP", "0.0.0.0", "22") in ports and ("TCP", "127.0.0.1", "1883") in ports
    assert all(r.extra_details["Pid"].isdigit() for r in snapshot.payload)


def test_logins_come_from_the_site_workstation_and_never_fail_twice(
    fleet: Fleet, days: dict[str, list[Event]]
) -> None:
    management = ipaddress.ip_network(MANAGEMENT_SUBNET)
    seen: Counter[str] = Counter()
    for device in fleet:
        logins = [e for e in days[device.device_id] if e.name == "Login"]
        for event in logins:
            fields = row(event)
            # One workstation per site: a device's login sources do not drift (baselines).
            assert fields["RemoteAddress"] == device.site.admin_workstation
            assert ipaddress.ip_address(fields["RemoteAddress"]) in management
            assert fields["UserName"] in device.profile.logins.admins
            assert fields["Executable"] in ("/usr/sbin/sshd", "/usr/sbin/dropbear")
            seen[fields["Result"]] += 1
        results = [row(e)["Result"] for e in logins]
        assert "Fail,Fail" not in ",".join(results)
        for i, result in enumerate(results):
            if result == "Fail":  # the mistyped password is followed by a success
                assert results[i + 1] == "Success"
    assert seen["Success"] > 0


def test_connections_stay_on_site_or_reach_known_public_peers(
    days: dict[str, list[Event]],
) -> None:
    for events in days.values():
        for event in events:
            if event.name != "ConnectionCreate":
                continue
            address = row(event)["RemoteAddress"]
            assert address not in THREAT_INTEL_ADDRESSES
            on_site = any(ipaddress.ip_address(address) in net for net in _SITE)
            assert on_site or address in PUBLIC_PEERS, address
            if row(event)["Direction"] == "In":
                assert on_site


def test_processes_are_the_profile_own_and_look_ordinary(
    fleet: Fleet, days: dict[str, list[Event]]
) -> None:
    for device in fleet:
        known = _known_commands(device)
        for event in days[device.device_id]:
            if event.name != "ProcessCreate":
                continue
            fields = row(event)
            assert (fields["Executable"], fields["CommandLine"]) in known
            assert not SUSPICIOUS.search(fields["CommandLine"]), fields["CommandLine"]
            assert fields["Executable"].startswith("/")
            assert fields["UserId"] == device.profile.uid(fields["UserName"])


def _known_commands(device: SimDevice) -> set[tuple[str, str]]:
    profile = device.profile
    known = {(s.executable, s.command_line) for job in profile.jobs for s in job.steps}
    known |= {(s.executable, s.command_line) for s in profile.logins.commands}
    known.add((profile.logins.shell.executable, profile.logins.shell.command_line))
    known.add(("/usr/sbin/sshd", "/usr/sbin/sshd -D -R"))
    return known


def test_every_day_looks_like_the_one_before(fleet: Fleet, days: dict[str, list[Event]]) -> None:
    management = ipaddress.ip_network(MANAGEMENT_SUBNET)
    for device in fleet:
        events = days[device.device_id]

        def shape(day: int, events: list[Event] = events) -> set[tuple[str, str]]:
            begin, end = START + day * DAY, START + (day + 1) * DAY
            # Admin sessions come and go; what daemons and jobs reach does not.
            return {
                (row(e)["Executable"], row(e)["RemoteAddress"])
                for e in events
                if begin <= e.timestamp_utc < end
                and e.name == "ConnectionCreate"
                and ipaddress.ip_address(row(e)["RemoteAddress"]) not in management
            }

        assert shape(1) == shape(0), device.device_id


def test_aggregated_events_carry_hit_counts_and_zeroed_pids(fleet: Fleet) -> None:
    device = by_kind(fleet)["sensor-hub"]
    sent = benign_day(fleet, START, hours=3)[device.device_id]
    aggregated = [t for t in sent if "HitCount" in t.event.payload[0].extra_details]
    assert aggregated
    for timed in aggregated:
        fields = row(timed.event)
        assert fields["ProcessId"] == 0
        assert timed.at > timed.event.timestamp_utc
    uploads = [
        t
        for t in aggregated
        if row(t.event).get("CommandLine") == "/bin/sh -c /opt/sensorhub/bin/upload.sh"
    ]
    assert [int(t.event.payload[0].extra_details["HitCount"]) for t in uploads] == [12, 12, 12]


def test_a_benign_day_is_per_device_and_uses_the_fleet_seed(fleet: Fleet) -> None:
    day = benign_day(fleet, START, hours=2)
    assert set(day) == {d.device_id for d in fleet}
    assert day == benign_day(fleet, START, hours=2, seed=fleet.seed)
    assert day != benign_day(fleet, START, hours=2, seed=fleet.seed + 1)


def test_naive_times_are_refused(fleet: Fleet) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        BenignActivity(fleet.devices[0], START.replace(tzinfo=None))
