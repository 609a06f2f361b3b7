from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from iotsec.hub.auth import Authenticated, Authenticator
from iotsec.hub.errors import AuthFailure, AuthFailureReason
from iotsec.hub.hubconfig import HubConfiguration, IpFilterRule
from iotsec.hub.identity import (
    DEFAULT_POLICIES,
    AccessPolicy,
    Identity,
    Permission,
    SymmetricKeys,
    Thumbprints,
)
from iotsec.protocol.sas import generate_sas_token, resource_uri
from tests.tls import CertFiles, LoopbackPki

R = AuthFailureReason
HOST = "hub.example.net"
NOW = 1_700_000_000
LATER = NOW + 3600
IP = "192.0.2.10"

DEV_KEYS = SymmetricKeys.generate()
MOD_KEYS = SymmetricKeys.generate()
OTHER_KEY = SymmetricKeys.generate().primary
POLICY_KEYS = {name: SymmetricKeys.generate() for name in DEFAULT_POLICIES}


@dataclass
class FakeRegistry:
    """An in-memory IdentityLookup."""

    identities: dict[tuple[str, str | None], Identity] = field(default_factory=dict)
    policies: dict[str, AccessPolicy] = field(default_factory=dict)
    config: HubConfiguration = field(default_factory=HubConfiguration)

    def add(self, identity: Identity) -> Identity:
        self.identities[identity.device_id, identity.module_id] = identity
        return identity

    def identity(self, device_id: str, module_id: str | None) -> Identity | None:
        return self.identities.get((device_id, module_id))

    def policy(self, name: str) -> AccessPolicy | None:
        return self.policies.get(name)

    def hub_configuration(self) -> HubConfiguration:
        return self.config


def sas_identity(device_id: str, module_id: str | None = None, **kw: object) -> Identity:
    keys = MOD_KEYS if module_id else DEV_KEYS
    return Identity(device_id, module_id, "sas", kw.get("status", "enabled"), keys=keys)  # type: ignore[arg-type]


@pytest.fixture
def registry() -> FakeRegistry:
    reg = FakeRegistry()
    reg.add(sas_identity("dev1"))
    reg.add(sas_identity("dev1", "agent"))
    reg.add(sas_identity("dev2"))
    reg.add(Identity("off", None, "sas", "disabled", keys=DEV_KEYS))
    reg.add(Identity("x509dev", None, "selfSigned", "enabled", thumbprints=Thumbprints("AA")))
    reg.add(Identity("nokeys", None, "sas", "enabled"))
    for name, perms in DEFAULT_POLICIES.items():
        reg.policies[name] = AccessPolicy(name, perms, POLICY_KEYS[name])
    return reg


@pytest.fixture
def auth(registry: FakeRegistry) -> Authenticator:
    return Authenticator(registry, hub_host=HOST, clock=lambda: NOW)


def device_token(
    device: str = "dev1", module: str | None = None, *, key: str | None = None, se: int = LATER
) -> str:
    uri = resource_uri(HOST, device, module)
    return generate_sas_token(uri, key or (MOD_KEYS if module else DEV_KEYS).primary, se)


def policy_token(
    uri: str, policy: str = "device", *, key: str | None = None, se: int = LATER
) -> str:
    return generate_sas_token(uri, key or POLICY_KEYS[policy].primary, se, policy)


def refused(
    auth: Authenticator,
    token: str,
    device: str = "dev1",
    module: str | None = None,
    ip: str = IP,
) -> AuthFailure:
    with pytest.raises(AuthFailure) as info:
        auth.authenticate_sas(token, device_id=device, module_id=module, source_ip=ip)
    return info.value


# -- device tokens -----------------------------------------------------------------------------


def test_device_token_with_the_primary_key(auth: Authenticator) -> None:
    result = auth.authenticate_sas(device_token(), device_id="dev1", module_id=None, source_ip=IP)
    assert result.identity.key == "dev1"
    assert (result.method, result.expires_at, result.policy_name) == ("sas", LATER, None)


def test_device_token_with_the_secondary_key(auth: Authenticator) -> None:
    token = device_token(key=DEV_KEYS.secondary)
    assert auth.authenticate_sas(token, device_id="dev1", module_id=None, source_ip=IP)


def test_module_token_with_the_module_key(auth: Authenticator) -> None:
    token = device_token("dev1", "agent")
    result = auth.authenticate_sas(token, device_id="dev1", module_id="agent", source_ip=IP)
    assert result.identity.key == "dev1/agent"


