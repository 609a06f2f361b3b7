"""MqttTransport against the loopback MQTT hub over real TLS: messages, twins, C2D, close."""

from __future__ import annotations

import asyncio
import base64
import logging
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest

from iotsec.protocol.message import Message
from iotsec.schema import SECURITY_INTERFACE_ID
from iotsec.sdk.connection_string import ConnectionString
from iotsec.sdk.errors import (
    AuthError,
    ClientClosedError,
    NotSupportedError,
    RejectedError,
    ThrottledError,
    TransportError,
)
from iotsec.sdk.mqtt import MqttTransport
from iotsec.sdk.transport import Transport
from tests.sdk.loopback_mqtt import LoopbackHub
from tests.tls import LoopbackPki

KEY = base64.b64encode(b"loopback device key 0123456789ab").decode()


def make_transport(
    hub: LoopbackHub, device_id: str = "dev1", module_id: str | None = None, **options: Any
) -> MqttTransport:
    """A transport for a registered identity that trusts the loopback CA."""
    conn = ConnectionString.parse(hub.connection_string(device_id, module_id))
    options.setdefault("ca_file", hub.pki.ca.cert)
    options.setdefault("timeout", 5.0)
    return MqttTransport(conn, port=hub.port, **options)


@pytest.fixture
async def mqtt_hub(pki: LoopbackPki) -> AsyncIterator[LoopbackHub]:
    hub = await LoopbackHub(pki).start()
    hub.add_device("dev1", key=KEY)
    hub.add_device("dev1", "SecurityModule", key=KEY)
    yield hub
    await hub.close()


@pytest.fixture
async def device(mqtt_hub: LoopbackHub) -> AsyncIterator[MqttTransport]:
    transport = make_transport(mqtt_hub)
    yield transport
    await transport.close()


def paho_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("paho-mqtt")]


def test_is_a_transport(mqtt_hub: LoopbackHub) -> None:
    assert isinstance(make_transport(mqtt_hub), Transport)


async def test_device_sends_a_message(mqtt_hub: LoopbackHub, device: MqttTransport) -> None:
    message = Message(
        b"\x00\xffbinary body",
        {"colour": "dark blue", "k&=": "a/b"},
        message_id="m-1",
        correlation_id="c-1",
    )
    await device.connect()
    await device.send(message)
    [received] = mqtt_hub.received
    assert (received.device_id, received.module_id) == ("dev1", None)
    assert received.topic.startswith("devices/dev1/messages/events/$.mid=m-1&$.cid=c-1&")
    assert received.message == message
    [attempt] = mqtt_hub.attempts
    assert (attempt.client_id, attempt.return_code) == ("dev1", 0)
    assert attempt.username is not None
    assert attempt.username.startswith("127.0.0.1/dev1/?api-version=2021-04-12&")


async def test_module_sends_a_security_message(mqtt_hub: LoopbackHub) -> None:
    module = make_transport(mqtt_hub, "dev1", "SecurityModule")
    body = b'{"AgentVersion":"1.0.0","Events":[]}'
    message = Message(
        body,
        {"MessagePriority": "High"},
        content_type="application/json",
        content_encoding="utf-8",
        interface_id=SECURITY_INTERFACE_ID,
    )
    try:
        await module.send(message)  # connects on first use
    finally:
        await module.close()
    [received] = mqtt_hub.received
    assert mqtt_hub.attempts[0].client_id == "dev1/SecurityModule"
    assert (received.device_id, received.module_id) == ("dev1", "SecurityModule")
    assert "$.ifid=urn%3Aazureiot%3ASecurity%3ASecurityAgent%3A1" in received.topic
    assert received.properties.system["$.ifid"] == SECURITY_INTERFACE_ID
    assert received.properties.application == {"MessagePriority": "High"}
    assert received.message.body == body
    assert received.message.is_security_message


async def test_twin_get_and_reported_patches(mqtt_hub: LoopbackHub, device: MqttTransport) -> None:
    twin = await device.get_twin()
    assert twin == {"desired": {"$version": 1}, "reported": {"$version": 1}}
    assert await device.patch_reported({"agent": {"state": "up"}, "n": 1}) == 2
    assert await device.patch_reported({"agent": {"mode": "x"}, "n": None}) == 3
    twin = await device.get_twin()
    assert twin["reported"] == {"agent": {"state": "up", "mode": "x"}, "$version": 3}


async def test_desired_patches_reach_sync_and_async_handlers(
    mqtt_hub: LoopbackHub, device: MqttTransport
) -> None:
    seen: list[tuple[str, dict[str, Any]]] = []

    async def slow(patch: dict[str, Any]) -> None:
        await asyncio.sleep(0.01)
        seen.append(("async", patch))

    device.on_desired(lambda patch: seen.append(("sync", patch)))
    device.on_desired(slow)
    await device.connect()
    assert await mqtt_hub.update_desired("dev1", None, {"interval": 5}) == 2
    assert await mqtt_hub.update_desired("dev1", None, {"interval": None}) == 3
    await mqtt_hub.wait_for(lambda: len(seen) == 4)
    assert seen == [
        ("sync", {"interval": 5, "$version": 2}),
        ("async", {"interval": 5, "$version": 2}),
        ("sync", {"interval": None, "$version": 3}),
        ("async", {"interval": None, "$version": 3}),
    ]


