"""The registry store, on a real SQLite file: identities, modules, twins, policies, settings.

Every test runs against each store in ``STORES`` (only SQLite so far), so a PostgreSQL store
added later meets the same suite.
"""

from __future__ import annotations

import base64
import doctest
import os
import sqlite3
import stat
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import iotsec.hub.sqlite_registry
from iotsec.hub.errors import (
    IdentityExists,
    IdentityNotFound,
    InvalidIdentity,
    InvalidTwinPatch,
    PreconditionFailed,
    RegistryError,
    TwinTooLarge,
)
from iotsec.hub.hubconfig import HubConfiguration, IpFilterRule
from iotsec.hub.identity import DEFAULT_POLICIES, SECURITY_MODULE_ID, SymmetricKeys, Thumbprints
from iotsec.hub.registry import RegistryStore, SqliteRegistry, parse_if_match

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
SHA1 = "ab" * 20
SHA256 = "cd" * 32


def key_of(size: int) -> str:
    return base64.b64encode(bytes(range(size))).decode()


KEYS = SymmetricKeys(key_of(32), key_of(16))

#: Store factories by name; each opens (or reopens) the store kept at ``path``.
STORES: dict[str, Callable[[Path], RegistryStore]] = {
    "sqlite": lambda path: SqliteRegistry(path / "registry.db", clock=lambda: NOW),
}


@pytest.fixture(params=sorted(STORES))
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], Any]]:
    """Opens the store kept in this test's directory; every store opened is closed after."""
    opened: list[RegistryStore] = []

    def opener() -> Any:
        store = STORES[request.param](tmp_path)
        opened.append(store)
        return store

    yield opener
    for store in opened:
        store.close()


@pytest.fixture
def registry(open_store: Callable[[], Any]) -> Any:
    return open_store()


# -- devices ---------------------------------------------------------------------------------------


def test_a_new_device_gets_generated_sas_keys(registry: Any) -> None:
    device = registry.create_device("dev-1")
    assert (device.device_id, device.module_id, device.auth, device.status) == (
        "dev-1",
        None,
        "sas",
        "enabled",
    )
    assert device.keys is not None
    assert device.keys.primary != device.keys.secondary
    assert len(base64.b64decode(device.keys.primary)) == 32
    assert device.etag and device.generation_id
    assert device.created == NOW
    assert registry.get_device("dev-1") == device


def test_a_device_with_given_keys_keeps_them(registry: Any) -> None:
    device = registry.create_device("dev", keys=KEYS)
    assert device.keys == KEYS
    assert registry.identity("dev", None).keys == KEYS


def test_a_self_signed_device_has_normalized_thumbprints_and_no_keys(registry: Any) -> None:
    device = registry.create_device("dev", thumbprints=Thumbprints(SHA1, SHA256))
    assert device.auth == "selfSigned"
    assert device.keys is None
    assert device.thumbprints == Thumbprints(SHA1.upper(), SHA256.upper())
    assert registry.get_device("dev").thumbprints == device.thumbprints


def test_a_ca_signed_device_has_no_credentials_of_its_own(registry: Any) -> None:
    device = registry.create_device("dev", ca_signed=True)
    assert (device.auth, device.keys, device.thumbprints) == ("certificateAuthority", None, None)


def test_a_device_may_start_disabled(registry: Any) -> None:
    assert not registry.create_device("dev", status="disabled").enabled


def test_each_device_gets_its_security_module_with_its_own_keys(registry: Any) -> None:
    device = registry.create_device("dev", thumbprints=Thumbprints(SHA1))
    modules = registry.list_modules("dev")
    assert [m.module_id for m in modules] == [SECURITY_MODULE_ID]
    module = modules[0]
    assert module.auth == "sas"
    assert module.keys is not None
    other = registry.create_device("other")
    other_module = registry.get_module("other", SECURITY_MODULE_ID)
    assert module.keys.primary not in (other.keys.primary, other_module.keys.primary)
    assert device.keys is None
    twin = registry.get_twin("dev", SECURITY_MODULE_ID)
    assert (twin.module_id, twin.desired, twin.reported, twin.version) == (
        SECURITY_MODULE_ID,
        {},
        {},
        1,
    )


