"""Recommendations never fail on arbitrary observations, and survive a save and load."""

from __future__ import annotations

from datetime import datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iotsec.analytics import DeviceContext, Observation
from iotsec.analytics.recommendations import (
    HubDevice,
    HubState,
    Recommendations,
    RecommendationTracker,
)
from tests.analytics.test_detector_conformance import observations, times

HUB = HubState(devices=(HubDevice(DeviceContext("a")), HubDevice(DeviceContext("z"))))
ROWS = {
    "ListeningPorts": st.fixed_dictionaries(
        {"LocalPort": st.text(max_size=6), "LocalAddress": st.text(max_size=12)}
    ),
    "FirewallConfiguration": st.fixed_dictionaries(
        {
            "ChainName": st.sampled_from(["INPUT", "OUTPUT", "input", "x"]),
            "Action": st.sampled_from(["Allow", "Deny", "Other", 5]),
            "Direction": st.sampled_from(["In", "Out", None]),
            "SourceAddress": st.text(max_size=20),
            "DestinationPort": st.text(max_size=12),
            "ExtraDetails": st.dictionaries(
                st.sampled_from(["Policy", "Hook", "Family", "State", "Untranslated"]),
                st.text(max_size=10),
            ),
        }
    ),
    "OSBaseline": st.fixed_dictionaries({"Result": st.sampled_from(["Fail", "Err", "Pass", 3])}),
    "ConfigurationError": st.fixed_dictionaries(
        {"ErrorType": st.sampled_from(["Conflict", "NotOptimal"]), "ConfigurationName": st.text()}
    ),
    "MessageStatistics": st.fixed_dictionaries(
        {"MessagesSent": st.integers(-5, 2**70), "MessagesUnder4KB": st.integers(-5, 2**70)}
    ),
}
snapshot_rows = st.sampled_from(sorted(ROWS)).flatmap(
    lambda name: st.builds(
        Observation,
        source=st.just("agent"),
        name=st.just(name),
        time=times,
        device=st.sampled_from([DeviceContext("a"), DeviceContext("b")]),
        fields=ROWS[name],
        event_id=st.sampled_from(["e1", "e2"]),
        row_index=st.integers(0, 3),
    )
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    steps=st.lists(st.one_of(observations, snapshot_rows, snapshot_rows), max_size=50),
    now=times,
)
def test_observe_evaluate_track_and_restore(steps: list[Observation], now: datetime) -> None:
    engine, tracker = Recommendations(hub=HUB), RecommendationTracker()
    for step in steps:
        engine.observe(step)
    findings = engine.evaluate(now)
    assert all(f.description and f.kind for f in findings)
    tracker.update(findings, now)
    restored, restored_tracker = Recommendations(hub=HUB), RecommendationTracker()
    restored.load_state(engine.dump_state())
    restored_tracker.load_state(tracker.dump_state())
    assert restored.evaluate(now) == findings
    assert restored_tracker.update(restored.evaluate(now), now) == ()
