"""Property tests: the codec round-trips every canonical message and fails only with its errors."""

from __future__ import annotations

import contextlib
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iotsec.schema import SchemaError, SecurityMessage, decode_message, encode_message
from tests.schema.strategies import messages

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(messages())
def test_decode_of_encode_is_identity(message: SecurityMessage) -> None:
    assert decode_message(encode_message(message)).message == message


@settings(max_examples=300)
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_raise_only_schema_errors(data: bytes) -> None:
    with contextlib.suppress(SchemaError):
        decode_message(data)


@settings(max_examples=300)
@given(_json_values)
def test_arbitrary_json_raises_only_schema_errors(value: object) -> None:
    with contextlib.suppress(SchemaError):
        decode_message(json.dumps(value).encode())


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(messages(), st.data())
def test_mutated_messages_raise_only_schema_errors(
    message: SecurityMessage, data: st.DataObject
) -> None:
    raw = bytearray(encode_message(message))
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        position = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
        raw[position] = data.draw(st.integers(min_value=0, max_value=255))
    with contextlib.suppress(SchemaError):
        decode_message(bytes(raw))
