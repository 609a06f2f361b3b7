"""Novelty: learning per device, then one exact, explained alert per value never seen."""

from __future__ import annotations

import doctest
from datetime import timedelta

import pytest

from iotsec.analytics.baseline import LearningPolicy, NoveltyConfig, NoveltyDetector
from iotsec.analytics.baseline import novelty as novelty_module
from tests.analytics.obsfactory import DAY, HOUR, T0, connection, login, obs, process, snapshot

WEEK = LearningPolicy(period=timedelta(days=7), min_observations=3)


def _learned(detector: NoveltyDetector, device: str = "dev-7", group: str = "default") -> None:
    """dev learns for a week: python3 and sh, a destination, ssh logins by pi."""
    for day in range(8):
        at = day * DAY
        assert detector.observe(process("/usr/bin/python3", at, device=device, group=group)) == []
        assert detector.observe(process("/bin/sh", at + HOUR, device=device, group=group)) == []
    assert (
        detector.observe(connection("10.0.0.1", "443", 2 * DAY, device=device, group=group)) == []
    )
    assert (
        detector.observe(login("pi", 3 * DAY, source="10.0.0.9", device=device, group=group)) == []
    )


def test_doctests() -> None:
    assert doctest.testmod(novelty_module).failed == 0


def test_a_new_executable_after_learning_fires_once_with_an_explanation() -> None:
    detector = NoveltyDetector(NoveltyConfig(learning=WEEK))
    _learned(detector)
    [hit] = detector.observe(process("/tmp/x", 9 * DAY))
    assert hit.rule_id == "IoT_Baseline_NewExecutable"
    assert hit.origin == "baseline"
    assert hit.severity == "Medium"
    assert hit.time == T0 + 9 * DAY
    assert hit.description == (
        "dev-7 ran /tmp/x for the first time; during its 7-day learning period it ran "
        "2 executables, e.g. /bin/sh, /usr/bin/python3"
    )
    assert hit.properties["LearnedValues"] == "2"
    assert len(hit.evidence) == 1 and hit.evidence[0].endswith(":0")
    assert detector.observe(process("/tmp/x", 10 * DAY)) == []
    assert detector.observe(process("/usr/bin/python3", 10 * DAY)) == []


def test_nothing_fires_during_the_learning_period() -> None:
    detector = NoveltyDetector(NoveltyConfig(learning=WEEK))
    for minute in range(200):
        at = timedelta(minutes=minute * 30)  # 100 hours, well inside 7 days
        assert detector.observe(process(f"/opt/tool-{minute}", at)) == []
    status = detector.status("dev-7")
    assert status is not None and status.learning and status.observations == 200


def test_a_device_with_too_little_data_stays_in_learning_past_the_period() -> None:
    detector = NoveltyDetector(NoveltyConfig(learning=LearningPolicy(min_observations=5)))
    assert detector.observe(process("/bin/a", timedelta(0))) == []
    assert detector.observe(process("/bin/b", 10 * DAY)) == []  # period over, 2 observations
    assert detector.observe(process("/bin/c", 11 * DAY)) == []
    assert detector.observe(process("/bin/d", 12 * DAY)) == []
    status = detector.status("dev-7")
    assert status is not None and status.learning
    assert detector.observe(process("/bin/e", 13 * DAY)) == []  # the 5th: learning ends here
    status = detector.status("dev-7")
    assert status is not None and not status.learning and status.learned_at == T0 + 13 * DAY
    [hit] = detector.observe(process("/bin/f", 14 * DAY))
    assert "ran 5 executables" in hit.description


def test_learning_ends_exactly_at_the_end_of_the_period() -> None:
    detector = NoveltyDetector(NoveltyConfig(learning=LearningPolicy(min_observations=1)))
    assert detector.observe(process("/bin/a", timedelta(0))) == []
    assert detector.observe(process("/bin/b", 7 * DAY - timedelta(seconds=1))) == []
    assert len(detector.observe(process("/bin/c", 7 * DAY))) == 1


def test_outbound_destinations_and_ports_but_not_inbound_connections() -> None:
    detector = NoveltyDetector(NoveltyConfig(learning=WEEK))
    _learned(detector)
    hits = detector.observe(connection("203.0.113.9", "4444", 9 * DAY))
    assert [h.rule_id for h in hits] == [
        "IoT_Baseline_NewDestination",
        "IoT_Baseline_NewDestinationPort",
    ]
    assert hits[0].description.startswith("dev-7 connected out to 203.0.113.9 for the first time;")
    assert "connected out to 1 destination, e.g. 10.0.0.1" in hits[0].description
    assert hits[1].properties["Value"] == "4444/tcp"
    assert detector.observe(connection("198.51.100.1", "5555", 9 * DAY, direction="In")) == []
    # a known destination on a new port: only the port is new
    [port] = detector.observe(connection("10.0.0.1", "8443", 9 * DAY))
    assert port.properties["Value"] == "8443/tcp"


