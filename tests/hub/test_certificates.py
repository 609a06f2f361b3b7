"""The trusted CA certificates: validation, the file store, and the service API's /certificates."""

from __future__ import annotations

import base64
import doctest
import os
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from iotsec.hub import certificates as certificates_module
from iotsec.hub.certificates import (
    MAX_CERTIFICATE_CHARS,
    CaCertificateStore,
    parse_ca_certificate,
)
from iotsec.hub.errors import (
    AuthFailure,
    CertificateNotFound,
    HubConfigError,
    InvalidCertificate,
    PreconditionFailed,
)
from tests.hub.ca import make_ca
from tests.hub.conftest import HttpHub

FLEET = make_ca("Fleet CA")
OTHER = make_ca("Vendor CA")


def body(pem: str) -> dict[str, Any]:
    return {"properties": {"certificate": pem}}


def test_doctests() -> None:
    assert doctest.testmod(certificates_module).failed == 0


# --- validation ----------------------------------------------------------------------------


def test_a_ca_certificate_parses_from_pem_and_from_base64_der() -> None:
    now = FLEET.cert.not_valid_before_utc.timestamp() + 60
    assert parse_ca_certificate(FLEET.pem, now=now) == FLEET.cert
    cer = base64.b64encode(FLEET.der).decode()
    assert parse_ca_certificate(cer, now=now) == FLEET.cert
    # Explanatory text around the PEM (as openssl x509 -text writes it) is allowed.
    assert parse_ca_certificate(f"Subject: CN=Fleet CA\n{FLEET.pem}\n", now=now) == FLEET.cert


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (make_ca("device", ca=False).pem, "basicConstraints says CA=false"),
        (make_ca("legacy", ca=None).pem, "no basicConstraints extension"),
        (make_ca("old", expired=True).pem, "expired at"),
        (FLEET.pem + OTHER.pem, "holds 2 PEM blocks"),
        (FLEET.key_pem + FLEET.pem, "holds a private key"),
        (FLEET.key_pem, "holds a private key"),
        ("-----BEGIN X509 CRL-----\nMIIB\n-----END X509 CRL-----\n", "not a CERTIFICATE"),
        (FLEET.pem.replace("\n-----END", "AAAA\n-----END"), "not a valid PEM X.509"),
        ("not a certificate at all", "neither a PEM certificate nor the base64"),
        (base64.b64encode(b"\x30\x03\x02\x01\x01").decode(), "neither a PEM certificate"),
        ("  ", "is empty"),
        ("A" * (MAX_CERTIFICATE_CHARS + 1), "over the 16384-character limit"),
    ],
    ids=[
        "end-entity",
        "no-constraints",
        "expired",
        "two-certificates",
        "key-and-cert",
        "key-only",
        "crl",
        "corrupt-pem",
        "text",
        "not-der",
        "blank",
        "too-long",
    ],
)
def test_what_cannot_be_a_trusted_ca_is_refused_with_the_reason(text: str, reason: str) -> None:
    with pytest.raises(InvalidCertificate) as caught:
        parse_ca_certificate(text, now=FLEET.cert.not_valid_before_utc.timestamp() + 60)
    assert caught.value.field == "properties.certificate"
    assert reason in caught.value.reason
    # The submitted text is never repeated: a pasted key must not reach a log.
    assert not [line for line in text.splitlines() if len(line) > 16 and line in str(caught.value)]


@pytest.mark.parametrize(
    "name", ["..", ".hidden", "../ca", "a/b", "a b", "", "x" * 65, "ca.pem\n", "é"]
)
def test_unsafe_names_are_refused(tmp_path: Path, name: str) -> None:
    store = CaCertificateStore(tmp_path / "client-ca")
    with pytest.raises(InvalidCertificate) as caught:
        store.put(name, FLEET.cert)
    assert caught.value.field == "name"
    assert not (tmp_path / "client-ca").exists() or list((tmp_path / "client-ca").iterdir()) == []


# --- the store -----------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1_750_000_000.0

    def __call__(self) -> float:
        return self.now


