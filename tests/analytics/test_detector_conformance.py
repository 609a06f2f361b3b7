"""One conformance suite over every registered detector (river's ``checks``, for detectors).

Every detector implements ``observe`` and ``tick``. Whatever it is fed (any event name, any
field of any type, any time, hub or agent, out of order, twice), it must not raise, and every
detection it returns must be complete: a rule id, a name, a severity and an origin from the
vocabulary, a non-empty description, evidence ids, a dedup key, an aware time. Time must be
handled safely: ticks that go backwards or repeat, and observations in any order, never make
it fire the same detection twice; detectors registered ``fires_once`` never repeat a dedup key
even when every observation is delivered twice (replays after a crash).

To add a detector family, add a ``Registered`` entry to ``DETECTORS`` (small learning periods
and windows, so that the detecting paths run within a short generated history).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import get_args

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iotsec.analytics import Detection, Detector, DeviceContext, Observation, Origin, Severity
from iotsec.analytics.baseline import (
    LearningPolicy,
    NoveltyConfig,
    NoveltyDetector,
    OutlierConfig,
    OutlierDetector,
    RateConfig,
    RateDetector,
)
from iotsec.analytics.fleet import DeviceOnboardedDetector, DeviceSilentDetector


@dataclass(frozen=True)
class Registered:
    """How to build a detector for the suite."""

    make: Callable[[], Detector]
    #: Replaying an observation it already saw never yields a detection with a known dedup key
    #: (stateful detectors); stateless matchers leave replays to the alert lifecycle.
    fires_once: bool = True


_QUICK = LearningPolicy(period=timedelta(hours=1), min_observations=3)
_WINDOW = {"window": timedelta(minutes=10), "grace": timedelta(0)}

DETECTORS: dict[str, Registered] = {
    "novelty": Registered(lambda: NoveltyDetector(NoveltyConfig(learning=_QUICK, max_values=8))),
    "novelty-group": Registered(
        lambda: NoveltyDetector(
            NoveltyConfig(learning=_QUICK, scope="group", group_min_devices=2, max_values=8)
        )
    ),
    "rates": Registered(
        lambda: RateDetector(
            RateConfig(
                learning=_QUICK, min_windows=2, history=6, k=1.0, directions="both", **_WINDOW
            )  # type: ignore[arg-type]
        )
    ),
    "outlier": Registered(
        lambda: OutlierDetector(
            OutlierConfig(
                learning=_QUICK,
                min_device_windows=2,
                min_training_rows=4,
                trees=5,
                refit_every=0,
                min_delta=1.0,
                min_ratio=1.5,
                **_WINDOW,  # type: ignore[arg-type]
            )
        )
    ),
    "device-silent": Registered(lambda: DeviceSilentDetector(silent_after=timedelta(hours=1))),
    "device-onboarded": Registered(DeviceOnboardedDetector),
}

# --- generated input ----------------------------------------------------------------------

BASE = datetime(2025, 1, 1, tzinfo=UTC)
NAMES = [
    "ProcessCreate", "ConnectionCreate", "Login", "ListeningPorts", "FirewallConfiguration",
    "LocalUsers", "OSBaseline", "SystemInformation", "Diagnostic", "ConfigurationError",
    "MessageStatistics", "DroppedEventsStatistics", "d2c", "authenticate",
]  # fmt: skip
FIELDS = [
    "Executable", "CommandLine", "RemoteAddress", "RemotePort", "LocalAddress", "LocalPort",
    "Protocol", "Direction", "UserName", "UserId", "Result", "ExtraDetails", "Properties",
    "MessagesSent", "MessagesUnder4KB", "ErrorType", "ConfigurationName",
]  # fmt: skip

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True),
    st.text(max_size=12),
    st.sampled_from(["Out", "In", "Fail", "Success", "Failure", "tcp", "0.0.0.0", "22", "/bin/sh"]),
)
values = st.one_of(scalars, st.dictionaries(st.text(max_size=6), scalars, max_size=3))
fields = st.dictionaries(
    st.one_of(st.sampled_from(FIELDS), st.text(max_size=8)), values, max_size=6
)
near = st.timedeltas(min_value=timedelta(0), max_value=timedelta(hours=8)).map(lambda d: BASE + d)
anywhen = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
)
times = st.one_of(near, near, near, anywhen)
devices = st.builds(
    DeviceContext,
    st.sampled_from(["a", "b", "c", "$hub"]),
    group=st.sampled_from(["default", "cameras"]),
)
arbitrary = st.builds(
    Observation,
    source=st.sampled_from(["agent", "agent", "hub"]),
    name=st.one_of(st.sampled_from(NAMES), st.text(max_size=8)),
    time=times,
    device=devices,
    fields=fields,
    event_id=st.sampled_from(["e1", "e2", "e3", "e4"]),
    row_index=st.integers(min_value=0, max_value=3),
    hit_count=st.integers(min_value=-3, max_value=10**6),
)
# Observations shaped like real ones, so that learning ends and the detecting paths run too.
_PLAUSIBLE = {
    "ProcessCreate": {"Executable": st.sampled_from(["/bin/sh", "/usr/bin/python3", "/tmp/x"])},
    "ConnectionCreate": {
        "RemoteAddress": st.sampled_from(["10.0.0.1", "203.0.113.9"]),
        "RemotePort": st.sampled_from(["443", "4444"]),
        "Direction": st.sampled_from(["Out", "In"]),
        "Protocol": st.just("tcp"),
    },
    "Login": {
        "UserName": st.sampled_from(["pi", "root"]),
        "Result": st.sampled_from(["Fail", "Success"]),
        "RemoteAddress": st.sampled_from(["10.0.0.9", "198.51.100.4"]),
    },
    "ListeningPorts": {"LocalPort": st.sampled_from(["22", "80"]), "Protocol": st.just("tcp")},
    "d2c": {"Properties": st.fixed_dictionaries({"count": st.sampled_from(["1", "900"])})},
}
plausible = st.sampled_from(sorted(_PLAUSIBLE)).flatmap(
    lambda name: st.builds(
        Observation,
        source=st.just("hub" if name == "d2c" else "agent"),
        name=st.just(name),
        time=near,
        device=devices,
        fields=st.fixed_dictionaries(_PLAUSIBLE[name]),
        event_id=st.uuids().map(str),
        hit_count=st.sampled_from([1, 1, 1, 50]),
    )
)
observations = st.one_of(plausible, plausible, plausible, arbitrary)
steps = st.lists(st.one_of(observations, observations, times), max_size=80)

_SEVERITIES = set(get_args(Severity))
_ORIGINS = set(get_args(Origin))


def check(detection: Detection) -> None:
    """A detection an alert can be made of, that explains itself and cites its evidence."""
    assert isinstance(detection, Detection)
    assert detection.rule_id and detection.display_name and detection.dedup_key
    assert detection.severity in _SEVERITIES
    assert detection.origin in _ORIGINS
    assert isinstance(detection.description, str) and detection.description.strip()
    assert isinstance(detection.evidence, tuple) and detection.evidence
    assert all(isinstance(e, str) and e for e in detection.evidence)
    assert isinstance(detection.device, DeviceContext) and detection.device.device_id
    assert detection.time.utcoffset() is not None
    assert detection.dedup_seconds > 0


def run(detector: Detector, sequence: Sequence[Observation | datetime]) -> list[Detection]:
    found: list[Detection] = []
    for step in sequence:
        if isinstance(step, Observation):
            found += detector.observe(step)
        else:
            found += detector.tick(step)
    for detection in found:
        check(detection)
    return found


def _when(step: Observation | datetime) -> datetime:
    return step.time if isinstance(step, Observation) else step


def _identity(d: Detection) -> tuple[object, ...]:
    return (d.rule_id, d.dedup_key, d.evidence, d.time)


CONFORMANCE = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("name", sorted(DETECTORS))
@CONFORMANCE
@given(sequence=steps)
def test_never_raises_and_detections_are_complete(
    name: str, sequence: list[Observation | datetime]
) -> None:
    # In time order, so that learning ends and windows close as in a live stream.
    found = run(DETECTORS[name].make(), sorted(sequence, key=_when))
    assert len({_identity(d) for d in found}) == len(found)


@pytest.mark.parametrize("name", sorted(DETECTORS))
@CONFORMANCE
@given(sequence=steps, data=st.data())
def test_out_of_order_and_replayed_input_never_fires_twice(
    name: str, sequence: list[Observation | datetime], data: st.DataObject
) -> None:
    shuffled = data.draw(st.permutations(sequence))
    replayed: list[Observation | datetime] = []
    for step in shuffled:
        replayed += [step, step]  # every observation twice, every tick twice
    found = run(DETECTORS[name].make(), replayed)
    if DETECTORS[name].fires_once:
        keys = [d.dedup_key for d in found]
        assert len(set(keys)) == len(keys)


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_a_scripted_history_fires_and_conforms(name: str) -> None:
    """Not only silence: a short history where each detector has something to say."""
    sequence: list[Observation | datetime] = []
    for minute in range(0, 24 * 60, 10):
        at = BASE + timedelta(minutes=minute)
        exe = "/bin/sh" if minute < 12 * 60 else f"/tmp/x{minute % 7}"
        hits = 1 if minute < 20 * 60 else 500
        sequence.append(
            Observation(
                source="agent", name="ProcessCreate", time=at, device=DeviceContext("a"),
                fields={"Executable": exe}, event_id=f"p{minute}", hit_count=hits,
            )
        )  # fmt: skip
        sequence.append(at + timedelta(minutes=10))
    sequence.append(BASE + timedelta(days=5))
    found = run(DETECTORS[name].make(), sequence)
    assert found, f"{name} found nothing in a history built to trigger it"


@pytest.mark.parametrize("name", sorted(DETECTORS))
@CONFORMANCE
@given(sequence=steps, cut=st.integers(min_value=0, max_value=80))
def test_a_restart_from_saved_state_changes_nothing(
    name: str, sequence: list[Observation | datetime], cut: int
) -> None:
    """Detectors that keep state (``dump_state``/``load_state``) resume exactly after a restart."""
    ordered = sorted(sequence, key=_when)
    straight = DETECTORS[name].make()
    if not hasattr(straight, "dump_state"):
        pytest.skip(f"{name} keeps no state")
    expected = run(straight, ordered)
    before = DETECTORS[name].make()
    found = run(before, ordered[:cut])
    after = DETECTORS[name].make()
    after.load_state(before.dump_state())  # type: ignore[attr-defined]
    found += run(after, ordered[cut:])
    assert [(*_identity(d), d.description) for d in found] == [
        (*_identity(d), d.description) for d in expected
    ]
