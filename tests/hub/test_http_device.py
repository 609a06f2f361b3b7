"""The HTTPS device API: IoT Hub's device REST shapes over the real hub components."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import AsyncIterator

import httpx
import orjson
import pytest

from iotsec.hub.deadletters import DEADLETTER_KIND
from iotsec.hub.http import https_server
from iotsec.hub.http.server import with_tls_extension
from iotsec.hub.hubconfig import HubConfiguration, IpFilterRule
from iotsec.hub.identity import SymmetricKeys
from iotsec.hub.ingest import SECURITY_KIND, TELEMETRY_KIND
from iotsec.hub.pki import HubPki
from iotsec.hub.tls import server_ssl_context
from iotsec.protocol import Message
from iotsec.schema import ListeningPorts, ListeningPortsEvent
from iotsec.sdk import AsyncDeviceClient, ConnectionString, HttpsTransport, build_security_messages
from tests.hub.conftest import HTTP_HOST, HttpHub
from tests.tls import LoopbackPki

AGENT = "b97faf0a-0f57-471f-9dab-46a8e1764946"
EVENTS = "/devices/dev1/messages/events"
BOUND = "/devices/dev1/messages/deviceBound"


def security_message(ports: int = 2) -> Message:
    events = [
        ListeningPortsEvent.create([ListeningPorts(protocol="TCP", local_port=str(port))])
        for port in range(ports)
    ]
    [message] = build_security_messages(events, agent_id=AGENT)
    return message


def security_headers(message: Message, auth: dict[str, str]) -> dict[str, str]:
    assert message.interface_id is not None
    return {**auth, "iothub-interface-id": message.interface_id, "Content-Type": "application/json"}


def break_events(body: bytes, *indexes: int) -> bytes:
    document = orjson.loads(body)
    for index in indexes:
        document["Events"][index]["TimestampUTC"] = "not a time"
    return orjson.dumps(document)


# --- device-to-cloud --------------------------------------------------------------------------


async def test_a_message_is_appended_with_its_properties(
    http_hub: HttpHub, http_client: httpx.AsyncClient
) -> None:
    headers = {
        **http_hub.device("dev1"),
        "iothub-messageid": "m-1",
        "iothub-correlationid": "c-1",
        "iothub-contenttype": "text/plain",
        "iothub-contentencoding": "utf-8",
        "iothub-app-color": "blue",
    }
    answer = await http_client.post(
        EVENTS, params={"api-version": "2020-09-30"}, content=b"hello", headers=headers
    )
    assert answer.status_code == 204
    [record] = await http_hub.records(TELEMETRY_KIND)
    assert record.body == b"hello"
    assert record.header("message_id") == "m-1"
    assert record.header("correlation_id") == "c-1"
    assert record.header("content_type") == "text/plain"
    assert record.header("app.color") == "blue"
    assert record.header("protocol") == "https"
    assert record.header("source_ip") == "127.0.0.1"
    assert await http_hub.oplog() == []  # accepted messages are counted, not logged one by one
    await http_hub.context.ingestor.flush_telemetry()
    [entry] = await http_hub.oplog()
    assert (entry.category, entry.result, entry.device_id) == ("DeviceTelemetry", "Success", "dev1")
    assert entry.properties == {"count": "1", "bytes": "5", "protocol": "https"}


async def test_a_module_message_carries_the_module(
    http_hub: HttpHub, http_client: httpx.AsyncClient
) -> None:
    answer = await http_client.post(
        "/devices/dev1/modules/mod1/messages/events",
        content=b"{}",
        headers={**http_hub.device("dev1", "mod1"), "Content-Type": "application/json"},
    )
    assert answer.status_code == 204
    [record] = await http_hub.records(TELEMETRY_KIND)
    assert record.header("module_id") == "mod1"
    assert record.header("content_type") == "application/json"


async def test_an_octet_stream_body_has_no_content_type(
    http_hub: HttpHub, http_client: httpx.AsyncClient
) -> None:
    headers = {**http_hub.device("dev1"), "Content-Type": "application/octet-stream"}
    assert (await http_client.post(EVENTS, content=b"\x00", headers=headers)).status_code == 204
    [record] = await http_hub.records(TELEMETRY_KIND)
    assert record.header("content_type") is None


def _expired(hub: HttpHub) -> dict[str, str]:
    return {"Authorization": hub.device_token("dev1", ttl=-10)}


def _wrong_key(hub: HttpHub) -> dict[str, str]:
    return {"Authorization": hub.device_token("dev1", key=SymmetricKeys.generate().primary)}


def _other_device(hub: HttpHub) -> dict[str, str]:
    hub.registry.create_device("dev2")
    return hub.device("dev2")


def _unknown(hub: HttpHub) -> dict[str, str]:
    key = SymmetricKeys.generate().primary
    return {"Authorization": hub.device_token("ghost", key=key)}


def _disabled(hub: HttpHub) -> dict[str, str]:
    headers = hub.device("dev1")
    hub.registry.update_device("dev1", status="disabled")
    return headers


def _filtered(hub: HttpHub) -> dict[str, str]:
    rule = IpFilterRule("loopback", "Reject", "127.0.0.0/8")
    hub.registry.set_hub_configuration(HubConfiguration(ip_filter_rules=(rule,)))
    return hub.device("dev1")


def _service_policy(hub: HttpHub) -> dict[str, str]:
    return hub.service("service")


CASES = [
    ("no-credentials", 401, lambda hub: {}),
    ("malformed-token", 401, lambda hub: {"Authorization": "Bearer abc"}),
    ("expired-token", 401, _expired),
    ("bad-signature", 401, _wrong_key),
    ("wrong-identity", 403, _other_device),
    ("unknown-device", 401, _unknown),
    ("disabled-identity", 401, _disabled),
    ("ip-filtered", 403, _filtered),
    ("insufficient-permission", 403, _service_policy),
]


@pytest.mark.parametrize(("reason", "status", "make"), CASES, ids=[c[0] for c in CASES])
async def test_every_auth_failure_has_its_status_and_is_logged(
    http_hub: HttpHub, http_client: httpx.AsyncClient, reason: str, status: int, make: object
) -> None:
    headers = make(http_hub)  # type: ignore[operator]
    device = "ghost" if reason == "unknown-device" else "dev1"
    answer = await http_client.post(
        f"/devices/{device}/messages/events", content=b"x", headers=headers
    )
    assert answer.status_code == status
    body = answer.json()
    assert body["Message"].startswith("ErrorCode:IotHub")
    assert reason in body["Message"] and "Tracking ID" in body["ExceptionMessage"]
    token = headers.get("Authorization", "")
    if "sig=" in token:
        assert token.split("sig=")[1].split("&")[0] not in answer.text
    assert await http_hub.records(TELEMETRY_KIND) == []
    [entry] = await http_hub.oplog()
    assert (entry.category, entry.operation, entry.result) == (
        "Connections",
        "authenticate",
        "Failure",
    )
    assert entry.reason == reason and entry.protocol == "https"
    assert entry.device_id == device and entry.source_ip == "127.0.0.1"
    assert entry.properties["operation"] == "d2c"


async def test_a_valid_security_message_is_kept_in_canonical_form(
    http_hub: HttpHub, http_client: httpx.AsyncClient
) -> None:
    message = security_message()
    answer = await http_client.post(
        EVENTS, content=message.body, headers=security_headers(message, http_hub.device("dev1"))
    )
    assert answer.status_code == 204
    [record] = await http_hub.records(SECURITY_KIND)
    assert len(orjson.loads(record.body)["Events"]) == 2


async def test_an_invalid_security_message_is_refused_with_paths_and_dead_lettered(
    http_hub: HttpHub, http_client: httpx.AsyncClient
) -> None:
    message = security_message()
    body = break_events(message.body, 0, 1)
    answer = await http_client.post(
        EVENTS, content=body, headers=security_headers(message, http_hub.device("dev1"))
    )
    assert answer.status_code == 400
    issues = answer.json()["issues"]
    assert {"path": "Events[0].TimestampUTC", "reason": "expected an RFC 3339 date-time"} in issues
    assert [i["path"] for i in issues] == ["Events[0].TimestampUTC", "Events[1].TimestampUTC"]
    [letter] = http_hub.context.deadletters.list(device_id="dev1")
    assert letter.body == body and letter.protocol == "https"
    assert await http_hub.records(SECURITY_KIND) == []
    [entry] = await http_hub.oplog()
    assert entry.result == "Failure" and "invalid security message" in (entry.reason or "")


async def test_a_partly_valid_security_message_keeps_the_valid_events(
    http_hub: HttpHub, http_client: httpx.AsyncClient
) -> None:
    message = security_message(3)
    body = break_events(message.body, 1)
    answer = await http_client.post(
        EVENTS, content=body, headers=security_headers(message, http_hub.device("dev1"))
    )
    assert answer.status_code == 204
    [record] = await http_hub.records(SECURITY_KIND)
    assert len(orjson.loads(record.body)["Events"]) == 2
    [letter] = http_hub.context.deadletters.list()
    assert letter.event_index == 1 and "TimestampUTC" in letter.reason
    assert len(await http_hub.records(DEADLETTER_KIND)) == 1


async def test_a_body_over_256_kb_is_refused_before_it_is_read(
    http_hub: HttpHub, http_client: httpx.AsyncClient
) -> None:
    big = b"x" * (262_144 + 1)
    answer = await http_client.post(EVENTS, content=big, headers=http_hub.device("dev1"))
    assert answer.status_code == 413
    assert answer.json()["Message"].startswith("ErrorCode:MessageTooLarge;")

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted while read
        for _ in range(5):
            yield b"y" * 65_536

    answer = await http_client.post(EVENTS, content=chunks(), headers=http_hub.device("dev1"))
    assert answer.status_code == 413
    assert await http_hub.records(TELEMETRY_KIND) == []
    entries = await http_hub.oplog()
    assert [(e.category, e.result) for e in entries] == [("DeviceTelemetry", "Failure")] * 2


async def test_over_the_rate_is_429_with_retry_after(
    http_hub: HttpHub, http_client: httpx.AsyncClient
) -> None:
    http_hub.limiter.configure(rate=0.25, burst=1)
    first = await http_client.post(EVENTS, content=b"1", headers=http_hub.device("dev1"))
    second = await http_client.post(EVENTS, content=b"2", headers=http_hub.device("dev1"))
    assert (first.status_code, second.status_code) == (204, 429)
    assert second.headers["Retry-After"] == "4"
    assert second.json()["Message"].startswith("ErrorCode:ThrottlingException;")
    entries = await http_hub.oplog()
    assert entries[-1].result == "Failure" and "over its limit" in (entries[-1].reason or "")


# --- cloud-to-device ----------------------------------------------------------------------------


def queue(hub: HttpHub, body: bytes = b"reboot", **kwargs: object) -> str:
    message = Message(body, properties={"cmd": "x"}, message_id="c2d-1", correlation_id="k-9")
    return hub.context.c2d.enqueue("dev1", message, **kwargs)  # type: ignore[arg-type]


async def test_receive_then_complete(http_hub: HttpHub, http_client: httpx.AsyncClient) -> None:
    queue(http_hub)
    got = await http_client.get(BOUND, headers=http_hub.device("dev1"))
    assert got.status_code == 200 and got.content == b"reboot"
    assert got.headers["iothub-messageid"] == "c2d-1"
    assert got.headers["iothub-correlationid"] == "k-9"
    assert got.headers["iothub-deliverycount"] == "1"
    assert got.headers["iothub-app-cmd"] == "x"
    etag = got.headers["ETag"]
    assert etag.startswith('"') and etag.endswith('"')
    done = await http_client.delete(
        f"{BOUND}/{etag.strip(chr(34))}", headers=http_hub.device("dev1")
    )
    assert done.status_code == 204
    empty = await http_client.get(BOUND, headers=http_hub.device("dev1"))
    assert empty.status_code == 204 and empty.content == b""
    entries = [e for e in await http_hub.oplog() if e.category == "C2DCommands"]
    assert [e.operation for e in entries] == ["receive", "settle", "receive"]
    assert entries[0].properties["messageId"] == "c2d-1"


async def test_abandon_redelivers_and_reject_drops(
    http_hub: HttpHub, http_client: httpx.AsyncClient
) -> None:
    queue(http_hub)
    auth = http_hub.device("dev1")
    first = await http_client.get(BOUND, headers=auth)
    token = first.headers["ETag"].strip('"')
    abandoned = await http_client.post(f"{BOUND}/{token}/abandon", headers=auth)
    assert abandoned.status_code == 204
    again = await http_client.get(BOUND, headers=auth)
    assert again.headers["iothub-deliverycount"] == "2"
    # the quoted ETag, exactly as received, also settles (some SDKs send it so)
    rejected = await http_client.delete(
        f"{BOUND}/{again.headers['ETag']}", params={"reject": ""}, headers=auth
    )
    assert rejected.status_code == 204
    assert (await http_client.get(BOUND, headers=auth)).status_code == 204


async def test_an_expired_or_unknown_lock_is_412(
    http_hub: HttpHub, http_client: httpx.AsyncClient
) -> None:
    queue(http_hub)
    got = await http_client.get(BOUND, headers=http_hub.device("dev1"))
    token = got.headers["ETag"].strip('"')
    http_hub.clock.advance(http_hub.context.c2d_lock_seconds + 1)
    late = await http_client.delete(f"{BOUND}/{token}", headers=http_hub.device("dev1"))
    assert late.status_code == 412
    assert late.json()["Message"].startswith("ErrorCode:PreconditionFailed;")
    unknown = await http_client.post(f"{BOUND}/nope/abandon", headers=http_hub.device("dev1"))
    assert unknown.status_code == 412
    redelivered = await http_client.get(BOUND, headers=http_hub.device("dev1"))
    assert redelivered.headers["iothub-deliverycount"] == "2"


async def test_the_lower_case_path_of_microsofts_c_and_java_sdks_works(
    http_hub: HttpHub, http_client: httpx.AsyncClient
) -> None:
    queue(http_hub)
    got = await http_client.get(
        "/devices/dev1/messages/devicebound", headers=http_hub.device("dev1")
    )
    assert got.status_code == 200


async def test_head_does_not_lock_a_message(
    http_hub: HttpHub, http_client: httpx.AsyncClient
) -> None:
    queue(http_hub)
    assert (await http_client.head(BOUND, headers=http_hub.device("dev1"))).status_code == 405
    got = await http_client.get(BOUND, headers=http_hub.device("dev1"))
    assert got.headers["iothub-deliverycount"] == "1"


async def test_another_devices_queue_is_out_of_reach(
    http_hub: HttpHub, http_client: httpx.AsyncClient
) -> None:
    queue(http_hub)
    http_hub.registry.create_device("dev2")
    got = await http_client.get(BOUND, headers=http_hub.device("dev2"))
    assert got.status_code == 403


# --- twin ----------------------------------------------------------------------------------


@pytest.mark.parametrize("base", ["/devices/dev1", "/devices/dev1/modules/mod1"])
async def test_twin_get_and_reported_patch(
    http_hub: HttpHub, http_client: httpx.AsyncClient, base: str
) -> None:
    module = "mod1" if "modules" in base else None
    auth = http_hub.device("dev1", module)
    http_hub.registry.patch_desired("dev1", module, {"interval": 30})
    twin = (await http_client.get(f"{base}/twin", headers=auth)).json()
    assert twin == {"desired": {"interval": 30, "$version": 2}, "reported": {"$version": 1}}
    patched = await http_client.patch(
        f"{base}/twin/properties/reported", json={"fw": "1.2", "gone": None}, headers=auth
    )
    assert patched.status_code == 200 and patched.json() == {"$version": 2}
    assert http_hub.registry.get_twin("dev1", module).reported == {"fw": "1.2"}
    entries = [e for e in await http_hub.oplog() if e.category == "D2CTwinOperations"]
    assert [e.operation for e in entries] == ["get", "patch-reported"]
    assert entries[1].module_id == module


async def test_a_bad_reported_patch_is_400_with_its_path(
    http_hub: HttpHub, http_client: httpx.AsyncClient
) -> None:
    url = "/devices/dev1/twin/properties/reported"
    auth = http_hub.device("dev1")
    bad_key = await http_client.patch(url, json={"$version": 3}, headers=auth)
    assert bad_key.status_code == 400 and "reported.$version" in bad_key.json()["Message"]
    not_json = await http_client.patch(url, content=b"{", headers=auth)
    assert not_json.status_code == 400 and "not valid JSON" in not_json.json()["Message"]
    not_object = await http_client.patch(url, json=[1], headers=auth)
    assert not_object.status_code == 400


# --- robustness --------------------------------------------------------------------------


async def test_unexpected_errors_are_500_and_logged(
    http_hub: HttpHub,
    http_client: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(http_hub.registry, "get_twin", broken)
    with caplog.at_level(logging.ERROR, logger="iotsec.hub.http"):
        answer = await http_client.get("/devices/dev1/twin", headers=http_hub.device("dev1"))
    assert answer.status_code == 500
    assert "disk on fire" not in answer.text
    assert "RuntimeError: disk on fire" in caplog.text
    tracking = answer.json()["ExceptionMessage"]
    assert tracking in caplog.text
    [entry] = await http_hub.oplog()
    assert entry.result == "Failure" and entry.reason == "internal error"


async def test_unknown_routes_and_methods_answer_json(http_client: httpx.AsyncClient) -> None:
    missing = await http_client.get("/nowhere")
    assert missing.status_code == 404 and missing.json()["Message"].startswith("ErrorCode:NotFound")
    wrong = await http_client.put(EVENTS)
    assert wrong.status_code == 405 and "MethodNotAllowed" in wrong.json()["Message"]


# --- X.509 over HTTPS ----------------------------------------------------------------------


async def test_a_client_certificate_from_the_tls_extension_authenticates(
    http_hub: HttpHub, pki: LoopbackPki
) -> None:
    http_hub.registry.create_device("cam1", ca_signed=True)
    http_hub.registry.create_device("cam2", ca_signed=True)
    pem = pki.device_cert("cam1").cert.read_text()
    app = with_tls_extension(http_hub.app, {"client_cert_chain": [pem]})
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://localhost") as client:
        ok = await client.post("/devices/cam1/messages/events", content=b"1")
        other = await client.post("/devices/cam2/messages/events", content=b"2")
        sas_device = await client.post(EVENTS, content=b"3")
    assert ok.status_code == 204
    assert other.status_code == 403  # CN=cam1 does not open cam2
    assert sas_device.status_code == 401  # dev1 uses SAS: a certificate is no credential
    reasons = [e.reason for e in await http_hub.oplog() if e.category == "Connections"]
    assert reasons == ["wrong-identity", "no-credentials"]


# --- end to end: the SDK against the hub under uvicorn with real TLS ----------------------


def server_context(pki: LoopbackPki) -> ssl.SSLContext:
    """The hub's own TLS context: the loopback server certificate, device CAs trusted."""
    served = HubPki.from_files(pki.server.cert, pki.server.key, pki.ca.cert)
    return server_ssl_context(served, HubConfiguration(), client_ca=[pki.ca.cert])


