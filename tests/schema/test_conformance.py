"""Conformance with Microsoft's published v1.0 schema and its sample messages.

The samples and schemas are read in place from ../shared (never copied into the project).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from iotsec.schema import MessageInvalid, decode_message, encode_message
from tests.conftest import SECURITY_MESSAGE_DIR
from tests.msschema import schema_errors

SAMPLES = json.loads((SECURITY_MESSAGE_DIR / "tests" / "samples.json").read_text("utf-8"))
VALID: list[Any] = SAMPLES["valid"]
INVALID: list[Any] = SAMPLES["invalid"]

# What we say about each of Microsoft's invalid samples, in order.
EXPECTED_INVALID = [
    ("$", "expected an object, got a string"),
    ("$", "expected an object, got an array"),
    ("AgentVersion", "required field is missing"),
    ("Events", "expected an array of at least 1 item"),
    ("Events[0].Payload[0].ExtraDetails[...]", "expected a string, got an integer"),
    ("Events[0].Payload[0].RemotePort", "expected a string, got an integer"),
]


def test_the_samples_are_there() -> None:
    assert len(VALID) == 13
    assert len(INVALID) == len(EXPECTED_INVALID)


@pytest.mark.parametrize("index", range(len(VALID)))
def test_every_valid_sample_decodes(index: int) -> None:
    sample = VALID[index]
    message = decode_message(json.dumps(sample).encode()).message
    assert message.agent_id == sample["AgentId"]
    assert [e.name for e in message.events] == [e["Name"] for e in sample["Events"]]
    assert [len(e.payload) for e in message.events] == [len(e["Payload"]) for e in sample["Events"]]


@pytest.mark.parametrize("index", range(len(VALID)))
def test_our_encoding_of_every_valid_sample_is_valid_for_microsoft(index: int) -> None:
    message = decode_message(json.dumps(VALID[index]).encode()).message
    encoded = json.loads(encode_message(message))
    assert schema_errors(encoded) == []
    assert decode_message(encode_message(message)).message == message


@pytest.mark.parametrize("index", range(len(INVALID)))
def test_every_invalid_sample_is_rejected_with_a_reason(index: int) -> None:
    with pytest.raises(MessageInvalid) as caught:
        decode_message(json.dumps(INVALID[index]).encode())
    first = caught.value.issues[0]
    assert (first.path, first.reason) == EXPECTED_INVALID[index]


@pytest.mark.parametrize("index", range(len(VALID)))
def test_microsofts_validator_as_we_emulate_it_accepts_the_valid_samples(index: int) -> None:
    # Four valid samples use "2018-10-09 16:22:50Z": Microsoft's validator (ajv, "fast"
    # formats) accepts a space separator, and tests/msschema.py does the same.
    assert schema_errors(VALID[index]) == []


@pytest.mark.parametrize("index", range(len(INVALID)))
def test_microsofts_validator_as_we_emulate_it_rejects_the_invalid_samples(index: int) -> None:
    assert schema_errors(INVALID[index]) != []
