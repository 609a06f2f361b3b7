"""Fixtures for the simulated fleet: a small fleet and a fixed start time."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
import orjson
import pytest

from iotsec.schema import Event, SecurityMessage, decode_message, encode_message
from iotsec.simulate import Fleet, SimDevice, build_fleet
from tests.msschema import schema_errors

#: A Monday at midnight UTC: a working day at every site.
START = datetime(2024, 5, 6, tzinfo=UTC)


@pytest.fixture(scope="session")
def fleet() -> Fleet:
    """Eight devices: every kind, a permissive firewall, several sites."""
    return build_fleet(8, seed=11)


def by_kind(fleet: Fleet) -> dict[str, SimDevice]:
    """The first device of each kind."""
    found: dict[str, SimDevice] = {}
    for device in fleet:
        found.setdefault(device.kind, device)
    return found


def row(event: Event) -> dict[str, Any]:
    """The event's first payload row as its wire fields."""
    encoded: dict[str, Any] = orjson.loads(msgspec.json.encode(event.payload[0]))
    return encoded


def assert_valid(events: list[Event], agent_id: str) -> None:
    """``events`` as one message survive our codec unchanged and pass Microsoft's schema.

    Microsoft's schema (jsonschema, ~5 ms an event) sees one event of each shape: name, the
    fields its rows fill, and whether it is aggregated.
    """
    message = SecurityMessage.create(events, agent_id=agent_id)
    raw = encode_message(message)
    assert decode_message(raw).message == message
    shapes: dict[tuple[object, ...], Event] = {}
    for event in events:
        fields = frozenset(
            name for r in event.payload for name, v in msgspec.structs.asdict(r).items() if v
        )
        shapes.setdefault((event.name, event.is_empty, fields), event)
    sample = SecurityMessage.create(list(shapes.values()), agent_id=agent_id)
    assert schema_errors(orjson.loads(encode_message(sample))) == []