def test_each_device_twin_gets_the_security_group_tag(registry: Any) -> None:
    registry.create_device("plain")
    registry.create_device("lab", security_group="lab", tags={"site": "b43"})
    assert registry.get_twin("plain").tags == {"SecurityGroup": "default"}
    assert registry.get_twin("lab").tags == {"site": "b43", "SecurityGroup": "lab"}
    assert registry.security_group("plain") == "default"
    assert registry.security_group("lab") == "lab"


def test_a_security_group_tag_in_tags_is_kept_under_the_canonical_name(registry: Any) -> None:
    registry.create_device("dev", tags={"securitygroup": "ops"})
    assert registry.get_twin("dev").tags == {"SecurityGroup": "ops"}
    registry.create_device("both", tags={"securityGroup": "ops"}, security_group="lab")
    assert registry.get_twin("both").tags == {"SecurityGroup": "lab"}


def test_the_security_group_follows_the_tag(registry: Any) -> None:
    registry.create_device("dev")
    registry.patch_tags("dev", {"SecurityGroup": "lab"})
    assert registry.security_group("dev") == "lab"
    registry.patch_tags("dev", {"SecurityGroup": None})
    assert registry.security_group("dev") == "default"


def test_duplicate_devices_are_refused(registry: Any) -> None:
    registry.create_device("dev")
    with pytest.raises(IdentityExists) as caught:
        registry.create_device("dev", ca_signed=True)
    assert caught.value.device_id == "dev"
    assert registry.get_device("dev").auth == "sas"


@pytest.mark.parametrize(
    "device_id",
    ["", "a" * 129, "with space", "slash/", "plus+", "hash#", "semi;colon", "ünï", "tab\t"],
)
def test_invalid_device_ids_are_refused(registry: Any, device_id: str) -> None:
    with pytest.raises(InvalidIdentity) as caught:
        registry.create_device(device_id)
    assert caught.value.field == "device_id"
    assert registry.device_count() == 0


def test_every_character_iot_hub_allows_is_accepted(registry: Any) -> None:
    for device_id in ("a" * 128, "Az09-.%_*?!(),:=@$'"):
        assert registry.create_device(device_id).device_id == device_id
        assert registry.identity(device_id, None) is not None


@pytest.mark.parametrize(
    ("keys", "field"),
    [
        (SymmetricKeys("not base64!", key_of(32)), "keys.primary"),
        (SymmetricKeys(key_of(15), key_of(32)), "keys.primary"),
        (SymmetricKeys(key_of(32), key_of(65)), "keys.secondary"),
        (SymmetricKeys(key_of(32), key_of(32)[:-1]), "keys.secondary"),
        (SymmetricKeys(key_of(32), ""), "keys.secondary"),
    ],
)
def test_invalid_keys_are_refused_without_showing_them(
    registry: Any, keys: SymmetricKeys, field: str
) -> None:
    with pytest.raises(InvalidIdentity) as caught:
        registry.create_device("dev", keys=keys)
    assert caught.value.field == field
    assert keys.primary not in str(caught.value)
    assert registry.identity("dev", None) is None


def test_keys_of_16_to_64_bytes_are_accepted(registry: Any) -> None:
    keys = SymmetricKeys(key_of(16), key_of(64))
    assert registry.create_device("dev", keys=keys).keys == keys


@pytest.mark.parametrize(
    ("thumbprints", "field"),
    [
        (Thumbprints("ab" * 19), "thumbprints.primary"),
        (Thumbprints("zz" * 20), "thumbprints.primary"),
        (Thumbprints(SHA1, "ab" * 33), "thumbprints.secondary"),
        (Thumbprints(None, SHA1), "thumbprints.primary"),
        (Thumbprints("AB:" * 19 + "AB"), "thumbprints.primary"),
    ],
)
def test_invalid_thumbprints_are_refused(
    registry: Any, thumbprints: Thumbprints, field: str
) -> None:
    with pytest.raises(InvalidIdentity) as caught:
        registry.create_device("dev", thumbprints=thumbprints)
    assert caught.value.field == field


@pytest.mark.parametrize(
    "credentials",
    [
        {"keys": KEYS, "thumbprints": Thumbprints(SHA1)},
        {"keys": KEYS, "ca_signed": True},
        {"thumbprints": Thumbprints(SHA1), "ca_signed": True},
    ],
)
def test_one_kind_of_credential_at_a_time(registry: Any, credentials: dict[str, Any]) -> None:
    with pytest.raises(InvalidIdentity) as caught:
        registry.create_device("dev", **credentials)
    assert caught.value.field == "credentials"


