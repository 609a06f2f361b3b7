"""The rule engine: match, threshold and sequence rules at exact times, suppressions, bounds."""

from __future__ import annotations

import doctest
import textwrap
from datetime import timedelta

import pytest

from iotsec.analytics import Detection, Detector, Observation
from iotsec.analytics.rules import EngineLimits, RuleEngine, load_rules_text
from iotsec.analytics.rules import engine as engine_module
from tests.analytics.rules.conftest import T0, FakeIntel, at, make_obs


def engine(
    rules: str, *, limits: EngineLimits | None = None, intel: FakeIntel | None = None
) -> RuleEngine:
    ruleset = load_rules_text(textwrap.dedent(rules), source="test.yaml")
    return RuleEngine(ruleset, intel or FakeIntel(), limits=limits)


def feed(rules: RuleEngine, observations: list[Observation]) -> list[Detection]:
    found: list[Detection] = []
    for obs in observations:
        found.extend(rules.observe(obs))
    return found


def test_doctests() -> None:
    assert doctest.testmod(engine_module).failed == 0


def test_the_engine_is_a_detector() -> None:
    detector: Detector = engine("rules: []\n")
    assert detector.observe(make_obs()) == []
    assert detector.tick(T0) == []


MATCH = """\
rules:
  - id: IoT_Netcat
    name: Netcat
    severity: Medium
    tactic: [Execution, command and control]
    technique: [T1059, T1095]
    description: "{UserName} ran {Executable} on {DeviceId} ({Tags.site}): {CommandLine}"
    remediation:
      - Kill {ProcessId}.
      - Review {DeviceId}.
    dedup: 30m
    match:
      event: ProcessCreate
      field: Executable
      endswith: [/nc, /ncat]
  - id: Anything_Root
    name: Root did something
    severity: Low
    description: "{Name} by root"
    match: {field: UserName, equals: root}
"""


def test_a_match_rule_fires_with_everything_the_rule_says() -> None:
    rules = engine(MATCH)
    obs = make_obs(
        fields={"Executable": "/bin/nc", "CommandLine": "nc -l 4444", "ProcessId": 42},
        t=5,
        tags={"site": "north"},
        event_id="ev-1",
    )
    (found,) = rules.observe(obs)
    assert found.rule_id == "IoT_Netcat" and found.display_name == "Netcat"
    assert found.severity == "Medium" and found.origin == "rule"
    assert found.tactics == ("Execution", "Command and Control")
    assert found.techniques == ("T1059", "T1095")
    assert found.description == "(unknown) ran /bin/nc on dev-1 (north): nc -l 4444"
    assert found.remediation == ("Kill 42.", "Review dev-1.")
    assert found.evidence == ("ev-1:0",)
    assert found.time == found.first_time == at(5)
    assert found.dedup_key == "IoT_Netcat|dev-1"
    assert found.dedup_seconds == 1800
    assert dict(found.properties) == {"Executable": "/bin/nc"}
    assert found.device is obs.device


def test_observations_meet_only_the_rules_that_can_match_them() -> None:
    rules = engine(MATCH)
    both = make_obs(fields={"Executable": "/usr/bin/ncat", "UserName": "root"})
    assert [d.rule_id for d in rules.observe(both)] == ["IoT_Netcat", "Anything_Root"]
    login = make_obs("Login", {"Executable": "/bin/nc", "UserName": "ROOT"})
    assert [d.rule_id for d in rules.observe(login)] == ["Anything_Root"]
    hub = make_obs("authenticate", {"UserName": "root"}, source="hub")
    assert [d.description for d in rules.observe(hub)] == ["authenticate by root"]
    assert rules.observe(make_obs(fields={"Executable": "/bin/sh"})) == []


THRESHOLD = """\
rules:
  - id: Brute
    name: Brute force
    severity: Low
    description: "{count} failures from {RemoteAddress} within {window}"
    match: {event: Login, field: Result, equals: Fail}
    threshold:
      count: 3
      window: 60s
      by: [DeviceId, RemoteAddress]
"""


def fail(t: float, ip: str = "198.51.100.1", device: str = "dev-1", hits: int = 1) -> Observation:
    return make_obs(
        "Login",
        {"Result": "Fail", "RemoteAddress": ip},
        t=t,
        device=device,
        hits=hits,
        event_id=f"f{t}-{ip}-{device}",
    )


def fire_times(rules: RuleEngine, observations: list[Observation]) -> list[float]:
    return [(d.time - T0).total_seconds() for d in feed(rules, observations)]


