"""The JSON Schema of our message types, generated from the types themselves.

The export is committed at ``iotsec/schema/security_message.schema.json``; a test fails when it
drifts from the types.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec

from iotsec.schema.message import SecurityMessage

__all__ = ["EXPORT_PATH", "json_schema", "json_schema_text"]

EXPORT_PATH = Path(__file__).with_name("security_message.schema.json")


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of ``SecurityMessage`` as iotsec accepts it."""
    schema = msgspec.json.schema(SecurityMessage)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://iotsec.dev/schema/security_message.schema.json",
        "title": "iotsec security message (ASC v1.0 with the variants real agents send)",
        **schema,
    }


def json_schema_text() -> str:
    """``json_schema()`` as stable, diff-friendly text."""
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"
