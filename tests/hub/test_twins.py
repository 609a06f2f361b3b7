"""Twin rules without a store: merge patch, IoT Hub's key/value/depth/size rules, versions, JSON."""

from __future__ import annotations

import doctest
import math
from typing import Any

import orjson
import pytest

import iotsec.hub.twins
from iotsec.hub.errors import InvalidTwinPatch, TwinTooLarge
from iotsec.hub.twins import (
    DEFAULT_LIMITS,
    Section,
    Twin,
    TwinLimits,
    apply_patch,
    check_patch,
    merge_patch,
    new_twin,
    section_size,
    security_group_of,
)

SECTIONS: list[Section] = ["tags", "desired", "reported"]


def empty_twin(module_id: str | None = None) -> Twin:
    return Twin("dev", module_id, {}, {}, {}, etag="e0")


def nested(levels: int, leaf: Any = "value") -> dict[str, Any]:
    """``levels`` nested objects below the section: {"k1": {"k2": ... {"kN": {"p": leaf}}}}."""
    doc: dict[str, Any] = {"p": leaf}
    for level in range(levels, 0, -1):
        doc = {f"k{level}": doc}
    return doc


def filled(size: int) -> dict[str, Any]:
    """A section whose compact JSON is exactly ``size`` bytes, made of strings under 4 KB."""
    doc: dict[str, Any] = {}
    i = 0
    while section_size({**doc, "z": ""}) + 4000 < size:
        doc[f"k{i}"] = "x" * 3000
        i += 1
    doc["z"] = ""
    doc["z"] = "x" * (size - section_size(doc))
    assert section_size(doc) == size
    return doc


# -- merge patch -----------------------------------------------------------------------------------


def test_merge_patch_null_deletes_and_nested_objects_merge() -> None:
    document = {"a": 1, "b": {"c": 2, "d": 3}, "gone": True}
    result = merge_patch(document, {"b": {"c": None, "e": 4}, "f": 5, "gone": None})
    assert result == {"a": 1, "b": {"d": 3, "e": 4}, "f": 5}


def test_merge_patch_leaves_its_inputs_alone() -> None:
    document = {"b": {"c": 2}}
    patch = {"b": {"d": [1, 2]}}
    result = merge_patch(document, patch)
    result["b"]["d"].append(3)
    assert document == {"b": {"c": 2}}
    assert patch == {"b": {"d": [1, 2]}}


def test_merge_patch_replaces_scalars_and_arrays_whole() -> None:
    document = {"a": {"x": 1}, "list": [1, 2, 3], "s": "old"}
    result = merge_patch(document, {"a": "flat", "list": [9], "s": {"now": "object"}})
    assert result == {"a": "flat", "list": [9], "s": {"now": "object"}}


def test_merge_patch_null_of_a_missing_key_is_harmless() -> None:
    assert merge_patch({"a": 1}, {"b": None, "c": {"d": None}}) == {"a": 1, "c": {}}


# -- check_patch: shape, keys, values --------------------------------------------------------


@pytest.mark.parametrize("patch", [[], "text", None, 3, [{"a": 1}]])
def test_a_patch_must_be_an_object(patch: Any) -> None:
    with pytest.raises(InvalidTwinPatch, match="must be a JSON object") as caught:
        check_patch(patch, section="desired")
    assert caught.value.path == "desired"


@pytest.mark.parametrize("key", ["$version", "$metadata", "a.b", "a b", "a$b", "tab\there", "\x85"])
def test_forbidden_keys_are_refused_with_their_path(key: str) -> None:
    with pytest.raises(InvalidTwinPatch) as caught:
        check_patch({"outer": {key: 1}}, section="reported")
    assert caught.value.path == f"reported.outer.{key}"


def test_an_empty_key_is_refused() -> None:
    with pytest.raises(InvalidTwinPatch, match="empty key"):
        check_patch({"": 1})


def test_keys_up_to_1024_utf8_bytes() -> None:
    check_patch({"é" * 512: 1})  # 1024 bytes
    with pytest.raises(InvalidTwinPatch, match="1024 UTF-8 bytes"):
        check_patch({"é" * 512 + "x": 1})


def test_keys_other_iot_hub_allows_are_accepted() -> None:
    check_patch({"ms_iotn:urn_azureiot_Security_SecurityAgentConfiguration": {"x": {"value": 1}}})
    check_patch({"__t": "c", "ключ": "значение", "a-b_c#d@e": True})


def test_strings_up_to_4096_utf8_bytes() -> None:
    check_patch({"s": "€" * 1365 + "x"})  # 4096 bytes
    with pytest.raises(InvalidTwinPatch, match="4096 UTF-8 bytes") as caught:
        check_patch({"s": "€" * 1366}, section="tags")
    assert caught.value.path == "tags.s"


def test_integers_within_two_to_the_52() -> None:
    check_patch({"lo": -(2**52), "hi": 2**52 - 1, "f": 1.5, "b": False})
    for value in (2**52, -(2**52) - 1):
        with pytest.raises(InvalidTwinPatch, match="integer outside"):
            check_patch({"n": value})


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_floats_are_refused(value: float) -> None:
    with pytest.raises(InvalidTwinPatch, match="not a JSON number"):
        check_patch({"n": value})


