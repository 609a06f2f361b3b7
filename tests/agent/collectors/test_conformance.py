"""Every registered collector, on every fixture host (and on an empty one), keeps its contract.

- its spec is the registry's, and the events it returns match it (Name, EventType, Category);
- its events encode, and validate against the schema's own codec, as the SDK will send them;
- ``collect()`` raises nothing but HostReadError or ParseError, and ``close()`` works.
"""

from __future__ import annotations

import doctest
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest

import iotsec.agent.collectors as registry
from iotsec.agent.collectors import COLLECTORS, OPERATIONAL, SPECS, Collector, spec_of
from iotsec.agent.config import PRIORITY_EVENTS, AgentConfiguration
from iotsec.agent.errors import HostReadError, ParseError
from iotsec.agent.hostroot import FakeHostRoot
from iotsec.schema import Event, decode_event, decode_message
from iotsec.sdk import build_security_messages

HOSTS_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "hosts"
HOSTS = sorted(p.name for p in HOSTS_DIR.iterdir() if p.is_dir())
AGENT_ID = "00000000-0000-4000-8000-000000000001"
START = datetime(2024, 3, 4, 12, 0, tzinfo=UTC)


def test_doctests() -> None:
    assert doctest.testmod(registry).failed == 0


def test_there_are_fixture_hosts_of_several_distributions() -> None:
    assert len(HOSTS) >= 3


def test_every_collector_is_registered_under_the_name_of_its_spec(tmp_path: Path) -> None:
    host = FakeHostRoot.from_tree(HOSTS_DIR / HOSTS[0])
    for name, factory in COLLECTORS.items():
        collector = factory(host)
        try:
            assert collector.spec.name == name
            assert collector.spec is SPECS[name] or collector.spec == SPECS[name]
        finally:
            collector.close()


def test_every_spec_has_a_twin_priority_with_the_same_default() -> None:
    defaults = AgentConfiguration.default()
    for name, spec in SPECS.items():
        assert name in PRIORITY_EVENTS, name
        assert defaults.priority(name) == spec.default_priority, name
    assert set(OPERATIONAL) == {
        "ConfigurationError",
        "DroppedEventsStatistics",
        "MessageStatistics",
        "Diagnostic",
    }


def test_an_unknown_event_name_suggests_a_known_one() -> None:
    with pytest.raises(KeyError, match="did you mean 'ProcessCreate'"):
        spec_of("ProcessCreated")


def _run(collector: Collector, now: datetime) -> list[Event]:
    """collect() once; a typed host error is a legitimate outcome, anything else fails."""
    try:
        return list(collector.collect(now))
    except (HostReadError, ParseError):
        return []


def _check(collector: Collector, events: list[Event]) -> None:
    spec = collector.spec
    for event in events:
        assert event.name == spec.name
        assert event.event_type == spec.event_type
        assert event.category == spec.category
        if spec.category == "Triggered":
            assert not event.is_empty, "a triggered event always has a payload"
        canonical = decode_event(msgspec.json.encode(event))
        assert canonical.name == spec.name
    if events:
        messages = build_security_messages(events, agent_id=AGENT_ID)
        decoded = [e for m in messages for e in decode_message(m.body).message.events]
        assert [e.id for e in decoded] == [e.id for e in events]


def _hosts(tmp_path: Path) -> Iterator[tuple[str, FakeHostRoot]]:
    for name in HOSTS:
        yield name, FakeHostRoot.from_tree(HOSTS_DIR / name)
    yield "empty", FakeHostRoot.build(tmp_path / "empty")


@pytest.mark.parametrize("name", sorted(COLLECTORS))
def test_collector_conforms_on_every_fixture_host(name: str, tmp_path: Path) -> None:
    seen = 0
    for host_name, host in _hosts(tmp_path):
        try:
            collector = COLLECTORS[name](host)
        except (HostReadError, ParseError):
            # A factory may refuse a host without what it needs (no /proc), only typed.
            assert host_name == "empty", f"{name} cannot start on {host_name}"
            continue
        try:
            # Triggered collectors establish their positions on the first call.
            for step in range(2):
                events = _run(collector, START + timedelta(seconds=step))
                _check(collector, events)
                seen += len(events)
        finally:
            collector.close()
    if SPECS[name].category == "Periodic" and name != "FirewallConfiguration":
        # Snapshots always return an event (an empty one at worst) where the host reads.
        assert seen > 0, f"{name} returned no snapshot on any fixture host"
