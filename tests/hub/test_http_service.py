"""The HTTPS service API: IoT Hub's registry, twin and statistics shapes, plus iotsec's extras."""

from __future__ import annotations

import httpx
import pytest
from starlette.routing import Route

from iotsec.hub.http import build_app, openapi_document
from iotsec.hub.identity import SymmetricKeys
from iotsec.protocol import Message
from tests.hub.conftest import HttpHub
from tests.tls import LoopbackPki

KEYS = SymmetricKeys.generate()


def sas_body(device_id: str, keys: SymmetricKeys | None = None, status: str = "enabled") -> dict:
    symmetric = {"primaryKey": keys.primary, "secondaryKey": keys.secondary} if keys else {}
    return {
        "deviceId": device_id,
        "status": status,
        "authentication": {"type": "sas", "symmetricKey": symmetric},
        "capabilities": {"iotEdge": False},
    }


# --- devices ------------------------------------------------------------------------------


async def test_create_get_and_the_device_shape(
    http_hub: HttpHub, http_client: httpx.AsyncClient
) -> None:
    owner = http_hub.service()
    created = await http_client.put(
        "/devices/sensor-7",
        params={"api-version": "2021-04-12"},
        json=sas_body("sensor-7", KEYS),
        headers=owner,
    )
    assert created.status_code == 200
    device = created.json()
    assert created.headers["ETag"] == f'"{device["etag"]}"'
    assert device["deviceId"] == "sensor-7" and device["status"] == "enabled"
    assert device["authentication"] == {
        "type": "sas",
        "symmetricKey": {"primaryKey": KEYS.primary, "secondaryKey": KEYS.secondary},
        "x509Thumbprint": {"primaryThumbprint": None, "secondaryThumbprint": None},
    }
    assert device["connectionState"] == "Disconnected"
    assert device["cloudToDeviceMessageCount"] == 0
    assert device["capabilities"] == {"iotEdge": False}
    assert device["generationId"] and device["lastActivityTime"] == "0001-01-01T00:00:00Z"
    fetched = await http_client.get("/devices/sensor-7", headers=owner)
    assert fetched.json() == device
    taken = await http_client.put("/devices/sensor-7", json=sas_body("sensor-7"), headers=owner)
    assert taken.status_code == 409
    assert taken.json()["Message"].startswith("ErrorCode:DeviceAlreadyExists;")
    missing = await http_client.get("/devices/nobody", headers=owner)
    assert missing.status_code == 404
    assert missing.json()["Message"].startswith("ErrorCode:DeviceNotFound;")


async def test_keys_are_generated_and_x509_kinds_are_accepted(
    http_hub: HttpHub, http_client: httpx.AsyncClient, pki: LoopbackPki
) -> None:
    owner = http_hub.service()
    generated = (await http_client.put("/devices/g", json={}, headers=owner)).json()
    assert generated["authentication"]["type"] == "sas"
    assert generated["authentication"]["symmetricKey"]["primaryKey"]
    thumbprint = pki.device_cert("selfie", self_signed=True).thumbprint_sha1
    body = {
        "authentication": {
            "type": "selfSigned",
            "x509Thumbprint": {"primaryThumbprint": thumbprint},
        }
    }
    selfie = (await http_client.put("/devices/selfie", json=body, headers=owner)).json()
    assert selfie["authentication"]["x509Thumbprint"]["primaryThumbprint"] == thumbprint
    assert selfie["authentication"]["symmetricKey"] == {"primaryKey": None, "secondaryKey": None}
    ca = {"authentication": {"type": "certificateAuthority"}}
    assert (await http_client.put("/devices/ca1", json=ca, headers=owner)).json()["authentication"][
        "type"
    ] == "certificateAuthority"


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"deviceId": "other"}, "deviceId 'other'"),
        ({"status": "paused"}, "status must be"),
        ({"authentication": {"type": "password"}}, "authentication.type"),
        ({"authentication": {"symmetricKey": {"primaryKey": KEYS.primary}}}, "both"),
        (
            {"authentication": {"symmetricKey": {"primaryKey": "bm9w", "secondaryKey": "bm9w"}}},
            "keys.primary",
        ),
        ({"authentication": {"type": "selfSigned"}}, "primaryThumbprint"),
        ({"capabilities": {"iotEdge": True}}, "IoT Edge"),
    ],
)
async def test_bad_device_bodies_are_400_saying_why(
    http_hub: HttpHub, http_client: httpx.AsyncClient, body: dict, says: str
) -> None:
    answer = await http_client.put("/devices/d9", json=body, headers=http_hub.service())
    assert answer.status_code == 400
    assert says in answer.json()["Message"]


