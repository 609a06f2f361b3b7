"""Who may connect: SAS tokens and X.509 client certificates, checked the way IoT Hub checks them.

Every refusal is an :class:`~iotsec.hub.errors.AuthFailure` whose ``reason`` names the check that
failed and whose ``detail`` explains it for the operation log. Neither ever holds a token or key.

Device and module tokens (MQTT password, HTTPS ``Authorization``) are checked in this order:
IP filter, token syntax, resource (``sr``), expiry, identity exists, identity enabled, credential
kind, signature, and for hub-level policy tokens the policy's ``DeviceConnect`` permission (after
the signature, so an unsigned request learns nothing about a policy's rights).

Resource rules, from "Control access to IoT Hub with shared access signatures" and Microsoft's
own validators (``Microsoft.Azure.Devices.Common.Security.SharedAccessSignature``, IoT Edge's
``DeviceScopeTokenAuthenticator``):

- a token signed with the identity's own key must name exactly ``{host}/devices/{id}`` (or
  ``.../modules/{mid}`` for a module);
- a token signed with a policy key (``skn``) may name any prefix, by whole segments, of that
  resource: ``{host}``, ``{host}/devices``, ``{host}/devices/{id}`` ... (``/devices/a`` is a
  prefix of ``/devices/a/modules/m`` but not of ``/devices/ab``);
- the host compares case-insensitively (DNS names are); device and module ids do not, because
  IoT Hub ids are case-sensitive. A trailing ``/`` is ignored, as Microsoft's validator does.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from iotsec.hub.errors import AuthFailure, AuthFailureReason
from iotsec.hub.hubconfig import HubConfiguration
from iotsec.hub.identity import AccessPolicy, Identity, Permission, SymmetricKeys
from iotsec.protocol.errors import SasTokenError
from iotsec.protocol.sas import SasToken, parse_sas_token

__all__ = ["AuthMethod", "Authenticated", "Authenticator", "IdentityLookup"]

AuthMethod = Literal["sas", "x509"]

#: Longest issuer path walked from a device certificate to a trusted CA.
_MAX_CHAIN_DEPTH = 8
#: Attacker-supplied text (a resource, a policy name) is cut to this length in details.
_SHOWN = 120

Reason = AuthFailureReason
#: Makes a refusal carrying the identity being checked.
_Fail = Callable[[AuthFailureReason, str], AuthFailure]


class IdentityLookup(Protocol):
    """What the authenticator needs from the registry."""

    def identity(self, device_id: str, module_id: str | None) -> Identity | None:
        """The device (``module_id`` None) or module, or None when it is not registered."""
        ...

    def policy(self, name: str) -> AccessPolicy | None:
        """The hub-level shared access policy called ``name``, or None."""
        ...

    def hub_configuration(self) -> HubConfiguration:
        """The current hub configuration (IP filter, minimum TLS version)."""
        ...


@dataclass(frozen=True, slots=True)
class Authenticated:
    """A device or module that proved who it is, and until when that proof holds."""

    identity: Identity
    method: AuthMethod
    #: Unix seconds: the token's ``se``, or the earliest ``notAfter`` of the certificate path.
    #: The server closes the connection then, as IoT Hub does.
    expires_at: int
    #: The hub-level policy whose key signed the token, when it was not the identity's own key.
    policy_name: str | None = None


def _shown(text: str) -> str:
    """``text`` quoted, and cut short: it came from the client, so it goes in a detail safely."""
    return repr(text if len(text) <= _SHOWN else text[:_SHOWN] + "...")


def _utc(moment: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(moment, dt.UTC)


def _thumbprints(der: bytes) -> tuple[bytes, bytes]:
    return (
        hashlib.sha1(der).hexdigest().upper().encode(),  # noqa: S324  # IoT Hub's thumbprint, not a MAC
        hashlib.sha256(der).hexdigest().upper().encode(),
    )


def _normalize_thumbprint(value: str) -> bytes:
    # Operators paste thumbprints from openssl (``AB:CD:...``) and from Windows (spaces).
    return value.replace(":", "").replace(" ", "").strip().upper().encode()


def _common_name(cert: x509.Certificate) -> str | None:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(names) != 1:
        return None
    value = names[0].value
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


def _is_ca(cert: x509.Certificate, *, required: bool) -> bool:
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return not required
    return constraints.ca


def _describe(cert: x509.Certificate) -> str:
    return _shown(cert.subject.rfc4514_string())


class Authenticator:
    """Checks device, module and service credentials against the registry.

    Args:
        lookup: the registry (identities, policies, hub configuration).
        hub_host: the host name devices put in their tokens' ``sr``.
        clock: unix seconds now; injected so expiry tests are exact.
        ca_certificates: the CAs whose device certificates ``certificateAuthority``
            identities may present (IoT Hub's verified CA certificates).
        host_aliases: further names the hub answers to (``localhost``, a LAN name); tokens
            naming any of them are accepted, as IoT Edge accepts its own and its hub's name.
    """

    def __init__(
        self,
        lookup: IdentityLookup,
        *,
        hub_host: str,
        clock: Callable[[], float] = time.time,
        ca_certificates: Sequence[x509.Certificate] = (),
        host_aliases: Sequence[str] = (),
    ) -> None:
        if not hub_host or "/" in hub_host:
            raise ValueError(f"hub_host must be a bare host name, not {hub_host!r}")
        self._lookup = lookup
        self._host = hub_host
        self._hosts = frozenset(h.casefold() for h in (hub_host, *host_aliases))
        self._clock = clock
        self._cas = tuple(ca_certificates)

    def trust_cas(self, ca_certificates: Sequence[x509.Certificate]) -> None:
        """Replace the CAs ``certificateAuthority`` identities may chain to, for later checks."""
        self._cas = tuple(ca_certificates)

    # -- network ---------------------------------------------------------------------------

    def check_ip(
        self, address: str, *, device_id: str | None = None, module_id: str | None = None
    ) -> None:
        """Refuse ``address`` when the hub's IP filter rejects it.

        ``device_id`` and ``module_id``, when known, go on the refusal for the operation log.

        Raises:
            AuthFailure: ``IP_FILTERED``.
        """
        if not self._lookup.hub_configuration().ip_allowed(address):
            raise AuthFailure(
                Reason.IP_FILTERED,
                f"{address} is rejected by the hub's IP filter",
                device_id=device_id,
                module_id=module_id,
            )

    # -- devices and modules: SAS ----------------------------------------------------------

    def authenticate_sas(
        self, token: str, *, device_id: str, module_id: str | None, source_ip: str
    ) -> Authenticated:
        """Check a device's or module's SAS token (its own key, or a ``DeviceConnect`` policy).

        Raises:
            AuthFailure: the first check that failed, in the order the module docstring lists.
        """

        def fail(reason: AuthFailureReason, detail: str) -> AuthFailure:
            return AuthFailure(reason, detail, device_id=device_id, module_id=module_id)

        who = f"module {device_id}/{module_id}" if module_id else f"device {device_id}"
        self.check_ip(source_ip, device_id=device_id, module_id=module_id)
        try:
            parsed = parse_sas_token(token)
        except SasTokenError as error:
            raise fail(Reason.MALFORMED_TOKEN, str(error)) from None

        expected = ["devices", device_id] + ([] if module_id is None else ["modules", module_id])
        host, segments = self._split_resource(parsed.sr)
        if host is None:
            raise fail(
                Reason.WRONG_IDENTITY, f"token resource {_shown(parsed.sr)} is for another hub"
            )
        if parsed.skn is None and segments != expected:
            raise fail(
                Reason.WRONG_IDENTITY,
                f"token resource {_shown(parsed.sr)} is not {who}; a token signed with the "
                f"identity's own key names exactly {_shown('/'.join([self._host, *expected]))}",
            )
        if parsed.skn is not None and segments != expected[: len(segments)]:
            raise fail(
                Reason.WRONG_IDENTITY,
                f"token resource {_shown(parsed.sr)} does not cover {who}",
            )

        now = self._clock()
        if parsed.expired(now):
            raise fail(
                Reason.EXPIRED_TOKEN,
                f"token expired at {_utc(parsed.se).isoformat()} (now {_utc(now).isoformat()})",
            )

        identity = self._lookup.identity(device_id, module_id)
        if identity is None:
            raise fail(Reason.UNKNOWN_DEVICE, f"{who} is not registered")
        if not identity.enabled:
            raise fail(Reason.DISABLED_IDENTITY, f"{who} is disabled")

        if parsed.skn is not None:
            return self._by_policy(parsed, identity, fail)

        if identity.auth != "sas":
            raise fail(
                Reason.NO_CREDENTIALS,
                f"{who} authenticates with an X.509 certificate ({identity.auth}); "
                "it must present that certificate, not a SAS token",
            )
        if identity.keys is None:
            raise fail(Reason.BAD_SIGNATURE, f"{who} has no symmetric keys to verify with")
        if not self._signed_by(parsed, identity.keys, fail):
            raise fail(
                Reason.BAD_SIGNATURE,
                f"token signature matches neither the primary nor the secondary key of {who}",
            )
        return Authenticated(identity, "sas", parsed.se)

    def _by_policy(
        self,
        parsed: SasToken,
        identity: Identity,
        fail: _Fail,
    ) -> Authenticated:
        # A DeviceConnect policy may act for any device, whatever its own credential kind:
        # IoT Hub treats the token issuer as a trusted subcomponent (protocol gateways).
        name = parsed.skn or ""
        policy = self._lookup.policy(name)
        if policy is None:
            raise fail(Reason.BAD_SIGNATURE, f"no shared access policy named {_shown(name)}")
        if not self._signed_by(parsed, policy.keys, fail):
            raise fail(
                Reason.BAD_SIGNATURE,
                f"token signature matches neither key of policy {policy.name!r}",
            )
        if "DeviceConnect" not in policy.permissions:
            raise fail(
                Reason.INSUFFICIENT_PERMISSION,
                f"policy {policy.name!r} lacks DeviceConnect",
            )
        return Authenticated(identity, "sas", parsed.se, policy_name=policy.name)

    # -- service API -----------------------------------------------------------------------

    def authenticate_service(
        self,
        token: str,
        *,
        permission: Permission,
        source_ip: str,
        resource: str | None = None,
    ) -> AccessPolicy:
        """Check a service API token: signed by a hub-level policy that grants ``permission``.

        The token's ``sr`` must be the hub host or, when the caller names the ``resource`` it
        serves (``devices/dev1/twin``), a segment prefix of ``{host}/{resource}``; that is how
        IoT Hub scopes policy tokens.

        Raises:
            AuthFailure: ``IP_FILTERED``, ``MALFORMED_TOKEN``, ``INSUFFICIENT_PERMISSION`` (a
                device token, or a policy without ``permission``), ``WRONG_IDENTITY`` (another
                hub or resource), ``EXPIRED_TOKEN`` or ``BAD_SIGNATURE`` (unknown policy too).
        """
        self.check_ip(source_ip)
        try:
            parsed = parse_sas_token(token)
        except SasTokenError as error:
            raise AuthFailure(Reason.MALFORMED_TOKEN, str(error)) from None
        if parsed.skn is None:
            raise AuthFailure(
                Reason.INSUFFICIENT_PERMISSION,
                "a token without skn is signed by a device key and grants only DeviceConnect "
                "for that device; the service API needs a shared access policy token",
            )
        host, segments = self._split_resource(parsed.sr)
        wanted = [s for s in (resource or "").split("/") if s]
        if host is None or segments != wanted[: len(segments)]:
            target = _shown("/".join([self._host, *wanted]))
            raise AuthFailure(
                Reason.WRONG_IDENTITY,
                f"token resource {_shown(parsed.sr)} does not cover {target}",
            )
        now = self._clock()
        if parsed.expired(now):
            raise AuthFailure(
                Reason.EXPIRED_TOKEN,
                f"token expired at {_utc(parsed.se).isoformat()} (now {_utc(now).isoformat()})",
            )
        policy = self._lookup.policy(parsed.skn)
        if policy is None:
            raise AuthFailure(
                Reason.BAD_SIGNATURE, f"no shared access policy named {_shown(parsed.skn)}"
            )
        if not self._signed_by(parsed, policy.keys):
            raise AuthFailure(
                Reason.BAD_SIGNATURE,
                f"token signature matches neither key of policy {policy.name!r}",
            )
        if permission not in policy.permissions:
            granted = ", ".join(sorted(policy.permissions)) or "nothing"
            raise AuthFailure(
                Reason.INSUFFICIENT_PERMISSION,
                f"policy {policy.name!r} grants {granted}, not {permission}",
            )
        return policy

    # -- devices and modules: X.509 --------------------------------------------------------

    def authenticate_certificate(
        self,
        cert_der: bytes,
        chain_der: Sequence[bytes] = (),
        *,
        device_id: str,
        module_id: str | None,
        source_ip: str,
    ) -> Authenticated:
        """Check the client certificate a device or module presented in the TLS handshake.

        ``selfSigned`` identities match by thumbprint (SHA-1 or SHA-256, primary or secondary);
        the subject does not matter, as in IoT Hub. ``certificateAuthority`` identities need
        a certificate whose subject CN is the device id (``device/module`` for a module),
        issued, directly or through the intermediates in ``chain_der``, by one of the CA
        certificates the authenticator trusts. Validity dates are checked either way.

        Raises:
            AuthFailure: ``IP_FILTERED``, ``BAD_CERTIFICATE`` (unparsable, expired, not yet
                valid, unknown issuer, thumbprint mismatch), ``UNKNOWN_DEVICE``,
                ``DISABLED_IDENTITY``, ``NO_CREDENTIALS`` (a SAS identity) or
                ``WRONG_IDENTITY`` (CN of another device).
        """

        def fail(reason: AuthFailureReason, detail: str) -> AuthFailure:
            return AuthFailure(reason, detail, device_id=device_id, module_id=module_id)

        who = f"module {device_id}/{module_id}" if module_id else f"device {device_id}"
        self.check_ip(source_ip, device_id=device_id, module_id=module_id)
        try:
            leaf = x509.load_der_x509_certificate(cert_der)
        except ValueError:
            raise fail(Reason.BAD_CERTIFICATE, "client certificate is not DER X.509") from None
        now = self._clock()
        problem = self._validity_problem(leaf, now)
        if problem:
            raise fail(Reason.BAD_CERTIFICATE, f"client certificate {problem}")

        identity = self._lookup.identity(device_id, module_id)
        if identity is None:
            raise fail(Reason.UNKNOWN_DEVICE, f"{who} is not registered")
        if not identity.enabled:
            raise fail(Reason.DISABLED_IDENTITY, f"{who} is disabled")

        if identity.auth == "sas":
            raise fail(
                Reason.NO_CREDENTIALS,
                f"{who} authenticates with SAS tokens; a client certificate cannot stand in "
                "for its token",
            )
        if identity.auth == "selfSigned":
            if not self._thumbprint_matches(cert_der, identity):
                raise fail(
                    Reason.BAD_CERTIFICATE,
                    f"certificate thumbprint matches neither registered thumbprint of {who}",
                )
            return Authenticated(identity, "x509", int(leaf.not_valid_after_utc.timestamp()))

        common_name = _common_name(leaf)
        if common_name != identity.key:
            shown = "no single CN" if common_name is None else f"CN {_shown(common_name)}"
            raise fail(
                Reason.WRONG_IDENTITY,
                f"certificate has {shown}; {who} needs CN {identity.key!r}",
            )
        path = self._chain_to_ca(leaf, chain_der, now, fail)
        expires = min(int(c.not_valid_after_utc.timestamp()) for c in path)
        return Authenticated(identity, "x509", expires)

    # -- helpers ---------------------------------------------------------------------------

    def _split_resource(self, resource: str) -> tuple[str | None, list[str]]:
        """The resource's host (None when it is not this hub) and its path segments."""
        host, _, path = resource.rstrip("/").partition("/")
        segments = path.split("/") if path else []
        return (host if host.casefold() in self._hosts else None), segments

    @staticmethod
    def _signed_by(token: SasToken, keys: SymmetricKeys, fail: _Fail = AuthFailure) -> bool:
        # Both keys are always tried, so the time taken does not tell which one matched.
        try:
            primary = token.signature_matches(keys.primary)
            secondary = token.signature_matches(keys.secondary)
        except SasTokenError:
            # The registry validates keys on write; a stored key that cannot sign is damage,
            # reported as a refusal that tells the operator what to do, never as a crash.
            raise fail(
                Reason.BAD_SIGNATURE,
                "a stored key is not valid base64; regenerate the identity's or policy's keys",
            ) from None
        return primary | secondary

    @staticmethod
    def _thumbprint_matches(cert_der: bytes, identity: Identity) -> bool:
        if identity.thumbprints is None:
            return False
        presented = _thumbprints(cert_der)
        registered = [
            _normalize_thumbprint(t)
            for t in (identity.thumbprints.primary, identity.thumbprints.secondary)
            if t
        ]
        return any(hmac.compare_digest(r, p) for r in registered for p in presented)

    @staticmethod
    def _validity_problem(cert: x509.Certificate, now: float) -> str | None:
        moment = _utc(now)
        if moment < cert.not_valid_before_utc:
            return f"is not valid before {cert.not_valid_before_utc.isoformat()}"
        if moment > cert.not_valid_after_utc:
            return f"expired at {cert.not_valid_after_utc.isoformat()}"
        return None

    def _chain_to_ca(
        self,
        leaf: x509.Certificate,
        chain_der: Sequence[bytes],
        now: float,
        fail: _Fail,
    ) -> list[x509.Certificate]:
        """The path from ``leaf`` to a trusted CA, each link's signature and dates checked."""
        if not self._cas:
            raise fail(Reason.BAD_CERTIFICATE, "the hub trusts no CA certificates")
        leaf_der = leaf.public_bytes(serialization.Encoding.DER)
        pool: list[x509.Certificate] = []
        for i, der in enumerate(chain_der):
            if der == leaf_der:
                continue  # some stacks report the chain with the leaf first
            try:
                pool.append(x509.load_der_x509_certificate(der))
            except ValueError:
                raise fail(
                    Reason.BAD_CERTIFICATE, f"chain certificate {i} is not DER X.509"
                ) from None
        path = [leaf]
        current = leaf
        for _ in range(_MAX_CHAIN_DEPTH):
            # Several CAs may share a name (a renewed CA keeps its subject): any one may sign.
            named = [
                c for c in self._cas if c.subject == current.issuer and _is_ca(c, required=False)
            ]
            ca = next((c for c in named if _signed(current, c)), None)
            if named and ca is None:
                raise fail(
                    Reason.BAD_CERTIFICATE,
                    f"signature of {_describe(current)} does not verify against the trusted "
                    f"CA named {_describe(named[0])}",
                )
            if ca is not None:
                problem = self._validity_problem(ca, now)
                if problem:
                    raise fail(Reason.BAD_CERTIFICATE, f"trusted CA {_describe(ca)} {problem}")
                return [*path, ca]
            issuer = next(
                (
                    c
                    for c in pool
                    if current.issuer == c.subject
                    and _is_ca(c, required=True)
                    and _signed(current, c)
                ),
                None,
            )
            if issuer is None:
                raise fail(
                    Reason.BAD_CERTIFICATE,
                    f"issuer {_shown(current.issuer.rfc4514_string())} of {_describe(current)} "
                    "is not a trusted CA and no presented intermediate links to one",
                )
            problem = self._validity_problem(issuer, now)
            if problem:
                raise fail(Reason.BAD_CERTIFICATE, f"intermediate {_describe(issuer)} {problem}")
            path.append(issuer)
            pool.remove(issuer)
            current = issuer
        raise fail(Reason.BAD_CERTIFICATE, f"certificate chain is longer than {_MAX_CHAIN_DEPTH}")


def _signed(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """True when ``issuer``'s key made ``cert``'s signature."""
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        # ValueError: names differ or an unsupported signature algorithm; TypeError: an
        # unsupported issuer key type. Either way this issuer did not sign it.
        return False
    return True
