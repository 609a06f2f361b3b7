"""The MQTT endpoint end to end: our SDK and a raw client on real TLS against a real hub."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
import pytest

from iotsec.hub.hubconfig import HubConfiguration, IpFilterRule
from iotsec.hub.mqtt.packets import Puback, Publish, Suback, Subscribe
from iotsec.protocol import Message
from iotsec.schema import (
    ListeningPorts,
    ListeningPortsEvent,
    decode_message,
)
from iotsec.sdk import AsyncDeviceClient, AuthError, MqttTransport, RetryPolicy
from iotsec.sdk.connection_string import ConnectionString
from tests.hub.e2e.conftest import RunningHub
from tests.hub.e2e.rawmqtt import RawClient, token


def sdk_client(hub: RunningHub, connection_string: str) -> AsyncDeviceClient:
    transport = MqttTransport(
        ConnectionString.parse(connection_string),
        ca_file=hub.ca_file,
        port=hub.mqtt_port,
        timeout=10,
    )
    return AsyncDeviceClient(transport, retry=RetryPolicy.never())


def key_of(connection_string: str) -> str:
    return connection_string.rsplit("SharedAccessKey=", 1)[1]


async def wait_for(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def failures(hub: RunningHub, reason: str) -> list[dict[str, Any]]:
    return [e for e in await hub.oplog() if e.get("reason") == reason]


async def last_disconnect(hub: RunningHub, timeout: float = 5.0) -> dict[str, Any]:
    """The newest disconnect entry; sessions log it as they finish, just after closing."""
    deadline = time.monotonic() + timeout
    while True:
        found = [e for e in await hub.oplog() if e["operation"] == "disconnect"]
        if found:
            return found[-1]
        assert time.monotonic() < deadline, "no disconnect was logged"
        await asyncio.sleep(0.05)


# --- our SDK over MQTT ------------------------------------------------------------------------


async def test_sdk_sends_security_and_plain_messages_that_land_in_the_log(hub: RunningHub) -> None:
    cs = hub.add_device("dev1")
    async with sdk_client(hub, cs) as client:
        await client.send_message(Message.json({"temperature": 21}, properties={"k": "v"}))
        sent = await client.send_security_message(
            [ListeningPortsEvent.create([ListeningPorts(protocol="tcp", local_port="22")])]
        )
    [security] = await hub.entries("security")
    [plain] = await hub.entries("d2c")
    assert security.record.key == "dev1"
    message = decode_message(security.record.body).message
    assert message.events[0].payload[0].protocol == "TCP"
    assert security.record.header("message_id") == sent[0].message_id
    assert security.record.header("protocol") == "mqtt"
    assert orjson.loads(plain.record.body) == {"temperature": 21}
    assert plain.record.header("app.k") == "v"
    await last_disconnect(hub)  # accepted messages are counted, and logged when it ends
    entries = await hub.oplog()
    operations = [(e["category"], e["operation"], e["result"]) for e in entries]
    assert ("Connections", "connect", "Success") in operations
    [counted] = [e for e in entries if e["category"] == "DeviceTelemetry"]
    assert counted["result"] == "Success" and counted["deviceId"] == "dev1"
    assert counted["properties"] == {
        "count": "2",
        "bytes": str(len(plain.record.body) + len(sent[0].body)),
        "protocol": "mqtt",
    }


async def test_security_module_connects_and_its_messages_carry_the_module(hub: RunningHub) -> None:
    hub.add_device("dev1")
    cs = hub.module_connection_string("dev1", "azureiotsecurity")
    async with sdk_client(hub, cs) as client:
        await client.send_security_message(
            [ListeningPortsEvent.create([ListeningPorts(protocol="TCP", local_port="22")])]
        )
    [entry] = await hub.entries("security")
    assert entry.record.header("module_id") == "azureiotsecurity"


async def test_twin_get_patch_reported_and_desired_updates(hub: RunningHub) -> None:
    cs = hub.add_device("dev1")
    desired: list[dict[str, Any]] = []
    async with sdk_client(hub, cs) as client:
        client.on_desired(desired.append)
        twin = await client.get_twin()
        assert twin["desired"]["$version"] == 1
        version = await client.patch_reported({"agent": {"version": "1.0"}})
        assert version == 2
        assert hub.server.registry.get_twin("dev1").reported["agent"] == {"version": "1.0"}
        updated = hub.server.registry.patch_desired("dev1", None, {"interval": 30})
        hub.server.mqtt.notify_desired(
            "dev1", None, {"interval": 30, "$version": updated.desired_version}
        )
        await wait_for(lambda: desired)
    assert desired == [{"interval": 30, "$version": 2}]


async def test_c2d_messages_are_delivered_and_completed_on_puback(hub: RunningHub) -> None:
    cs = hub.add_device("dev1")
    received: list[Message] = []
    async with sdk_client(hub, cs) as client:
        client.on_message(received.append)
        await client.get_twin()  # connected and subscribed
        hub.server.c2d.enqueue("dev1", Message(b"reboot", properties={"why": "update"}))
        hub.server.mqtt.notify_c2d("dev1")
        await wait_for(lambda: received)
        await wait_for(lambda: hub.server.c2d.depth("dev1") == 0)
    assert received[0].body == b"reboot"
    assert received[0].properties == {"why": "update"}


async def test_a_new_connection_replaces_the_old_one(hub: RunningHub) -> None:
    cs = hub.add_device("dev1")
    first = await RawClient.open(hub.mqtt_port, hub.ca_file)
    assert (await first.connect("dev1", token(key_of(cs), "dev1"))).return_code == 0
    second = await RawClient.open(hub.mqtt_port, hub.ca_file)
    assert (await second.connect("dev1", token(key_of(cs), "dev1"))).return_code == 0
    assert await first.closed_by_hub()
    await second.send(Subscribe(1, (("$iothub/twin/res/#", 0),)))
    assert isinstance(await second.receive(), Suback)
    await second.close()
    assert any("replaced" in (e.get("reason") or "") for e in await hub.oplog())


# --- authentication failures, each refused and logged with its reason ---------------------------


async def test_wrong_key_is_refused_by_the_sdk_as_an_auth_error(hub: RunningHub) -> None:
    cs = hub.add_device("dev1")
    bad = cs.replace(key_of(cs), "c2VjcmV0LWJ1dC13cm9uZy1rZXktMTIzNDU2Nzg5MA==")
    with pytest.raises(AuthError):
        async with sdk_client(hub, bad) as client:
            await client.get_twin()
    assert await failures(hub, "bad-signature")


@pytest.mark.parametrize(
    ("case", "reason", "code"),
    [
        ("expired", "expired-token", 4),
        ("other-device", "wrong-identity", 4),
        ("disabled", "disabled-identity", 5),
        ("unknown", "unknown-device", 5),
        ("ip-filter", "ip-filtered", 5),
        ("no-password", "no-credentials", 4),
    ],
)
async def test_each_auth_failure_is_refused_and_logged(
    hub: RunningHub, case: str, reason: str, code: int
) -> None:
    cs = hub.add_device("dev1")
    other = hub.add_device("dev2")
    device, password = "dev1", token(key_of(cs), "dev1")
    if case == "expired":
        password = token(key_of(cs), "dev1", ttl=-10)
    elif case == "other-device":
        password = token(key_of(other), "dev2")
    elif case == "disabled":
        hub.server.registry.update_device("dev1", status="disabled")
    elif case == "unknown":
        device, password = "ghost", token(key_of(cs), "ghost")
    elif case == "ip-filter":
        config = HubConfiguration(
            ip_filter_rules=(IpFilterRule("lab", "Accept", "10.0.0.0/8"),),
            ip_filter_default_action="Reject",
        )
        hub.server.registry.set_hub_configuration(config)
    elif case == "no-password":
        password = None
    client = await RawClient.open(hub.mqtt_port, hub.ca_file)
    connack = await client.connect(device, password)
    assert connack.return_code == code
    assert await client.closed_by_hub()
    [failure] = await failures(hub, reason)
    assert failure["deviceId"] == device
    assert failure["category"] == "Connections"
    assert failure["result"] == "Failure"
    assert failure["sourceIp"] == "127.0.0.1"


async def test_a_topic_of_another_device_ends_the_connection(hub: RunningHub) -> None:
    cs = hub.add_device("dev1")
    hub.add_device("dev2")
    client = await RawClient.open(hub.mqtt_port, hub.ca_file)
    assert (await client.connect("dev1", token(key_of(cs), "dev1"))).return_code == 0
    await client.send(
        Publish(topic="devices/dev2/messages/events/", payload=b"x", qos=1, packet_id=1)
    )
    assert await client.closed_by_hub()
    [denied] = await failures(hub, "topic-not-allowed")
    assert denied["deviceId"] == "dev1"
    assert await hub.entries("d2c") == []


async def test_subscribing_to_another_devices_c2d_ends_the_connection(hub: RunningHub) -> None:
    cs = hub.add_device("dev1")
    client = await RawClient.open(hub.mqtt_port, hub.ca_file)
    await client.connect("dev1", token(key_of(cs), "dev1"))
    await client.send(Subscribe(1, (("devices/dev2/messages/devicebound/#", 1),)))
    assert await client.closed_by_hub()
    assert await failures(hub, "topic-not-allowed")


async def test_the_connection_closes_when_its_token_expires(hub: RunningHub) -> None:
    cs = hub.add_device("dev1")
    client = await RawClient.open(hub.mqtt_port, hub.ca_file)
    assert (await client.connect("dev1", token(key_of(cs), "dev1", ttl=2))).return_code == 0
    assert await client.closed_by_hub(timeout=6)
    assert (await last_disconnect(hub))["reason"] == "the SAS token expired"


# --- malformed input: each ends the connection cleanly, is logged, and the hub keeps serving ----


@pytest.mark.parametrize(
    ("case", "data", "reason"),
    [
        ("not-connect-first", b"\xc0\x00", "first packet must be CONNECT"),
        ("remaining-length-over-cap", b"\x10\xff\xff\xff\x7f", "over the"),
        ("malformed", b"\x10\x03\x00\x04M", "malformed"),
    ],
)
async def test_malformed_first_packets_close_cleanly(
    hub: RunningHub, case: str, data: bytes, reason: str
) -> None:
    client = await RawClient.open(hub.mqtt_port, hub.ca_file)
    await client.send_raw(data)
    assert await client.closed_by_hub()
    deadline = time.monotonic() + 5
    while not (
        refused := [
            e for e in await hub.oplog() if e["operation"] == "connect" and e["result"] == "Failure"
        ]
    ):
        assert time.monotonic() < deadline, "the refusal was not logged"
        await asyncio.sleep(0.05)
    assert reason in refused[0]["reason"], refused[0]
    assert refused[0]["sourceIp"] == "127.0.0.1"
    await still_serving(hub)


async def still_serving(hub: RunningHub) -> None:
    cs = hub.add_device(f"probe-{time.monotonic_ns()}")
    device = cs.split("DeviceId=")[1].split(";")[0]
    probe = await RawClient.open(hub.mqtt_port, hub.ca_file)
    assert (await probe.connect(device, token(key_of(cs), device))).return_code == 0
    await probe.close()


@pytest.mark.parametrize(
    ("case", "data", "reason"),
    [
        ("invalid-utf8", b"\x30\x07\x00\x03a\xffb" + b"xx", "UTF-8"),
        ("wildcard-in-topic", b"\x30\x05\x00\x03a/+", "wildcard"),
        ("qos2", b"\x34\x07\x00\x03a/b\x00\x01", "QoS 2"),
    ],
)
async def test_malformed_packets_after_connect_end_the_session_with_the_reason(
    hub: RunningHub, case: str, data: bytes, reason: str
) -> None:
    cs = hub.add_device("dev1")
    client = await RawClient.open(hub.mqtt_port, hub.ca_file)
    assert (await client.connect("dev1", token(key_of(cs), "dev1"))).return_code == 0
    await client.send_raw(data)
    assert await client.closed_by_hub()
    disconnect = await last_disconnect(hub)
    assert disconnect["result"] == "Failure"
    assert reason in disconnect["reason"], disconnect
    await still_serving(hub)


async def test_invalid_security_message_is_acked_dead_lettered_and_logged(hub: RunningHub) -> None:
    cs = hub.add_device("dev1")
    client = await RawClient.open(hub.mqtt_port, hub.ca_file)
    await client.connect("dev1", token(key_of(cs), "dev1"))
    topic = "devices/dev1/messages/events/%24.ifid=urn%3Aazureiot%3ASecurity%3ASecurityAgent%3A1"
    await client.send(Publish(topic=topic, payload=b'{"AgentVersion": 1}', qos=1, packet_id=7))
    assert await client.receive() == Puback(7)
    await client.close()
    [letter] = hub.server.deadletters.list(device_id="dev1")
    assert "AgentVersion: expected a string" in letter.reason
    assert len(await hub.entries("deadletter")) == 1
    rejected = [
        e
        for e in await hub.oplog()
        if e["category"] == "DeviceTelemetry" and e["result"] == "Failure"
    ]
    assert "AgentVersion" in rejected[0]["reason"]


async def test_over_the_rate_limit_the_device_is_disconnected_with_the_reason(
    hub: RunningHub,
) -> None:
    hub.server.limiter.configure(rate=1, burst=2)
    cs = hub.add_device("dev1")
    client = await RawClient.open(hub.mqtt_port, hub.ca_file)
    await client.connect("dev1", token(key_of(cs), "dev1"))
    for packet_id in range(1, 5):
        await client.send(
            Publish(
                topic="devices/dev1/messages/events/", payload=b"{}", qos=1, packet_id=packet_id
            )
        )
    assert await client.closed_by_hub()
    assert len(await hub.entries("d2c")) == 2
    assert "over its limit" in (await last_disconnect(hub))["reason"]
