from __future__ import annotations

import random
import threading
from typing import Any

import orjson
import pytest

from iotsec.schema import ListeningPorts, ListeningPortsEvent
from iotsec.sdk import (
    AsyncDeviceClient,
    AuthError,
    ClientClosedError,
    DeviceClient,
    HttpsTransport,
    MemoryTransport,
    Message,
    NotSupportedError,
    RejectedError,
    RetryPolicy,
    ThrottledError,
    TransportError,
    make_transport,
)
from iotsec.sdk.mqtt import MqttTransport
from tests.sdk.conftest import RecordingSleep
from tests.sdk.loopback_https import LoopbackHttpsHub
from tests.tls import LoopbackPki

AGENT = "b97faf0a-0f57-471f-9dab-46a8e1764946"


def policy(**kwargs: Any) -> RetryPolicy:
    return RetryPolicy(
        **{
            "initial_delay": 1.0,
            "max_delay": 8.0,
            "max_attempts": 5,
            "rng": random.Random(11),
            **kwargs,
        }
    )


def events(count: int) -> list[Any]:
    return [
        ListeningPortsEvent.create([ListeningPorts(protocol="TCP", local_port=str(p))])
        for p in range(count)
    ]


async def test_retries_transport_errors_with_backoff_and_reconnects(
    sleep: RecordingSleep,
) -> None:
    transport = MemoryTransport()
    client = AsyncDeviceClient(transport, retry=policy(), sleep=sleep)
    await client.connect()
    transport.fail_next(TransportError("reset"), times=3)
    await client.send_message(Message(b"x"))
    mirror = random.Random(11)
    assert sleep.delays == [mirror.uniform(0, c) for c in (1.0, 2.0, 4.0)]
    assert [m.body for m in transport.sent] == [b"x"]
    # Each failure dropped the link: the send failed, then two reconnects, then both worked.
    assert transport.calls == ["connect", "send", "connect", "connect", "connect", "send"]
    assert transport.connect_count == 2
    await client.close()


async def test_gives_up_after_max_attempts(sleep: RecordingSleep) -> None:
    transport = MemoryTransport()
    async with AsyncDeviceClient(transport, retry=policy(max_attempts=3), sleep=sleep) as client:
        transport.fail_next(TransportError("down"), times=5)
        with pytest.raises(TransportError, match="down"):
            await client.get_twin()
    assert len(sleep.delays) == 2


async def test_deadline_uses_the_injected_clock(sleep: RecordingSleep) -> None:
    now = [0.0]

    async def advancing_sleep(delay: float) -> None:
        sleep.delays.append(delay)
        now[0] += delay

    transport = MemoryTransport()
    client = AsyncDeviceClient(
        transport,
        retry=policy(jitter=False, max_attempts=None, deadline=10.0),
        sleep=advancing_sleep,
        clock=lambda: now[0],
    )
    transport.fail_next(TransportError("down"), times=100)
    with pytest.raises(TransportError):
        await client.connect()
    assert sleep.delays == [1.0, 2.0, 4.0]  # the next wait (8 s) would pass the 10 s deadline


@pytest.mark.parametrize(
    "error", [AuthError("denied", status=401), RejectedError("bad", status=400)]
)
async def test_auth_and_rejection_are_not_retried(
    sleep: RecordingSleep,
    error: Exception,
) -> None:
    transport = MemoryTransport()
    async with AsyncDeviceClient(transport, retry=policy(), sleep=sleep) as client:
        transport.fail_next(error)  # type: ignore[arg-type]
        with pytest.raises(type(error)):
            await client.patch_reported({"a": 1})
    assert sleep.delays == []
    assert transport.calls.count("patch_reported") == 1


async def test_honours_retry_after(sleep: RecordingSleep) -> None:
    transport = MemoryTransport()
    async with AsyncDeviceClient(transport, retry=policy(), sleep=sleep) as client:
        transport.fail_next(ThrottledError("429", retry_after=20.0))
        await client.send_message(Message(b"x"))
    assert sleep.delays == [20.0]


async def test_security_messages_are_split_validated_and_all_sent(sleep: RecordingSleep) -> None:
    transport = MemoryTransport()
    async with AsyncDeviceClient(
        transport, agent_id=AGENT, agent_version="3.0.0", max_message_bytes=2000, sleep=sleep
    ) as client:
        transport.fail_next(TransportError("blip"))
        sent = await client.send_security_message(events(40))
    assert len(sent) > 1
    assert transport.sent == sent
    bodies = [orjson.loads(m.body) for m in sent]
    assert {b["AgentId"] for b in bodies} == {AGENT}
    assert {b["AgentVersion"] for b in bodies} == {"3.0.0"}
    assert sum(len(b["Events"]) for b in bodies) == 40
    assert all(m.is_security_message for m in sent)