def test_an_unknown_status_is_refused(registry: Any) -> None:
    with pytest.raises(InvalidIdentity) as caught:
        registry.create_device("dev", status="Enabled")
    assert caught.value.field == "status"


def test_an_empty_security_group_is_refused(registry: Any) -> None:
    with pytest.raises(InvalidIdentity) as caught:
        registry.create_device("dev", security_group="")
    assert caught.value.field == "security_group"


def test_bad_tags_refuse_the_whole_device(registry: Any) -> None:
    with pytest.raises(InvalidTwinPatch):
        registry.create_device("dev", tags={"bad.key": 1})
    with pytest.raises(TwinTooLarge):
        registry.create_device("dev", tags={f"k{i}": "x" * 4000 for i in range(3)})
    assert registry.device_count() == 0


def test_unknown_devices_are_not_found(registry: Any) -> None:
    with pytest.raises(IdentityNotFound) as caught:
        registry.get_device("ghost")
    assert (caught.value.device_id, caught.value.module_id) == ("ghost", None)
    assert registry.identity("ghost", None) is None
    calls: list[Callable[[], object]] = [
        lambda: registry.update_device("ghost", status="disabled"),
        lambda: registry.delete_device("ghost"),
        lambda: registry.list_modules("ghost"),
        lambda: registry.get_twin("ghost"),
        lambda: registry.patch_desired("ghost", None, {"a": 1}),
        lambda: registry.patch_reported("ghost", None, {"a": 1}),
        lambda: registry.patch_tags("ghost", {"a": 1}),
        lambda: registry.security_group("ghost"),
        lambda: registry.create_module("ghost", "m"),
    ]
    for call in calls:
        with pytest.raises(IdentityNotFound):
            call()


def test_devices_are_listed_in_id_order_a_page_at_a_time(registry: Any) -> None:
    for device_id in ("b", "A", "c", "a", "B"):
        registry.create_device(device_id)
    assert [d.device_id for d in registry.list_devices()] == ["A", "B", "a", "b", "c"]
    assert [d.device_id for d in registry.list_devices(limit=2, offset=1)] == ["B", "a"]
    assert registry.list_devices(offset=5) == []
    assert all(d.module_id is None for d in registry.list_devices())
    assert registry.device_count() == 5
    with pytest.raises(ValueError, match="negative"):
        registry.list_devices(offset=-1)


# -- updates and etags -----------------------------------------------------------------------------


def test_updates_change_the_etag_every_time(registry: Any) -> None:
    first = registry.create_device("dev")
    second = registry.update_device("dev", status="disabled")
    third = registry.update_device("dev", status="disabled")
    assert len({first.etag, second.etag, third.etag}) == 3
    assert registry.get_device("dev") == third
    assert not third.enabled
    assert (third.created, third.generation_id, third.keys) == (
        first.created,
        first.generation_id,
        first.keys,
    )


def test_if_match_guards_updates(registry: Any) -> None:
    first = registry.create_device("dev")
    second = registry.update_device("dev", status="disabled", if_match=first.etag)
    with pytest.raises(PreconditionFailed, match="dev"):
        registry.update_device("dev", status="enabled", if_match=first.etag)
    assert registry.get_device("dev") == second
    third = registry.update_device("dev", status="enabled", if_match=f'"{second.etag}"')
    assert registry.update_device("dev", keys=KEYS, if_match="*").etag != third.etag


def test_if_match_values_are_parsed_like_http_etags() -> None:
    assert parse_if_match(None) is None
    assert parse_if_match("*") is None
    assert parse_if_match('"*"') is None
    assert parse_if_match('"AAAAAAAAAAE="') == "AAAAAAAAAAE="
    assert parse_if_match('W/"abc"') == "abc"
    assert parse_if_match("abc") == "abc"