def test_module_token_signed_with_the_device_key_is_refused(auth: Authenticator) -> None:
    failure = refused(auth, device_token("dev1", "agent", key=DEV_KEYS.primary), "dev1", "agent")
    assert failure.reason is R.BAD_SIGNATURE
    assert (failure.device_id, failure.module_id) == ("dev1", "agent")


def test_bad_signature(auth: Authenticator) -> None:
    failure = refused(auth, device_token(key=OTHER_KEY))
    assert failure.reason is R.BAD_SIGNATURE
    assert "neither the primary nor the secondary" in failure.detail


@pytest.mark.parametrize("se", [NOW, NOW - 1])
def test_expired_token(auth: Authenticator, se: int) -> None:
    failure = refused(auth, device_token(se=se))
    assert failure.reason is R.EXPIRED_TOKEN
    assert "2023-11-14T22:13:20" in failure.detail  # NOW, so the operator sees both times


@pytest.mark.parametrize(
    "token",
    [
        "",
        "Bearer abc",
        "SharedAccessSignature sr=a",  # no sig, no se
        f"SharedAccessSignature sr={HOST}&sig=abc&se=soon",
        f"SharedAccessSignature sr={HOST}&sig=abc&se=1&extra=1",
    ],
)
def test_malformed_token(auth: Authenticator, token: str) -> None:
    failure = refused(auth, token)
    assert failure.reason is R.MALFORMED_TOKEN
    assert failure.device_id == "dev1"


@pytest.mark.parametrize(
    ("token", "device", "module"),
    [
        (device_token("dev2"), "dev1", None),  # another device's token
        (device_token("dev1", "agent"), "dev1", None),  # a module token for its device
        (device_token("dev1"), "dev1", "agent"),  # a device token for its module
        (device_token("DEV1"), "dev1", None),  # ids are case-sensitive
        (
            generate_sas_token("other.example.net/devices/dev1", DEV_KEYS.primary, LATER),
            "dev1",
            None,
        ),
        (generate_sas_token(HOST, DEV_KEYS.primary, LATER), "dev1", None),  # no prefix for keys
        (generate_sas_token(f"{HOST}/devices", DEV_KEYS.primary, LATER), "dev1", None),
        (generate_sas_token(f"{HOST}/devices/dev1/x", DEV_KEYS.primary, LATER), "dev1", None),
    ],
)
def test_token_for_another_identity(
    auth: Authenticator, token: str, device: str, module: str | None
) -> None:
    assert refused(auth, token, device, module).reason is R.WRONG_IDENTITY


def test_host_compares_case_insensitively_and_a_trailing_slash_is_ignored(
    auth: Authenticator,
) -> None:
    for uri in ("HUB.Example.NET/devices/dev1", f"{HOST}/devices/dev1/"):
        token = generate_sas_token(uri, DEV_KEYS.primary, LATER)
        assert auth.authenticate_sas(token, device_id="dev1", module_id=None, source_ip=IP)


def test_signature_covers_the_resource_as_the_device_encoded_it(auth: Authenticator) -> None:
    # Some SDKs encode '/' as %2f; the signature is over those exact bytes.
    encoded = quote(f"{HOST}/devices/dev1", safe="").replace("%2F", "%2f")
    digest = hmac.digest(
        base64.b64decode(DEV_KEYS.primary), f"{encoded}\n{LATER}".encode(), hashlib.sha256
    )
    sig = quote(base64.b64encode(digest).decode(), safe="")
    token = f"SharedAccessSignature sr={encoded}&sig={sig}&se={LATER}"
    assert auth.authenticate_sas(token, device_id="dev1", module_id=None, source_ip=IP)


def test_another_hubs_alias_is_accepted_when_configured(registry: FakeRegistry) -> None:
    auth = Authenticator(registry, hub_host=HOST, host_aliases=["localhost"], clock=lambda: NOW)
    token = generate_sas_token("localhost/devices/dev1", DEV_KEYS.primary, LATER)
    assert auth.authenticate_sas(token, device_id="dev1", module_id=None, source_ip=IP)


def test_unknown_device(auth: Authenticator) -> None:
    failure = refused(auth, device_token("ghost"), "ghost")
    assert (failure.reason, failure.device_id) == (R.UNKNOWN_DEVICE, "ghost")