async def test_the_sdk_and_the_hub_agree_over_real_tls(http_hub: HttpHub, pki: LoopbackPki) -> None:
    server, sock = https_server(http_hub.app, server_context(pki), port=0)
    port = sock.getsockname()[1]
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            await asyncio.sleep(0.01)
        device = http_hub.registry.get_device("dev1")
        assert device.keys is not None
        conn = f"HostName={HTTP_HOST};DeviceId=dev1;SharedAccessKey={device.keys.primary}"
        transport = HttpsTransport(ConnectionString.parse(conn), ca_file=pki.ca.cert, port=port)
        async with AsyncDeviceClient(transport, agent_id=AGENT) as client:
            await client.send_message(Message(b"21.5", properties={"unit": "C"}))
            [sent] = await client.send_security_message(
                [ListeningPortsEvent.create([ListeningPorts(protocol="TCP", local_port="22")])]
            )
            assert await client.patch_reported({"agent": "1.0"}) == 2
            twin = await client.get_twin()
        assert twin["reported"] == {"agent": "1.0", "$version": 2}

        http_hub.registry.create_device("cam1", ca_signed=True)
        cert = pki.device_cert("cam1")
        x509_conn = ConnectionString.parse(f"HostName={HTTP_HOST};DeviceId=cam1;x509=true")
        x509_transport = HttpsTransport(
            x509_conn, ca_file=pki.ca.cert, cert_file=cert.cert, key_file=cert.key, port=port
        )
        async with AsyncDeviceClient(x509_transport, agent_id=AGENT) as client:
            await client.send_message(Message(b"frame"))
    finally:
        server.should_exit = True
        await serving
    telemetry = {r.header("device_id"): r for r in await http_hub.records(TELEMETRY_KIND)}
    assert (telemetry["dev1"].body, telemetry["dev1"].header("app.unit")) == (b"21.5", "C")
    assert telemetry["cam1"].body == b"frame"
    [security] = await http_hub.records(SECURITY_KIND)
    assert security.header("message_id") == sent.message_id
