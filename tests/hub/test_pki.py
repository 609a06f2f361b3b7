from __future__ import annotations

import datetime as dt
import ipaddress
import re
import socket
import ssl
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from iotsec.hub.auth import Authenticator
from iotsec.hub.errors import AuthFailureReason, HubConfigError
from iotsec.hub.hubconfig import HubConfiguration
from iotsec.hub.identity import AccessPolicy, Identity, Thumbprints
from iotsec.hub.pki import (
    CA_VALIDITY,
    SERVER_VALIDITY,
    HubPki,
    ensure_owner_credential,
    ensure_pki,
    load_certificates,
)
from iotsec.hub.tls import (
    PeerCertificates,
    ServerTls,
    handshake_failure,
    peer_certificates,
    server_ssl_context,
    trust_device_certificates,
)
from tests.hub.ca import IssuingCa, make_ca
from tests.tls import CertFiles, LoopbackPki

KEY = "c2VjcmV0LWtleS1mb3ItdGhlLW93bmVyLXBvbGljeQ=="


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def cert(path: Path) -> x509.Certificate:
    return load_certificates(path)[0]


def sans(certificate: x509.Certificate) -> set[str]:
    ext = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(name.value) for name in ext}


@pytest.fixture
def hub_pki(tmp_path: Path) -> HubPki:
    return ensure_pki(tmp_path / "data", host_names=["hub.example.net", "10.1.2.3"])


# -- first start and later starts --------------------------------------------------------------


def test_first_start_creates_ca_and_server_certificate(tmp_path: Path) -> None:
    said: list[str] = []
    pki = ensure_pki(tmp_path, host_names=["hub.example.net", "10.1.2.3"], on_progress=said.append)
    tls = tmp_path / "tls"
    assert (pki.cert, pki.key, pki.ca, pki.ca_key) == (
        tls / "server.pem",
        tls / "server.key",
        tls / "ca.pem",
        tls / "ca.key",
    )
    assert mode(tls) == 0o700
    assert mode(tls / "ca.key") == mode(tls / "server.key") == 0o600
    assert mode(tls / "ca.pem") == mode(tls / "server.pem") == 0o644
    assert sorted(p.name for p in tls.iterdir()) == ["ca.key", "ca.pem", "server.key", "server.pem"]
    assert len(said) == 2 and "CA" in said[0] and "server certificate" in said[1]

    ca, server = cert(tls / "ca.pem"), cert(tls / "server.pem")
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert isinstance(ca.public_key(), ec.EllipticCurvePublicKey)
    assert ca.not_valid_after_utc - ca.not_valid_before_utc >= CA_VALIDITY
    server.verify_directly_issued_by(ca)
    assert sans(server) == {"hub.example.net", "localhost", "10.1.2.3", "127.0.0.1", "::1"}
    assert not server.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    eku = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku
    lifetime = server.not_valid_after_utc - server.not_valid_before_utc
    assert dt.timedelta(days=365) <= lifetime <= SERVER_VALIDITY + dt.timedelta(minutes=5)
    assert pki.not_after == server.not_valid_after_utc


def test_later_starts_reuse_the_files(tmp_path: Path, hub_pki: HubPki) -> None:
    before = {p.name: p.read_bytes() for p in (tmp_path / "data" / "tls").iterdir()}
    said: list[str] = []
    again = ensure_pki(
        tmp_path / "data", host_names=["10.1.2.3", "HUB.example.net"], on_progress=said.append
    )
    assert again == hub_pki
    assert {p.name: p.read_bytes() for p in (tmp_path / "data" / "tls").iterdir()} == before
    assert said == []


def test_a_new_host_name_reissues_the_server_certificate_from_the_same_ca(
    tmp_path: Path, hub_pki: HubPki
) -> None:
    assert hub_pki.ca is not None
    ca_before = hub_pki.ca.read_bytes()
    said: list[str] = []
    ensure_pki(tmp_path / "data", host_names=["hub.lan"], on_progress=said.append)
    assert hub_pki.ca.read_bytes() == ca_before
    assert "hub.lan" in sans(cert(hub_pki.cert))
    assert len(said) == 1 and "(new host name hub.lan)" in said[0]


def test_a_server_certificate_near_expiry_is_reissued(tmp_path: Path, hub_pki: HubPki) -> None:
    old = cert(hub_pki.cert)
    later = time.time() + (SERVER_VALIDITY - dt.timedelta(days=10)).total_seconds()
    said: list[str] = []
    renewed = ensure_pki(
        tmp_path / "data",
        host_names=["hub.example.net", "10.1.2.3"],
        on_progress=said.append,
        clock=lambda: later,
    )
    assert renewed.not_after > old.not_valid_after_utc
    assert len(said) == 1 and "expires" in said[0]


