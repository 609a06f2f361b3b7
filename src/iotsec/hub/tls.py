"""The hub's TLS server context, and the client certificates a connection presented.

Client certificates are optional: SAS devices present none, X.509 devices present theirs.
OpenSSL verifies any certificate a client sends against the context's trust store, during the
handshake, and Python's :mod:`ssl` offers no verify callback to let an unknown certificate
through for the application to judge. (``CERT_NONE`` does not help: with it, the server never
asks for a certificate at all.) So the trust store holds:

- the CA certificates ``certificateAuthority`` devices chain to: the hub's own CA
  (``client_ca``) and those of ``tls/client-ca/`` (``ca_certificates``), and
- each ``selfSigned`` device's own certificate (``device_certificates``), which OpenSSL then
  accepts as a trust anchor for itself. :func:`trust_device_certificates` adds more to a live
  context; OpenSSL reads the store at each handshake, so new devices can connect at once.

The trade-off: a self-signed device must be registered with its certificate, not just its
thumbprint as IoT Hub allows, or its handshake fails before the hub sees it. Who the device is,
and whether it may connect, is decided after the handshake by
:meth:`iotsec.hub.auth.Authenticator.authenticate_certificate` (thumbprint, CN, issuer, status),
so a deleted device's stale trust anchor gets it no further than the TLS handshake.

OpenSSL can add to a live store but never remove from one. When the trusted CAs change (the
service API's ``/certificates``), :class:`ServerTls` builds a new context with exactly the new
set, and the served context's SNI callback, which OpenSSL calls on every ClientHello (with a
server name or without), moves each new connection onto it; connections already open keep the
context they started with. A removed CA's devices are then refused in the handshake itself.
Ruled out: a verify callback via pyOpenSSL (asyncio cannot use its connections) or ctypes into
libssl (fragile across builds).
"""

from __future__ import annotations

import _ssl  # only for ENCODING_DER, which ssl does not re-export
import ssl
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from iotsec.hub.errors import AuthFailure, AuthFailureReason, HubConfigError
from iotsec.hub.hubconfig import HubConfiguration
from iotsec.hub.pki import HubPki

__all__ = [
    "PeerCertificates",
    "ServerTls",
    "handshake_failure",
    "peer_certificates",
    "server_ssl_context",
    "trust_device_certificates",
]

_TLS_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