def test_a_threshold_fires_when_the_count_is_reached_within_the_window() -> None:
    rules = engine(THRESHOLD)
    (found,) = feed(rules, [fail(0), fail(30), fail(60)])  # inclusive: 0 and 60 are 60s apart
    assert found.description == "3 failures from 198.51.100.1 within 60s"
    assert found.evidence == (
        "f0-198.51.100.1-dev-1:0",
        "f30-198.51.100.1-dev-1:0",
        "f60-198.51.100.1-dev-1:0",
    )
    assert (found.first_time, found.time) == (at(0), at(60))
    assert found.dedup_key == "Brute|dev-1|198.51.100.1"
    assert dict(found.properties) == {
        "RemoteAddress": "198.51.100.1",
        "Count": "3",
        "Window": "60s",
        "Threshold": "at least 3",
    }


def test_a_threshold_does_not_count_what_fell_out_of_the_window() -> None:
    assert fire_times(engine(THRESHOLD), [fail(0), fail(30), fail(61)]) == []
    assert fire_times(engine(THRESHOLD), [fail(0), fail(30), fail(61), fail(62)]) == [62]


def test_a_threshold_fires_once_and_rearms_only_after_the_window_empties() -> None:
    rules = engine(THRESHOLD)
    # A steady stream keeps the window from emptying: one alert.
    assert fire_times(rules, [fail(t) for t in range(0, 600, 30)]) == [60]
    # 61 s of silence empties it: counting starts again.
    assert fire_times(rules, [fail(631), fail(632), fail(633)]) == [633]


def test_hit_counts_of_aggregated_events_count() -> None:
    rules = engine(THRESHOLD)
    (found,) = rules.observe(fail(0, hits=5))
    assert found.properties["Count"] == "5" and found.description.startswith("5 failures")


def test_threshold_keys_are_isolated() -> None:
    rules = engine(THRESHOLD)
    observations = [fail(0, "a"), fail(1, "b"), fail(2, "a", "dev-2"), fail(3, "a"), fail(4, "b")]
    assert fire_times(rules, observations) == []
    found = feed(rules, [fail(5, "b"), fail(6, "a")])
    assert [d.dedup_key for d in found] == ["Brute|dev-1|b", "Brute|dev-1|a"]


def test_max_fires_again_when_the_count_goes_above_it() -> None:
    rules = engine(THRESHOLD.replace("count: 3", "count: 2\n      max: 4"))
    found = feed(rules, [fail(t) for t in range(8)])
    assert [(d.time - T0).total_seconds() for d in found] == [1, 4]
    assert [d.properties["Threshold"] for d in found] == ["at least 2", "more than 4"]
    only_max = engine(THRESHOLD.replace("count: 3", "max: 2"))
    assert fire_times(only_max, [fail(t) for t in range(5)]) == [2]


def test_late_observations_inside_the_window_count_and_older_ones_do_not() -> None:
    rules = engine(THRESHOLD)
    assert fire_times(rules, [fail(100), fail(30), fail(110)]) == []  # 30 is outside
    (found,) = feed(rules, [fail(90)])  # late, inside: 90, 100, 110
    assert found.first_time == at(90) and found.time == at(90)
    assert len(found.evidence) == 3


def test_evidence_is_capped_and_keeps_the_trigger() -> None:
    rules = engine(THRESHOLD.replace("count: 3", "count: 10"), limits=EngineLimits(max_evidence=4))
    (found,) = feed(rules, [fail(t) for t in range(10)])
    assert found.evidence == (
        "f0-198.51.100.1-dev-1:0",
        "f1-198.51.100.1-dev-1:0",
        "f2-198.51.100.1-dev-1:0",
        "f9-198.51.100.1-dev-1:0",
    )
    assert found.properties["Count"] == "10"


def test_tick_expires_windows_and_rearms_them() -> None:
    rules = engine(THRESHOLD)
    feed(rules, [fail(0, "a"), fail(0, "b"), fail(30, "c")])
    assert rules.state_keys == {"Brute": 3}
    assert rules.tick(at(60)) == []
    assert rules.state_keys == {"Brute": 3}
    rules.tick(at(61))
    assert rules.state_keys == {"Brute": 1}
    rules.tick(at(91))
    assert rules.state_keys == {"Brute": 0}


def test_keys_are_bounded_and_the_oldest_is_evicted() -> None:
    rules = engine(THRESHOLD, limits=EngineLimits(max_keys_per_rule=2))
    feed(rules, [fail(0, "a"), fail(1, "a"), fail(2, "b"), fail(3, "c")])
    assert rules.state_keys == {"Brute": 2}
    assert rules.evicted == {"Brute": 1}
    # "a" was evicted with its two failures: it starts again from one.
    assert fire_times(rules, [fail(4, "a")]) == []
    with pytest.raises(ValueError, match="at least 1"):
        EngineLimits(max_keys_per_rule=0)