@pytest.mark.parametrize("name", ["ca.pem", "ca.key", "server.pem", "server.key"])
def test_a_corrupt_file_is_an_error_naming_it(tmp_path: Path, hub_pki: HubPki, name: str) -> None:
    path = tmp_path / "data" / "tls" / name
    path.write_bytes(b"-----BEGIN NONSENSE-----\nAAAA\n")
    with pytest.raises(HubConfigError, match=re.escape(str(path))):
        ensure_pki(tmp_path / "data", host_names=[])
    assert path.read_bytes().startswith(b"-----BEGIN NONSENSE")  # never overwritten


def test_a_ca_without_its_key_is_an_error(tmp_path: Path, hub_pki: HubPki) -> None:
    assert hub_pki.ca_key is not None
    hub_pki.ca_key.unlink()
    with pytest.raises(HubConfigError, match=r"ca\.key is missing"):
        ensure_pki(tmp_path / "data", host_names=[])


def test_a_server_key_that_does_not_match_is_reissued(tmp_path: Path, hub_pki: HubPki) -> None:
    assert hub_pki.ca_key is not None
    hub_pki.key.write_bytes(hub_pki.ca_key.read_bytes())  # a valid key, but the wrong one
    said: list[str] = []
    pki = ensure_pki(tmp_path / "data", host_names=[], on_progress=said.append)
    assert HubPki.from_files(pki.cert, pki.key)
    assert any("does not match" in line for line in said)


def test_loose_modes_are_tightened(tmp_path: Path, hub_pki: HubPki) -> None:
    tls = tmp_path / "data" / "tls"
    tls.chmod(0o755)
    hub_pki.key.chmod(0o644)
    said: list[str] = []
    ensure_pki(tmp_path / "data", host_names=[], on_progress=said.append)
    assert (mode(tls), mode(hub_pki.key)) == (0o700, 0o600)
    assert len(said) == 2


@pytest.mark.parametrize("bad", ["", "two words", "hüb.example", "a/b"])
def test_host_names_that_cannot_go_in_a_certificate(tmp_path: Path, bad: str) -> None:
    with pytest.raises(HubConfigError):
        ensure_pki(tmp_path, host_names=[bad])


# -- operator-provided certificates ------------------------------------------------------------


def test_from_files(pki: LoopbackPki) -> None:
    hub = HubPki.from_files(pki.server.cert, pki.server.key, pki.ca.cert)
    assert (hub.cert, hub.key, hub.ca, hub.ca_key) == (
        pki.server.cert,
        pki.server.key,
        pki.ca.cert,
        None,
    )


def test_from_files_refuses_a_key_of_another_certificate(pki: LoopbackPki) -> None:
    with pytest.raises(HubConfigError, match="is not the private key"):
        HubPki.from_files(pki.server.cert, pki.ca.key)


def test_from_files_refuses_unreadable_files(pki: LoopbackPki, tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not pem")
    with pytest.raises(HubConfigError, match=r"junk\.pem"):
        HubPki.from_files(junk, pki.server.key)
    with pytest.raises(HubConfigError, match=r"junk\.pem"):
        HubPki.from_files(pki.server.cert, junk)
    with pytest.raises(HubConfigError, match=r"missing\.pem"):
        HubPki.from_files(tmp_path / "missing.pem", pki.server.key)
    with pytest.raises(HubConfigError, match=r"junk\.pem"):
        HubPki.from_files(pki.server.cert, pki.server.key, junk)


def test_from_files_refuses_an_encrypted_key(pki: LoopbackPki, tmp_path: Path) -> None:
    key = serialization.load_pem_private_key(pki.server.key.read_bytes(), None)
    encrypted = tmp_path / "enc.key"
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"pw"),
        )
    )
    with pytest.raises(HubConfigError, match="encrypted"):
        HubPki.from_files(pki.server.cert, encrypted)


def test_from_files_refuses_an_expired_certificate(pki: LoopbackPki) -> None:
    old = pki.device_cert("old-server", expired=True)
    with pytest.raises(HubConfigError, match="expired"):
        HubPki.from_files(old.cert, old.key)


# -- the owner credential ----------------------------------------------------------------------