async def test_bad_json_and_a_bad_id_are_400(
    http_hub: HttpHub, http_client: httpx.AsyncClient
) -> None:
    owner = http_hub.service()
    assert (await http_client.put("/devices/d9", content=b"{", headers=owner)).status_code == 400
    bad_id = await http_client.put("/devices/a+b", json={}, headers=owner)
    assert bad_id.status_code == 400 and "invalid device_id" in bad_id.json()["Message"]


async def test_update_and_delete_follow_if_match(
    http_hub: HttpHub, http_client: httpx.AsyncClient
) -> None:
    owner = http_hub.service()
    etag = (await http_client.get("/devices/dev1", headers=owner)).json()["etag"]
    stale = {**owner, "If-Match": '"stale"'}
    refused = await http_client.put("/devices/dev1", json=sas_body("dev1", KEYS), headers=stale)
    assert refused.status_code == 412
    assert refused.json()["Message"].startswith("ErrorCode:PreconditionFailed;")
    updated = await http_client.put(
        "/devices/dev1",
        json=sas_body("dev1", KEYS, "disabled"),
        headers={**owner, "If-Match": f'"{etag}"'},
    )
    assert updated.status_code == 200
    assert updated.json()["status"] == "disabled" and updated.json()["etag"] != etag
    assert http_hub.registry.get_device("dev1").keys == KEYS
    forced = await http_client.put(
        "/devices/dev1", json=sas_body("dev1"), headers={**owner, "If-Match": "*"}
    )
    assert forced.status_code == 200 and forced.json()["status"] == "enabled"
    gone = await http_client.delete("/devices/dev1", headers=stale)
    assert gone.status_code == 412
    deleted = await http_client.delete("/devices/dev1", headers={**owner, "If-Match": "*"})
    assert deleted.status_code == 204
    assert (await http_client.get("/devices/dev1", headers=owner)).status_code == 404
    assert (
        await http_client.put("/devices/nobody", json={}, headers={**owner, "If-Match": "*"})
    ).status_code == 404
    entries = [e for e in await http_hub.oplog() if e.category == "DeviceIdentityOperations"]
    assert [(e.operation, e.result) for e in entries] == [
        ("createOrUpdateDevice", "Failure"),
        ("createOrUpdateDevice", "Success"),
        ("createOrUpdateDevice", "Success"),
        ("deleteDevice", "Failure"),
        ("deleteDevice", "Success"),
        ("createOrUpdateDevice", "Failure"),
    ]
    assert entries[1].properties == {
        "policy": "iothubowner",
        "action": "update",
        "status": "disabled",
    }
    assert entries[1].protocol == "service" and entries[1].device_id == "dev1"


async def test_changing_to_certificate_authority_needs_a_new_device(
    http_hub: HttpHub, http_client: httpx.AsyncClient
) -> None:
    answer = await http_client.put(
        "/devices/dev1",
        json={"authentication": {"type": "certificateAuthority"}},
        headers={**http_hub.service(), "If-Match": "*"},
    )
    assert answer.status_code == 400 and "delete and a create" in answer.json()["Message"]


async def test_list_devices_pages_with_top_and_skip(
    http_hub: HttpHub, http_client: httpx.AsyncClient
) -> None:
    for name in ("a1", "b2", "c3"):
        http_hub.registry.create_device(name)
    owner = http_hub.service()
    page = await http_client.get("/devices", params={"top": 2}, headers=owner)
    assert [d["deviceId"] for d in page.json()] == ["a1", "b2"]
    rest = await http_client.get("/devices", params={"top": 2, "skip": 2}, headers=owner)
    assert [d["deviceId"] for d in rest.json()] == ["c3", "dev1"]
    bad = await http_client.get("/devices", params={"top": 0}, headers=owner)
    assert bad.status_code == 400 and "top" in bad.json()["Message"]


# --- modules ------------------------------------------------------------------------------


