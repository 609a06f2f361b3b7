"""MqttTransport authentication over real TLS: SAS, X.509, wrong CA, token renewal."""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from iotsec.protocol.message import Message
from iotsec.sdk.connection_string import ConnectionString
from iotsec.sdk.errors import AuthError, TransportError
from iotsec.sdk.mqtt import MqttTransport
from tests.sdk.loopback_mqtt import LoopbackHub, write_other_ca
from tests.sdk.test_mqtt_transport import KEY, make_transport, paho_threads
from tests.tls import LoopbackPki


@pytest.fixture
async def mqtt_hub(pki: LoopbackPki) -> AsyncIterator[LoopbackHub]:
    hub = await LoopbackHub(pki).start()
    hub.add_device("dev1", key=KEY)
    yield hub
    await hub.close()


def with_key(hub: LoopbackHub, key: str, device_id: str = "dev1") -> MqttTransport:
    conn = ConnectionString.parse(
        f"HostName={hub.host_name};DeviceId={device_id};SharedAccessKey={key}"
    )
    return MqttTransport(conn, ca_file=hub.pki.ca.cert, port=hub.port, timeout=5.0)


@pytest.mark.parametrize(
    ("device_id", "key", "code"),
    [
        ("dev1", base64.b64encode(b"some other key").decode(), 4),  # wrong signature
        ("nobody", KEY, 5),  # unknown identity
    ],
)
async def test_refused_credentials_are_auth_errors(
    mqtt_hub: LoopbackHub, device_id: str, key: str, code: int
) -> None:
    transport = with_key(mqtt_hub, key, device_id)
    with pytest.raises(AuthError, match="refused"):
        await transport.connect()
    await transport.close()
    assert [a.return_code for a in mqtt_hub.attempts] == [code]
    assert paho_threads() == []


async def test_expired_token_is_refused(mqtt_hub: LoopbackHub) -> None:
    mqtt_hub.clock = lambda: time.time() + 7200  # the hub lives two hours ahead
    transport = make_transport(mqtt_hub)
    with pytest.raises(AuthError, match="Not authorized"):
        await transport.connect()
    await transport.close()
    assert mqtt_hub.attempts[0].return_code == 5


async def test_untrusted_server_certificate_is_a_transport_error(
    mqtt_hub: LoopbackHub, tmp_path: Path
) -> None:
    transport = make_transport(mqtt_hub, ca_file=write_other_ca(tmp_path))
    with pytest.raises(TransportError, match="CERTIFICATE_VERIFY_FAILED"):
        await transport.connect()
    await transport.close()
    assert mqtt_hub.attempts == []


async def test_closed_port_is_a_transport_error(mqtt_hub: LoopbackHub) -> None:
    transport = make_transport(mqtt_hub)
    await mqtt_hub.close()
    with pytest.raises(TransportError, match="cannot connect"):
        await transport.connect()
    await transport.close()


@pytest.mark.parametrize("ca_signed", [True, False])
async def test_x509_client_certificate(
    mqtt_hub: LoopbackHub, pki: LoopbackPki, ca_signed: bool
) -> None:
    device_id = f"x509-{'ca' if ca_signed else 'thumbprint'}"
    cert = pki.device_cert(device_id, self_signed=not ca_signed)
    mqtt_hub.add_device(device_id, cert=cert, ca_signed=ca_signed)
    transport = make_transport(mqtt_hub, device_id, cert_file=cert.cert, key_file=cert.key)
    try:
        await transport.send(Message(b"by certificate"))
    finally:
        await transport.close()
    assert mqtt_hub.attempts[0].return_code == 0
    assert mqtt_hub.received[0].device_id == device_id


async def test_x509_certificate_of_another_device_is_refused(
    mqtt_hub: LoopbackHub, pki: LoopbackPki
) -> None:
    mqtt_hub.add_device("x509-a", cert=pki.device_cert("x509-a"), ca_signed=True)
    other = pki.device_cert("x509-b")  # signed by the same CA, but CN=x509-b
    transport = make_transport(mqtt_hub, "x509-a", cert_file=other.cert, key_file=other.key)
    with pytest.raises(AuthError):
        await transport.connect()
    await transport.close()
    assert mqtt_hub.attempts[0].return_code == 5


async def test_token_is_renewed_by_reconnecting(mqtt_hub: LoopbackHub) -> None:
    transport = make_transport(mqtt_hub, token_ttl=3)  # renewed about one second before expiry
    try:
        await transport.connect()
        await mqtt_hub.wait_for(lambda: len(mqtt_hub.attempts) == 2, timeout=5)
        await mqtt_hub.wait_for(lambda: mqtt_hub.connected("dev1"))
        await transport.send(Message(b"after renewal"))
        first, second = mqtt_hub.attempts
        assert (first.return_code, second.return_code) == (0, 0)
        assert first.closed == "disconnect"  # closed by us in time, not by the hub on expiry
        assert second.closed is None
        assert mqtt_hub.received[0].message.body == b"after renewal"
        assert len(paho_threads()) == 1
    finally:
        await transport.close()
    assert paho_threads() == []


async def test_hub_closes_a_connection_whose_token_expired(mqtt_hub: LoopbackHub) -> None:
    mqtt_hub.clock = lambda: time.time() + 2.6  # the token (ttl 3) expires for the hub at once
    transport = make_transport(mqtt_hub, token_ttl=3)
    try:
        await transport.connect()
        await mqtt_hub.wait_for(lambda: mqtt_hub.attempts[0].closed is not None)
        assert mqtt_hub.attempts[0].closed == "token expired"
        await mqtt_hub.wait_for(lambda: not transport._connected)
        with pytest.raises(AuthError):  # a new token is still expired by the hub's clock
            await transport.send(Message(b"x"))
    finally:
        await transport.close()