def test_new_credentials_replace_the_old_kind(registry: Any) -> None:
    registry.create_device("dev")
    x509 = registry.update_device("dev", thumbprints=Thumbprints(SHA256.lower()))
    assert (x509.auth, x509.keys, x509.thumbprints) == (
        "selfSigned",
        None,
        Thumbprints(SHA256.upper()),
    )
    sas = registry.update_device("dev", keys=KEYS)
    assert (sas.auth, sas.keys, sas.thumbprints) == ("sas", KEYS, None)
    assert registry.identity("dev", None) == sas


def test_updates_validate_like_creates(registry: Any) -> None:
    before = registry.create_device("dev")
    with pytest.raises(InvalidIdentity) as caught:
        registry.update_device("dev", keys=SymmetricKeys(key_of(8), key_of(32)))
    assert caught.value.field == "keys.primary"
    with pytest.raises(InvalidIdentity):
        registry.update_device("dev", keys=KEYS, thumbprints=Thumbprints(SHA1))
    with pytest.raises(InvalidIdentity):
        registry.update_device("dev", status="off")
    assert registry.get_device("dev") == before


def test_a_disabled_device_disables_its_modules(registry: Any) -> None:
    registry.create_device("dev")
    registry.create_module("dev", "app")
    registry.update_device("dev", status="disabled")
    assert not registry.identity("dev", SECURITY_MODULE_ID).enabled
    assert not registry.get_module("dev", "app").enabled
    assert registry.get_twin("dev", "app").status == "disabled"
    registry.update_device("dev", status="enabled")
    assert registry.identity("dev", "app").enabled


# -- delete ----------------------------------------------------------------------------------------


def test_deleting_a_device_deletes_its_modules_and_twins(registry: Any) -> None:
    registry.create_device("dev")
    registry.create_module("dev", "app")
    registry.patch_desired("dev", "app", {"a": 1})
    registry.create_device("keep")
    registry.delete_device("dev")
    assert registry.identity("dev", None) is None
    assert registry.identity("dev", SECURITY_MODULE_ID) is None
    assert registry.identity("dev", "app") is None
    for module_id in (None, SECURITY_MODULE_ID, "app"):
        with pytest.raises(IdentityNotFound):
            registry.get_twin("dev", module_id)
    assert registry.device_count() == 1
    assert registry.list_modules("keep")[0].module_id == SECURITY_MODULE_ID


def test_a_recreated_device_starts_afresh(registry: Any) -> None:
    old = registry.create_device("dev")
    registry.patch_desired("dev", None, {"a": 1})
    registry.delete_device("dev")
    new = registry.create_device("dev")
    assert new.generation_id != old.generation_id
    assert new.keys != old.keys
    twin = registry.get_twin("dev")
    assert (twin.desired, twin.desired_version, twin.version) == ({}, 1, 1)


def test_if_match_guards_deletes(registry: Any) -> None:
    device = registry.create_device("dev")
    registry.update_device("dev", status="disabled")
    with pytest.raises(PreconditionFailed):
        registry.delete_device("dev", if_match=device.etag)
    assert registry.identity("dev", None) is not None
    registry.delete_device("dev", if_match=registry.get_device("dev").etag)
    assert registry.device_count() == 0


# -- modules ---------------------------------------------------------------------------------------


def test_modules_are_created_listed_updated_and_deleted(registry: Any) -> None:
    registry.create_device("dev", ca_signed=True)
    app = registry.create_module("dev", "app", keys=KEYS)
    edge = registry.create_module("dev", "Edge", thumbprints=Thumbprints(SHA1))
    assert (app.module_id, app.auth, app.keys, app.status) == ("app", "sas", KEYS, "enabled")
    assert edge.auth == "selfSigned"
    assert registry.get_module("dev", "app") == app
    assert [m.module_id for m in registry.list_modules("dev")] == [
        "Edge",
        "app",
        SECURITY_MODULE_ID,
    ]
    updated = registry.update_module("dev", "app", keys=SymmetricKeys(key_of(20), key_of(24)))
    assert updated.etag != app.etag
    assert registry.identity("dev", "app") == updated
    registry.delete_module("dev", "app")
    assert registry.identity("dev", "app") is None
    with pytest.raises(IdentityNotFound):
        registry.get_twin("dev", "app")
    assert registry.get_device("dev").auth == "certificateAuthority"


