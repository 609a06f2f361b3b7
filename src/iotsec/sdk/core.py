"""Security events to messages ready to send: the I/O-free heart of ``send_security_message``.

Each event is first brought into canonical form by the schema's own decoder (so an event built
with, say, ``Category="Aggregated"``, a naive timestamp or a lower-case protocol leaves the device
in the form Microsoft's schema accepts) and encoded once, on its own, to learn its size. Events
are then packed greedily, in order, into as few messages as fit under the size limit, and every
message is decoded again, so nothing invalid leaves the device.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable

import msgspec

from iotsec.protocol.message import Message
from iotsec.schema import (
    MAX_MESSAGE_BYTES,
    SECURITY_INTERFACE_ID,
    Event,
    FieldIssue,
    MessageInvalid,
    MessageTooLarge,
    SecurityMessage,
    decode_event,
    decode_message,
    encode_message,
)
from iotsec.sdk.errors import RejectedError

__all__ = ["build_security_messages"]

_encoder = msgspec.json.Encoder()
_EVENT_INDEX = re.compile(r"^Events\[(\d+)\]")


def _new_id() -> str:
    return str(uuid.uuid4())


def build_security_messages(
    events: Iterable[Event],
    *,
    agent_id: str,
    agent_version: str = "1.0.0",
    max_bytes: int = MAX_MESSAGE_BYTES,
    new_id: Callable[[], str] = _new_id,
) -> list[Message]:
    """Pack ``events`` into as few valid security messages as fit in ``max_bytes`` each.

    Events keep their order. Each message carries the security interface id, a JSON content
    type, UTF-8 encoding and a fresh ``message_id`` from ``new_id``. No events, no messages.

    Raises:
        RejectedError: an event cannot fit in a message on its own (naming its index, name and
            size), or a message fails validation (naming the event and field).
    """
    evs = tuple(_canonical(event, index) for index, event in enumerate(events))
    if not evs:
        return []
    encoded = [_encoder.encode(event) for event in evs]
    prefix, suffix = _envelope(evs[0], encoded[0], agent_id, agent_version)
    overhead = len(prefix) + len(suffix)
    messages: list[Message] = []
    start = 0
    size = overhead
    for index, body in enumerate(encoded):
        if overhead + len(body) > max_bytes:
            event = evs[index]
            raise RejectedError(
                f"event {index} ({event.name}, id {event.id}) is {len(body)} bytes: it cannot "
                f"fit in a {max_bytes}-byte message even alone"
            )
        separator = 1 if index > start else 0
        if size + separator + len(body) > max_bytes:
            messages.append(
                _message(
                    (prefix, suffix),
                    encoded[start:index],
                    start,
                    max_bytes=max_bytes,
                    new_id=new_id,
                )
            )
            start, size, separator = index, overhead, 0
        size += separator + len(body)
    messages.append(
        _message((prefix, suffix), encoded[start:], start, max_bytes=max_bytes, new_id=new_id)
    )
    return messages


def _canonical(event: Event, index: int) -> Event:
    """``event`` as the hub will read it, refusing what Microsoft's schema would refuse."""
    try:
        canonical = decode_event(_encoder.encode(event), index=index)
    except MessageInvalid as exc:
        shown = "; ".join(str(issue) for issue in exc.issues[:5])
        raise RejectedError(f"invalid security event: {shown}") from None
    for row in canonical.payload:
        # Accepted on ingest because the C# agent sends it, but outside Microsoft's enum.
        if getattr(row, "queue", None) == "Operational":
            raise RejectedError(
                f"invalid security event: Events[{index}].Payload: Queue "
                "'Operational' is not in the ASC v1.0 schema; use High or Low"
            )
    return canonical


def _envelope(
    first: Event, first_body: bytes, agent_id: str, agent_version: str
) -> tuple[bytes, bytes]:
    """The bytes before and after the event list, taken from the schema's own encoder."""
    whole = encode_message(
        SecurityMessage(agent_version=agent_version, agent_id=agent_id, events=(first,))
    )
    at = whole.rindex(first_body)
    return whole[:at], whole[at + len(first_body) :]


def _message(
    envelope: tuple[bytes, bytes],
    events: list[bytes],
    start: int,
    *,
    max_bytes: int,
    new_id: Callable[[], str],
) -> Message:
    prefix, suffix = envelope
    body = b"".join((prefix, b",".join(events), suffix))
    try:
        decode_message(body, max_bytes=max_bytes)
    except MessageInvalid as exc:
        shown = "; ".join(str(_shift(issue, start)) for issue in exc.issues[:5])
        raise RejectedError(f"invalid security message: {shown}") from None
    except MessageTooLarge as exc:  # only if the size arithmetic above were wrong
        raise RejectedError(f"security message is {exc.size} bytes, over {exc.limit}") from None
    return Message(
        body,
        message_id=new_id(),
        content_type="application/json",
        content_encoding="utf-8",
        interface_id=SECURITY_INTERFACE_ID,
    )


def _shift(issue: FieldIssue, start: int) -> FieldIssue:
    """Renumber ``Events[i]`` in a message's issue to the event's index in the caller's input."""
    path = _EVENT_INDEX.sub(lambda m: f"Events[{int(m[1]) + start}]", issue.path)
    return FieldIssue(path, issue.reason)
