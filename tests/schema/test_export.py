"""The committed JSON Schema export matches the types, and describes what we encode."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from jsonschema import Draft202012Validator

from iotsec.schema import SecurityMessage, encode_message, json_schema, json_schema_text
from iotsec.schema.export import EXPORT_PATH
from tests.schema.strategies import messages


def test_committed_export_has_not_drifted() -> None:
    committed = EXPORT_PATH.read_text(encoding="utf-8")
    assert committed == json_schema_text(), (
        "the types changed: run `iotsec schema export -o src/iotsec/schema/"
        "security_message.schema.json` and commit the result"
    )


def test_export_is_a_valid_json_schema() -> None:
    Draft202012Validator.check_schema(json_schema())


def test_export_names_all_fourteen_events() -> None:
    defs = json_schema()["$defs"]
    names = {
        d["properties"]["Name"]["enum"][0]
        for d in defs.values()
        if "Name" in d.get("properties", {})
    }
    assert len(names) == 14


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(messages())
def test_every_encoded_message_validates_against_the_export(message: SecurityMessage) -> None:
    validator = Draft202012Validator(json_schema())
    assert list(validator.iter_errors(json.loads(encode_message(message)))) == []