def test_the_store_writes_one_file_per_certificate_and_reads_them_back(tmp_path: Path) -> None:
    clock = Clock()
    changes: list[list[str]] = []
    directory = tmp_path / "client-ca"

    def changed(entries: Any) -> None:
        changes.append([e.name for e in entries])

    store = CaCertificateStore(directory, on_change=changed, clock=clock)
    added, created = store.put("fleet-ca", FLEET.cert)
    assert (
        created
        and added.certificate == FLEET.cert
        and added.subject == "CN=Fleet CA,O=Example Fleet"
    )
    assert (directory / "fleet-ca.pem").exists()
    assert oct(directory.stat().st_mode & 0o777) == "0o700"
    assert [p.name for p in directory.iterdir()] == ["fleet-ca.pem"]  # no temp file left
    # What OpenSSL and cryptography read: the PEM, after the two lines of times.
    assert x509.load_pem_x509_certificates((directory / "fleet-ca.pem").read_bytes()) == [
        FLEET.cert
    ]

    clock.now += 3600
    replaced, created = store.put("fleet-ca", OTHER.cert, if_match=added.etag)
    assert not created and replaced.etag != added.etag
    assert replaced.created == added.created and replaced.updated > added.updated
    store.put("vendor.ca_2", FLEET.cert)
    assert changes == [["fleet-ca"], ["fleet-ca"], ["fleet-ca", "vendor.ca_2"]]

    # A new store (the next start) reads the same certificates, times and etags.
    again = CaCertificateStore(directory)
    assert again.entries() == store.entries()
    assert again.trusted() == [OTHER.cert, FLEET.cert]

    deleted = store.delete("fleet-ca", if_match=replaced.etag)
    assert deleted.certificate == OTHER.cert
    assert not (directory / "fleet-ca.pem").exists()
    assert changes[-1] == ["vendor.ca_2"]


def test_etags_guard_replace_and_delete(tmp_path: Path) -> None:
    store = CaCertificateStore(tmp_path / "client-ca")
    entry, _ = store.put("fleet-ca", FLEET.cert)
    with pytest.raises(PreconditionFailed):
        store.put("fleet-ca", OTHER.cert, if_match="stale")
    with pytest.raises(PreconditionFailed):
        store.put("fleet-ca", OTHER.cert, create_only=True)
    with pytest.raises(PreconditionFailed):
        store.put("new-ca", OTHER.cert, if_match=entry.etag)
    with pytest.raises(PreconditionFailed):
        store.delete("fleet-ca", if_match="stale")
    with pytest.raises(CertificateNotFound):
        store.delete("nope")
    assert store.get("fleet-ca") == entry


def test_files_put_there_by_hand_are_read_at_start(tmp_path: Path) -> None:
    directory = tmp_path / "client-ca"
    directory.mkdir()
    (directory / "bundle.pem").write_text(FLEET.pem + OTHER.pem)
    stamp = 1_700_000_000
    os.utime(directory / "bundle.pem", (stamp, stamp))
    (directory / "notes.txt").write_text("not a certificate, not a .pem")
    [entry] = CaCertificateStore(directory).entries()
    assert entry.name == "bundle" and entry.certificates == (FLEET.cert, OTHER.cert)
    assert entry.created.timestamp() == entry.updated.timestamp() == stamp
    (directory / "broken.pem").write_text("junk")
    with pytest.raises(HubConfigError, match=r"broken\.pem is not a PEM certificate file"):
        CaCertificateStore(directory)


# --- the service API -----------------------------------------------------------------------


def store_of(http_hub: HttpHub) -> CaCertificateStore:
    return http_hub.context.certificates


async def test_put_get_list_replace_and_delete(
    http_hub: HttpHub, http_client: httpx.AsyncClient
) -> None:
    owner = http_hub.service()
    assert (await http_client.get("/certificates", headers=owner)).json() == {"value": []}

    added = await http_client.put("/certificates/fleet-ca", json=body(FLEET.pem), headers=owner)
    assert added.status_code == 201, added.text
    shape = added.json()
    assert added.headers["etag"] == f'"{shape["etag"]}"'
    assert shape["name"] == "fleet-ca"
    assert shape["type"] == "Microsoft.Devices/IotHubs/Certificates"
    assert shape["id"].endswith("/Microsoft.Devices/IotHubs/testhub/certificates/fleet-ca")
    properties = shape["properties"]
    assert properties["subject"] == "CN=Fleet CA,O=Example Fleet"
    assert properties["thumbprint"] == store_of(http_hub).get("fleet-ca").thumbprint
    assert len(properties["thumbprint"]) == 40
    assert properties["isVerified"] is True
    assert parsedate_to_datetime(properties["expiry"]) == FLEET.cert.not_valid_after_utc
    assert properties["expiry"].endswith(" GMT")
    assert properties["created"] == properties["updated"]
    assert properties["certificate"] == FLEET.pem

    fetched = await http_client.get("/certificates/fleet-ca", headers=owner)
    assert fetched.json() == shape and fetched.headers["etag"] == added.headers["etag"]
    listed = await http_client.get("/certificates", headers=owner)
    assert listed.json() == {"value": [shape]}

    http_hub.clock.advance(5)
    stale = {**owner, "If-Match": '"AAAAAAAAAAA="'}
    refused = await http_client.put("/certificates/fleet-ca", json=body(OTHER.pem), headers=stale)
    assert refused.status_code == 412
    current = {**owner, "If-Match": added.headers["etag"]}
    replaced = await http_client.put(
        "/certificates/fleet-ca", json=body(OTHER.pem), headers=current
    )
    assert replaced.status_code == 200
    assert replaced.json()["properties"]["subject"] == "CN=Vendor CA,O=Example Fleet"
    assert replaced.json()["properties"]["created"] == properties["created"]
    assert replaced.json()["etag"] != shape["etag"]

    gone = await http_client.delete("/certificates/fleet-ca", headers=current)
    assert gone.status_code == 412
    deleted = await http_client.delete(
        "/certificates/fleet-ca", headers={**owner, "If-Match": replaced.headers["etag"]}
    )
    assert deleted.status_code == 204
    assert (await http_client.get("/certificates", headers=owner)).json() == {"value": []}
    for missing in (
        await http_client.get("/certificates/fleet-ca", headers=owner),
        await http_client.delete("/certificates/fleet-ca", headers=owner),
    ):
        assert missing.status_code == 404
        assert missing.json()["Message"].startswith("ErrorCode:CertificateNotFound;")