async def test_an_oversized_event_sends_nothing(sleep: RecordingSleep) -> None:
    transport = MemoryTransport()
    async with AsyncDeviceClient(transport, max_message_bytes=300, sleep=sleep) as client:
        with pytest.raises(RejectedError, match="event 0"):
            await client.send_security_message(events(3))
    assert transport.sent == []


async def test_a_fresh_agent_id_by_default() -> None:
    first = AsyncDeviceClient(MemoryTransport())
    second = AsyncDeviceClient(MemoryTransport())
    assert first.agent_id != second.agent_id and len(first.agent_id) == 36


async def test_handlers_pass_through_to_the_transport() -> None:
    transport = MemoryTransport()
    seen: list[Any] = []
    async with AsyncDeviceClient(transport) as client:
        client.on_desired(seen.append)
        client.on_message(seen.append)
        await transport.push_desired({"interval": 5})
        await transport.push_message(Message(b"c2d"))
    assert seen[0] == {"interval": 5, "$version": 2}
    assert seen[1].body == b"c2d"


async def test_everything_fails_after_close() -> None:
    transport = MemoryTransport()
    client = AsyncDeviceClient(transport)
    await client.connect()
    await client.close()
    await client.close()  # idempotent
    assert client.closed and not transport.connected
    with pytest.raises(ClientClosedError):
        await client.send_message(Message(b"x"))
    with pytest.raises(ClientClosedError):
        await client.send_security_message(events(1))
    with pytest.raises(ClientClosedError):
        await client.get_twin()
    with pytest.raises(ClientClosedError):
        client.on_message(print)


async def test_close_during_a_retry_stops_it() -> None:
    transport = MemoryTransport()
    clients: list[AsyncDeviceClient] = []

    async def close_while_waiting(delay: float) -> None:
        await clients[0].close()

    client = AsyncDeviceClient(transport, retry=policy(), sleep=close_while_waiting)
    clients.append(client)
    transport.fail_next(TransportError("down"))
    with pytest.raises(ClientClosedError):
        await client.connect()


def test_from_connection_string_builds_the_named_transport(pki: LoopbackPki) -> None:
    cs = "HostName=localhost;DeviceId=dev1;SharedAccessKey=a2V5"
    https = AsyncDeviceClient.from_connection_string(
        cs, transport="https", port=8443, agent_id=AGENT
    )
    assert isinstance(https.transport, HttpsTransport)
    assert https.transport.base_url == "https://localhost:8443"
    assert https.agent_id == AGENT
    assert isinstance(make_transport(cs), MqttTransport)
    with pytest.raises(ValueError, match="unknown transport"):
        make_transport(cs, transport="amqp")  # type: ignore[arg-type]


def test_sync_client_against_the_https_hub(hub: LoopbackHttpsHub, pki: LoopbackPki) -> None:
    cs = hub.add_device("dev-sync")
    hub.answer_next(500)
    with DeviceClient.from_connection_string(
        cs,
        transport="https",
        ca_file=pki.ca.cert,
        port=hub.port,
        agent_id=AGENT,
        sleep=RecordingSleep(),
    ) as client:
        client.send_message(Message(b"hello", properties={"kind": "greeting"}))
        [security] = client.send_security_message(events(3))
        assert client.patch_reported({"fw": "2.0"}) == 2
        assert client.get_twin()["reported"] == {"fw": "2.0", "$version": 2}
        with pytest.raises(NotSupportedError):
            client.on_desired(print)
    assert [r.body for r in hub.received] == [b"hello", security.body]
    assert hub.received[0].app_properties == {"kind": "greeting"}
    with pytest.raises(ClientClosedError):
        client.send_message(Message(b"late"))
    client.close()  # idempotent


def test_sync_client_errors_and_handlers_run_on_its_thread() -> None:
    transport = MemoryTransport()
    client = DeviceClient(transport, retry=RetryPolicy.never())
    threads: list[str] = []
    client.on_message(lambda message: threads.append(threading.current_thread().name))
    try:
        client.connect()
        transport.fail_next(AuthError("denied"))
        with pytest.raises(AuthError):
            client.send_message(Message(b"x"))
        client._run(lambda: transport.push_message(Message(b"c2d")))
    finally:
        client.close()
    assert threads == ["iotsec-device-client"]
    assert "iotsec-device-client" not in {thread.name for thread in threading.enumerate()}
    with pytest.raises(ClientClosedError):
        client.get_twin()


def test_sync_client_refuses_blocking_calls_from_its_own_handlers() -> None:
    transport = MemoryTransport()
    client = DeviceClient(transport)
    client.on_message(lambda message: client.get_twin())  # would wait on its own thread
    try:
        with pytest.raises(RuntimeError, match="deadlock"):
            client._run(lambda: transport.push_message(Message(b"c2d")))
    finally:
        client.close()