def test_unknown_module(auth: Authenticator) -> None:
    assert refused(auth, device_token("dev1", "nope"), "dev1", "nope").reason is R.UNKNOWN_DEVICE


def test_disabled_identity(auth: Authenticator) -> None:
    assert refused(auth, device_token("off"), "off").reason is R.DISABLED_IDENTITY


def test_x509_identity_presenting_a_token(auth: Authenticator) -> None:
    failure = refused(auth, device_token("x509dev"), "x509dev")
    assert failure.reason is R.NO_CREDENTIALS
    assert "X.509" in failure.detail


def test_identity_without_keys(auth: Authenticator) -> None:
    assert refused(auth, device_token("nokeys"), "nokeys").reason is R.BAD_SIGNATURE


def test_ip_filtered(registry: FakeRegistry, auth: Authenticator) -> None:
    registry.config = HubConfiguration(
        ip_filter_rules=(IpFilterRule("lab", "Reject", "192.0.2.0/24"),)
    )
    failure = refused(auth, device_token(), ip="192.0.2.99")
    assert (failure.reason, failure.device_id) == (R.IP_FILTERED, "dev1")
    with pytest.raises(AuthFailure) as info:
        auth.check_ip("192.0.2.1")
    assert (info.value.reason, info.value.device_id) == (R.IP_FILTERED, None)
    with pytest.raises(AuthFailure) as info:
        auth.check_ip("192.0.2.1", device_id="dev1", module_id="agent")
    assert (info.value.device_id, info.value.module_id) == ("dev1", "agent")
    auth.check_ip("198.51.100.1")  # outside the rule: the default action accepts


def test_checks_run_in_the_documented_order(registry: FakeRegistry, auth: Authenticator) -> None:
    # Each token fails two checks; the earlier one is reported.
    assert refused(auth, "junk", "ghost").reason is R.MALFORMED_TOKEN
    assert refused(auth, device_token("dev2", se=NOW), "dev1").reason is R.WRONG_IDENTITY
    assert refused(auth, device_token("ghost", se=NOW), "ghost").reason is R.EXPIRED_TOKEN
    assert refused(auth, device_token("off", key=OTHER_KEY), "off").reason is R.DISABLED_IDENTITY
    registry.config = HubConfiguration(ip_filter_default_action="Reject")
    assert refused(auth, "junk").reason is R.IP_FILTERED


# -- hub-level policy tokens for devices -------------------------------------------------------


@pytest.mark.parametrize(
    "uri", [HOST, f"{HOST}/devices", f"{HOST}/devices/dev1", f"{HOST.upper()}/devices/dev1"]
)
def test_policy_token_scoped_to_a_prefix(auth: Authenticator, uri: str) -> None:
    result = auth.authenticate_sas(
        policy_token(uri), device_id="dev1", module_id=None, source_ip=IP
    )
    assert (result.identity.key, result.policy_name) == ("dev1", "device")


def test_policy_token_for_a_module(auth: Authenticator) -> None:
    for uri in (f"{HOST}/devices/dev1", f"{HOST}/devices/dev1/modules/agent"):
        result = auth.authenticate_sas(
            policy_token(uri), device_id="dev1", module_id="agent", source_ip=IP
        )
        assert result.identity.key == "dev1/agent"


@pytest.mark.parametrize(
    "uri",
    [
        f"{HOST}/devices/dev",  # a prefix by characters, not by segment
        f"{HOST}/devices/dev2",
        f"{HOST}/devices/dev1/messages/events",  # narrower than the connection
        "other.example.net",
    ],
)
def test_policy_token_not_covering_the_identity(auth: Authenticator, uri: str) -> None:
    assert refused(auth, policy_token(uri)).reason is R.WRONG_IDENTITY


def test_policy_token_without_device_connect(auth: Authenticator) -> None:
    failure = refused(auth, policy_token(HOST, "service"))
    assert failure.reason is R.INSUFFICIENT_PERMISSION
    assert "DeviceConnect" in failure.detail


def test_policy_token_with_device_connect_from_iothubowner(auth: Authenticator) -> None:
    token = policy_token(HOST, "iothubowner")
    result = auth.authenticate_sas(token, device_id="dev1", module_id=None, source_ip=IP)
    assert result.policy_name == "iothubowner"


