"""The simulator against the built-in detection catalogue: benign raises nothing, attacks raise
exactly their expected alerts.

This keeps the simulator's claims honest (realistic benign traffic, scenarios that contain the
behaviour they name, expected alert ids that exist). It runs the rule engine on observations
built as the analytics enricher builds them; the pipeline end to end, through the hub and the
durable log, is the analytics suite's test.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import msgspec
import pytest

from iotsec.schema import aggregation_of
from iotsec.simulate import (
    SCENARIOS,
    THREAT_INTEL_ADDRESSES,
    Fleet,
    SimDevice,
    TimedEvent,
    benign_day,
    run_scenario,
)
from tests.simulate.conftest import START, by_kind

rules = pytest.importorskip("iotsec.analytics.rules")
analytics = pytest.importorskip("iotsec.analytics")
indicators = pytest.importorskip("iotsec.analytics.indicators")


class _DemoFeed:
    """The addresses of ``scenario_indicators()``, as a loaded feed answers for them."""

    def match(self, kind: str, value: str) -> Any:
        if kind == "ip" and value in THREAT_INTEL_ADDRESSES:
            return indicators.IntelMatch(kind="ip", value=value, indicator=value, feed="demo")
        return None


def _detections(engine: Any, device: SimDevice, sent: list[TimedEvent]) -> set[str]:
    context = analytics.DeviceContext(
        device.device_id, "azureiotsecurity", group=device.group, tags=dict(device.tags)
    )
    found = []
    for timed in sent:
        event = timed.event
        aggregation = aggregation_of(event)
        for index, row in enumerate(event.payload or (None,)):
            fields = msgspec.to_builtins(row, builtin_types=(datetime,)) if row else {}
            observation = analytics.Observation(
                source="agent",
                name=event.name,
                time=event.timestamp_utc,
                device=context,
                fields=fields,
                event_id=event.id,
                row_index=index,
                hit_count=aggregation.hit_count if aggregation else 1,
                category=event.category,
                event_type=event.event_type,
            )
            found.extend(engine.observe(observation))
    found.extend(engine.tick(sent[-1].at + timedelta(days=1)))
    return {d.rule_id for d in found}


@pytest.fixture(scope="module")
def catalogue() -> Any:
    return rules.load_catalogue()


def test_a_benign_day_of_the_fleet_raises_nothing(fleet: Fleet, catalogue: Any) -> None:
    engine = rules.RuleEngine(catalogue, _DemoFeed())
    day = benign_day(fleet, START)
    raised = {d.device_id: _detections(engine, d, day[d.device_id]) for d in fleet}
    assert raised == {d.device_id: set() for d in fleet}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_each_scenario_raises_exactly_its_expected_alerts(
    fleet: Fleet, catalogue: Any, name: str
) -> None:
    for device in by_kind(fleet).values():
        run = run_scenario(name, device, START + timedelta(hours=10), seed=3)
        engine = rules.RuleEngine(catalogue, _DemoFeed())
        assert _detections(engine, device, list(run.events)) == run.expected_alerts, device.kind