def test_owner_credential_is_written_private(tmp_path: Path) -> None:
    path = ensure_owner_credential(tmp_path / "data", host_name="hub.example.net", key=KEY)
    assert path == tmp_path / "data" / "owner.credential"
    assert mode(path) == 0o600
    assert path.read_text() == (
        f"HostName=hub.example.net;SharedAccessKeyName=iothubowner;SharedAccessKey={KEY}\n"
    )
    # Writing the same again is a no-op.
    assert ensure_owner_credential(tmp_path / "data", host_name="hub.example.net", key=KEY)


def test_owner_credential_is_not_overwritten_unless_asked(tmp_path: Path) -> None:
    ensure_owner_credential(tmp_path, host_name="hub.example.net", key=KEY)
    new_key = "bmV3LWtleQ=="
    with pytest.raises(HubConfigError, match="different credential") as info:
        ensure_owner_credential(tmp_path, host_name="hub.example.net", key=new_key)
    assert KEY not in str(info.value) and new_key not in str(info.value)
    path = ensure_owner_credential(
        tmp_path, host_name="hub.example.net", key=new_key, overwrite=True
    )
    assert new_key in path.read_text()
    assert mode(path) == 0o600


@pytest.mark.parametrize(
    ("host", "key"), [("hub", "not base64!"), ("hub", ""), ("a;b", KEY), ("", KEY)]
)
def test_owner_credential_refuses_bad_values(tmp_path: Path, host: str, key: str) -> None:
    with pytest.raises(HubConfigError) as info:
        ensure_owner_credential(tmp_path, host_name=host, key=key)
    assert not key or key not in str(info.value)
    assert not (tmp_path / "owner.credential").exists()


# -- TLS ---------------------------------------------------------------------------------------


@dataclass
class Handshake:
    peer: PeerCertificates | None = None
    server_error: ssl.SSLError | None = None
    client_error: Exception | None = None
    reply: bytes = b""


def handshake(
    server: ssl.SSLContext, client: ssl.SSLContext, server_hostname: str = "localhost"
) -> Handshake:
    """One TLS connection on 127.0.0.1: what each side saw."""
    result = Handshake()
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(5)

        def serve() -> None:
            conn, _ = listener.accept()
            conn.settimeout(5)
            with conn:
                try:
                    with server.wrap_socket(conn, server_side=True) as tls:
                        result.peer = peer_certificates(tls)
                        tls.sendall(b"ok")
                except ssl.SSLError as error:
                    result.server_error = error

        thread = threading.Thread(target=serve)
        thread.start()
        try:
            with (
                socket.create_connection(listener.getsockname(), timeout=5) as raw,
                client.wrap_socket(raw, server_hostname=server_hostname) as tls,
            ):
                result.reply = tls.recv(2)
        except (ssl.SSLError, OSError) as error:
            result.client_error = error
        thread.join(10)
    return result


def client_context(hub: HubPki, device: CertFiles | None = None) -> ssl.SSLContext:
    assert hub.ca is not None
    context = ssl.create_default_context(cafile=hub.ca)
    if device is not None:
        context.load_cert_chain(device.cert, device.key)
    return context


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
def test_clients_verify_the_hub_by_name_and_loopback_address(hub_pki: HubPki, host: str) -> None:
    server = server_ssl_context(hub_pki, HubConfiguration())
    result = handshake(server, client_context(hub_pki), host)
    assert (result.reply, result.client_error, result.server_error) == (b"ok", None, None)
    assert result.peer == PeerCertificates(None)


def test_a_name_the_certificate_lacks_fails_verification(hub_pki: HubPki) -> None:
    result = handshake(
        server_ssl_context(hub_pki, HubConfiguration()), client_context(hub_pki), "x.test"
    )
    assert isinstance(result.client_error, ssl.SSLCertVerificationError)


def test_minimum_tls_13_refuses_a_tls_12_client(hub_pki: HubPki) -> None:
    client = client_context(hub_pki)
    client.maximum_version = ssl.TLSVersion.TLSv1_2
    strict = server_ssl_context(hub_pki, HubConfiguration(min_tls_version="1.3"))
    refused = handshake(strict, client)
    assert isinstance(refused.client_error, ssl.SSLError)
    assert refused.server_error is not None and refused.reply == b""
    assert handshake_failure(refused.server_error) is None  # not a certificate problem
    relaxed = server_ssl_context(hub_pki, HubConfiguration(min_tls_version="1.2"))
    assert handshake(relaxed, client).reply == b"ok"