async def test_module_crud(http_hub: HttpHub, http_client: httpx.AsyncClient) -> None:
    owner = http_hub.service()
    created = await http_client.put(
        "/devices/dev1/modules/m2", json={"moduleId": "m2"}, headers=owner
    )
    assert created.status_code == 200
    module = created.json()
    assert (module["moduleId"], module["deviceId"]) == ("m2", "dev1")
    assert module["authentication"]["type"] == "sas" and "status" not in module
    listed = await http_client.get("/devices/dev1/modules", headers=owner)
    assert [m["moduleId"] for m in listed.json()] == ["azureiotsecurity", "m2", "mod1"]
    got = await http_client.get("/devices/dev1/modules/m2", headers=owner)
    assert got.json() == module
    updated = await http_client.put(
        "/devices/dev1/modules/m2",
        json=sas_body("dev1", KEYS),
        headers={**owner, "If-Match": module["etag"]},
    )
    assert updated.json()["authentication"]["symmetricKey"]["primaryKey"] == KEYS.primary
    assert (
        await http_client.put("/devices/dev1/modules/m2", json={}, headers=owner)
    ).status_code == 409
    deleted = await http_client.delete("/devices/dev1/modules/m2", headers=owner)
    assert deleted.status_code == 204
    assert (await http_client.get("/devices/dev1/modules/m2", headers=owner)).status_code == 404
    assert (await http_client.get("/devices/ghost/modules", headers=owner)).status_code == 404
    ops = [e.operation for e in await http_hub.oplog() if e.category == "DeviceIdentityOperations"]
    assert ops == ["createOrUpdateModule"] * 3 + ["deleteModule"]


# --- twins --------------------------------------------------------------------------------


async def test_twin_patch_merges_tags_and_desired_and_pushes(
    http_hub: HttpHub, http_client: httpx.AsyncClient
) -> None:
    owner = http_hub.service()
    twin = await http_client.get("/twins/dev1", headers=owner)
    assert twin.status_code == 200
    body = twin.json()
    assert body["deviceId"] == "dev1" and body["tags"] == {"SecurityGroup": "default"}
    assert body["properties"]["desired"] == {"$version": 1}
    assert twin.headers["ETag"] == f'"{body["etag"]}"'
    patch = {"tags": {"site": "berlin"}, "properties": {"desired": {"interval": 60}}}
    patched = await http_client.patch(
        "/twins/dev1", json=patch, headers={**owner, "If-Match": f'"{body["etag"]}"'}
    )
    assert patched.status_code == 200
    after = patched.json()
    assert after["tags"] == {"SecurityGroup": "default", "site": "berlin"}
    assert after["properties"]["desired"] == {"interval": 60, "$version": 2}
    assert http_hub.desired_pushes == [("dev1", None, {"interval": 60, "$version": 2})]
    stale = await http_client.patch(
        "/twins/dev1", json=patch, headers={**owner, "If-Match": body["etag"]}
    )
    assert stale.status_code == 412
    tags_only_stale = await http_client.patch(
        "/twins/dev1", json={"tags": {"x": 1}}, headers={**owner, "If-Match": body["etag"]}
    )
    assert tags_only_stale.status_code == 412
    entries = [e for e in await http_hub.oplog() if e.category == "C2DTwinOperations"]
    assert [(e.operation, e.result) for e in entries] == [
        ("updateTwin", "Success"),
        ("updateTwin", "Failure"),
        ("updateTwin", "Failure"),
    ]


async def test_module_twins_and_bad_twin_patches(
    http_hub: HttpHub, http_client: httpx.AsyncClient
) -> None:
    owner = http_hub.service()
    patched = await http_client.patch(
        "/twins/dev1/modules/mod1",
        json={"properties": {"desired": {"level": "high"}}},
        headers=owner,
    )
    assert patched.status_code == 200
    assert patched.json()["moduleId"] == "mod1"
    assert http_hub.desired_pushes == [("dev1", "mod1", {"level": "high", "$version": 2})]
    got = await http_client.get("/twins/dev1/modules/mod1", headers=owner)
    assert got.json()["properties"]["desired"]["level"] == "high"
    reported = {"properties": {"reported": {"fw": "x"}}}
    refused = await http_client.patch("/twins/dev1", json=reported, headers=owner)
    assert refused.status_code == 400 and "written by the device" in refused.text
    bad_key = {"properties": {"desired": {"a.b": 1}}}
    refused = await http_client.patch("/twins/dev1", json=bad_key, headers=owner)
    assert refused.status_code == 400 and "desired.a.b" in refused.json()["Message"]
    huge = {"properties": {"desired": {f"k{i}": "v" * 4000 for i in range(10)}}}
    refused = await http_client.patch("/twins/dev1", json=huge, headers=owner)
    assert refused.status_code == 413
    assert (await http_client.get("/twins/ghost", headers=owner)).status_code == 404


# --- cloud-to-device send -----------------------------------------------------------------


