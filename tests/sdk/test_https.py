from __future__ import annotations

import asyncio
import random
from pathlib import Path

import orjson
import pytest

from iotsec.schema import SECURITY_INTERFACE_ID, ListeningPorts, ListeningPortsEvent
from iotsec.sdk import (
    AsyncDeviceClient,
    AuthError,
    ConnectionString,
    HttpsTransport,
    Message,
    NotSupportedError,
    RejectedError,
    RetryPolicy,
    ThrottledError,
    Transport,
    TransportError,
)
from iotsec.sdk.https import _retry_after
from tests.msschema import validate_with_microsoft_schema
from tests.sdk.conftest import RecordingSleep
from tests.sdk.loopback_https import LoopbackHttpsHub
from tests.tls import LoopbackPki

AGENT = "b97faf0a-0f57-471f-9dab-46a8e1764946"


def transport_for(
    hub: LoopbackHttpsHub,
    pki: LoopbackPki,
    cs: str,
    **kwargs: object,
) -> HttpsTransport:
    return HttpsTransport(ConnectionString.parse(cs), ca_file=pki.ca.cert, port=hub.port, **kwargs)  # type: ignore[arg-type]


def client_for(
    transport: HttpsTransport,
    sleep: RecordingSleep,
    **kwargs: object,
) -> AsyncDeviceClient:
    retry = RetryPolicy(initial_delay=0.1, max_delay=1.0, max_attempts=4, rng=random.Random(3))
    return AsyncDeviceClient(transport, retry=retry, sleep=sleep, agent_id=AGENT, **kwargs)  # type: ignore[arg-type]


def test_is_a_transport(hub: LoopbackHttpsHub, pki: LoopbackPki) -> None:
    assert isinstance(transport_for(hub, pki, hub.add_device("dev1")), Transport)


async def test_sends_a_plain_message_with_system_and_app_properties(
    hub: LoopbackHttpsHub, pki: LoopbackPki
) -> None:
    transport = transport_for(hub, pki, hub.add_device("dev1"))
    await transport.connect()
    try:
        await transport.send(
            Message(
                b'{"t": 21}',
                properties={"alert": "high", "Mixed-Case.name": "v 1"},
                message_id="m-1",
                correlation_id="c-1",
                content_type="application/json",
                content_encoding="utf-8",
            )
        )
    finally:
        await transport.close()
    [got] = hub.received
    assert (got.device_id, got.module_id, got.body) == ("dev1", None, b'{"t": 21}')
    assert got.headers["iothub-messageid"] == "m-1"
    assert got.headers["iothub-correlationid"] == "c-1"
    assert got.headers["content-type"] == "application/json"
    assert got.headers["iothub-contenttype"] == "application/json"
    assert got.headers["iothub-contentencoding"] == "utf-8"
    assert "iothub-interface-id" not in got.headers
    assert got.app_properties == {"alert": "high", "mixed-case.name": "v 1"}
    assert hub.requests == [("POST", "/devices/dev1/messages/events")]


async def test_sends_security_messages_marked_with_the_interface_id(
    hub: LoopbackHttpsHub, pki: LoopbackPki, sleep: RecordingSleep
) -> None:
    transport = transport_for(hub, pki, hub.add_device("dev1"))
    events = [
        ListeningPortsEvent.create([ListeningPorts(protocol="TCP", local_port=str(port))])
        for port in range(5)
    ]
    async with client_for(transport, sleep) as client:
        [sent] = await client.send_security_message(events)
    [got] = hub.received
    assert got.body == sent.body
    assert got.headers["iothub-interface-id"] == SECURITY_INTERFACE_ID
    assert got.headers["content-type"] == "application/json"
    assert got.headers["iothub-contentencoding"] == "utf-8"
    body = orjson.loads(got.body)
    assert body["AgentId"] == AGENT and len(body["Events"]) == 5
    validate_with_microsoft_schema(body)