def test_a_ca_signed_client_certificate_reaches_the_server(
    hub_pki: HubPki, pki: LoopbackPki
) -> None:
    device = pki.device_cert("tls-ca-dev")
    server = server_ssl_context(hub_pki, HubConfiguration(), client_ca=[pki.ca.cert])
    result = handshake(server, client_context(hub_pki, device))
    assert result.reply == b"ok" and result.peer is not None and result.peer.leaf is not None
    registry = _Registry(Identity("tls-ca-dev", None, "certificateAuthority", "enabled"))
    auth = Authenticator(
        registry, hub_host="localhost", ca_certificates=load_certificates(pki.ca.cert)
    )
    authenticated = auth.authenticate_certificate(
        result.peer.leaf,
        result.peer.chain,
        device_id="tls-ca-dev",
        module_id=None,
        source_ip="127.0.0.1",
    )
    assert authenticated.method == "x509"


def test_a_registered_self_signed_certificate_reaches_the_server(
    hub_pki: HubPki, pki: LoopbackPki
) -> None:
    device = pki.device_cert("tls-ss-dev", self_signed=True)
    server = server_ssl_context(
        hub_pki, HubConfiguration(), device_certificates=[device.cert.read_bytes()]
    )
    result = handshake(server, client_context(hub_pki, device))
    assert result.reply == b"ok" and result.peer is not None and result.peer.leaf is not None
    registry = _Registry(
        Identity(
            "tls-ss-dev",
            None,
            "selfSigned",
            "enabled",
            thumbprints=Thumbprints(device.thumbprint_sha256),
        )
    )
    auth = Authenticator(registry, hub_host="localhost")
    assert auth.authenticate_certificate(
        result.peer.leaf, device_id="tls-ss-dev", module_id=None, source_ip="127.0.0.1"
    )


def test_an_unregistered_self_signed_certificate_fails_the_handshake(
    hub_pki: HubPki, pki: LoopbackPki
) -> None:
    device = pki.device_cert("tls-stranger", self_signed=True)
    server = server_ssl_context(hub_pki, HubConfiguration(), client_ca=[pki.ca.cert])
    result = handshake(server, client_context(hub_pki, device))
    assert result.reply == b"" and result.server_error is not None
    failure = handshake_failure(result.server_error)
    assert failure is not None and failure.reason is AuthFailureReason.BAD_CERTIFICATE
    assert "self-signed" in failure.detail
    # Registered later: the live context lets it through on the next handshake.
    trust_device_certificates(server, [_der(device)])
    assert handshake(server, client_context(hub_pki, device)).reply == b"ok"


def test_without_client_trust_no_certificate_is_requested(
    hub_pki: HubPki, pki: LoopbackPki
) -> None:
    device = pki.device_cert("tls-unasked")
    result = handshake(
        server_ssl_context(hub_pki, HubConfiguration()), client_context(hub_pki, device)
    )
    assert result.reply == b"ok" and result.peer == PeerCertificates(None)