def server_ssl_context(
    pki: HubPki,
    config: HubConfiguration,
    *,
    client_ca: Sequence[Path] = (),
    ca_certificates: Iterable[bytes] = (),
    device_certificates: Iterable[bytes] = (),
) -> ssl.SSLContext:
    """A TLS server context serving ``pki``'s certificate, from ``config.min_tls_version`` up.

    When CA files (``client_ca``), CA certificates (``ca_certificates``, DER or PEM) or
    ``device_certificates`` (DER or PEM) are given, clients are asked for a certificate but
    need not send one (``CERT_OPTIONAL``); one they send must chain to those. With none, no
    certificate is asked for, and X.509 devices are refused later with ``NO_CREDENTIALS``.

    Raises:
        HubConfigError: the certificate, key or a CA file or certificate cannot be loaded.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = _TLS_VERSIONS[config.min_tls_version]
    context.options |= ssl.OP_NO_RENEGOTIATION
    try:
        context.load_cert_chain(pki.cert, pki.key)
    except (ssl.SSLError, OSError) as error:
        raise HubConfigError(
            f"cannot load the server certificate {pki.cert} with key {pki.key}: {_why(error)}"
        ) from None
    for path in client_ca:
        try:
            context.load_verify_locations(cafile=path)
        except (ssl.SSLError, OSError) as error:
            raise HubConfigError(f"cannot load client CA file {path}: {_why(error)}") from None
    cas = _pem_bundle(ca_certificates, "CA certificate")
    if cas:
        _trust(context, cas, "CA certificates")
    devices = list(device_certificates)
    if client_ca or cas or devices:
        context.verify_mode = ssl.CERT_OPTIONAL
        trust_device_certificates(context, devices)
    return context


def trust_device_certificates(context: ssl.SSLContext, certificates: Iterable[bytes]) -> None:
    """Let self-signed device certificates (DER or PEM) complete the handshake on ``context``.

    Takes effect for the next handshake; a context serving no client certificates yet starts
    asking for them.

    Raises:
        HubConfigError: a certificate does not parse.
    """
    pem = _pem_bundle(certificates, "device certificate")
    if pem:
        _trust(context, pem, "device certificates")
        context.verify_mode = ssl.CERT_OPTIONAL


def _trust(context: ssl.SSLContext, pem: str, what: str) -> None:
    try:
        context.load_verify_locations(cadata=pem)
    except ssl.SSLError as error:
        raise HubConfigError(f"OpenSSL cannot load the {what}: {_why(error)}") from None


class ServerTls:
    """The context both listeners serve, whose trusted CAs can be replaced while it serves.

    ``context`` is the one given to the listeners. :meth:`trust` builds a context trusting a
    new set of CAs (the hub's own ``client_ca`` files and the self-signed device certificates
    stay), and from then on every new connection is moved onto it during its ClientHello. The
    served context keeps deciding what OpenSSL copies when a connection starts (the minimum
    TLS version, whether a client certificate is asked for), so :meth:`trust` and
    :meth:`configure` keep it in step.

    Raises:
        HubConfigError: as :func:`server_ssl_context`.
    """

    def __init__(
        self,
        pki: HubPki,
        config: HubConfiguration,
        *,
        client_ca: Sequence[Path] = (),
        ca_certificates: Iterable[bytes] = (),
        device_certificates: Iterable[bytes] = (),
    ) -> None:
        self._pki = pki
        self._config = config
        self._client_ca = tuple(client_ca)
        self._devices = tuple(device_certificates)
        self.context = self._build(ca_certificates)
        self._active = self.context
        self.context.sni_callback = self._select

    def trust(self, ca_certificates: Iterable[bytes]) -> None:
        """Trust exactly ``ca_certificates`` (DER or PEM), besides the fixed ones, from now on.

        Raises:
            HubConfigError: a certificate does not load; nothing changes then.
        """
        context = self._build(ca_certificates)
        self.context.verify_mode = context.verify_mode
        self._active = context

    def configure(self, config: HubConfiguration) -> None:
        """Apply a new hub configuration (its minimum TLS version) to new connections."""
        self._config = config
        version = _TLS_VERSIONS[config.min_tls_version]
        self.context.minimum_version = version
        self._active.minimum_version = version

    def _build(self, ca_certificates: Iterable[bytes]) -> ssl.SSLContext:
        return server_ssl_context(
            self._pki,
            self._config,
            client_ca=self._client_ca,
            ca_certificates=ca_certificates,
            device_certificates=self._devices,
        )

    def _select(
        self, connection: ssl.SSLObject, server_name: str | None, served: ssl.SSLContext
    ) -> None:
        # Called by OpenSSL while it reads a ClientHello, before the client's certificate.
        active = self._active
        if active is not served:
            connection.context = active


def _pem_bundle(certificates: Iterable[bytes], what: str) -> str:
    """The certificates (each DER or PEM) as one PEM string; ``HubConfigError`` names a bad one."""
    pem = []
    for i, data in enumerate(certificates):
        try:
            certs = (
                x509.load_pem_x509_certificates(data)
                if data.lstrip().startswith(b"-----BEGIN")
                else [x509.load_der_x509_certificate(data)]
            )
        except ValueError:
            raise HubConfigError(f"{what} {i} is not a PEM or DER certificate") from None
        pem += [cert.public_bytes(serialization.Encoding.PEM).decode("ascii") for cert in certs]
    return "".join(pem)


@dataclass(frozen=True, slots=True)
class PeerCertificates:
    """What a client presented: its certificate, and the intermediates it sent (DER)."""

    leaf: bytes | None
    chain: tuple[bytes, ...] = ()


def peer_certificates(connection: ssl.SSLObject | ssl.SSLSocket) -> PeerCertificates:
    """The client certificate of a completed handshake, and the intermediates it sent.

    ``getpeercert(binary_form=True)`` gives the leaf. Python has a public chain API only from
    3.13 (``get_unverified_chain``); on 3.11 and 3.12 the same method exists on the private
    ``_sslobj`` and is used when present. Without either, ``chain`` is empty, and a device
    whose certificate is signed by an intermediate must be served with that intermediate
    among the trusted CAs.
    """
    leaf = connection.getpeercert(binary_form=True)
    if leaf is None:
        return PeerCertificates(None)
    chain: list[bytes] = []
    for cert in _unverified_chain(connection):
        der = _der(cert)
        if der is not None and der != leaf:
            chain.append(der)
    return PeerCertificates(leaf, tuple(chain))


def handshake_failure(error: ssl.SSLError) -> AuthFailure | None:
    """The refusal to log when a handshake failed on the client's certificate, else None.

    A certificate that does not chain to the trust store never reaches the authenticator,
    so the server turns the handshake error into the same ``BAD_CERTIFICATE`` record.
    """
    if isinstance(error, ssl.SSLCertVerificationError):
        message = error.verify_message or error.reason or "verification failed"
        return AuthFailure(
            AuthFailureReason.BAD_CERTIFICATE,
            f"client certificate refused in the TLS handshake: {message}",
        )
    return None


def _unverified_chain(connection: ssl.SSLObject | ssl.SSLSocket) -> list[Any]:
    public = getattr(connection, "get_unverified_chain", None)  # Python 3.13+
    if public is None:
        # 3.10-3.12: undocumented, on the C object behind the wrapper; absent elsewhere.
        public = getattr(getattr(connection, "_sslobj", None), "get_unverified_chain", None)
    if public is None:
        return []
    return list(public() or [])


def _der(cert: object) -> bytes | None:
    if isinstance(cert, bytes):
        return cert
    public_bytes = getattr(cert, "public_bytes", None)  # _ssl.Certificate before 3.13
    if public_bytes is None:
        return None
    der = public_bytes(_ssl.ENCODING_DER)
    return der if isinstance(der, bytes) else None


def _why(error: BaseException) -> str:
    if isinstance(error, ssl.SSLError):
        return error.reason or str(error)
    if isinstance(error, OSError):
        return error.strerror or str(error)
    return str(error)