async def test_send_c2d_queues_notifies_and_the_device_receives_it(
    http_hub: HttpHub, http_client: httpx.AsyncClient
) -> None:
    sent = await http_client.post(
        "/devices/dev1/messages/deviceBound",
        content=b"restart",
        headers={
            **http_hub.service("service"),
            "iothub-messageid": "cmd-1",
            "iothub-app-priority": "high",
        },
    )
    assert sent.status_code == 204 and sent.headers["iothub-messageid"] == "cmd-1"
    assert http_hub.c2d_pushes == ["dev1"]
    device = (await http_client.get("/devices/dev1", headers=http_hub.service())).json()
    assert device["cloudToDeviceMessageCount"] == 1
    got = await http_client.get(
        "/devices/dev1/messages/deviceBound", headers=http_hub.device("dev1")
    )
    assert got.content == b"restart" and got.headers["iothub-app-priority"] == "high"
    [entry] = [e for e in await http_hub.oplog() if e.operation == "sendC2d"]
    assert entry.category == "C2DCommands" and entry.properties["messageId"] == "cmd-1"


async def test_c2d_to_an_unknown_device_or_a_full_queue_is_refused(
    http_hub: HttpHub, http_client: httpx.AsyncClient
) -> None:
    service = http_hub.service("service")
    unknown = await http_client.post(
        "/devices/ghost/messages/deviceBound", content=b"x", headers=service
    )
    assert unknown.status_code == 404
    for _ in range(50):
        http_hub.context.c2d.enqueue("dev1", Message(b"x"))
    full = await http_client.post(
        "/devices/dev1/messages/deviceBound", content=b"x", headers=service
    )
    assert full.status_code == 403
    assert full.json()["Message"].startswith("ErrorCode:DeviceMaximumQueueDepthExceeded;")


# --- configuration, dead letters, statistics -----------------------------------------------


async def test_configuration_round_trip_and_the_ip_filter_applies(
    http_hub: HttpHub, http_client: httpx.AsyncClient
) -> None:
    owner = http_hub.service()
    current = await http_client.get("/configuration", headers=owner)
    assert current.json()["ipFilterDefaultAction"] == "Accept"
    wanted = {
        **current.json(),
        "ipFilterRules": [{"filterName": "lab", "action": "Accept", "ipMask": "10.0.0.0/8"}],
        "ipFilterDefaultAction": "Reject",
        "rateBurst": 50,
    }
    stored = await http_client.put("/configuration", json=wanted, headers=owner)
    assert stored.status_code == 200 and stored.json() == wanted
    assert http_hub.configurations[0].rate_burst == 50
    blocked = await http_client.get("/devices/dev1/twin", headers=http_hub.device("dev1"))
    assert blocked.status_code == 403 and "ip-filtered" in blocked.json()["Message"]
    blocked_service = await http_client.get("/configuration", headers=owner)
    assert blocked_service.status_code == 403
    [entry] = [e for e in await http_hub.oplog() if e.category == "Configurations"]
    assert entry.operation == "setConfiguration" and entry.properties["ipFilterRules"] == "1"


async def test_a_bad_configuration_names_the_key(
    http_hub: HttpHub, http_client: httpx.AsyncClient
) -> None:
    owner = http_hub.service()
    typo = await http_client.put(
        "/configuration", json={"ipFilterDefault": "Reject"}, headers=owner
    )
    assert typo.status_code == 400 and "'ipFilterDefault'" in typo.json()["Message"]
    bad_mask = {"ipFilterRules": [{"filterName": "x", "action": "Reject", "ipMask": "nope"}]}
    answer = await http_client.put("/configuration", json=bad_mask, headers=owner)
    assert answer.status_code == 400 and "'nope'" in answer.json()["Message"]
    assert http_hub.configurations == []


async def test_dead_letters_are_listed_newest_first(
    http_hub: HttpHub, http_client: httpx.AsyncClient
) -> None:
    http_hub.registry.create_device("dev2")
    headers = {"iothub-interface-id": "urn:azureiot:Security:SecurityAgent:1"}
    for device, body in (("dev1", b"{oops"), ("dev2", b"\xff\xfe"), ("dev1", b"[]")):
        await http_client.post(
            f"/devices/{device}/messages/events",
            content=body,
            headers={**headers, **http_hub.device(device)},
        )
    owner = http_hub.service()
    letters = (await http_client.get("/deadletters", headers=owner)).json()
    assert [(x["deviceId"], x["body"]) for x in letters] == [
        ("dev1", "[]"),
        ("dev2", "//4="),
        ("dev1", "{oops"),
    ]
    assert letters[1]["bodyEncoding"] == "base64" and letters[0]["protocol"] == "https"
    mine = await http_client.get(
        "/deadletters", params={"deviceId": "dev1", "top": 1}, headers=owner
    )
    assert [x["body"] for x in mine.json()] == ["[]"]