def test_intermediates_the_client_sends_reach_the_server(hub_pki: HubPki, tmp_path: Path) -> None:
    root, root_key = _make("tls root", ca=True)
    inter, inter_key = _make("tls intermediate", (root, root_key), ca=True)
    leaf, leaf_key = _make("chained-dev", (inter, inter_key))
    root_pem = tmp_path / "root.pem"
    root_pem.write_bytes(root.public_bytes(serialization.Encoding.PEM))
    chain_pem = tmp_path / "chain.pem"
    chain_pem.write_bytes(
        b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (leaf, inter))
    )
    key_pem = tmp_path / "leaf.key"
    key_pem.write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    client = client_context(hub_pki)
    client.load_cert_chain(chain_pem, key_pem)
    server = server_ssl_context(hub_pki, HubConfiguration(), client_ca=[root_pem])
    result = handshake(server, client)
    assert result.reply == b"ok" and result.peer is not None and result.peer.leaf is not None
    assert result.peer.leaf == leaf.public_bytes(serialization.Encoding.DER)
    inter_der = inter.public_bytes(serialization.Encoding.DER)
    # Python 3.11 and 3.12 expose the sent chain only privately; tls.peer_certificates uses it.
    assert result.peer.chain == (inter_der,)
    registry = _Registry(Identity("chained-dev", None, "certificateAuthority", "enabled"))
    auth = Authenticator(registry, hub_host="localhost", ca_certificates=[root])
    assert auth.authenticate_certificate(
        result.peer.leaf,
        result.peer.chain,
        device_id="chained-dev",
        module_id=None,
        source_ip="::1",
    )


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])  # with SNI, and without
def test_server_tls_trusts_exactly_the_cas_it_was_last_given(
    hub_pki: HubPki, tmp_path: Path, host: str
) -> None:
    assert hub_pki.ca is not None
    fleet = make_ca("Fleet CA")
    client = client_context(hub_pki)
    client.load_cert_chain(*fleet.device("fleet-dev", tmp_path))
    tls = ServerTls(hub_pki, HubConfiguration(), client_ca=[hub_pki.ca])
    refused = handshake(tls.context, client, host)
    assert refused.reply == b"" and refused.server_error is not None
    assert handshake_failure(refused.server_error) is not None
    tls.trust([fleet.pem.encode()])
    accepted = handshake(tls.context, client, host)
    assert accepted.reply == b"ok" and accepted.peer is not None and accepted.peer.leaf is not None
    # OpenSSL cannot take a CA out of a store: a new context without it takes over.
    tls.trust([])
    again = handshake(tls.context, client, host)
    assert again.reply == b"" and again.server_error is not None
    # The hub's own CA stays trusted throughout.
    assert hub_pki.ca_key is not None
    ca_key = serialization.load_pem_private_key(hub_pki.ca_key.read_bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    own = client_context(hub_pki)
    own.load_cert_chain(*IssuingCa(cert(hub_pki.ca), ca_key).device("own-dev", tmp_path))
    mine = handshake(tls.context, own, host)
    assert mine.reply == b"ok" and mine.peer is not None and mine.peer.leaf is not None


def test_server_tls_asks_for_certificates_once_it_trusts_a_ca(
    hub_pki: HubPki, tmp_path: Path
) -> None:
    fleet = make_ca("Fleet CA")
    client = client_context(hub_pki)
    client.load_cert_chain(*fleet.device("fleet-dev", tmp_path))
    tls = ServerTls(hub_pki, HubConfiguration())  # an operator certificate, no CA to trust
    assert handshake(tls.context, client).peer == PeerCertificates(None)
    tls.trust([fleet.der])
    asked = handshake(tls.context, client).peer
    assert asked is not None and asked.leaf is not None
    tls.trust([])
    assert handshake(tls.context, client).peer == PeerCertificates(None)
    with pytest.raises(HubConfigError, match="CA certificate 0"):
        tls.trust([b"junk"])


def test_server_tls_applies_the_minimum_version_after_a_change_of_trust(
    hub_pki: HubPki,
) -> None:
    tls = ServerTls(hub_pki, HubConfiguration())
    tls.trust([make_ca("Fleet CA").der])
    tls.configure(HubConfiguration(min_tls_version="1.3"))
    client = client_context(hub_pki)
    client.maximum_version = ssl.TLSVersion.TLSv1_2
    assert handshake(tls.context, client).reply == b""
    tls.trust([])
    assert handshake(tls.context, client).reply == b""
    tls.configure(HubConfiguration(min_tls_version="1.2"))
    assert handshake(tls.context, client).reply == b"ok"


def test_context_errors_name_the_file(hub_pki: HubPki, pki: LoopbackPki, tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("junk")
    with pytest.raises(HubConfigError, match=r"junk\.pem"):
        server_ssl_context(hub_pki, HubConfiguration(), client_ca=[junk])
    mismatched = HubPki(hub_pki.cert, pki.server.key, None, hub_pki.not_after)
    with pytest.raises(HubConfigError, match=r"server\.pem"):
        server_ssl_context(mismatched, HubConfiguration())
    with pytest.raises(HubConfigError, match="device certificate 0"):
        server_ssl_context(hub_pki, HubConfiguration(), device_certificates=[b"junk"])


# -- helpers -----------------------------------------------------------------------------------


class _Registry:
    def __init__(self, identity: Identity) -> None:
        self._identity = identity

    def identity(self, device_id: str, module_id: str | None) -> Identity | None:
        match = (device_id, module_id) == (self._identity.device_id, self._identity.module_id)
        return self._identity if match else None

    def policy(self, name: str) -> AccessPolicy | None:
        return None

    def hub_configuration(self) -> HubConfiguration:
        return HubConfiguration()


def _der(files: CertFiles) -> bytes:
    return cert(files.cert).public_bytes(serialization.Encoding.DER)


def _make(
    subject: str,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None = None,
    *,
    ca: bool = False,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    now = dt.datetime.now(dt.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    issuer_name, issuer_key = (issuer[0].subject, issuer[1]) if issuer else (name, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    return builder.sign(issuer_key, hashes.SHA256()), key


def test_ipv6_loopback_is_in_the_certificate(hub_pki: HubPki) -> None:
    names = cert(hub_pki.cert).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("::1") in names.get_values_for_type(x509.IPAddress)
