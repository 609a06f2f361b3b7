"""The desired document, merged patch by patch, and the state directory that keeps it."""

from __future__ import annotations

import doctest
import os
from datetime import timedelta
from pathlib import Path

import pytest

from iotsec.agent import clock as clock_module
from iotsec.agent import state as state_module
from iotsec.agent import twinsync as twinsync_module
from iotsec.agent.config import OBJECT_NAME, AgentConfiguration
from iotsec.agent.errors import AgentConfigError
from iotsec.agent.state import StateDir
from iotsec.agent.twinsync import TwinState


def test_doctests() -> None:
    for module in (twinsync_module, state_module, clock_module):
        assert doctest.testmod(module).failed == 0


def prop(**values: object) -> dict[str, object]:
    return {OBJECT_NAME: {name: {"value": value} for name, value in values.items()}}


def test_a_patch_touches_only_what_it_names() -> None:
    twin = TwinState(AgentConfiguration.default())
    twin.replace({"$version": 1, **prop(snapshotFrequency="PT1H", eventPriorityLogin="Low")})
    outcome = twin.patch({"$version": 2, **prop(highPriorityMessageFrequency="PT1M")})
    assert outcome is not None
    assert outcome.config.snapshot_frequency == timedelta(hours=1)
    assert outcome.config.priority("Login") == "Low"
    assert outcome.config.high_priority_message_frequency == timedelta(minutes=1)
    assert outcome.changed == {"highPriorityMessageFrequency"}


def test_a_null_in_a_patch_reverts_the_property_to_the_base() -> None:
    base = AgentConfiguration(snapshot_frequency=timedelta(hours=2))
    twin = TwinState(base)
    twin.replace(prop(snapshotFrequency="PT1H"))
    outcome = twin.patch({OBJECT_NAME: {"snapshotFrequency": None}})
    assert outcome is not None and outcome.config.snapshot_frequency == timedelta(hours=2)


def test_stale_patches_are_ignored() -> None:
    twin = TwinState(AgentConfiguration.default())
    twin.replace({"$version": 5, **prop(snapshotFrequency="PT1H")})
    assert twin.patch({"$version": 5, **prop(snapshotFrequency="PT2H")}) is None
    assert twin.patch({"$version": 4, **prop(snapshotFrequency="PT2H")}) is None
    assert twin.config.snapshot_frequency == timedelta(hours=1)


def test_reading_the_same_twin_again_repeats_no_error() -> None:
    twin = TwinState(AgentConfiguration.default())
    first = twin.replace(prop(maxMessageSizeInBytes="big"))
    assert first is not None and len(first.errors) == 1
    assert twin.replace(prop(maxMessageSizeInBytes="big")) is None


def test_the_agent_id_is_made_once_and_kept(tmp_path: Path) -> None:
    state = StateDir.open(tmp_path / "s")
    made = state.agent_id()
    assert StateDir.open(tmp_path / "s").agent_id() == made
    assert state.agent_id("11111111-2222-3333-4444-555555555555").startswith("1111")
    assert (tmp_path / "s").stat().st_mode & 0o777 == 0o700


def test_a_damaged_agent_id_or_twin_file_is_named(tmp_path: Path) -> None:
    state = StateDir.open(tmp_path)
    (tmp_path / "agent-id").write_text("not-a-guid")
    with pytest.raises(AgentConfigError, match="agent-id"):
        state.agent_id()
    (tmp_path / "twin-desired.json").write_text("{")
    with pytest.raises(AgentConfigError, match=r"twin-desired\.json"):
        state.load_desired()


def test_a_state_dir_that_cannot_be_made_is_an_agent_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(AgentConfigError, match="cannot create"):
        StateDir.open(blocker / "state")


def test_saving_replaces_the_file_whole(tmp_path: Path) -> None:
    state = StateDir.open(tmp_path)
    state.save_desired({"a": {"value": 1}}, version=1)
    state.save_desired({"b": {"value": 2}}, version=2)
    assert state.load_desired() == ({"b": {"value": 2}}, 2)
    assert sorted(os.listdir(tmp_path)) == ["twin-desired.json"]
