"""The codec: size limit, error policies, malformed input, documents in a file."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from iotsec.schema import (
    MAX_MESSAGE_BYTES,
    ErrorPolicy,
    ListeningPorts,
    ListeningPortsEvent,
    Login,
    LoginEvent,
    MessageInvalid,
    MessageTooLarge,
    SecurityMessage,
    decode_message,
    encode_message,
    iter_documents,
)
from tests.schema.test_quirks import CONNECTION, LOGIN, event, message


def test_messages_over_the_limit_are_refused_before_parsing() -> None:
    # Not even JSON: a parser would call it malformed, the size check must come first.
    with pytest.raises(MessageTooLarge) as caught:
        decode_message(b"x" * (MAX_MESSAGE_BYTES + 1))
    assert caught.value.size == MAX_MESSAGE_BYTES + 1
    assert caught.value.limit == 262_144


def test_a_message_exactly_at_the_limit_is_parsed() -> None:
    ev = ListeningPortsEvent.create([ListeningPorts(protocol="TCP", local_port="22")])
    raw = encode_message(SecurityMessage.create([ev]))
    padded = raw[:-1] + b" " * (MAX_MESSAGE_BYTES - len(raw)) + b"}"
    assert len(padded) == MAX_MESSAGE_BYTES
    assert decode_message(padded).message.events[0].name == "ListeningPorts"


def test_size_of_text_input_counts_utf8_bytes() -> None:
    with pytest.raises(MessageTooLarge):
        decode_message("é" * (MAX_MESSAGE_BYTES // 2 + 1))


def _mixed() -> bytes:
    bad_ip = {**CONNECTION, "RemoteAddress": "nowhere"}
    bad_type = {**LOGIN, "ProcessId": "2201"}
    return message(
        event("Login", [LOGIN]),
        event("ConnectionCreate", [bad_ip]),
        event("Login", [LOGIN]),
        event("Login", [bad_type]),
    )


def test_reject_policy_fails_the_whole_message_naming_every_bad_event() -> None:
    with pytest.raises(MessageInvalid) as caught:
        decode_message(_mixed())
    assert [str(i) for i in caught.value.issues] == [
        "Events[1].Payload[0].RemoteAddress: expected an IPv4 or IPv6 address, got 'nowhere'",
        "Events[3].Payload[0].ProcessId: expected an integer, got a string",
    ]


def test_keep_valid_policy_keeps_the_valid_events_and_returns_the_rest_raw() -> None:
    decoded = decode_message(_mixed(), policy=ErrorPolicy.KEEP_VALID)
    assert [e.name for e in decoded.message.events] == ["Login", "Login"]
    assert [r.index for r in decoded.rejected] == [1, 3]
    assert json.loads(decoded.rejected[0].raw)["Payload"][0]["RemoteAddress"] == "nowhere"
    assert json.loads(decoded.rejected[1].raw)["Payload"][0]["ProcessId"] == "2201"
    assert [i.path for i in decoded.issues] == [
        "Events[1].Payload[0].RemoteAddress",
        "Events[3].Payload[0].ProcessId",
    ]


def test_keep_valid_after_normalization_issues_only() -> None:
    bad_ip = {**CONNECTION, "RemoteAddress": "nowhere"}
    decoded = decode_message(
        message(event("ConnectionCreate", [bad_ip]), event("Login", [LOGIN])),
        policy=ErrorPolicy.KEEP_VALID,
    )
    assert [e.name for e in decoded.message.events] == ["Login"]
    assert decoded.rejected[0].index == 0


def test_keep_valid_with_nothing_valid_left_raises() -> None:
    bad = {**LOGIN, "Result": "Maybe"}
    with pytest.raises(MessageInvalid) as caught:
        decode_message(message(event("Login", [bad])), policy=ErrorPolicy.KEEP_VALID)
    assert str(caught.value) == "Events[0].Payload[0].Result: invalid value 'Maybe'"


def test_keep_valid_cannot_save_a_broken_envelope() -> None:
    raw = json.dumps(
        {
            "AgentVersion": "1",
            "AgentId": "short",
            "MessageSchemaVersion": "1.0",
            "Events": [event("Login", [LOGIN])],
        }
    ).encode()
    with pytest.raises(MessageInvalid) as caught:
        decode_message(raw, policy=ErrorPolicy.KEEP_VALID)
    assert str(caught.value) == "AgentId: expected a string of at least 36 characters"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{", "malformed JSON: input data was truncated"),
        (b"", "malformed JSON: input data was truncated"),
        (b'{"AgentVersion": "\xff"}', "not UTF-8 (byte 1: invalid start byte)"),
    ],
)
def test_malformed_input(raw: bytes, reason: str) -> None:
    with pytest.raises(MessageInvalid) as caught:
        decode_message(raw)
    assert caught.value.issues[0].path == "$"
    assert caught.value.issues[0].reason.startswith(reason.split(" (", maxsplit=1)[0])


def test_schema_version_is_checked() -> None:
    raw = json.dumps(
        {
            "AgentVersion": "1",
            "AgentId": "b97faf0a-0f57-471f-9dab-46a8e1764946",
            "MessageSchemaVersion": "2.0",
            "Events": [event("Login", [LOGIN])],
        }
    )
    with pytest.raises(MessageInvalid) as caught:
        decode_message(raw.encode())
    assert str(caught.value) == "MessageSchemaVersion: invalid value '2.0'"


def test_documents_one_message_an_array_or_json_lines() -> None:
    one = message(event("Login", [LOGIN]))
    assert [d.where for d in iter_documents(one)] == [""]
    array = b"[" + one + b"," + one + b"]"
    assert [d.where for d in iter_documents(array)] == ["[0]", "[1]"]
    lines = one + b"\n\n" + one + b"\n"
    assert [d.where for d in iter_documents(lines)] == ["line 1", "line 3"]
    assert [d.raw for d in iter_documents(lines)] == [one, one]


def test_event_create_refuses_rows_of_another_type_and_naive_times() -> None:
    with pytest.raises(TypeError):
        LoginEvent.create([ListeningPorts(protocol="TCP", local_port="22")])
    with pytest.raises(ValueError, match="timezone-aware"):
        LoginEvent.create(
            [
                Login(
                    process_id=1,
                    operation="x",
                    executable="/bin/login",
                    result="Success",
                    user_name="pi",
                )
            ],
            at=datetime(2020, 1, 1),
        )