@pytest.mark.parametrize("value", [b"bytes", {1, 2}, (1, 2), object()])
def test_non_json_values_are_refused(value: Any) -> None:
    with pytest.raises(InvalidTwinPatch, match="not a JSON value"):
        check_patch({"v": value})


def test_non_string_keys_are_refused() -> None:
    with pytest.raises(InvalidTwinPatch, match="keys must be strings"):
        check_patch({1: "one"})


def test_arrays_are_allowed_but_not_with_nulls() -> None:
    check_patch({"a": [1, "two", {"three": 3}, [4]]})
    with pytest.raises(InvalidTwinPatch, match="arrays may not contain null") as caught:
        check_patch({"a": [1, None]}, section="desired")
    assert caught.value.path == "desired.a[1]"


def test_keys_inside_arrays_are_checked() -> None:
    with pytest.raises(InvalidTwinPatch) as caught:
        check_patch({"a": [{"$bad": 1}]}, section="desired")
    assert caught.value.path == "desired.a[0].$bad"


# -- check_patch: depth ----------------------------------------------------------------------------


def test_ten_levels_of_objects_are_allowed() -> None:
    # IoT Hub's own example: tags.one ... ten = {"property": "value"}
    check_patch(nested(10), section="tags")


def test_eleven_levels_are_refused() -> None:
    with pytest.raises(InvalidTwinPatch, match="deeper than 10 levels") as caught:
        check_patch(nested(11), section="tags")
    # the object under k11 is the eleventh level
    assert caught.value.path == "tags.k1.k2.k3.k4.k5.k6.k7.k8.k9.k10.k11"


def test_arrays_count_as_a_level() -> None:
    deep_array = nested(10, leaf=[1, 2])
    with pytest.raises(InvalidTwinPatch, match="deeper than"):
        check_patch(deep_array)
    check_patch(nested(9, leaf=[1, 2]))


def test_the_depth_limit_is_configurable() -> None:
    with pytest.raises(InvalidTwinPatch, match="deeper than 2 levels"):
        check_patch(nested(3), limits=TwinLimits(depth=2))


# -- sizes -----------------------------------------------------------------------------------------


def test_section_size_is_compact_utf8_json_without_dollar_keys() -> None:
    doc = {"a": "é", "n": 12, "$version": 4}
    assert section_size(doc) == len(orjson.dumps({"a": "é", "n": 12}))
    assert section_size(doc) == len('{"a":"é","n":12}'.encode())


def test_iot_hub_limits_are_the_defaults() -> None:
    assert DEFAULT_LIMITS.size_limit("tags") == 8192
    assert DEFAULT_LIMITS.size_limit("desired") == 32768
    assert DEFAULT_LIMITS.size_limit("reported") == 32768
    assert DEFAULT_LIMITS.depth == 10


@pytest.mark.parametrize("section", SECTIONS)
def test_a_section_may_reach_its_limit_exactly(section: Section) -> None:
    limit = DEFAULT_LIMITS.size_limit(section)
    twin = apply_patch(empty_twin(), section, filled(limit), etag="e1")
    assert section_size(twin.section(section)) == limit


@pytest.mark.parametrize("section", SECTIONS)
def test_one_byte_over_the_limit_is_refused(section: Section) -> None:
    limit = DEFAULT_LIMITS.size_limit(section)
    with pytest.raises(TwinTooLarge) as caught:
        apply_patch(empty_twin(), section, filled(limit + 1), etag="e1")
    error = caught.value
    assert (error.section, error.size, error.limit) == (section, limit + 1, limit)