def test_listening_ports_from_snapshots() -> None:
    detector = NoveltyDetector(NoveltyConfig(learning=WEEK))
    _learned(detector)
    rows = [{"Protocol": "tcp", "LocalPort": "22", "LocalAddress": "0.0.0.0"}]
    for day in (1, 2):
        for o in snapshot("ListeningPorts", rows, day * DAY):
            assert detector.observe(o) == []
    rows.append({"Protocol": "tcp6", "LocalPort": "31337", "LocalAddress": "::"})
    hits = [h for o in snapshot("ListeningPorts", rows, 9 * DAY) for h in detector.observe(o)]
    assert [h.properties["Value"] for h in hits] == ["31337/tcp"]
    assert hits[0].description.startswith(
        "dev-7 listened on port 31337/tcp (::) for the first time"
    )
    assert "listened on 1 port, e.g. 22/tcp" in hits[0].description


def test_login_users_and_sources_of_successful_logins_only() -> None:
    detector = NoveltyDetector(NoveltyConfig(learning=WEEK))
    _learned(detector)
    assert detector.observe(login("eve", 9 * DAY, result="Fail", source="198.51.100.4")) == []
    hits = detector.observe(login("eve", 9 * DAY, source="198.51.100.4"))
    assert [h.rule_id for h in hits] == ["IoT_Baseline_NewLoginUser", "IoT_Baseline_NewLoginSource"]
    assert hits[0].description.startswith("dev-7 had a login by eve for the first time;")
    assert "had logins by 1 user, e.g. pi" in hits[0].description
    assert "had logins from 1 source, e.g. 10.0.0.9" in hits[1].description


def test_a_late_observation_from_the_learning_period_is_learned_not_flagged() -> None:
    detector = NoveltyDetector(NoveltyConfig(learning=WEEK))
    _learned(detector)
    assert detector.observe(process("/usr/sbin/cron", 5 * DAY)) == []  # arrives late
    assert detector.observe(process("/usr/sbin/cron", 9 * DAY)) == []
    assert "/usr/sbin/cron" in detector.known_values("dev-7", "executable")


def test_a_feature_not_configured_is_not_learned() -> None:
    detector = NoveltyDetector(NoveltyConfig(learning=WEEK, features=("executable",)))
    _learned(detector)
    assert detector.observe(login("eve", 9 * DAY, source="198.51.100.4")) == []


def test_devices_learn_independently() -> None:
    detector = NoveltyDetector(NoveltyConfig(learning=WEEK))
    _learned(detector, "dev-1")
    assert detector.observe(process("/tmp/x", 9 * DAY, device="dev-2")) == []  # dev-2 is new
    assert len(detector.observe(process("/tmp/x", 9 * DAY, device="dev-1"))) == 1


def test_group_scope_ignores_values_common_in_the_group() -> None:
    config = NoveltyConfig(
        learning=WEEK, scope="group", group_min_devices=5, group_rare_fraction=0.3
    )
    detector = NoveltyDetector(config)
    for n in range(6):
        _learned(detector, f"cam-{n}", group="cameras")
    # a roll-out: the new version appears on the cameras one after the other
    fired = [
        len(detector.observe(process("/opt/fw-2.0", 9 * DAY, device=f"cam-{n}", group="cameras")))
        for n in range(6)
    ]
    assert fired == [1, 1, 0, 0, 0, 0]  # rare in 6 devices until 2 have it (0.3 * 6 = 1.8)
    [hit] = detector.observe(process("/tmp/payload", 10 * DAY, device="cam-5", group="cameras"))
    assert hit.description.endswith("; in group cameras (6 devices) no other device had it")
    assert hit.properties["GroupPrevalence"] == "0/6"


def test_group_scope_falls_back_to_the_device_in_small_groups() -> None:
    config = NoveltyConfig(learning=WEEK, scope="group", group_min_devices=5)
    detector = NoveltyDetector(config)
    _learned(detector, "a", group="lab")
    _learned(detector, "b", group="lab")
    assert len(detector.observe(process("/opt/x", 9 * DAY, device="a", group="lab"))) == 1
    assert len(detector.observe(process("/opt/x", 9 * DAY, device="b", group="lab"))) == 1


def test_memory_is_bounded_and_a_saturated_feature_stops_firing() -> None:
    detector = NoveltyDetector(NoveltyConfig(learning=WEEK, max_values=5))
    for n in range(8):  # 8 executables in learning: 5 kept, then saturated
        detector.observe(process(f"/bin/t{n}", n * DAY))
    assert len(detector.known_values("dev-7", "executable")) == 5
    assert detector.observe(process("/tmp/x", 9 * DAY)) == []
    assert detector.dropped("dev-7", "executable") == (4, True)
    entries = detector.dump_state()
    assert b'"saturated":true' in entries["device:dev-7"]
    assert b'"dropped":4' in entries["device:dev-7"]


def test_hub_observations_are_ignored() -> None:
    detector = NoveltyDetector(NoveltyConfig(learning=WEEK))
    assert detector.observe(obs("authenticate", {"Result": "Failure"}, source="hub")) == []
    assert detector.status("dev-7") is None


@pytest.mark.parametrize(
    "bad",
    [{"scope": "fleet"}, {"max_values": 0}, {"group_rare_fraction": 0.0}, {"features": ("nope",)}],
)
def test_bad_configuration_is_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        NoveltyConfig(**bad)  # type: ignore[arg-type]