async def test_the_legacy_body_base64_der_and_create_only(
    http_hub: HttpHub, http_client: httpx.AsyncClient
) -> None:
    owner = http_hub.service()
    cer = base64.b64encode(FLEET.der).decode()
    legacy = await http_client.put("/certificates/a", json={"certificate": cer}, headers=owner)
    assert legacy.status_code == 201 and legacy.json()["properties"]["certificate"] == FLEET.pem
    create_only = {**owner, "If-None-Match": "*"}
    taken = await http_client.put("/certificates/a", json=body(OTHER.pem), headers=create_only)
    assert taken.status_code == 412 and "already exists" in taken.json()["Message"]
    fresh = await http_client.put("/certificates/b", json=body(OTHER.pem), headers=create_only)
    assert fresh.status_code == 201


@pytest.mark.parametrize(
    ("name", "payload", "field", "reason"),
    [
        ("fleet", body(make_ca("dev", ca=False).pem), "properties.certificate", "CA=false"),
        ("fleet", body(FLEET.pem + OTHER.pem), "properties.certificate", "2 PEM blocks"),
        ("fleet", body(FLEET.key_pem + FLEET.pem), "properties.certificate", "private key"),
        ("fleet", body("garbage"), "properties.certificate", "neither a PEM"),
        ("fleet", {"properties": {}}, "properties.certificate", "is required"),
        ("fleet", {"certificate": 42}, "certificate", "is required"),
        ("fleet", {}, "properties", "is required"),
        ("fleet", {"name": "other", **body(FLEET.pem)}, "name", "another certificate"),
        (
            "fleet",
            {"properties": {"certificate": FLEET.pem, "isVerified": False}},
            "properties.isVerified",
            "no proof-of-possession",
        ),
        (".hidden", body(FLEET.pem), "name", "not starting with '.'"),
        ("a%20b", body(FLEET.pem), "name", "1-64 of"),
        ("x" * 65, body(FLEET.pem), "name", "1-64 of"),
    ],
)
async def test_bad_puts_are_400_naming_the_field(
    http_hub: HttpHub,
    http_client: httpx.AsyncClient,
    name: str,
    payload: dict[str, Any],
    field: str,
    reason: str,
) -> None:
    answer = await http_client.put(
        f"/certificates/{name}", json=payload, headers=http_hub.service()
    )
    assert answer.status_code == 400, answer.text
    error = answer.json()
    assert error["Message"].startswith("ErrorCode:ArgumentInvalid;")
    assert error["field"] == field and reason in error["reason"]
    assert "BEGIN" not in answer.text  # the certificate or key is never echoed
    assert store_of(http_hub).entries() == []


async def test_traversal_never_reaches_the_file_system(
    http_hub: HttpHub, http_client: httpx.AsyncClient, http_dir: Path
) -> None:
    owner = http_hub.service()
    for path in ("/certificates/..%2Fowner", "/certificates/%2E%2E", "/certificates/.."):
        answer = await http_client.put(path, json=body(FLEET.pem), headers=owner)
        assert answer.status_code in (400, 404, 405), (path, answer.status_code)
    assert store_of(http_hub).entries() == []
    assert sorted(p.name for p in http_dir.rglob("*.pem")) == []


async def test_bodies_over_the_limit_are_413(
    http_hub: HttpHub, http_client: httpx.AsyncClient
) -> None:
    huge = body("A" * 70_000)
    answer = await http_client.put("/certificates/big", json=huge, headers=http_hub.service())
    assert answer.status_code == 413
    long = body("A" * 20_000)
    answer = await http_client.put("/certificates/big", json=long, headers=http_hub.service())
    assert answer.status_code == 400 and "16384-character limit" in answer.json()["reason"]