async def test_module_identity_and_odd_device_ids(
    hub: LoopbackHttpsHub,
    pki: LoopbackPki,
) -> None:
    odd = "dev%1:x=y@z?$'"  # every one of these is allowed in an IoT Hub device id
    transport = transport_for(hub, pki, hub.add_device(odd, module_id="agent(2)"))
    await transport.connect()
    try:
        await transport.send(Message(b"m"))
        assert await transport.patch_reported({"a": 1}) == 2
    finally:
        await transport.close()
    assert [(r.device_id, r.module_id) for r in hub.received] == [(odd, "agent(2)")]
    assert hub.requests[0] == (
        "POST",
        "/devices/dev%251%3Ax%3Dy%40z%3F%24%27/modules/agent%282%29/messages/events",
    )
    assert hub.twin(odd, "agent(2)").reported == {"a": 1}


async def test_policy_scoped_keys_authenticate(hub: LoopbackHttpsHub, pki: LoopbackPki) -> None:
    key = hub.add_policy("device")
    transport = transport_for(
        hub,
        pki,
        f"HostName=localhost;DeviceId=dev9;SharedAccessKeyName=device;SharedAccessKey={key}",
    )
    await transport.connect()
    try:
        await transport.send(Message(b"via policy"))
    finally:
        await transport.close()
    assert [r.device_id for r in hub.received] == ["dev9"]


async def test_twin_get_and_patch(
    hub: LoopbackHttpsHub, pki: LoopbackPki, sleep: RecordingSleep
) -> None:
    cs = hub.add_device("dev1")
    hub.twin("dev1").desired = {"interval": 30}
    async with client_for(transport_for(hub, pki, cs), sleep) as client:
        assert await client.get_twin() == {
            "desired": {"interval": 30, "$version": 1},
            "reported": {"$version": 1},
        }
        assert await client.patch_reported({"fw": "1.0", "os": {"name": "linux"}}) == 2
        assert await client.patch_reported({"os": None}) == 3
        twin = await client.get_twin()
    assert twin["reported"] == {"fw": "1.0", "$version": 3}


async def test_bad_key_is_an_auth_error_and_never_retried(
    hub: LoopbackHttpsHub, pki: LoopbackPki, sleep: RecordingSleep
) -> None:
    hub.add_device("dev1")
    wrong = "HostName=localhost;DeviceId=dev1;SharedAccessKey=d3Jvbmcta2V5"
    async with client_for(transport_for(hub, pki, wrong), sleep) as client:
        with pytest.raises(AuthError) as caught:
            await client.send_message(Message(b"x"))
    assert caught.value.status == 401
    assert "IotHubUnauthorizedAccess" in str(caught.value)
    assert hub.auth_failures == ["signature mismatch"]
    assert sleep.delays == []
    assert len(hub.requests) == 1


async def test_expired_token_is_refused(hub: LoopbackHttpsHub, pki: LoopbackPki) -> None:
    cs = hub.add_device("dev1")
    transport = transport_for(hub, pki, cs, clock=lambda: 1_000_000.0)
    await transport.connect()
    try:
        with pytest.raises(AuthError):
            await transport.send(Message(b"x"))
    finally:
        await transport.close()
    assert hub.auth_failures == ["token expired"]


async def test_throttled_requests_wait_for_retry_after(
    hub: LoopbackHttpsHub, pki: LoopbackPki, sleep: RecordingSleep
) -> None:
    hub.answer_next(
        429, body={"Message": "ErrorCode:ThrottlingException"}, headers={"Retry-After": "3"}
    )
    async with client_for(transport_for(hub, pki, hub.add_device("dev1")), sleep) as client:
        await client.send_message(Message(b"x"))
    assert sleep.delays == [3.0]
    assert len(hub.received) == 1


async def test_throttling_surfaces_when_retries_run_out(
    hub: LoopbackHttpsHub, pki: LoopbackPki
) -> None:
    hub.answer_next(429, headers={"Retry-After": "2.5"})
    transport = transport_for(hub, pki, hub.add_device("dev1"))
    await transport.connect()
    try:
        with pytest.raises(ThrottledError) as caught:
            await transport.send(Message(b"x"))
    finally:
        await transport.close()
    assert caught.value.retry_after == 2.5


