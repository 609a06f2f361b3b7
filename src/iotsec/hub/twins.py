"""Device and module twins: the value, its JSON forms, and IoT Hub's patch rules (no I/O).

A twin has three sections: ``tags`` (service only), ``desired`` (service writes, device reads)
and ``reported`` (device writes, service reads). Patches are JSON merge patches (RFC 7386):
``null`` deletes a key, nested objects merge, anything else replaces.

IoT Hub's rules, as its device-twin guide states them and Azure IoT Edge's hub enforces them:

- keys are 1..1024 UTF-8 bytes without control characters, ``.``, ``$`` or space;
  ``$version`` and ``$metadata`` are read-only, so they never appear in a patch;
- values are strings (up to 4096 UTF-8 bytes), numbers (integers within +/-2**52),
  booleans, objects, or arrays (without nulls);
- objects nest at most 10 levels below the section (``tags.one...ten`` may hold an object
  whose members are plain values, but no deeper object);
- size: ``tags`` up to 8 KB, ``desired`` and ``reported`` up to 32 KB each.

Size counting is our choice: IoT Hub sums the UTF-8 lengths of keys and string values and
counts numbers as 8 bytes, booleans as 4. We count the section's compact JSON in UTF-8 (as
Azure IoT Edge's hub does), which adds the quotes, colons, commas and braces, so we are
slightly stricter. ``$version`` is not counted. A patch is refused only when it would leave
the section over its limit *and* larger than before, so an over-limit twin can still shrink.

>>> merge_patch({"a": 1, "b": {"c": 2, "d": 3}}, {"b": {"c": None, "e": 4}, "f": 5})
{'a': 1, 'b': {'d': 3, 'e': 4}, 'f': 5}
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from iotsec.hub.errors import InvalidTwinPatch, TwinTooLarge
from iotsec.hub.identity import Status

__all__ = [
    "DEFAULT_LIMITS",
    "DEFAULT_SECURITY_GROUP",
    "SECURITY_GROUP_TAG",
    "Section",
    "Twin",
    "TwinLimits",
    "apply_patch",
    "check_patch",
    "merge_patch",
    "new_twin",
    "section_size",
    "security_group_of",
]

Section = Literal["tags", "desired", "reported"]

#: The device-twin tag that names a device's security group, as in ASC (read case-insensitively).
SECURITY_GROUP_TAG = "SecurityGroup"
#: The group every device is in until tagged otherwise; every hub has it.
DEFAULT_SECURITY_GROUP = "default"

_MIN_INT = -(2**52)
_MAX_INT = 2**52 - 1


@dataclass(frozen=True, slots=True)
class TwinLimits:
    """IoT Hub's twin limits; the defaults are IoT Hub's own."""

    tags_bytes: int = 8 * 1024
    desired_bytes: int = 32 * 1024
    reported_bytes: int = 32 * 1024
    depth: int = 10
    key_bytes: int = 1024
    string_bytes: int = 4096

    def size_limit(self, section: Section) -> int:
        """The byte limit of one section."""
        limit: int = getattr(self, f"{section}_bytes")
        return limit


DEFAULT_LIMITS = TwinLimits()


@dataclass(frozen=True, slots=True)
class Twin:
    """A device twin (``module_id`` None) or a module twin; treat the dicts as read-only."""

    device_id: str
    module_id: str | None
    tags: dict[str, Any]
    desired: dict[str, Any]
    reported: dict[str, Any]
    desired_version: int = 1
    reported_version: int = 1
    etag: str = ""
    version: int = 1
    #: The identity's status, shown at the twin's root as IoT Hub does; None leaves it out.
    status: Status | None = None

    def section(self, name: Section) -> dict[str, Any]:
        """One section's properties, without ``$version``."""
        result: dict[str, Any] = getattr(self, name)
        return result

    def to_json(self) -> dict[str, Any]:
        """The service-side twin document, as IoT Hub's REST API returns it (no ``$metadata``)."""
        doc: dict[str, Any] = {"deviceId": self.device_id}
        if self.module_id is not None:
            doc["moduleId"] = self.module_id
        doc["etag"] = self.etag
        doc["version"] = self.version
        if self.status is not None:
            doc["status"] = self.status
        doc["tags"] = copy.deepcopy(self.tags)
        doc["properties"] = self.device_json()
        return doc

    def device_json(self) -> dict[str, Any]:
        """The device-side form a twin GET returns: desired and reported, each with ``$version``."""
        return {
            "desired": {**copy.deepcopy(self.desired), "$version": self.desired_version},
            "reported": {**copy.deepcopy(self.reported), "$version": self.reported_version},
        }


