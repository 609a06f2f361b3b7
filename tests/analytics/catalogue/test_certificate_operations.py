"""The catalogue's certificate alerts fire from the operation log a running hub really writes.

``cases.yaml`` feeds the rules observations written by hand; here a hub on loopback adds and
deletes a CA certificate through its service API (and is refused twice each), and its log
entries go through the same enrichment as in ``iotsec up`` into the built-in catalogue.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes

from iotsec.analytics import Observation
from iotsec.analytics.enrich import Enricher, StaticDirectory
from iotsec.analytics.rules import RuleEngine, load_catalogue
from iotsec.analytics.rules.templates import MISSING
from iotsec.hub.server import HubServer
from iotsec.hub.settings import HubSettings
from iotsec.protocol import generate_sas_token
from tests.hub.ca import make_ca
from tests.hub.e2e.conftest import RunningHub
from tests.hub.e2e.test_certificates_e2e import body, service

CERTIFICATE_RULES = {
    "IoT_CertificateSuccessfullyAddedToHub",
    "IoT_CertificateSuccessfullyDeletedFromHub",
    "Hub_CertificateFailedToBeAddedToHub",
    "Hub_CertificateFailedToBeDeletedFromHub",
}


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[RunningHub]:
    settings = HubSettings(
        data_dir=tmp_path / "data",
        hub_name="cert-hub",
        mqtt_port=0,
        https_port=0,
        local_agent=False,
    )
    server = HubServer(settings)
    await server.start()
    try:
        yield RunningHub(server, settings.data_dir)
    finally:
        await server.stop()


async def observations(hub: RunningHub) -> list[Observation]:
    await hub.server.oplog.drain()
    enricher = Enricher(StaticDirectory(), hub=hub.server.settings.resource_id)
    entries = sorted(
        await hub.entries("oplog"), key=lambda e: (e.record.timestamp, e.partition, e.offset)
    )
    return [o for entry in entries for o in enricher.observations(entry)]


def fire(observed: list[Observation]) -> dict[str, list[str]]:
    """The descriptions of the detections of the built-in catalogue, by rule id."""
    engine = RuleEngine(load_catalogue())
    fired: dict[str, list[str]] = {}
    for observation in observed:
        for detection in engine.observe(observation):
            fired.setdefault(detection.rule_id, []).append(detection.description)
    return fired


async def test_adding_and_deleting_a_ca_certificate_raise_the_catalogue_alerts(
    hub: RunningHub,
) -> None:
    fleet = make_ca("Fleet CA")
    async with service(hub) as api:
        assert (await api.put("/certificates/fleet-ca", json=body(fleet))).status_code == 201
        assert (await api.delete("/certificates/fleet-ca")).status_code == 204
    thumbprint = fleet.cert.fingerprint(hashes.SHA1()).hex().upper()  # IoT Hub shows SHA-1

    fired = fire(await observations(hub))
    assert set(fired) & CERTIFICATE_RULES == {
        "IoT_CertificateSuccessfullyAddedToHub",
        "IoT_CertificateSuccessfullyDeletedFromHub",
    }
    [added] = fired["IoT_CertificateSuccessfullyAddedToHub"]
    [deleted] = fired["IoT_CertificateSuccessfullyDeletedFromHub"]
    for text in (added, deleted):
        assert "127.0.0.1" in text and "fleet-ca" in text and thumbprint in text
        assert "CN=Fleet CA" in text and MISSING not in text


@pytest.mark.parametrize("how", ["refused", "unauthorized"])
async def test_failed_attempts_raise_the_failure_alerts_only(hub: RunningHub, how: str) -> None:
    token = None
    if how == "unauthorized":
        reader = hub.server.registry.policy("registryRead")
        assert reader is not None
        token = generate_sas_token(
            "localhost", reader.keys.primary, int(time.time()) + 3600, "registryRead"
        )
    expected = 400 if how == "refused" else 403
    not_a_ca = make_ca("cam-1", ca=False)
    async with service(hub, token) as api:
        assert (await api.put("/certificates/x", json=body(not_a_ca))).status_code == expected
        assert (await api.delete("/certificates/x")).status_code == (
            404 if how == "refused" else 403
        )
    fired = fire(await observations(hub))
    assert set(fired) & CERTIFICATE_RULES == {
        "Hub_CertificateFailedToBeAddedToHub",
        "Hub_CertificateFailedToBeDeletedFromHub",
    }
    for texts in fired.values():
        assert all("127.0.0.1" in text and MISSING not in text for text in texts)
    if how == "refused":
        assert "CA=false" in fired["Hub_CertificateFailedToBeAddedToHub"][0]
    else:
        assert "insufficient-permission" in fired["Hub_CertificateFailedToBeAddedToHub"][0]