def test_the_rule_key_overrides_by_in_the_dedup_key() -> None:
    rules = engine(THRESHOLD.replace("    threshold:", "    key: [UserName]\n    threshold:"))
    found = feed(rules, [fail(t) for t in range(3)])
    assert found[0].dedup_key == "Brute|dev-1|(unknown)"
    match = engine(MATCH.replace("    dedup: 30m\n", "    key: [CommandLine]\n"))
    (found_match,) = match.observe(
        make_obs(fields={"Executable": "/bin/nc", "CommandLine": "a|b\\c"})
    )
    assert found_match.dedup_key == "IoT_Netcat|dev-1|a\\|b\\\\c"


SEQUENCE = """\
rules:
  - id: BruteSuccess
    name: Successful brute force
    severity: High
    description: "{UserName} from {RemoteAddress} after {count} logins within {window}"
    sequence:
      within: 10m
      by: [DeviceId, RemoteAddress]
      steps:
        - name: failures
          match: {event: Login, field: Result, equals: Fail}
          count: 3
        - name: success
          match: {event: Login, field: Result, equals: Success}
"""


def success(t: float, ip: str = "198.51.100.1") -> Observation:
    return make_obs(
        "Login",
        {"Result": "Success", "RemoteAddress": ip, "UserName": "pi"},
        t=t,
        event_id=f"s{t}",
    )


def test_a_sequence_fires_when_its_steps_happen_in_order() -> None:
    rules = engine(SEQUENCE)
    assert feed(rules, [fail(0), fail(10), fail(20)]) == []
    (found,) = rules.observe(success(30))
    assert found.description == "pi from 198.51.100.1 after 4 logins within 10m"
    assert found.evidence == (
        "f0-198.51.100.1-dev-1:0",
        "f10-198.51.100.1-dev-1:0",
        "f20-198.51.100.1-dev-1:0",
        "s30:0",
    )
    assert (found.first_time, found.time) == (at(0), at(30))
    assert found.dedup_key == "BruteSuccess|dev-1|198.51.100.1"
    assert found.properties["Count"] == "4"
    # Fired: the next success needs a whole new run.
    assert rules.observe(success(31)) == []


def test_a_sequence_needs_order_counts_and_the_same_key() -> None:
    assert fire_times(engine(SEQUENCE), [success(0), fail(1), fail(2), fail(3)]) == []
    assert fire_times(engine(SEQUENCE), [fail(0), fail(1), success(2)]) == []
    assert fire_times(engine(SEQUENCE), [fail(0), fail(1), fail(2), success(3, "other")]) == []
    mixed = [fail(0), fail(1), success(2), fail(3), success(4)]
    assert fire_times(engine(SEQUENCE), mixed) == [4]


def test_a_sequence_must_complete_within_its_window() -> None:
    late = [fail(0), fail(100), fail(200), success(601)]
    assert fire_times(engine(SEQUENCE), late) == []
    assert fire_times(engine(SEQUENCE), [fail(0), fail(100), fail(200), success(600)]) == [600]
    # The latest possible start is used: older failures do not spoil a later run.
    sliding = [fail(0), fail(400), fail(500), fail(700), success(900)]
    assert fire_times(engine(SEQUENCE), sliding) == [900]


def test_a_sequence_completed_by_a_late_arrival() -> None:
    rules = engine(SEQUENCE)
    assert feed(rules, [success(50), fail(0), fail(1)]) == []
    (found,) = rules.observe(fail(2))
    assert found.evidence[-1] == "s50:0" and found.first_time == at(0)


def test_sequence_steps_count_hits() -> None:
    rules = engine(SEQUENCE)
    assert feed(rules, [fail(0, hits=3)]) == []
    assert fire_times(rules, [success(1)]) == [1]


def test_a_three_step_sequence() -> None:
    rules = engine(
        SEQUENCE.replace(
            "          match: {event: Login, field: Result, equals: Success}\n",
            "          match: {event: Login, field: Result, equals: Success}\n"
            "        - name: shell\n"
            "          match: {event: ProcessCreate, field: Executable, endswith: /sh}\n"
            "          count: 2\n",
        ).replace("by: [DeviceId, RemoteAddress]", "by: [DeviceId]")
    )
    shell = [make_obs(fields={"Executable": "/bin/sh"}, t=t) for t in (5, 40, 50)]
    assert fire_times(rules, [fail(0), fail(1), fail(2), shell[0], success(30), shell[1]]) == []
    assert fire_times(rules, [shell[2]]) == [50]


