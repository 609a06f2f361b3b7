"""Bytes to typed security messages and back.

``decode_message`` refuses anything over 262,144 bytes before parsing, decodes with msgspec,
normalizes agent quirks, and applies the caller's error policy: reject the whole message, or keep
the valid events and return the invalid ones with their raw bytes and reasons.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated, Literal

import msgspec

from iotsec.schema.errors import FieldIssue, MessageInvalid, MessageTooLarge
from iotsec.schema.events import EVENT_TYPES, Event
from iotsec.schema.message import SecurityMessage
from iotsec.schema.normalize import normalize_event, normalize_events
from iotsec.schema.payloads import Guid

__all__ = [
    "MAX_MESSAGE_BYTES",
    "Decoded",
    "ErrorPolicy",
    "RejectedEvent",
    "decode_event",
    "decode_message",
    "encode_message",
    "issue_from_validation",
]

#: IoT Hub's device-to-cloud message limit, which the ASC agents also cap at.
MAX_MESSAGE_BYTES = 262_144


class ErrorPolicy(StrEnum):
    """What to do with a message in which some events are invalid."""

    REJECT = "reject"
    KEEP_VALID = "keep-valid"


@dataclass(frozen=True, slots=True)
class RejectedEvent:
    """An event left out under ``ErrorPolicy.KEEP_VALID``, kept with its raw bytes."""

    index: int
    raw: bytes
    issues: tuple[FieldIssue, ...]


@dataclass(frozen=True, slots=True)
class Decoded:
    """A decoded message and the events that were left out of it (only under KEEP_VALID)."""

    message: SecurityMessage
    rejected: tuple[RejectedEvent, ...] = field(default=())

    @property
    def issues(self) -> tuple[FieldIssue, ...]:
        """Every issue of every rejected event."""
        return tuple(issue for rej in self.rejected for issue in rej.issues)


class _Envelope(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, rename="pascal"
):
    """The message with its events left raw, to judge events one by one."""

    agent_version: str
    agent_id: Guid
    message_schema_version: Literal["1.0"]
    events: Annotated[tuple[msgspec.Raw, ...], msgspec.Meta(min_length=1)]


_message_decoder = msgspec.json.Decoder(SecurityMessage)
_envelope_decoder = msgspec.json.Decoder(_Envelope)
_event_decoder: msgspec.json.Decoder[Event] = msgspec.json.Decoder(Event)
_encoder = msgspec.json.Encoder()


def encode_message(message: SecurityMessage) -> bytes:
    """The canonical JSON bytes of ``message``; valid against Microsoft's v1.0 schema."""
    return _encoder.encode(message)


def decode_event(data: bytes | bytearray | memoryview | str, *, index: int = 0) -> Event:
    """Decode and normalize one event (one element of ``Events``) on its own.

    ``index`` numbers the event in issue paths (``Events[index]...``).

    Raises:
        MessageInvalid: the event is invalid.
    """
    path = f"Events[{index}]"
    try:
        event = _event_decoder.decode(data)
    except msgspec.ValidationError as exc:
        raise MessageInvalid((issue_from_validation(exc, prefix=path),)) from None
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise MessageInvalid((FieldIssue(path, _malformed(exc).issues[0].reason),)) from None
    issues = normalize_event(event, index)
    if issues:
        raise MessageInvalid(tuple(issues))
    return event


def decode_message(
    data: bytes | bytearray | memoryview | str,
    *,
    policy: ErrorPolicy = ErrorPolicy.REJECT,
    max_bytes: int = MAX_MESSAGE_BYTES,
) -> Decoded:
    """Decode one security message.

    Raises:
        MessageTooLarge: ``data`` is over ``max_bytes``; it was not parsed.
        MessageInvalid: the message is invalid (REJECT), or nothing valid is left (KEEP_VALID).
    """
    size = len(data.encode() if isinstance(data, str) else data)
    if size > max_bytes:
        raise MessageTooLarge(size, max_bytes)
    try:
        message = _message_decoder.decode(data)
    except msgspec.ValidationError:
        return _decode_by_event(data, policy)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise _malformed(exc) from None
    bad = normalize_events(message.events)
    if not bad:
        return Decoded(message)
    return _apply_policy(data, message, bad, policy)


def _decode_by_event(data: bytes | bytearray | memoryview | str, policy: ErrorPolicy) -> Decoded:
    try:
        envelope = _envelope_decoder.decode(data)
    except msgspec.ValidationError as exc:
        raise MessageInvalid((issue_from_validation(exc),)) from None
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise _malformed(exc) from None
    events: list[Event] = []
    rejected: list[RejectedEvent] = []
    for index, raw in enumerate(envelope.events):
        path = f"Events[{index}]"
        try:
            event = _event_decoder.decode(raw)
        except msgspec.ValidationError as exc:
            issues = [issue_from_validation(exc, prefix=path)]
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            issues = [FieldIssue(path, _malformed(exc).issues[0].reason)]
        else:
            issues = normalize_event(event, index) or []
            if not issues:
                events.append(event)
                continue
        rejected.append(RejectedEvent(index, bytes(raw), tuple(issues)))
    all_issues = tuple(i for rej in rejected for i in rej.issues)
    if policy is ErrorPolicy.REJECT or not events:
        raise MessageInvalid(all_issues)
    message = SecurityMessage(
        agent_version=envelope.agent_version,
        agent_id=envelope.agent_id,
        message_schema_version=envelope.message_schema_version,
        events=tuple(events),
    )
    return Decoded(message, tuple(rejected))