def test_policy_token_with_a_bad_signature_is_refused_before_permissions(
    auth: Authenticator,
) -> None:
    # A caller without the key learns nothing about what the policy may do.
    assert refused(auth, policy_token(HOST, "service", key=OTHER_KEY)).reason is R.BAD_SIGNATURE
    assert refused(auth, policy_token(HOST, "device", key=OTHER_KEY)).reason is R.BAD_SIGNATURE


def test_policy_token_secondary_key(auth: Authenticator) -> None:
    token = policy_token(HOST, key=POLICY_KEYS["device"].secondary)
    assert auth.authenticate_sas(token, device_id="dev1", module_id=None, source_ip=IP)


def test_policy_token_unknown_policy(auth: Authenticator) -> None:
    failure = refused(auth, generate_sas_token(HOST, OTHER_KEY, LATER, "nosuch"))
    assert failure.reason is R.BAD_SIGNATURE
    assert "nosuch" in failure.detail


def test_policy_token_acts_for_an_x509_device(auth: Authenticator) -> None:
    # A DeviceConnect policy is a trusted token issuer for any device (protocol gateways).
    result = auth.authenticate_sas(
        policy_token(HOST), device_id="x509dev", module_id=None, source_ip=IP
    )
    assert result.policy_name == "device"


def test_policy_token_still_needs_an_enabled_registered_identity(auth: Authenticator) -> None:
    assert refused(auth, policy_token(HOST), "ghost").reason is R.UNKNOWN_DEVICE
    assert refused(auth, policy_token(HOST), "off").reason is R.DISABLED_IDENTITY


def test_a_stored_key_that_cannot_sign_is_a_refusal(registry: FakeRegistry) -> None:
    registry.add(Identity("bad", None, "sas", "enabled", keys=SymmetricKeys("%%", "%%")))
    auth = Authenticator(registry, hub_host=HOST, clock=lambda: NOW)
    failure = refused(auth, device_token("bad"), "bad")
    assert (failure.reason, failure.device_id) == (R.BAD_SIGNATURE, "bad")
    assert "regenerate" in failure.detail


# -- service tokens ----------------------------------------------------------------------------

PERMISSIONS: tuple[Permission, ...] = (
    "RegistryRead",
    "RegistryWrite",
    "ServiceConnect",
    "DeviceConnect",
)


@pytest.mark.parametrize("policy", sorted(DEFAULT_POLICIES))
@pytest.mark.parametrize("permission", PERMISSIONS)
def test_service_token_permissions(
    auth: Authenticator, policy: str, permission: Permission
) -> None:
    token = policy_token(HOST, policy)
    if permission in DEFAULT_POLICIES[policy]:
        granted = auth.authenticate_service(token, permission=permission, source_ip=IP)
        assert granted.name == policy
    else:
        with pytest.raises(AuthFailure) as info:
            auth.authenticate_service(token, permission=permission, source_ip=IP)
        assert info.value.reason is R.INSUFFICIENT_PERMISSION
        assert permission in info.value.detail
        assert info.value.device_id is None


def service_refusal(
    auth: Authenticator, token: str, *, resource: str | None = None, ip: str = IP
) -> AuthFailure:
    with pytest.raises(AuthFailure) as info:
        auth.authenticate_service(token, permission="RegistryRead", source_ip=ip, resource=resource)
    return info.value


def test_service_refuses_a_device_token(auth: Authenticator) -> None:
    assert service_refusal(auth, device_token()).reason is R.INSUFFICIENT_PERMISSION


def test_service_token_scope(auth: Authenticator) -> None:
    scoped = policy_token(f"{HOST}/devices", "registryRead")
    assert service_refusal(auth, scoped).reason is R.WRONG_IDENTITY
    assert auth.authenticate_service(
        scoped, permission="RegistryRead", source_ip=IP, resource="devices/dev1/twin"
    )
    assert service_refusal(auth, scoped, resource="jobs").reason is R.WRONG_IDENTITY
    other = policy_token("other.example.net", "registryRead")
    assert service_refusal(auth, other).reason is R.WRONG_IDENTITY


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("SharedAccessSignature nope", R.MALFORMED_TOKEN),
        (policy_token(HOST, "registryRead", se=NOW), R.EXPIRED_TOKEN),
        (policy_token(HOST, "registryRead", key=OTHER_KEY), R.BAD_SIGNATURE),
        (generate_sas_token(HOST, OTHER_KEY, LATER, "nosuch"), R.BAD_SIGNATURE),
    ],
)
def test_service_refusals(auth: Authenticator, token: str, reason: AuthFailureReason) -> None:
    assert service_refusal(auth, token).reason is reason