async def test_server_errors_are_retried_then_surface_as_transport_errors(
    hub: LoopbackHttpsHub, pki: LoopbackPki, sleep: RecordingSleep
) -> None:
    hub.answer_next(500, body=b"boom", times=2)
    async with client_for(transport_for(hub, pki, hub.add_device("dev1")), sleep) as client:
        await client.send_message(Message(b"after two 500s"))
        assert len(sleep.delays) == 2
        hub.answer_next(503, times=10)
        with pytest.raises(TransportError, match="503"):
            await client.send_message(Message(b"never"))
    assert len(sleep.delays) == 2 + 3  # max_attempts=4: three more waits, then give up
    assert [r.body for r in hub.received] == [b"after two 500s"]


@pytest.mark.parametrize(
    ("status", "body", "reason"),
    [
        (
            400,
            {"Message": "ErrorCode:ArgumentInvalid;bad body"},
            "ErrorCode:ArgumentInvalid;bad body",
        ),
        (413, {"message": "too large"}, "too large"),
        (404, {"reason": "no such device"}, "no such device"),
        (400, b"plain text reason", "plain text reason"),
        (400, b"", "Bad Request"),
    ],
)
async def test_client_errors_are_rejections_with_the_hubs_reason(
    hub: LoopbackHttpsHub,
    pki: LoopbackPki,
    sleep: RecordingSleep,
    status: int,
    body: object,
    reason: str,
) -> None:
    hub.answer_next(status, body=body)
    async with client_for(transport_for(hub, pki, hub.add_device("dev1")), sleep) as client:
        with pytest.raises(RejectedError) as caught:
            await client.send_message(Message(b"x"))
    assert caught.value.reason == reason
    assert caught.value.status == status
    assert sleep.delays == []


async def test_a_malformed_twin_answer_is_a_transport_error(
    hub: LoopbackHttpsHub, pki: LoopbackPki
) -> None:
    transport = transport_for(hub, pki, hub.add_device("dev1"))
    await transport.connect()
    try:
        hub.answer_next(200, body=b"not json")
        with pytest.raises(TransportError, match="invalid JSON"):
            await transport.get_twin()
        hub.answer_next(200, body={"desired": {}})
        with pytest.raises(TransportError, match="not a twin"):
            await transport.get_twin()
        hub.answer_next(200, body={"version": 3})
        with pytest.raises(TransportError, match=r"\$version"):
            await transport.patch_reported({"a": 1})
    finally:
        await transport.close()


async def test_a_server_signed_by_another_ca_is_a_transport_error(
    hub: LoopbackHttpsHub, pki: LoopbackPki, tmp_path: Path
) -> None:
    other = LoopbackPki.create(tmp_path)
    transport = HttpsTransport(
        ConnectionString.parse(hub.add_device("dev1")), ca_file=other.ca.cert, port=hub.port
    )
    await transport.connect()
    try:
        with pytest.raises(TransportError, match="CERTIFICATE_VERIFY_FAILED"):
            await transport.send(Message(b"x"))
    finally:
        await transport.close()
    assert hub.received == []


async def test_nothing_listening_is_a_transport_error(pki: LoopbackPki) -> None:
    with LoopbackHttpsHub(pki) as stopped:
        port = stopped.port
    transport = HttpsTransport(
        ConnectionString.parse("HostName=localhost;DeviceId=d;SharedAccessKey=a2V5"),
        ca_file=pki.ca.cert,
        port=port,
        timeout=2.0,
    )
    await transport.connect()
    try:
        with pytest.raises(TransportError, match="ConnectError"):
            await transport.send(Message(b"x"))
    finally:
        await transport.close()