@pytest.mark.parametrize("section", SECTIONS)
def test_the_limit_applies_to_the_section_after_the_patch(section: Section) -> None:
    limit = DEFAULT_LIMITS.size_limit(section)
    half = filled(limit // 2)
    twin = apply_patch(empty_twin(), section, half, etag="e1")
    more = {"extra": "x" * 100, **{f"m{k}": v for k, v in half.items()}}
    with pytest.raises(TwinTooLarge):
        apply_patch(twin, section, more, etag="e2")


def test_an_over_limit_section_may_still_shrink() -> None:
    big = apply_patch(empty_twin(), "desired", {"a": "x" * 200, "b": "y" * 200}, etag="e1")
    strict = TwinLimits(desired_bytes=100)
    shrunk = apply_patch(big, "desired", {"a": None}, etag="e2", limits=strict)
    assert section_size(shrunk.desired) < section_size(big.desired)
    with pytest.raises(TwinTooLarge):
        apply_patch(big, "desired", {"grow": "x"}, etag="e3", limits=strict)


# -- versions and replacement ----------------------------------------------------------------------


def test_a_desired_patch_bumps_the_desired_version_and_the_twin_version() -> None:
    twin = apply_patch(empty_twin(), "desired", {"a": 1}, etag="e1")
    twin = apply_patch(twin, "desired", {"a": 2}, etag="e2")
    assert (twin.desired_version, twin.reported_version, twin.version) == (3, 1, 3)
    assert twin.etag == "e2"
    assert twin.desired == {"a": 2}


def test_a_reported_patch_bumps_only_the_reported_version() -> None:
    twin = apply_patch(empty_twin(), "reported", {"a": 1}, etag="e1")
    assert (twin.desired_version, twin.reported_version, twin.version) == (1, 2, 2)


def test_a_tags_patch_bumps_only_the_twin_version() -> None:
    twin = apply_patch(empty_twin(), "tags", {"site": "x"}, etag="e1")
    assert (twin.desired_version, twin.reported_version, twin.version) == (1, 1, 2)


def test_every_accepted_patch_counts_even_an_empty_one() -> None:
    twin = apply_patch(empty_twin(), "desired", {}, etag="e1")
    assert twin.desired_version == 2


def test_replace_drops_what_the_new_document_lacks() -> None:
    twin = apply_patch(empty_twin(), "desired", {"a": 1, "b": {"c": 2}}, etag="e1")
    twin = apply_patch(twin, "desired", {"b": {"d": 3}, "e": None}, etag="e2", replace=True)
    assert twin.desired == {"b": {"d": 3}}
    assert twin.desired_version == 3


def test_a_refused_patch_leaves_the_twin_as_it_was() -> None:
    twin = apply_patch(empty_twin(), "desired", {"a": 1}, etag="e1")
    with pytest.raises(InvalidTwinPatch):
        apply_patch(twin, "desired", {"a": 2, "$version": 9}, etag="e2")
    assert twin.desired == {"a": 1}
    assert twin.desired_version == 2


# -- security group tag ----------------------------------------------------------------------------


def test_security_group_is_read_case_insensitively() -> None:
    assert security_group_of({"SecurityGroup": "lab"}) == "lab"
    assert security_group_of({"securityGroup": "lab"}) == "lab"
    assert security_group_of({"other": 1}) == "default"
    assert security_group_of({}) == "default"


@pytest.mark.parametrize("value", ["", 3, {"name": "x"}, True])
def test_the_security_group_tag_must_be_a_non_empty_string(value: Any) -> None:
    with pytest.raises(InvalidTwinPatch, match="security group") as caught:
        apply_patch(empty_twin(), "tags", {"securitygroup": value}, etag="e1")
    assert caught.value.path == "tags.securitygroup"


def test_the_security_group_tag_may_be_removed() -> None:
    twin = apply_patch(empty_twin(), "tags", {"SecurityGroup": "lab"}, etag="e1")
    twin = apply_patch(twin, "tags", {"SecurityGroup": None}, etag="e2")
    assert security_group_of(twin.tags) == "default"


# -- new twins and JSON forms ----------------------------------------------------------------------


def test_new_twins_start_at_version_one_with_checked_tags() -> None:
    twin = new_twin("dev", None, etag="e0", tags={"SecurityGroup": "default", "site": "a"})
    assert (twin.version, twin.desired_version, twin.reported_version) == (1, 1, 1)
    assert twin.tags == {"SecurityGroup": "default", "site": "a"}
    with pytest.raises(InvalidTwinPatch):
        new_twin("dev", None, etag="e0", tags={"bad.key": 1})


def test_device_twin_json_has_iot_hubs_shape() -> None:
    twin = Twin(
        "dev", None, {"site": "a"}, {"cfg": 1}, {"fw": "2"}, 4, 7, "AAAAAAAAAAE=", 9, "enabled"
    )
    assert twin.to_json() == {
        "deviceId": "dev",
        "etag": "AAAAAAAAAAE=",
        "version": 9,
        "status": "enabled",
        "tags": {"site": "a"},
        "properties": {
            "desired": {"cfg": 1, "$version": 4},
            "reported": {"fw": "2", "$version": 7},
        },
    }


def test_module_twin_json_names_the_module_and_omits_unknown_status() -> None:
    doc = empty_twin("azureiotsecurity").to_json()
    assert doc["moduleId"] == "azureiotsecurity"
    assert "status" not in doc
    assert "$metadata" not in orjson.dumps(doc).decode()


def test_device_side_json_is_desired_and_reported_with_versions() -> None:
    twin = Twin("dev", None, {"secret-tag": 1}, {"a": 1}, {"b": 2}, 3, 5)
    assert twin.device_json() == {
        "desired": {"a": 1, "$version": 3},
        "reported": {"b": 2, "$version": 5},
    }


def test_json_forms_do_not_share_the_twins_dicts() -> None:
    twin = Twin("dev", None, {"t": {"x": 1}}, {"a": {"b": 1}}, {})
    doc = twin.to_json()
    doc["tags"]["t"]["x"] = 2
    doc["properties"]["desired"]["a"]["b"] = 2
    assert twin.tags == {"t": {"x": 1}}
    assert twin.desired == {"a": {"b": 1}}


def test_docstring_examples() -> None:
    result = doctest.testmod(iotsec.hub.twins)
    assert result.attempted > 0
    assert result.failed == 0