def test_service_ip_filtered(registry: FakeRegistry, auth: Authenticator) -> None:
    registry.config = HubConfiguration(ip_filter_default_action="Reject")
    assert service_refusal(auth, policy_token(HOST, "iothubowner")).reason is R.IP_FILTERED


# -- secrets stay out of refusals --------------------------------------------------------------


def test_refusals_never_carry_the_token_or_a_key(registry: FakeRegistry) -> None:
    auth = Authenticator(registry, hub_host=HOST, clock=lambda: NOW)
    keys = [
        DEV_KEYS.primary,
        DEV_KEYS.secondary,
        OTHER_KEY,
        *(k.primary for k in POLICY_KEYS.values()),
    ]
    cases = [
        (device_token(key=OTHER_KEY), "dev1"),
        (device_token(se=NOW), "dev1"),
        (device_token("dev2"), "dev1"),
        (device_token("ghost"), "ghost"),
        (policy_token(HOST, "service"), "dev1"),
        (policy_token(HOST, key=OTHER_KEY), "dev1"),
    ]
    for token, device in cases:
        failure = refused(auth, token, device)
        sig = token.split("sig=")[1].split("&")[0]
        text = f"{failure} {failure.detail} {failure!r} {failure.args}"
        assert token not in text
        assert sig not in text and sig.replace("%3D", "=") not in text
        assert not any(key in text for key in keys)
        # Nothing chained either: a parse error's text would carry token fragments.
        assert failure.__cause__ is None
        assert failure.__context__ is None or failure.__suppress_context__


def test_authenticated_repr_hides_keys(auth: Authenticator) -> None:
    result = auth.authenticate_sas(device_token(), device_id="dev1", module_id=None, source_ip=IP)
    assert isinstance(result, Authenticated)
    assert DEV_KEYS.primary not in repr(result)
    assert DEV_KEYS.secondary not in repr(result)


# -- X.509 -------------------------------------------------------------------------------------


def der(files: CertFiles | x509.Certificate) -> bytes:
    cert = (
        files
        if isinstance(files, x509.Certificate)
        else x509.load_pem_x509_certificate(files.cert.read_bytes())
    )
    return cert.public_bytes(serialization.Encoding.DER)


def ca_cert(pki: LoopbackPki) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pki.ca.cert.read_bytes())