def test_a_module_gets_generated_keys_and_its_own_twin(registry: Any) -> None:
    registry.create_device("dev")
    module = registry.create_module("dev", "app")
    assert module.auth == "sas"
    assert module.keys is not None
    twin = registry.get_twin("dev", "app")
    assert (twin.device_id, twin.module_id, twin.tags, twin.version) == ("dev", "app", {}, 1)


def test_module_errors(registry: Any) -> None:
    registry.create_device("dev")
    registry.create_module("dev", "app")
    with pytest.raises(IdentityExists) as exists:
        registry.create_module("dev", "app")
    assert (exists.value.device_id, exists.value.module_id) == ("dev", "app")
    with pytest.raises(IdentityExists):
        registry.create_module("dev", SECURITY_MODULE_ID)
    with pytest.raises(InvalidIdentity) as invalid:
        registry.create_module("dev", "bad/id")
    assert invalid.value.field == "module_id"
    calls: list[Callable[[], object]] = [
        lambda: registry.get_module("dev", "ghost"),
        lambda: registry.get_module("dev", ""),
        lambda: registry.update_module("dev", "ghost", keys=KEYS),
        lambda: registry.delete_module("dev", "ghost"),
        lambda: registry.delete_module("dev", ""),
        lambda: registry.get_twin("dev", "ghost"),
    ]
    for call in calls:
        with pytest.raises(IdentityNotFound):
            call()


def test_if_match_guards_module_changes(registry: Any) -> None:
    registry.create_device("dev")
    module = registry.create_module("dev", "app")
    registry.update_module("dev", "app", keys=KEYS, if_match=module.etag)
    with pytest.raises(PreconditionFailed, match="dev/app"):
        registry.update_module("dev", "app", keys=KEYS, if_match=module.etag)
    with pytest.raises(PreconditionFailed):
        registry.delete_module("dev", "app", if_match=module.etag)
    registry.delete_module("dev", "app", if_match="*")
    assert registry.identity("dev", "app") is None


def test_the_security_module_may_be_deleted_and_created_again(registry: Any) -> None:
    registry.create_device("dev")
    registry.delete_module("dev", SECURITY_MODULE_ID)
    assert registry.list_modules("dev") == []
    assert registry.create_module("dev", SECURITY_MODULE_ID).auth == "sas"


# -- twins -----------------------------------------------------------------------------------------


def test_desired_patches_merge_and_bump_versions(registry: Any) -> None:
    registry.create_device("dev")
    registry.patch_desired("dev", None, {"cfg": {"a": 1, "b": 2}, "gone": 1})
    twin = registry.patch_desired("dev", None, {"cfg": {"a": None, "c": 3}, "gone": None})
    assert twin.desired == {"cfg": {"b": 2, "c": 3}}
    assert (twin.desired_version, twin.reported_version, twin.version) == (3, 1, 3)
    assert registry.get_twin("dev") == twin


def test_reported_patches_merge_and_bump_versions(registry: Any) -> None:
    registry.create_device("dev")
    registry.patch_reported("dev", SECURITY_MODULE_ID, {"fw": {"v": "1"}})
    twin = registry.patch_reported("dev", SECURITY_MODULE_ID, {"fw": {"ok": True}})
    assert twin.reported == {"fw": {"v": "1", "ok": True}}
    assert (twin.desired_version, twin.reported_version, twin.version) == (1, 3, 3)
    assert twin.device_json()["reported"]["$version"] == 3
    assert registry.get_twin("dev").reported == {}  # the device twin is a different twin


def test_tags_are_patched_and_replaced(registry: Any) -> None:
    registry.create_device("dev")
    twin = registry.patch_tags("dev", {"site": {"building": "43", "floor": 1}})
    assert twin.tags == {"SecurityGroup": "default", "site": {"building": "43", "floor": 1}}
    twin = registry.patch_tags("dev", {"site": {"floor": None}})
    assert twin.tags["site"] == {"building": "43"}
    twin = registry.replace_tags("dev", {"only": "this"})
    assert twin.tags == {"only": "this"}
    assert registry.security_group("dev") == "default"
    assert (twin.desired_version, twin.reported_version, twin.version) == (1, 1, 4)


def test_module_twins_have_tags_too(registry: Any) -> None:
    registry.create_device("dev")
    twin = registry.patch_tags("dev", {"securityGroup": "lab"}, module_id=SECURITY_MODULE_ID)
    assert twin.tags == {"securityGroup": "lab"}
    assert registry.security_group("dev") == "default"  # the device twin's tag decides