def merge_patch(document: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """A new dict: ``document`` with ``patch`` merged in (RFC 7386); a null deletes the key."""
    result = copy.deepcopy(dict(document))
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, Mapping):
            current = result.get(key)
            result[key] = merge_patch(current if isinstance(current, Mapping) else {}, value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def check_patch(patch: Any, *, section: str = "patch", limits: TwinLimits = DEFAULT_LIMITS) -> None:
    """Check a patch (or a whole section) against IoT Hub's key, value and depth rules.

    Raises:
        InvalidTwinPatch: with the JSON path of the first offending key or value.
    """
    if not isinstance(patch, Mapping):
        raise InvalidTwinPatch(
            f"a twin patch must be a JSON object, not {_json_type(patch)}", path=section
        )
    _check_object(patch, section, 1, limits)


def section_size(document: Mapping[str, Any]) -> int:
    """The size a section counts against its limit: compact JSON, UTF-8, without ``$`` keys."""
    plain = {k: v for k, v in document.items() if not k.startswith("$")}
    return len(orjson.dumps(plain))


def apply_patch(
    twin: Twin,
    section: Section,
    patch: Any,
    *,
    etag: str,
    replace: bool = False,
    limits: TwinLimits = DEFAULT_LIMITS,
) -> Twin:
    """The twin after one accepted patch (or replacement) of ``section``.

    The section's ``$version`` (desired, reported) and the twin's ``version`` go up by one;
    ``etag`` is the new etag, chosen by the caller.

    Raises:
        InvalidTwinPatch: the patch breaks a key, value or depth rule.
        TwinTooLarge: the section would grow past its limit.
    """
    check_patch(patch, section=section, limits=limits)
    if section == "tags":
        _check_security_group(patch)
    before = twin.section(section)
    after = merge_patch({} if replace else before, patch)
    size, limit = section_size(after), limits.size_limit(section)
    if size > limit and size > section_size(before):
        raise TwinTooLarge(section, size, limit)
    changes: dict[str, Any] = {section: after, "etag": etag, "version": twin.version + 1}
    if section == "desired":
        changes["desired_version"] = twin.desired_version + 1
    elif section == "reported":
        changes["reported_version"] = twin.reported_version + 1
    return dataclasses.replace(twin, **changes)


def new_twin(
    device_id: str,
    module_id: str | None,
    *,
    etag: str,
    tags: Mapping[str, Any] | None = None,
    limits: TwinLimits = DEFAULT_LIMITS,
) -> Twin:
    """A fresh twin at version 1, its tags checked by the rules a tags patch meets."""
    twin = Twin(device_id, module_id, {}, {}, {}, etag=etag)
    if tags:
        patched = apply_patch(twin, "tags", tags, etag=etag, replace=True, limits=limits)
        twin = dataclasses.replace(twin, tags=patched.tags)
    return twin


def security_group_of(tags: Mapping[str, Any]) -> str:
    """The device's security group from its tags (``SecurityGroup``, any case), else "default"."""
    wanted = SECURITY_GROUP_TAG.lower()
    for key, value in tags.items():
        if key.lower() == wanted and isinstance(value, str) and value:
            return value
    return DEFAULT_SECURITY_GROUP


# -- rules -------------------------------------------------------------------------------------


def _check_object(obj: Mapping[Any, Any], path: str, depth: int, limits: TwinLimits) -> None:
    # ``depth`` is the level of this object's keys: 1 for the section's own keys.
    for key, value in obj.items():
        _check_key(key, path, limits)
        _check_value(value, f"{path}.{key}", depth, limits, in_array=False)


def _check_key(key: Any, path: str, limits: TwinLimits) -> None:
    if not isinstance(key, str):
        raise InvalidTwinPatch(f"keys must be strings, not {_json_type(key)}", path=path)
    shown = f"{path}.{key[:64]}"
    if not key:
        raise InvalidTwinPatch("empty key", path=path)
    if len(key.encode("utf-8")) > limits.key_bytes:
        raise InvalidTwinPatch(f"key longer than {limits.key_bytes} UTF-8 bytes", path=shown)
    if key.startswith("$"):
        raise InvalidTwinPatch(
            "keys starting with '$' are read-only system properties ($version, $metadata)",
            path=shown,
        )
    for char in key:
        if char in ".$ " or _is_control(char):
            raise InvalidTwinPatch(
                f"key contains {char!r}; keys may not contain '.', '$', space or control "
                "characters",
                path=shown,
            )


def _check_value(value: Any, path: str, depth: int, limits: TwinLimits, *, in_array: bool) -> None:
    if isinstance(value, Mapping | list):
        if depth > limits.depth:
            raise InvalidTwinPatch(
                f"nested deeper than {limits.depth} levels below the section", path=path
            )
        if isinstance(value, Mapping):
            _check_object(value, path, depth + 1, limits)
        else:
            for i, item in enumerate(value):
                _check_value(item, f"{path}[{i}]", depth + 1, limits, in_array=True)
    elif value is None:
        if in_array:
            raise InvalidTwinPatch("arrays may not contain null", path=path)
    else:
        _check_scalar(value, path, limits)


def _check_scalar(value: Any, path: str, limits: TwinLimits) -> None:
    if isinstance(value, bool):
        return
    if isinstance(value, int):
        if not _MIN_INT <= value <= _MAX_INT:
            raise InvalidTwinPatch(f"integer outside -2**52..2**52-1: {value}", path=path)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidTwinPatch(f"{value} is not a JSON number", path=path)
    elif isinstance(value, str):
        if len(value.encode("utf-8")) > limits.string_bytes:
            raise InvalidTwinPatch(
                f"string longer than {limits.string_bytes} UTF-8 bytes", path=path
            )
    else:
        raise InvalidTwinPatch(f"{_json_type(value)} is not a JSON value", path=path)


def _check_security_group(tags: Mapping[str, Any]) -> None:
    wanted = SECURITY_GROUP_TAG.lower()
    for key, value in tags.items():
        if key.lower() == wanted and value is not None and not (isinstance(value, str) and value):
            raise InvalidTwinPatch(
                "the security group must be a non-empty string (or null to reset it)",
                path=f"tags.{key}",
            )


def _is_control(char: str) -> bool:
    code = ord(char)
    return code < 0x20 or 0x7F <= code <= 0x9F


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    for kind, name in names.items():
        if isinstance(value, kind):
            return name
    if isinstance(value, int | float):
        return "a number"
    return f"a Python {type(value).__name__}"