async def test_statistics_count_enabled_and_disabled(
    http_hub: HttpHub, http_client: httpx.AsyncClient
) -> None:
    http_hub.registry.create_device("off", status="disabled")
    stats = await http_client.get("/statistics/devices", headers=http_hub.service())
    assert stats.json() == {
        "totalDeviceCount": 2,
        "enabledDeviceCount": 1,
        "disabledDeviceCount": 1,
    }


# --- permissions --------------------------------------------------------------------------


async def test_each_policy_gets_only_its_permissions(
    http_hub: HttpHub, http_client: httpx.AsyncClient
) -> None:
    read = http_hub.service("registryRead")
    assert (await http_client.get("/devices/dev1", headers=read)).status_code == 200
    write = await http_client.put("/devices/new", json={}, headers=read)
    assert write.status_code == 403 and "insufficient-permission" in write.json()["Message"]
    c2d = await http_client.post("/devices/dev1/messages/deviceBound", content=b"x", headers=read)
    assert c2d.status_code == 403
    assert (await http_client.get("/twins/dev1", headers=read)).status_code == 200
    service = http_hub.service("service")
    assert (await http_client.get("/devices", headers=service)).status_code == 403
    assert (await http_client.get("/twins/dev1", headers=service)).status_code == 200
    twin_patch = {"properties": {"desired": {"a": 1}}}
    assert (
        await http_client.patch("/twins/dev1", json=twin_patch, headers=service)
    ).status_code == 200
    device_policy = http_hub.service("device")
    for method, url in (("GET", "/devices"), ("GET", "/configuration"), ("GET", "/twins/dev1")):
        answer = await http_client.request(method, url, headers=device_policy)
        assert answer.status_code == 403, url
    own_token = await http_client.get("/devices/dev1", headers=http_hub.device("dev1"))
    assert own_token.status_code == 403
    anonymous = await http_client.get("/devices")
    assert anonymous.status_code == 401 and "no-credentials" in anonymous.json()["Message"]
    expired = {"Authorization": http_hub.service_token(ttl=-5)}
    assert (await http_client.get("/devices", headers=expired)).status_code == 401
    failures = [e for e in await http_hub.oplog() if e.category == "Connections"]
    assert all(e.protocol == "service" and e.result == "Failure" for e in failures)
    assert [e.reason for e in failures].count("insufficient-permission") == 7
    assert {e.properties["operation"] for e in failures} >= {"createOrUpdateDevice", "sendC2d"}


# --- meta ---------------------------------------------------------------------------------


async def test_health_and_openapi_need_no_credentials(http_client: httpx.AsyncClient) -> None:
    health = await http_client.get("/healthz")
    assert health.json() == {"status": "ok", "hub": "testhub"}
    document = (await http_client.get("/openapi.json")).json()
    assert document["openapi"] == "3.1.0"
    assert document["servers"] == [{"url": "https://localhost"}]


def test_openapi_describes_every_route_and_nothing_else(http_hub: HttpHub) -> None:
    app = build_app(http_hub.context)
    served = {
        (route.path, method.lower())
        for route in app.routes
        if isinstance(route, Route)
        for method in (route.methods or ()) - {"HEAD"}
    }
    paths = openapi_document("localhost")["paths"]
    described = {(path, method) for path, item in paths.items() for method in item}
    assert served == described
    for path, item in paths.items():
        for method, operation in item.items():
            names = [p.get("name") or p["$ref"].rsplit("/", 1)[1] for p in operation["parameters"]]
            for placeholder in ("device_id", "module_id", "etag"):
                if f"{{{placeholder}}}" in path:
                    wanted = {
                        "device_id": "deviceId",
                        "module_id": "moduleId",
                        "etag": "lockToken",
                    }[placeholder]
                    assert wanted in names, (path, method)


async def test_twin_put_replaces_and_pushes_removals_as_nulls(
    http_hub: HttpHub, http_client: httpx.AsyncClient
) -> None:
    owner = http_hub.service()
    http_hub.registry.patch_desired("dev1", None, {"a": 1, "b": 2})
    body = {"tags": {"site": "x"}, "properties": {"desired": {"b": 3}}}
    replaced = await http_client.put("/twins/dev1", json=body, headers=owner)
    assert replaced.status_code == 200
    twin = replaced.json()
    assert twin["tags"] == {"site": "x"}  # replaced: the group tag went too (group "default")
    assert twin["properties"]["desired"] == {"b": 3, "$version": 3}
    assert http_hub.desired_pushes == [("dev1", None, {"a": None, "b": 3, "$version": 3})]
    kept = await http_client.put("/twins/dev1/modules/mod1", json={"tags": {"t": 1}}, headers=owner)
    assert kept.json()["tags"] == {"t": 1} and len(http_hub.desired_pushes) == 1