def test_sequences_expire_on_tick_and_are_bounded() -> None:
    rules = engine(SEQUENCE, limits=EngineLimits(max_keys_per_rule=1, max_sequence_entries=2))
    feed(rules, [fail(0, "a"), fail(1, "b")])
    assert rules.state_keys == {"BruteSuccess": 1} and rules.evicted == {"BruteSuccess": 1}
    feed(rules, [fail(2, "b"), fail(3, "b"), success(4, "b")])  # only two entries are kept
    assert rules.state_keys == {"BruteSuccess": 1}
    rules.tick(at(4) + timedelta(minutes=10, seconds=1))
    assert rules.state_keys == {"BruteSuccess": 0}


SUPPRESSED = (
    MATCH
    + """\
suppressions:
  - id: lab
    rule: IoT_Netcat
    scope: {device: lab-1}
    expires: 2025-03-01T12:10:00Z
    reason: lab
  - id: cams
    rule: "*"
    scope: {group: cameras}
    expires: 2030-01-01
    reason: cameras run nc
    match: {field: Executable, equals: /bin/nc}
  - id: root-everywhere
    rule: Anything_Root
    scope: everywhere
    expires: 2030-01-01
    reason: noisy
"""
)


def netcat(
    device: str = "dev-1", group: str = "default", t: float = 0, exe: str = "/bin/nc"
) -> Observation:
    return make_obs(fields={"Executable": exe, "UserName": "root"}, device=device, group=group, t=t)


def test_suppressions_by_scope_expiry_and_condition_are_counted() -> None:
    rules = engine(SUPPRESSED)
    assert dict(rules.suppressed) == {"lab": 0, "cams": 0, "root-everywhere": 0}
    assert [d.rule_id for d in rules.observe(netcat())] == ["IoT_Netcat"]
    assert rules.observe(netcat("lab-1")) == []
    assert [d.rule_id for d in rules.observe(netcat("lab-1", t=600))] == ["IoT_Netcat"]  # expired
    assert rules.observe(netcat("cam-1", "cameras")) == []
    assert [d.rule_id for d in rules.observe(netcat("cam-1", "cameras", exe="/bin/ncat"))] == [
        "IoT_Netcat"
    ]
    # Each dropped detection is counted once, by the first suppression that covers it.
    assert dict(rules.suppressed) == {"lab": 1, "cams": 1, "root-everywhere": 5}


def test_a_suppressed_threshold_still_counts() -> None:
    rules = engine(
        THRESHOLD
        + "suppressions:\n  - {rule: Brute, scope: everywhere, "
        + "expires: 2025-03-01T12:01:00Z, reason: r}\n"
    )
    assert feed(rules, [fail(0), fail(1), fail(2)]) == []
    assert rules.suppressed == {"test.yaml:12:5": 1}
    assert fire_times(rules, [fail(t) for t in range(3, 70)]) == []  # fired while suppressed


def test_intel_rules_name_the_indicator_and_feed() -> None:
    rules = engine(
        """\
        rules:
          - id: IoT_Intel
            name: Suspicious IP
            severity: Medium
            description: "{RemoteAddress} is {indicator} in {feed}"
            match: {event: ConnectionCreate, field: RemoteAddress, intel: ip}
        """,
        intel=FakeIntel({"ip": {"203.0.113.7"}}),
    )
    (found,) = rules.observe(make_obs("ConnectionCreate", {"RemoteAddress": "203.0.113.7"}))
    assert found.description == "203.0.113.7 is 203.0.113.7 in test-feed"
    assert found.properties["Feed"] == "test-feed"
    assert found.properties["IndicatorId"] == "indicator--1"
    assert rules.observe(make_obs("ConnectionCreate", {"RemoteAddress": "203.0.113.8"})) == []


def test_naive_times_are_taken_as_utc() -> None:
    rules = engine(THRESHOLD)
    naive = [make_obs("Login", {"Result": "Fail", "RemoteAddress": "x"}, t=t) for t in range(3)]
    naive = [
        Observation(o.source, o.name, o.time.replace(tzinfo=None), o.device, o.fields, o.event_id)
        for o in naive
    ]
    assert len(feed(rules, naive)) == 1
    rules.tick(T0.replace(tzinfo=None) + timedelta(hours=1))
    assert rules.state_keys == {"Brute": 0}