def test_desired_properties_can_be_replaced(registry: Any) -> None:
    registry.create_device("dev")
    registry.patch_desired("dev", None, {"a": 1, "b": 2})
    twin = registry.replace_desired("dev", None, {"c": 3})
    assert twin.desired == {"c": 3}
    assert twin.desired_version == 3


def test_twin_etags_change_and_guard_service_writes(registry: Any) -> None:
    registry.create_device("dev")
    first = registry.get_twin("dev")
    second = registry.patch_desired("dev", None, {"a": 1}, if_match=first.etag)
    assert second.etag != first.etag
    calls: list[Callable[[], object]] = [
        lambda: registry.patch_desired("dev", None, {"a": 2}, if_match=first.etag),
        lambda: registry.replace_desired("dev", None, {}, if_match=first.etag),
        lambda: registry.patch_tags("dev", {"a": 2}, if_match=first.etag),
        lambda: registry.replace_tags("dev", {}, if_match=first.etag),
    ]
    for call in calls:
        with pytest.raises(PreconditionFailed):
            call()
    assert registry.get_twin("dev") == second
    third = registry.patch_reported("dev", None, {"r": 1})
    assert third.etag != second.etag
    assert registry.patch_desired("dev", None, {"a": 3}, if_match=f'"{third.etag}"').desired == {
        "a": 3
    }


def test_refused_twin_patches_change_nothing(registry: Any) -> None:
    registry.create_device("dev")
    before = registry.patch_desired("dev", None, {"a": 1})
    with pytest.raises(InvalidTwinPatch):
        registry.patch_desired("dev", None, {"b": 1, "$version": 7})
    with pytest.raises(InvalidTwinPatch):
        registry.patch_reported("dev", None, {"deep": [None]})
    with pytest.raises(InvalidTwinPatch):
        registry.patch_tags("dev", {"SecurityGroup": 5})
    with pytest.raises(TwinTooLarge) as caught:
        registry.patch_desired("dev", None, {f"k{i}": "x" * 4000 for i in range(9)})
    assert caught.value.section == "desired"
    assert registry.get_twin("dev") == before


def test_twin_json_from_the_store(registry: Any) -> None:
    registry.create_device("dev", security_group="lab")
    registry.patch_desired("dev", None, {"telemetryConfig": {"sendFrequency": "5m"}})
    doc = registry.get_twin("dev").to_json()
    assert doc["deviceId"] == "dev"
    assert doc["status"] == "enabled"
    assert doc["tags"] == {"SecurityGroup": "lab"}
    assert doc["properties"]["desired"] == {
        "telemetryConfig": {"sendFrequency": "5m"},
        "$version": 2,
    }
    assert doc["version"] == 2


# -- policies and hub configuration ----------------------------------------------------------------


def test_default_policies_exist_with_distinct_keys(registry: Any) -> None:
    policies = registry.policies()
    assert {p.name: p.permissions for p in policies} == DEFAULT_POLICIES
    assert [p.name for p in policies] == sorted(DEFAULT_POLICIES)
    keys = [k for p in policies for k in (p.keys.primary, p.keys.secondary)]
    assert len(set(keys)) == 2 * len(DEFAULT_POLICIES)
    assert all(len(base64.b64decode(k)) == 32 for k in keys)
    assert registry.policy("iothubowner").permissions == DEFAULT_POLICIES["iothubowner"]
    assert registry.policy("nobody") is None


def test_policy_keys_are_regenerated(registry: Any) -> None:
    before = registry.policy("service")
    primary = registry.regenerate_policy_keys("service", which="primary")
    assert primary.keys.primary != before.keys.primary
    assert primary.keys.secondary == before.keys.secondary
    secondary = registry.regenerate_policy_keys("service", which="secondary")
    assert secondary.keys.primary == primary.keys.primary
    assert secondary.keys.secondary != before.keys.secondary
    both = registry.regenerate_policy_keys("service")
    assert both.keys.primary != secondary.keys.primary
    assert both.keys.secondary != secondary.keys.secondary
    assert registry.policy("service") == both
    assert registry.policy("device") is not None
    assert registry.policy("device").keys != both.keys


