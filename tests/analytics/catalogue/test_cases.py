"""The built-in catalogue: it loads cleanly, and every rule fires on its cases and only there."""

from __future__ import annotations

import pytest

from iotsec.analytics.rules import RuleEngine, RuleSet, load_catalogue
from iotsec.analytics.rules.templates import MISSING
from tests.analytics.catalogue.casefile import Case, CaseIntel, load_cases

CASES = load_cases()
ALL_CASES = [case for cases in CASES.values() for case in cases]
CATALOGUE = load_catalogue()


def _run(ruleset: RuleSet, case: Case) -> dict[str, list[str]]:
    engine = RuleEngine(ruleset, CaseIntel())
    fired: dict[str, list[str]] = {}
    for observation in case.observations:
        for detection in engine.observe(observation):
            fired.setdefault(detection.rule_id, []).append(detection.description)
    return fired


def test_the_catalogue_loads_without_errors() -> None:
    assert len(CATALOGUE) >= 40
    assert len(set(CATALOGUE.ids)) == len(CATALOGUE)


def test_every_rule_has_cases_and_every_case_names_a_rule() -> None:
    assert set(CASES) == set(CATALOGUE.ids)
    for rule_id, cases in CASES.items():
        firing = [c for c in cases if c.fires]
        quiet = [c for c in cases if not c.fires]
        assert len(firing) >= 2, f"{rule_id} needs at least 2 firing cases"
        assert len(quiet) >= 2, f"{rule_id} needs at least 2 near misses"
    named = {rule for case in ALL_CASES for rule in case.expected}
    assert named <= set(CATALOGUE.ids)


def test_every_rule_carries_what_an_operator_needs() -> None:
    for rule in CATALOGUE:
        assert rule.severity in ("High", "Medium", "Low", "Informational")
        assert rule.tactics, rule.id
        assert rule.techniques, rule.id
        assert rule.remediation, rule.id
        assert rule.description.names, f"{rule.id}: the description should say what was seen"


@pytest.mark.parametrize(
    "variant",
    ["bash", "sh -i", "nc ", "ncat", "python", "perl", "ruby", "php", "socat", "mkfifo", "awk"],
)
def test_reverse_shells_are_caught_in_every_spelling(variant: str) -> None:
    lines = [
        line for case in CASES["IoT_ReverseShell"] if case.fires for line in case.command_lines
    ]
    assert any(variant in line for line in lines), f"no firing reverse shell uses {variant!r}"


@pytest.mark.parametrize("case", ALL_CASES, ids=lambda c: c.id)
def test_case(case: Case) -> None:
    fired = _run(CATALOGUE, case)
    assert set(fired) == case.expected, case.note or case.command_lines
    for rule_id, descriptions in fired.items():
        for text in descriptions:
            assert MISSING not in text, f"{rule_id} rendered a missing field: {text}"