async def test_c2d_messages_reach_the_handler(mqtt_hub: LoopbackHub, device: MqttTransport) -> None:
    received: list[Message] = []
    await device.connect()
    device.on_message(received.append)  # registered after connecting: subscribes then
    await mqtt_hub.wait_for(
        lambda: "devices/dev1/messages/devicebound/#" in mqtt_hub._sessions[("dev1", None)].filters
    )
    sent = Message(b"reboot", {"reason": "a b&c"}, message_id="c2d-1", correlation_id="x")
    await mqtt_hub.send_c2d("dev1", sent)  # returns after the device's PUBACK
    await mqtt_hub.wait_for(lambda: received)
    assert received == [sent]


async def test_c2d_is_only_subscribed_when_someone_listens(
    mqtt_hub: LoopbackHub, device: MqttTransport
) -> None:
    await device.connect()
    assert mqtt_hub._sessions[("dev1", None)].filters == {
        "$iothub/twin/res/#",
        "$iothub/twin/PATCH/properties/desired/#",
    }
    with pytest.raises(NotSupportedError):
        make_transport(mqtt_hub, "dev1", "SecurityModule").on_message(print)


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (429, b"", ThrottledError),
        (401, b"", AuthError),
        (403, b"", AuthError),
        (400, b"malformed twin request", RejectedError),
        (500, b"", TransportError),
        (503, b"busy", TransportError),
    ],
)
async def test_twin_error_statuses(
    mqtt_hub: LoopbackHub, device: MqttTransport, status: int, body: bytes, error: type[Exception]
) -> None:
    mqtt_hub.twin_script.append((status, body))
    with pytest.raises(error) as info:
        await device.patch_reported({"a": 1})
    if isinstance(info.value, RejectedError):
        assert (info.value.reason, info.value.status) == ("malformed twin request", 400)
    assert await device.patch_reported({"a": 1}) == 2  # the connection is still usable


async def test_twin_request_times_out(mqtt_hub: LoopbackHub) -> None:
    transport = make_transport(mqtt_hub, timeout=0.3)
    mqtt_hub.twin_mute = True
    try:
        with pytest.raises(TransportError, match="no twin GET response"):
            await transport.get_twin()
    finally:
        await transport.close()


async def test_invalid_messages_are_rejected_before_sending(
    mqtt_hub: LoopbackHub, device: MqttTransport
) -> None:
    with pytest.raises(RejectedError, match="must not start with"):
        await device.send(Message(b"", {"$.mid": "x"}))
    with pytest.raises(RejectedError, match="over the hub's limit"):
        await device.send(Message(b"x" * 262_145))
    with pytest.raises(RejectedError, match="JSON"):
        await device.patch_reported({"bad": object()})
    assert mqtt_hub.received == []


async def test_lost_connection_fails_then_reconnects(
    mqtt_hub: LoopbackHub, device: MqttTransport
) -> None:
    await device.connect()
    mqtt_hub._sessions[("dev1", None)].end("kicked by the test")
    await mqtt_hub.wait_for(lambda: not device._connected)
    await device.send(Message(b"after"))  # reconnects on demand
    assert [a.closed for a in mqtt_hub.attempts] == ["kicked by the test", None]
    assert mqtt_hub.received[0].message.body == b"after"
    assert len(paho_threads()) == 1


async def test_close_is_clean(mqtt_hub: LoopbackHub, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    transport = make_transport(mqtt_hub)
    await transport.send(Message(b"x"))
    assert len(paho_threads()) == 1
    await transport.close()
    await transport.close()  # idempotent
    assert paho_threads() == []
    await mqtt_hub.wait_for(lambda: mqtt_hub.attempts[0].closed is not None)
    assert mqtt_hub.attempts[0].closed == "disconnect"
    with pytest.raises(ClientClosedError):
        await transport.send(Message(b"y"))
    assert "SharedAccessSignature" not in caplog.text
    assert "sig=" not in caplog.text
    assert "connected to 127.0.0.1" in caplog.text


async def test_a_handler_may_close_the_transport(mqtt_hub: LoopbackHub) -> None:
    transport = make_transport(mqtt_hub)
    closed = asyncio.Event()

    async def close_on_patch(_patch: dict[str, Any]) -> None:
        await transport.close()
        closed.set()

    transport.on_desired(close_on_patch)
    await transport.connect()
    await mqtt_hub.update_desired("dev1", None, {"stop": True})
    await asyncio.wait_for(closed.wait(), 5)
    assert paho_threads() == []
    await transport.close()