def test_regenerating_an_unknown_policy_is_not_found(registry: Any) -> None:
    with pytest.raises(IdentityNotFound, match="access policy nobody not found") as caught:
        registry.regenerate_policy_keys("nobody")
    assert caught.value.kind == "access policy"


def test_hub_configuration_defaults_and_round_trips(registry: Any) -> None:
    assert registry.hub_configuration() == HubConfiguration()
    config = HubConfiguration(
        ip_filter_rules=(IpFilterRule("lab", "Accept", "10.0.0.0/8"),),
        ip_filter_default_action="Reject",
        min_tls_version="1.3",
        rate_per_device=5.0,
        rate_burst=10,
    )
    registry.set_hub_configuration(config)
    assert registry.hub_configuration() == config
    registry.set_hub_configuration(HubConfiguration())
    assert registry.hub_configuration() == HubConfiguration()


# -- persistence, files, concurrency -------------------------------------------------------------


def test_everything_survives_a_reopen(open_store: Callable[[], Any]) -> None:
    first = open_store()
    device = first.create_device("dev", security_group="lab")
    module = first.create_module("dev", "app", thumbprints=Thumbprints(SHA1))
    twin = first.patch_reported("dev", SECURITY_MODULE_ID, {"cfg": {"value": 1}})
    policies = first.policies()
    config = HubConfiguration(min_tls_version="1.3")
    first.set_hub_configuration(config)
    first.close()

    again = open_store()
    assert again.get_device("dev") == device
    assert again.get_module("dev", "app") == module
    assert again.get_twin("dev", SECURITY_MODULE_ID) == twin
    assert again.security_group("dev") == "lab"
    assert again.policies() == policies  # not regenerated on reopen
    assert again.hub_configuration() == config


def test_the_database_file_is_private(tmp_path: Path) -> None:
    with SqliteRegistry(tmp_path / "registry.db") as registry:
        registry.create_device("dev")
    assert stat.S_IMODE(os.stat(tmp_path / "registry.db").st_mode) == 0o600


def test_a_closed_registry_refuses_calls(tmp_path: Path) -> None:
    registry = SqliteRegistry(tmp_path / "registry.db")
    registry.close()
    registry.close()  # closing twice is harmless
    with pytest.raises(RegistryError, match="closed"):
        registry.identity("dev", None)
    with pytest.raises(RegistryError, match="closed"):
        registry.create_device("dev")


def test_a_file_that_is_not_a_database_is_a_registry_error(tmp_path: Path) -> None:
    path = tmp_path / "registry.db"
    path.write_bytes(b"this is not SQLite" * 100)
    with pytest.raises(RegistryError, match=r"registry\.db"):
        SqliteRegistry(path)


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "registry.db"
    SqliteRegistry(path).close()
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(RegistryError, match="upgrade iotsec"):
        SqliteRegistry(path)


def test_a_missing_directory_is_a_registry_error(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="cannot create"):
        SqliteRegistry(tmp_path / "missing" / "registry.db")


def test_an_in_memory_registry_works_for_tools_and_tests() -> None:
    with SqliteRegistry(":memory:") as registry:
        registry.create_device("dev")
        assert registry.device_count() == 1


def test_concurrent_use_from_threads_does_not_corrupt(registry: Any) -> None:
    registry.create_device("shared")
    threads, per_thread = 8, 15
    errors: list[BaseException] = []
    start = threading.Barrier(threads)

    def work(n: int) -> None:
        try:
            start.wait()
            for i in range(per_thread):
                registry.create_device(f"t{n}-{i}")
                registry.patch_reported("shared", None, {f"t{n}": i})
                registry.patch_desired(f"t{n}-{i}", SECURITY_MODULE_ID, {"n": n})
                assert registry.identity(f"t{n}-{i}", SECURITY_MODULE_ID) is not None
        except BaseException as exc:  # handed to the main thread, which fails the test
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    assert registry.device_count() == 1 + threads * per_thread
    shared = registry.get_twin("shared")
    assert shared.reported == {f"t{n}": per_thread - 1 for n in range(threads)}
    assert shared.reported_version == 1 + threads * per_thread
    assert shared.version == 1 + threads * per_thread


def test_docstring_examples() -> None:
    result = doctest.testmod(iotsec.hub.sqlite_registry)
    assert result.attempted > 0
    assert result.failed == 0
