"""Trusted CA certificates on a running hub: a change applies to new TLS handshakes at once.

A device certificate signed by a CA added through the API connects over MQTT/TLS (and HTTPS)
right after the PUT, and new connections are refused in the TLS handshake right after the
DELETE; the files and the CLI are what an operator sees.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from iotsec.cli import main
from iotsec.hub.mqtt.packets import Publish
from iotsec.hub.server import HubServer
from iotsec.hub.settings import HubSettings
from iotsec.protocol import generate_sas_token
from tests.hub.ca import IssuingCa, make_ca
from tests.hub.e2e.conftest import RunningHub
from tests.hub.e2e.rawmqtt import RawClient
from tests.hub.e2e.test_mqtt_x509_keepalive import device_certificate

HANDSHAKE_REFUSAL = "client certificate refused in the TLS handshake"


def owner_token(hub: RunningHub) -> str:
    policy = hub.server.registry.policy("iothubowner")
    assert policy is not None
    return generate_sas_token(
        "localhost", policy.keys.primary, int(time.time()) + 3600, "iothubowner"
    )


def service(hub: RunningHub, token: str | None = None) -> httpx.AsyncClient:
    """A service-API client of the running hub, over its real HTTPS listener."""
    return httpx.AsyncClient(
        base_url=f"https://localhost:{hub.https_port}",
        verify=ssl.create_default_context(cafile=str(hub.ca_file)),
        headers={"Authorization": token or owner_token(hub)},
    )


def body(ca: IssuingCa) -> dict[str, Any]:
    return {"properties": {"certificate": ca.pem}}


async def handshake_refusals(hub: RunningHub) -> int:
    return len(
        [
            e
            for e in await hub.oplog()
            if e.get("reason") == "bad-certificate" and HANDSHAKE_REFUSAL in str(e.get("detail"))
        ]
    )


async def mqtt_connects(
    hub: RunningHub, device_id: str, cert: tuple[Path, Path]
) -> RawClient | None:
    """The connected client, or None when the hub refused it (the refusal logged first)."""
    before = await handshake_refusals(hub)
    try:
        client = await RawClient.open(hub.mqtt_port, hub.ca_file, cert=cert)
        # With TLS 1.3 the hub checks the client certificate after the client's side of the
        # handshake is done, so a refusal shows up as a close without CONNACK.
        connack = await client.try_connect(device_id, None)
    except (ConnectionError, OSError):
        connack, client = None, None
    if connack is not None and connack.return_code == 0:
        assert client is not None
        return client
    if client is not None:
        await client.close()
    deadline = time.monotonic() + 5
    while await handshake_refusals(hub) == before:
        assert time.monotonic() < deadline, "the refusal was not logged as a handshake refusal"
        await asyncio.sleep(0.05)
    return None


async def test_a_device_of_an_added_ca_connects_at_once_and_not_after_the_delete(
    hub: RunningHub, tmp_path: Path
) -> None:
    hub.server.registry.create_device("cam-1", ca_signed=True)
    fleet = make_ca("Fleet CA")
    cert = fleet.device("cam-1", tmp_path)
    stored = hub.data_dir / "tls" / "client-ca" / "fleet-ca.pem"
    assert await mqtt_connects(hub, "cam-1", cert) is None

    async with service(hub) as api:
        added = await api.put("/certificates/fleet-ca", json=body(fleet))
        assert added.status_code == 201, added.text
        assert stored.exists()
        client = await mqtt_connects(hub, "cam-1", cert)
        assert client is not None
        await client.send(
            Publish(topic="devices/cam-1/messages/events/", payload=b"{}", qos=1, packet_id=1)
        )
        assert await client.receive() is not None

        deleted = await api.delete("/certificates/fleet-ca")
        assert deleted.status_code == 204
        assert not stored.exists()
        assert await mqtt_connects(hub, "cam-1", cert) is None
        # A connection made before the delete keeps going until it ends.
        await client.send(
            Publish(topic="devices/cam-1/messages/events/", payload=b"{}", qos=1, packet_id=2)
        )
        assert await client.receive() is not None
        await client.close()


async def test_https_devices_follow_the_same_trust(hub: RunningHub, tmp_path: Path) -> None:
    hub.server.registry.create_device("cam-2", ca_signed=True)
    fleet = make_ca("Fleet CA")
    device = ssl.create_default_context(cafile=str(hub.ca_file))
    device.load_cert_chain(*fleet.device("cam-2", tmp_path))

    async def send() -> int:
        async with httpx.AsyncClient(
            base_url=f"https://localhost:{hub.https_port}", verify=device
        ) as client:
            answer = await client.post("/devices/cam-2/messages/events", content=b"{}")
            return answer.status_code

    async with service(hub) as api:
        assert (await api.put("/certificates/fleet-ca", json=body(fleet))).status_code == 201
        assert await send() == 204
        assert (await api.delete("/certificates/fleet-ca")).status_code == 204
    with pytest.raises(httpx.TransportError):
        await send()


async def test_the_hub_trusts_its_own_ca_whatever_the_api_does(
    hub: RunningHub, tmp_path: Path
) -> None:
    hub.server.registry.create_device("cam-3", ca_signed=True)
    cert = device_certificate(hub, "cam-3", tmp_path)
    async with service(hub) as api:
        assert (await api.put("/certificates/a", json=body(make_ca("A")))).status_code == 201
        assert (await api.delete("/certificates/a")).status_code == 204
    client = await mqtt_connects(hub, "cam-3", cert)
    assert client is not None
    await client.close()


async def test_only_a_registry_write_policy_changes_the_trust(hub: RunningHub) -> None:
    reader = hub.server.registry.policy("registryRead")
    assert reader is not None
    token = generate_sas_token(
        "localhost", reader.keys.primary, int(time.time()) + 3600, "registryRead"
    )
    async with service(hub, token) as api:
        refused = await api.put("/certificates/evil", json=body(make_ca("Evil CA")))
        assert refused.status_code == 403
        assert (await api.get("/certificates")).json() == {"value": []}
    assert not (hub.data_dir / "tls" / "client-ca").exists()


@pytest.fixture
def settings(tmp_path: Path) -> HubSettings:
    return HubSettings(
        data_dir=tmp_path / "data",
        hub_name="test-hub",
        mqtt_port=0,
        https_port=0,
        local_agent=False,
    )


@pytest.fixture
async def restartable(settings: HubSettings) -> AsyncIterator[list[HubServer]]:
    servers: list[HubServer] = []
    yield servers
    for server in servers:
        if server.mqtt_port:
            await server.stop()


async def test_certificates_are_trusted_again_after_a_restart(
    settings: HubSettings, restartable: list[HubServer], tmp_path: Path
) -> None:
    first = HubServer(settings)
    await first.start()
    restartable.append(first)
    running = RunningHub(first, settings.data_dir)
    running.server.registry.create_device("cam-4", ca_signed=True)
    fleet = make_ca("Fleet CA")
    async with service(running) as api:
        before = (await api.put("/certificates/fleet-ca", json=body(fleet))).json()
    await first.stop()
    restartable.remove(first)

    second = HubServer(settings)
    await second.start()
    restartable.append(second)
    again = RunningHub(second, settings.data_dir)
    async with service(again) as api:
        assert (await api.get("/certificates/fleet-ca")).json() == before
    client = await mqtt_connects(again, "cam-4", fleet.device("cam-4", tmp_path))
    assert client is not None
    await client.close()


async def test_the_certificate_commands(
    hub: RunningHub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet = make_ca("Fleet CA")
    pem_file = tmp_path / "fleet.pem"
    pem_file.write_text(fleet.pem)
    der_file = tmp_path / "vendor.cer"
    vendor = make_ca("Vendor CA")
    der_file.write_bytes(vendor.der)
    data = ["--data-dir", str(hub.data_dir)]

    async def cli(*args: str) -> tuple[int, str, str]:
        # The CLI is synchronous; in a thread, the hub keeps serving on this loop.
        status = await asyncio.to_thread(main, ["certificate", *args, *data])
        out, err = capsys.readouterr()
        return status, out, err

    status, out, _ = await cli("add", "fleet-ca", str(pem_file))
    entry = hub.server.certificates.get("fleet-ca")
    assert status == 0 and out == f"fleet-ca\t{entry.thumbprint}\t{entry.subject}\n"
    assert (await cli("add", "vendor", str(der_file)))[0] == 0
    status, _, err = await cli("add", "fleet-ca", str(der_file))
    assert status == 1 and "already exists" in err and "--replace" in err
    assert hub.server.certificates.get("fleet-ca").certificate == fleet.cert
    assert (await cli("add", "fleet-ca", str(der_file), "--replace"))[0] == 0
    assert hub.server.certificates.get("fleet-ca").certificate == vendor.cert

    status, out, _ = await cli("list")
    assert status == 0
    assert [line.split("\t")[0] for line in out.splitlines()] == ["fleet-ca", "vendor"]
    assert "CN=Vendor CA,O=Example Fleet" in out
    status, out, _ = await cli("show", "vendor")
    assert status == 0 and '"thumbprint"' in out and "BEGIN CERTIFICATE" in out

    not_ca = tmp_path / "device.pem"
    not_ca.write_text(make_ca("dev", ca=False).pem)
    status, _, err = await cli("add", "dev", str(not_ca))
    assert status == 1 and "CA=false" in err
    status, _, err = await cli("add", "x", str(tmp_path / "missing.pem"))
    assert status == 1 and "cannot read" in err

    assert await cli("delete", "fleet-ca") == (0, "fleet-ca deleted\n", "")
    status, _, err = await cli("delete", "fleet-ca")
    assert status == 1 and "404" in err
    status, _, err = await cli("show", ".hidden")
    assert status == 1 and "400" in err and "not starting with '.'" in err
    assert [e.name for e in hub.server.certificates.entries()] == ["vendor"]