def make_cert(
    subject: str,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None = None,
    *,
    ca: bool = False,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    now = dt.datetime.now(dt.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    issuer_name, issuer_key = issuer or (name, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
    )
    if ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
    return builder.sign(issuer_key, hashes.SHA256()), key


@dataclass(frozen=True)
class Issued:
    """A device certificate read back at once: the helper names files by device id, so a
    later certificate for the same id overwrites the file."""

    files: CertFiles
    der: bytes

    @classmethod
    def of(cls, files: CertFiles) -> Issued:
        return cls(files, der(files))


X509Setup = tuple[FakeRegistry, dict[str, Issued], x509.Certificate]


@pytest.fixture
def x509_registry(pki: LoopbackPki) -> X509Setup:
    certs = {
        "ss": Issued.of(pki.device_cert("ss1", self_signed=True)),
        "ss-old": Issued.of(pki.device_cert("ss1-old", self_signed=True)),
        "ca": Issued.of(pki.device_cert("cadev")),
        "ca-other": Issued.of(pki.device_cert("someone-else")),
        "ca-expired": Issued.of(pki.device_cert("cadev", expired=True)),
    }
    ca_key = serialization.load_pem_private_key(pki.ca.key.read_bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    module_cert, _ = make_cert("cadev/agent", (ca_cert(pki).subject, ca_key))
    reg = FakeRegistry()
    thumbs = Thumbprints(certs["ss"].files.thumbprint_sha1, certs["ss-old"].files.thumbprint_sha256)
    reg.add(Identity("ss1", None, "selfSigned", "enabled", thumbprints=thumbs))
    reg.add(Identity("cadev", None, "certificateAuthority", "enabled"))
    reg.add(Identity("cadev", "agent", "certificateAuthority", "enabled"))
    reg.add(Identity("caoff", None, "certificateAuthority", "disabled"))
    reg.add(sas_identity("sasdev"))
    return reg, certs, module_cert


def cert_auth(reg: FakeRegistry, pki: LoopbackPki, **kw: object) -> Authenticator:
    return Authenticator(reg, hub_host=HOST, ca_certificates=[ca_cert(pki)], **kw)  # type: ignore[arg-type]


def cert_refusal(
    auth: Authenticator,
    cert: bytes,
    device: str,
    module: str | None = None,
    chain: tuple[bytes, ...] = (),
) -> AuthFailure:
    with pytest.raises(AuthFailure) as info:
        auth.authenticate_certificate(cert, chain, device_id=device, module_id=module, source_ip=IP)
    return info.value


def test_self_signed_primary_sha1_and_secondary_sha256(
    pki: LoopbackPki, x509_registry: X509Setup
) -> None:
    reg, certs, _ = x509_registry
    auth = cert_auth(reg, pki)
    for name in ("ss", "ss-old"):
        result = auth.authenticate_certificate(
            certs[name].der, device_id="ss1", module_id=None, source_ip=IP
        )
        assert (result.identity.key, result.method) == ("ss1", "x509")
        leaf = x509.load_der_x509_certificate(certs[name].der)
        assert result.expires_at == int(leaf.not_valid_after_utc.timestamp())


def test_thumbprints_compare_case_and_separator_insensitively(
    pki: LoopbackPki, x509_registry: X509Setup
) -> None:
    reg, certs, _ = x509_registry
    sha = certs["ss"].files.thumbprint_sha256.lower()
    colons = ":".join(sha[i : i + 2] for i in range(0, len(sha), 2))
    reg.add(Identity("ss1", None, "selfSigned", "enabled", thumbprints=Thumbprints(colons)))
    assert cert_auth(reg, pki).authenticate_certificate(
        certs["ss"].der, device_id="ss1", module_id=None, source_ip=IP
    )


def test_thumbprint_mismatch(pki: LoopbackPki, x509_registry: X509Setup) -> None:
    reg, certs, _ = x509_registry
    failure = cert_refusal(cert_auth(reg, pki), certs["ca"].der, "ss1")
    assert failure.reason is R.BAD_CERTIFICATE
    assert "thumbprint" in failure.detail


def test_ca_signed(pki: LoopbackPki, x509_registry: X509Setup) -> None:
    reg, certs, _ = x509_registry
    result = cert_auth(reg, pki).authenticate_certificate(
        certs["ca"].der, device_id="cadev", module_id=None, source_ip=IP
    )
    assert (result.identity.key, result.method, result.policy_name) == ("cadev", "x509", None)


def test_ca_signed_module_uses_device_slash_module_as_cn(
    pki: LoopbackPki, x509_registry: X509Setup
) -> None:
    reg, certs, module_cert = x509_registry
    auth = cert_auth(reg, pki)
    result = auth.authenticate_certificate(
        der(module_cert), device_id="cadev", module_id="agent", source_ip=IP
    )
    assert result.identity.key == "cadev/agent"
    # The device's own certificate does not stand for its module.
    assert cert_refusal(auth, certs["ca"].der, "cadev", "agent").reason is R.WRONG_IDENTITY


def test_ca_signed_cn_mismatch(pki: LoopbackPki, x509_registry: X509Setup) -> None:
    reg, certs, _ = x509_registry
    failure = cert_refusal(cert_auth(reg, pki), certs["ca-other"].der, "cadev")
    assert failure.reason is R.WRONG_IDENTITY
    assert "someone-else" in failure.detail and "cadev" in failure.detail


def test_expired_certificate(pki: LoopbackPki, x509_registry: X509Setup) -> None:
    reg, certs, _ = x509_registry
    failure = cert_refusal(cert_auth(reg, pki), certs["ca-expired"].der, "cadev")
    assert failure.reason is R.BAD_CERTIFICATE
    assert "expired" in failure.detail


def test_not_yet_valid_certificate(pki: LoopbackPki, x509_registry: X509Setup) -> None:
    reg, certs, _ = x509_registry
    auth = cert_auth(reg, pki, clock=lambda: time.time() - 86_400)
    failure = cert_refusal(auth, certs["ca"].der, "cadev")
    assert failure.reason is R.BAD_CERTIFICATE
    assert "not valid before" in failure.detail


def test_unknown_issuer(pki: LoopbackPki, x509_registry: X509Setup) -> None:
    reg, _, _ = x509_registry
    stranger_ca, stranger_key = make_cert("stranger CA", ca=True)
    stranger, _ = make_cert("cadev", (stranger_ca.subject, stranger_key))
    failure = cert_refusal(cert_auth(reg, pki), der(stranger), "cadev")
    assert failure.reason is R.BAD_CERTIFICATE
    assert "not a trusted CA" in failure.detail


def test_same_named_ca_with_another_key(
    pki: LoopbackPki, x509_registry: X509Setup, tmp_path: Path
) -> None:
    reg, certs, _ = x509_registry
    # Another "iotsec test CA": its certificates do not verify against ours, and ours are
    # still accepted when both are trusted (a renewed CA keeps its name).
    twin = LoopbackPki.create(tmp_path)
    stranger = der(twin.device_cert("cadev"))
    failure = cert_refusal(cert_auth(reg, pki), stranger, "cadev")
    assert failure.reason is R.BAD_CERTIFICATE
    assert "does not verify" in failure.detail
    both = Authenticator(reg, hub_host=HOST, ca_certificates=[ca_cert(twin), ca_cert(pki)])
    for cert in (stranger, certs["ca"].der):
        assert both.authenticate_certificate(cert, device_id="cadev", module_id=None, source_ip=IP)


def test_forged_issuer_name(pki: LoopbackPki, x509_registry: X509Setup) -> None:
    reg, _, _ = x509_registry
    # Claims the trusted CA as issuer, but is signed by another key.
    forged, _ = make_cert("cadev", (ca_cert(pki).subject, ec.generate_private_key(ec.SECP256R1())))
    failure = cert_refusal(cert_auth(reg, pki), der(forged), "cadev")
    assert failure.reason is R.BAD_CERTIFICATE
    assert "does not verify" in failure.detail


def test_no_trusted_cas(x509_registry: X509Setup) -> None:
    reg, certs, _ = x509_registry
    failure = cert_refusal(Authenticator(reg, hub_host=HOST), certs["ca"].der, "cadev")
    assert failure.reason is R.BAD_CERTIFICATE


def test_chain_through_an_intermediate() -> None:
    root, root_key = make_cert("root", ca=True)
    inter, inter_key = make_cert("intermediate", (root.subject, root_key), ca=True)
    leaf, _ = make_cert("chained", (inter.subject, inter_key))
    not_ca, not_ca_key = make_cert("not-a-ca", (root.subject, root_key))
    bad_leaf, _ = make_cert("chained", (not_ca.subject, not_ca_key))
    reg = FakeRegistry()
    reg.add(Identity("chained", None, "certificateAuthority", "enabled"))
    auth = Authenticator(reg, hub_host=HOST, ca_certificates=[root])
    result = auth.authenticate_certificate(
        der(leaf), [der(leaf), der(inter)], device_id="chained", module_id=None, source_ip=IP
    )
    assert result.expires_at == min(
        int(c.not_valid_after_utc.timestamp()) for c in (leaf, inter, root)
    )
    assert "not a trusted CA" in cert_refusal(auth, der(leaf), "chained").detail
    # An intermediate without CA:TRUE cannot issue device certificates.
    assert cert_refusal(auth, der(bad_leaf), "chained", chain=(der(not_ca),)).reason is (
        R.BAD_CERTIFICATE
    )
    assert "chain certificate 0" in cert_refusal(auth, der(leaf), "chained", chain=(b"x",)).detail


@pytest.mark.parametrize(
    ("device", "reason"),
    [("ghost", R.UNKNOWN_DEVICE), ("caoff", R.DISABLED_IDENTITY), ("sasdev", R.NO_CREDENTIALS)],
)
def test_certificate_identity_refusals(
    pki: LoopbackPki,
    x509_registry: X509Setup,
    device: str,
    reason: AuthFailureReason,
) -> None:
    reg, certs, _ = x509_registry
    failure = cert_refusal(cert_auth(reg, pki), certs["ca"].der, device)
    assert (failure.reason, failure.device_id) == (reason, device)


def test_certificate_that_does_not_parse(pki: LoopbackPki, x509_registry: X509Setup) -> None:
    reg, _, _ = x509_registry
    assert cert_refusal(cert_auth(reg, pki), b"\x30\x00", "cadev").reason is R.BAD_CERTIFICATE


def test_certificate_ip_filtered(pki: LoopbackPki, x509_registry: X509Setup) -> None:
    reg, certs, _ = x509_registry
    reg.config = HubConfiguration(ip_filter_default_action="Reject")
    assert cert_refusal(cert_auth(reg, pki), certs["ca"].der, "cadev").reason is R.IP_FILTERED
