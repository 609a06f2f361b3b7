"""The device clients end to end over MQTT: security messages and twins through the loopback hub."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from iotsec.schema import Event, ListeningPorts, ListeningPortsEvent, decode_message
from iotsec.sdk.client import AsyncDeviceClient, DeviceClient
from tests.sdk.loopback_mqtt import LoopbackHub
from tests.sdk.test_mqtt_transport import KEY, paho_threads
from tests.tls import LoopbackPki


def events(count: int) -> list[Event]:
    return [
        ListeningPortsEvent.create(
            [ListeningPorts(protocol="TCP", local_port=str(port), local_address="0.0.0.0")]
        )
        for port in range(22, 22 + count)
    ]


@pytest.fixture
async def mqtt_hub(pki: LoopbackPki) -> AsyncIterator[LoopbackHub]:
    hub = await LoopbackHub(pki).start()
    hub.add_device("dev1", "SecurityModule", key=KEY)
    yield hub
    await hub.close()


async def test_async_client_sends_security_events(mqtt_hub: LoopbackHub) -> None:
    conn = mqtt_hub.connection_string("dev1", "SecurityModule")
    async with AsyncDeviceClient.from_connection_string(
        conn, ca_file=mqtt_hub.pki.ca.cert, port=mqtt_hub.port
    ) as client:
        sent = await client.send_security_message(events(6))
        assert await client.patch_reported({"agentState": "running"}) == 2
    [received] = mqtt_hub.received
    assert received.message == sent[0]
    assert received.message.is_security_message
    assert len(decode_message(received.message.body).message.events) == 6
    assert paho_threads() == []


async def test_blocking_client_over_mqtt(mqtt_hub: LoopbackHub) -> None:
    conn = mqtt_hub.connection_string("dev1", "SecurityModule")

    def use_blocking_client() -> int:
        with DeviceClient.from_connection_string(
            conn, ca_file=mqtt_hub.pki.ca.cert, port=mqtt_hub.port
        ) as client:
            client.send_security_message(events(2))
            return int(client.get_twin()["reported"]["$version"])

    assert await asyncio.to_thread(use_blocking_client) == 1
    assert len(mqtt_hub.received) == 1
    assert paho_threads() == []