def _malformed(exc: msgspec.DecodeError | UnicodeDecodeError) -> MessageInvalid:
    if isinstance(exc, UnicodeDecodeError):
        reason = f"not UTF-8 (byte {exc.start}: {exc.reason})"
    else:
        reason = "malformed JSON: " + _lower_first(str(exc).removeprefix("JSON is malformed: "))
    return MessageInvalid((FieldIssue("$", reason),))


def _apply_policy(
    data: bytes | bytearray | memoryview | str,
    message: SecurityMessage,
    bad: dict[int, list[FieldIssue]],
    policy: ErrorPolicy,
) -> Decoded:
    all_issues = tuple(i for found in bad.values() for i in found)
    if policy is ErrorPolicy.REJECT or len(bad) == len(message.events):
        raise MessageInvalid(all_issues)
    raws = _envelope_decoder.decode(data).events
    rejected = tuple(RejectedEvent(i, bytes(raws[i]), tuple(found)) for i, found in bad.items())
    kept = tuple(ev for i, ev in enumerate(message.events) if i not in bad)
    return Decoded(msgspec.structs.replace(message, events=kept), rejected)


# --- msgspec error messages, translated into "path: reason" ------------------------------------

_AT = re.compile(r"^(?P<reason>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_EXPECTED = re.compile(r"^Expected `(?P<want>[^`]+)`, got `(?P<got>[^`]+)`$")
_FIELD = re.compile(r"^Object (?P<what>missing required|contains unknown) field `(?P<name>[^`]+)`$")
_ENUM = re.compile(r"^Invalid (?:enum )?value (?P<value>.+)$")
_LENGTH = re.compile(r"^Expected `(?P<want>\w+)` of length (?P<op>[<>]=) (?P<n>\d+)$")
_KINDS = {
    "str": "a string",
    "int": "an integer",
    "float": "a number",
    "bool": "a boolean",
    "array": "an array",
    "object": "an object",
    "null": "null",
    "datetime": "a date-time",
}


def _known_wire_names() -> frozenset[str]:
    names: set[str] = set()
    for struct in (
        SecurityMessage,
        *EVENT_TYPES.values(),
        *(cls.row_type for cls in EVENT_TYPES.values()),
    ):
        names.update(struct.__struct_encode_fields__)
    return frozenset(names)


_WIRE_NAMES = _known_wire_names()


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def _kind(name: str) -> str:
    # An optional field's type reads "int | null"; the reason should name what is wanted.
    name = name.removesuffix(" | null")
    return _KINDS.get(name, f"`{name}`")


def issue_from_validation(exc: msgspec.ValidationError, *, prefix: str = "") -> FieldIssue:
    """Turn a msgspec validation error into a FieldIssue with a readable path and reason."""
    match = _AT.match(str(exc))
    assert match is not None  # the pattern matches any string
    reason, path = match["reason"], (match["path"] or "")
    path = (prefix + path).lstrip(".") or "$"
    if m := _EXPECTED.match(reason):
        reason = f"expected {_kind(m['want'])}, got {_kind(m['got'])}"
    elif m := _FIELD.match(reason):
        path = m["name"] if path == "$" else f"{path}.{m['name']}"
        if m["what"] == "missing required":
            reason = "required field is missing"
        else:
            reason = "unknown field"
            close = difflib.get_close_matches(m["name"], _WIRE_NAMES, n=1)
            if close:
                reason += f" (did you mean {close[0]!r}?)"
    elif path.endswith("Name") and (m := _ENUM.match(reason)):
        reason = f"unknown event name {m['value']}"
        close = difflib.get_close_matches(m["value"].strip("'\""), EVENT_TYPES, n=1)
        if close:
            reason += f" (did you mean {close[0]!r}?)"
    elif (m := _ENUM.match(reason)) and path.endswith("Port") and m["value"].lstrip("-").isdigit():
        reason = "expected a string, got an integer"  # only the C agent's integer 0 is tolerated
    elif m := _ENUM.match(reason):
        reason = f"invalid value {m['value']}"
    elif m := _LENGTH.match(reason):
        unit = "item" if m["want"] == "array" else "character"
        unit += "" if m["n"] == "1" else "s"
        bound = "at least" if m["op"] == ">=" else "at most"
        reason = f"expected {_kind(m['want'])} of {bound} {m['n']} {unit}"
    elif reason.startswith("Invalid RFC3339"):
        reason = "expected an RFC 3339 date-time"
    else:
        reason = _lower_first(reason)
    return FieldIssue(path, reason)