async def test_timeouts_are_transport_errors(pki: LoopbackPki) -> None:
    writers: list[asyncio.StreamWriter] = []

    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)

    server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport = HttpsTransport(
        ConnectionString.parse("HostName=localhost;DeviceId=d;SharedAccessKey=a2V5"),
        ca_file=pki.ca.cert,
        port=port,
        timeout=0.2,
    )
    await transport.connect()
    try:
        with pytest.raises(TransportError, match="timed out"):
            await transport.send(Message(b"x"))
    finally:
        await transport.close()
        for writer in writers:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_x509_client_certificate(pki: LoopbackPki) -> None:
    cert = pki.device_cert("cam-7")
    with LoopbackHttpsHub(pki, require_client_cert=True) as hub:
        cs = hub.add_x509_device("cam-7")
        transport = HttpsTransport(
            ConnectionString.parse(cs),
            ca_file=pki.ca.cert,
            cert_file=cert.cert,
            key_file=cert.key,
            port=hub.port,
        )
        await transport.connect()
        try:
            await transport.send(Message(b"from a certificate"))
        finally:
            await transport.close()
        assert [r.device_id for r in hub.received] == ["cam-7"]
        assert "authorization" not in hub.received[0].headers


async def test_x509_certificate_for_another_device_is_refused(pki: LoopbackPki) -> None:
    cert = pki.device_cert("cam-8")
    with LoopbackHttpsHub(pki, require_client_cert=True) as hub:
        hub.add_x509_device("cam-8")
        transport = HttpsTransport(
            ConnectionString.parse(hub.add_x509_device("cam-9")),
            ca_file=pki.ca.cert,
            cert_file=cert.cert,
            key_file=cert.key,
            port=hub.port,
        )
        await transport.connect()
        try:
            with pytest.raises(AuthError):
                await transport.send(Message(b"x"))
        finally:
            await transport.close()


async def test_x509_without_a_trusted_certificate_fails_the_handshake(pki: LoopbackPki) -> None:
    untrusted = pki.device_cert("cam-1", self_signed=True)
    with LoopbackHttpsHub(pki, require_client_cert=True) as hub:
        transport = HttpsTransport(
            ConnectionString.parse(hub.add_x509_device("cam-1")),
            ca_file=pki.ca.cert,
            cert_file=untrusted.cert,
            key_file=untrusted.key,
            port=hub.port,
        )
        await transport.connect()
        try:
            with pytest.raises(TransportError):
                await transport.send(Message(b"x"))
        finally:
            await transport.close()
        assert hub.received == []


def test_push_is_not_supported_over_https(hub: LoopbackHttpsHub, pki: LoopbackPki) -> None:
    transport = transport_for(hub, pki, hub.add_device("dev1"))
    with pytest.raises(NotSupportedError, match="MQTT"):
        transport.on_desired(lambda patch: None)
    with pytest.raises(NotSupportedError, match="MQTT"):
        transport.on_message(lambda message: None)


async def test_properties_that_cannot_be_headers_are_rejected_locally(
    hub: LoopbackHttpsHub, pki: LoopbackPki
) -> None:
    transport = transport_for(hub, pki, hub.add_device("dev1"))
    await transport.connect()
    try:
        with pytest.raises(RejectedError, match="property name"):
            await transport.send(Message(b"x", properties={"a b": "1"}))
        with pytest.raises(RejectedError, match="printable ASCII"):
            await transport.send(Message(b"x", properties={"ok": "line\nbreak"}))
    finally:
        await transport.close()
    assert hub.requests == []


async def test_requires_connect(hub: LoopbackHttpsHub, pki: LoopbackPki) -> None:
    transport = transport_for(hub, pki, hub.add_device("dev1"))
    with pytest.raises(TransportError, match="not connected"):
        await transport.send(Message(b"x"))


def test_repr_hides_the_key(hub: LoopbackHttpsHub, pki: LoopbackPki) -> None:
    cs = hub.add_device("dev1")
    key = ConnectionString.parse(cs).shared_access_key
    assert key is not None and key not in repr(transport_for(hub, pki, cs))


def test_retry_after_parsing() -> None:
    assert _retry_after(None, 0) is None
    assert _retry_after("7", 0) == 7.0
    assert _retry_after("-1", 0) is None
    assert _retry_after("soon", 0) is None
    assert _retry_after("Wed, 21 Oct 2015 07:28:10 GMT", 1445412480.0) == 10.0
    assert _retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 1445412490.0) == 0.0