async def test_reads_need_registry_read_and_changes_registry_write(
    http_hub: HttpHub, http_client: httpx.AsyncClient
) -> None:
    reader = http_hub.service("registryRead")
    writer = http_hub.service("registryReadWrite")
    assert (await http_client.get("/certificates")).status_code == 401
    assert (await http_client.put("/certificates/a", json=body(FLEET.pem))).status_code == 401
    bad = {"Authorization": http_hub.service_token(ttl=-10)}
    assert (await http_client.delete("/certificates/a", headers=bad)).status_code == 401
    assert (await http_client.get("/certificates", headers=reader)).status_code == 200
    refused = await http_client.put("/certificates/a", json=body(FLEET.pem), headers=reader)
    assert refused.status_code == 403
    assert (await http_client.delete("/certificates/a", headers=reader)).status_code == 403
    device_policy = http_hub.service("device")
    assert (await http_client.get("/certificates", headers=device_policy)).status_code == 403
    assert store_of(http_hub).entries() == []
    added = await http_client.put("/certificates/a", json=body(FLEET.pem), headers=writer)
    assert added.status_code == 201
    assert (await http_client.delete("/certificates/a", headers=writer)).status_code == 204


async def test_changes_and_refusals_are_in_the_operation_log(
    http_hub: HttpHub, http_client: httpx.AsyncClient
) -> None:
    owner = http_hub.service()
    await http_client.get("/certificates", headers=owner)
    await http_client.put("/certificates/fleet-ca", json=body(FLEET.pem), headers=owner)
    await http_client.put("/certificates/fleet-ca", json=body(OTHER.pem), headers=owner)
    await http_client.put("/certificates/bad", json=body("garbage"), headers=owner)
    await http_client.delete("/certificates/fleet-ca", headers=owner)
    await http_client.delete("/certificates/fleet-ca", headers=owner)
    reader = http_hub.service("registryRead")
    await http_client.put("/certificates/evil", json=body(FLEET.pem), headers=reader)
    entries = await http_hub.oplog()
    changes = [e for e in entries if e.category == "Configurations"]
    assert [(e.operation, e.result) for e in changes] == [
        ("createOrUpdateCertificate", "Success"),
        ("createOrUpdateCertificate", "Success"),
        ("createOrUpdateCertificate", "Failure"),
        ("deleteCertificate", "Success"),
        ("deleteCertificate", "Failure"),
    ]
    assert CaCertificateStore(store_of(http_hub).directory).entries() == []
    first, second, bad, deleted, missing = changes
    assert first.properties == {
        "policy": "iothubowner",
        "name": "fleet-ca",
        "action": "create",
        "subject": "CN=Fleet CA,O=Example Fleet",
        "thumbprint": first.properties["thumbprint"],
    }
    assert second.properties["action"] == "replace"
    assert second.properties["subject"] == "CN=Vendor CA,O=Example Fleet"
    assert deleted.properties["thumbprint"] == second.properties["thumbprint"]
    assert deleted.properties["subject"] == "CN=Vendor CA,O=Example Fleet"
    assert first.properties["thumbprint"] != second.properties["thumbprint"]
    for entry in changes:
        assert entry.protocol == "service" and entry.source_ip == "127.0.0.1"
        assert entry.device_id is None
    assert bad.reason is not None and "neither a PEM" in bad.reason
    assert bad.properties["name"] == "bad"
    assert missing.reason == "certificate 'fleet-ca' not found"
    [refusal] = [e for e in entries if e.operation == "authenticate"]
    assert refusal.result == "Failure" and refusal.reason == "insufficient-permission"
    assert refusal.properties["operation"] == "createOrUpdateCertificate"
    # Nothing of a certificate body lands in the log.
    assert not any("BEGIN" in str(e) for e in entries)


async def test_a_change_reaches_the_authenticator_at_once(
    http_hub: HttpHub, http_client: httpx.AsyncClient, tmp_path: Path
) -> None:
    http_hub.registry.create_device("cam-1", ca_signed=True)
    cert_path, _ = FLEET.device("cam-1", tmp_path)
    der = x509.load_pem_x509_certificate(cert_path.read_bytes()).public_bytes(Encoding.DER)
    auth = http_hub.context.authenticator

    def check() -> None:
        auth.authenticate_certificate(der, device_id="cam-1", module_id=None, source_ip="10.0.0.1")

    with pytest.raises(AuthFailure, match="not a trusted CA"):
        check()
    owner = http_hub.service()
    await http_client.put("/certificates/fleet-ca", json=body(FLEET.pem), headers=owner)
    check()
    await http_client.delete("/certificates/fleet-ca", headers=owner)
    with pytest.raises(AuthFailure, match="not a trusted CA"):
        check()
