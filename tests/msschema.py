"""Validate a security message against Microsoft's published v1.0 JSON Schemas (read in place)."""

from __future__ import annotations

import json
import re
from functools import cache
from typing import Any

from jsonschema import Draft7Validator, FormatChecker, ValidationError
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from tests.conftest import SECURITY_MESSAGE_DIR

SCHEMA_DIR = SECURITY_MESSAGE_DIR / "schemas"
ROOT_ID = "messageRoot.json"


@cache
def _validator() -> Draft7Validator:
    resources: list[tuple[str, Resource[Any]]] = []
    for path in sorted(SCHEMA_DIR.glob("*.json")):
        contents = json.loads(path.read_text(encoding="utf-8"))
        # Most files declare no $schema; they are written against draft-07, like the root.
        resources.append((contents.get("$id", path.name), DRAFT7.create_resource(contents)))
    registry: Registry[Any] = Registry().with_resources(resources)
    root = registry.contents(ROOT_ID)
    return Draft7Validator(root, registry=registry, format_checker=_microsoft_formats())


# Microsoft validates with ajv (`ajv -d msg -s messageRoot.json -r message*.json`), whose formats
# differ from Python's jsonschema in two ways that matter here:
# - formats are checked, so an address matches exactly one branch of the ipv4/ipv6 `oneOf`
#   (jsonschema skips formats without a checker, and then every address matches both branches);
# - its date-time lets a space stand between date and time ("2018-10-09 16:22:50Z", as four of
#   the official valid samples have it), where RFC 3339 wants "T". The zone is still required.
# So: jsonschema's own checker for ipv4/ipv6, with date-time replaced by that looser rule.
_AJV_DATE_TIME = re.compile(
    r"\d{4}-[01]\d-[0-3]\d[Tt\s]([0-2]\d:[0-5]\d:[0-5]\d|23:59:60)(\.\d+)?([Zz]|[+-]\d\d(:?\d\d)?)"
)


def _microsoft_formats() -> FormatChecker:
    checker = FormatChecker(formats=("ipv4", "ipv6"))

    @checker.checks("date-time")
    def _date_time(value: object) -> bool:
        return not isinstance(value, str) or _AJV_DATE_TIME.fullmatch(value) is not None

    return checker


def _leaves(error: ValidationError) -> list[ValidationError]:
    # A oneOf failure says only "not valid under any"; its context holds the real reasons.
    if not error.context:
        return [error]
    return [leaf for sub in error.context for leaf in _leaves(sub)]


def schema_errors(message: dict[str, Any]) -> list[str]:
    """Every violation of Microsoft's schema, as ``path: message`` strings (empty when valid)."""
    return [
        f"{'/'.join(map(str, leaf.absolute_path)) or '$'}: {leaf.message[:200]}"
        for error in _validator().iter_errors(message)
        for leaf in _leaves(error)
    ]


def validate_with_microsoft_schema(message: dict[str, Any]) -> None:
    """Raise AssertionError listing the violations when ``message`` is invalid."""
    errors = schema_errors(message)
    assert not errors, "invalid against Microsoft's schema:\n" + "\n".join(errors)
