"""X.509 devices, keep-alive and QoS 0 on the MQTT endpoint, end to end."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from iotsec.hub.mqtt.packets import Publish
from tests.hub.e2e.conftest import RunningHub
from tests.hub.e2e.rawmqtt import RawClient, token
from tests.hub.e2e.test_mqtt_e2e import key_of, last_disconnect


def device_certificate(
    hub: RunningHub, device_id: str, directory: Path, *, expired: bool = False
) -> tuple[Path, Path]:
    """A client certificate for ``device_id`` signed by the hub's own CA."""
    pki = hub.server.pki
    assert pki.ca is not None and pki.ca_key is not None
    ca_cert = x509.load_pem_x509_certificate(pki.ca.read_bytes())
    ca_key = serialization.load_pem_private_key(pki.ca_key.read_bytes(), None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    start, end = (
        (now - dt.timedelta(days=3), now - dt.timedelta(days=1))
        if expired
        else (now - dt.timedelta(minutes=5), now + dt.timedelta(days=1))
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, device_id)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .sign(ca_key, hashes.SHA256())
    )  # type: ignore[arg-type]
    cert_path, key_path = directory / f"{device_id}.pem", directory / f"{device_id}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


async def test_a_ca_signed_device_connects_with_its_certificate(
    hub: RunningHub, tmp_path: Path
) -> None:
    hub.server.registry.create_device("cam-1", ca_signed=True)
    client = await RawClient.open(
        hub.mqtt_port, hub.ca_file, cert=device_certificate(hub, "cam-1", tmp_path)
    )
    assert (await client.connect("cam-1", None)).return_code == 0
    await client.send(
        Publish(topic="devices/cam-1/messages/events/", payload=b"{}", qos=1, packet_id=1)
    )
    assert (await client.receive()) is not None
    await client.close()
    assert len(await hub.entries("d2c")) == 1


@pytest.mark.parametrize(
    ("case", "reason"), [("other-cn", "wrong-identity"), ("expired", "bad-certificate")]
)
async def test_a_certificate_for_another_device_or_expired_is_refused(
    hub: RunningHub, tmp_path: Path, case: str, reason: str
) -> None:
    hub.server.registry.create_device("cam-1", ca_signed=True)
    hub.server.registry.create_device("cam-2", ca_signed=True)
    cert = device_certificate(
        hub, "cam-2" if case == "other-cn" else "cam-1", tmp_path, expired=case == "expired"
    )
    try:
        client = await RawClient.open(hub.mqtt_port, hub.ca_file, cert=cert)
        # With TLS 1.3 the hub checks the certificate after the client's side of the
        # handshake is done, so a refused certificate shows up as a close without CONNACK.
        connack = await client.try_connect("cam-1", None)
    except (ConnectionError, OSError):
        connack = None
    assert connack is None or connack.return_code in (4, 5)
    deadline = time.monotonic() + 5
    while not [e for e in await hub.oplog() if e.get("reason") == reason]:
        assert time.monotonic() < deadline, f"no {reason} refusal logged"
        await asyncio.sleep(0.05)


async def test_silence_past_one_and_a_half_keepalives_ends_the_connection(hub: RunningHub) -> None:
    cs = hub.add_device("dev1")
    client = await RawClient.open(hub.mqtt_port, hub.ca_file)
    assert (await client.connect("dev1", token(key_of(cs), "dev1"), keepalive=1)).return_code == 0
    started = time.monotonic()
    assert await client.closed_by_hub(timeout=5)
    assert 1.2 < time.monotonic() - started < 4
    assert "keep-alive" in (await last_disconnect(hub))["reason"]


async def test_qos0_messages_are_ingested_without_an_ack(hub: RunningHub) -> None:
    cs = hub.add_device("dev1")
    client = await RawClient.open(hub.mqtt_port, hub.ca_file)
    await client.connect("dev1", token(key_of(cs), "dev1"))
    await client.send(Publish(topic="devices/dev1/messages/events/a=1", payload=b"{}", qos=0))
    deadline = time.monotonic() + 5
    while not await hub.entries("d2c"):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    [entry] = await hub.entries("d2c")
    assert entry.record.header("app.a") == "1"
    await client.close()
