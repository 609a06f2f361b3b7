"""The security message envelope."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Annotated, Literal

import msgspec

from iotsec.schema.events import Event
from iotsec.schema.payloads import Guid

__all__ = ["SECURITY_INTERFACE_ID", "SecurityMessage"]

#: The interface id that marks a device-to-cloud message as a security message.
SECURITY_INTERFACE_ID = "urn:azureiot:Security:SecurityAgent:1"


class SecurityMessage(
    msgspec.Struct,
    frozen=True,
    gc=False,
    kw_only=True,
    forbid_unknown_fields=True,
    rename="pascal",
):
    """One ASC v1.0 security message: an agent's batch of events.

    >>> from iotsec.schema import ListeningPorts, ListeningPortsEvent
    >>> ev = ListeningPortsEvent.create([ListeningPorts(protocol="TCP", local_port="22")])
    >>> msg = SecurityMessage.create([ev], agent_id="b97faf0a-0f57-471f-9dab-46a8e1764946")
    >>> msg.message_schema_version, len(msg.events)
    ('1.0', 1)
    """

    agent_version: str
    agent_id: Guid
    message_schema_version: Literal["1.0"] = "1.0"
    events: Annotated[tuple[Event, ...], msgspec.Meta(min_length=1)]

    @classmethod
    def create(
        cls,
        events: Iterable[Event],
        *,
        agent_id: str | None = None,
        agent_version: str = "1.0.0",
    ) -> SecurityMessage:
        """Wrap ``events`` in a message from the agent ``agent_id`` (default: a fresh id)."""
        evs = tuple(events)
        if not evs:
            raise ValueError("a security message holds at least one event")
        return cls(
            agent_version=agent_version,
            agent_id=agent_id or str(uuid.uuid4()),
            events=evs,
        )
