"""Our SDK over HTTPS against the real hub (HubServer: both listeners, one registry, one log)."""

from __future__ import annotations

import pytest

from iotsec.protocol import Message
from iotsec.schema import Login as LoginRow
from iotsec.schema import LoginEvent, decode_message
from iotsec.sdk import AsyncDeviceClient, AuthError, HttpsTransport, RetryPolicy
from iotsec.sdk.connection_string import ConnectionString
from tests.hub.e2e.conftest import RunningHub


def https_client(hub: RunningHub, connection_string: str) -> AsyncDeviceClient:
    transport = HttpsTransport(
        ConnectionString.parse(connection_string), ca_file=hub.ca_file, port=hub.https_port
    )
    return AsyncDeviceClient(transport, retry=RetryPolicy.never())


async def test_sdk_over_https_sends_and_uses_the_twin(hub: RunningHub) -> None:
    cs = hub.add_device("dev1")
    login = LoginEvent.create(
        [
            LoginRow(
                process_id=1,
                operation="PAM:authentication",
                executable="/usr/sbin/sshd",
                result="Fail",
                user_name="pi",
                remote_address="10.0.0.9",
            )
        ]
    )
    async with https_client(hub, cs) as client:
        await client.send_message(Message.json({"t": 1}))
        await client.send_security_message([login])
        assert (await client.get_twin())["reported"]["$version"] == 1
        assert await client.patch_reported({"fw": "2"}) == 2
    [security] = await hub.entries("security")
    assert decode_message(security.record.body).message.events[0].name == "Login"
    assert security.record.header("protocol") == "https"
    assert len(await hub.entries("d2c")) == 1
    assert hub.server.registry.get_twin("dev1").reported["fw"] == "2"


async def test_a_disabled_device_is_refused_over_https_and_logged(hub: RunningHub) -> None:
    cs = hub.add_device("dev1")
    hub.server.registry.update_device("dev1", status="disabled")
    with pytest.raises(AuthError):
        async with https_client(hub, cs) as client:
            await client.send_message(Message(b"x"))
    assert [e for e in await hub.oplog() if e.get("reason") == "disabled-identity"]
