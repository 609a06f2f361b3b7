"""The hub's TLS identity: a local CA and a server certificate made on first start, or the
operator's own certificate and key (``--tls-cert`` / ``--tls-key``).

Layout under the data directory (the directory 0700, private keys 0600, written atomically)::

    tls/ca.pem       the CA devices trust (copy it to devices, or point ``ca_cert`` at it)
    tls/ca.key       the CA's private key, kept to re-issue the server certificate
    tls/server.pem   the server certificate, signed by the CA
    tls/server.key   its private key
    owner.credential the ``iothubowner`` connection string for the service API (0600)

Keys are EC P-256: every IoT Hub device SDK, OpenSSL, mbedTLS and wolfSSL build speaks ECDSA
P-256, the keys make the smallest certificates and fastest handshakes for constrained devices,
and generating one takes milliseconds where RSA takes up to a second on a small gateway. A
device stack limited to RSA can still be served with an operator-provided certificate.

The CA is never replaced silently: devices trust it, so a missing key or an expired CA is an
error that names the file. The server certificate is disposable: it is re-issued from the same
CA when it is missing, no longer matches the CA, lacks a requested host name, or is within
:data:`RENEW_BEFORE` of expiry. A file that exists but does not parse is an error, never
overwritten.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import ipaddress
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from iotsec.hub.errors import HubConfigError

__all__ = [
    "CA_VALIDITY",
    "RENEW_BEFORE",
    "SERVER_VALIDITY",
    "HubPki",
    "ensure_owner_credential",
    "ensure_pki",
    "load_certificates",
]

#: The local CA's lifetime.
CA_VALIDITY = dt.timedelta(days=3650)
#: The server certificate's lifetime: two years, under the 825 days Apple platforms accept
#: for certificates from a locally trusted root.
SERVER_VALIDITY = dt.timedelta(days=730)
#: A server certificate this close to expiry is re-issued at start.
RENEW_BEFORE = dt.timedelta(days=30)
#: Names the server certificate always carries, so local clients can verify the hub.
_LOOPBACK = ("localhost", "127.0.0.1", "::1")
# Certificates may be backdated this much so a device whose clock lags still accepts them.
_BACKDATE = dt.timedelta(minutes=5)

Progress = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class HubPki:
    """The server certificate and key the hub serves, and the CA devices should trust."""

    cert: Path
    key: Path
    #: The CA certificate to give devices; None when the operator's certificate chains to a
    #: CA the devices already trust.
    ca: Path | None
    not_after: dt.datetime
    #: The local CA's key, when the hub made its own CA.
    ca_key: Path | None = None

    @classmethod
    def from_files(
        cls,
        cert: Path,
        key: Path,
        ca: Path | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> HubPki:
        """Use the operator's certificate (PEM, chain allowed) and unencrypted PEM key.

        Raises:
            HubConfigError: a file is missing or does not parse, the key is not the
                certificate's, or the certificate has expired or is not yet valid.
        """
        certs = load_certificates(cert)
        private = _load_key(key)
        if not _same_key(private, certs[0]):
            raise HubConfigError(f"{key} is not the private key of the certificate in {cert}")
        now = dt.datetime.fromtimestamp(clock(), dt.UTC)
        leaf = certs[0]
        if now > leaf.not_valid_after_utc:
            raise HubConfigError(
                f"{cert} expired at {leaf.not_valid_after_utc.isoformat()}; renew it"
            )
        if now < leaf.not_valid_before_utc:
            raise HubConfigError(
                f"{cert} is not valid before {leaf.not_valid_before_utc.isoformat()}"
            )
        if ca is not None:
            load_certificates(ca)
        return cls(cert=cert, key=key, ca=ca, not_after=leaf.not_valid_after_utc)


def load_certificates(path: Path) -> list[x509.Certificate]:
    """Every certificate in a PEM file, in order.

    Raises:
        HubConfigError: the file cannot be read, or holds no PEM certificate.
    """
    data = _read(path)
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise HubConfigError(f"{path} is not a PEM certificate file") from None
    return certs


def ensure_pki(
    data_dir: Path,
    *,
    host_names: Sequence[str],
    on_progress: Progress | None = None,
    clock: Callable[[], float] = time.time,
) -> HubPki:
    """The hub's CA and server certificate under ``data_dir/tls``, made when missing.

    ``host_names`` are the DNS names or IP addresses devices connect to; ``localhost``,
    ``127.0.0.1`` and ``::1`` are always included. The server certificate names exactly these:
    a re-issue for a new name drops names no longer given. ``on_progress`` hears one line per action
    taken (creating the CA, issuing the server certificate, tightening a file's mode).

    Raises:
        HubConfigError: a file that exists but does not parse, a CA without its key (or the
            other way round), an expired CA, or a host name that cannot go in a certificate.
    """
    say: Progress = on_progress or (lambda _message: None)
    names = _san_names([*host_names, *_LOOPBACK])
    now = dt.datetime.fromtimestamp(clock(), dt.UTC)
    tls = data_dir / "tls"
    _private_dir(tls, say)
    ca_pem, ca_key_path = tls / "ca.pem", tls / "ca.key"
    server_pem, server_key_path = tls / "server.pem", tls / "server.key"

    ca_cert, ca_key = _ensure_ca(ca_pem, ca_key_path, now, say)
    reason = _server_problem(server_pem, server_key_path, ca=ca_cert, names=names, now=now, say=say)
    if reason is None:
        leaf = load_certificates(server_pem)[0]
    else:
        say(f"issuing server certificate for {', '.join(_shown(n) for n in names)} ({reason})")
        key = ec.generate_private_key(ec.SECP256R1())
        leaf = _server_certificate(key, ca_cert, ca_key, names, now)
        _write_key(server_key_path, key)
        _write(server_pem, leaf.public_bytes(serialization.Encoding.PEM), mode=0o644)
    return HubPki(
        cert=server_pem,
        key=server_key_path,
        ca=ca_pem,
        not_after=leaf.not_valid_after_utc,
        ca_key=ca_key_path,
    )


def ensure_owner_credential(
    data_dir: Path,
    *,
    host_name: str,
    key: str,
    policy_name: str = "iothubowner",
    overwrite: bool = False,
) -> Path:
    """Write the service API's owner connection string to ``data_dir/owner.credential`` (0600).

    The registry owns the policy keys and hands this function the key; the file holds
    ``HostName=...;SharedAccessKeyName=...;SharedAccessKey=...`` for the CLI and console to
    read. Writing the same content again is a no-op.

    Raises:
        HubConfigError: ``key`` is not base64, a name contains ``;`` or ``=``, or the file
            holds a different credential and ``overwrite`` is False.
    """
    for label, value in (("host_name", host_name), ("policy_name", policy_name)):
        if not value or any(c in value for c in ";=\n\r"):
            raise HubConfigError(f"{label} {value!r} cannot go in a connection string")
    try:
        if not base64.b64decode(key, validate=True):
            raise ValueError
    except (binascii.Error, ValueError):
        raise HubConfigError(f"the {policy_name} key is not base64") from None
    path = data_dir / "owner.credential"
    content = f"HostName={host_name};SharedAccessKeyName={policy_name};SharedAccessKey={key}\n"
    if path.exists():
        if _read(path).decode("utf-8", "replace").strip() == content.strip():
            _tighten(path, lambda _message: None)
            return path
        if not overwrite:
            raise HubConfigError(
                f"{path} already holds a different credential; remove it, or pass "
                "overwrite=True once the old key is rotated"
            )
    try:
        # The data directory is the operator's to lay out: made private if new, never chmod-ed.
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as error:
        raise HubConfigError(f"cannot create {data_dir}: {error.strerror or error}") from None
    _write(path, content.encode(), mode=0o600)
    return path


# -- the CA ---------------------------------------------------------------------------------


def _ensure_ca(
    cert_path: Path, key_path: Path, now: dt.datetime, say: Progress
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    if not cert_path.exists() and not key_path.exists():
        say("creating the hub's local CA (EC P-256, valid 10 years)")
        new_key = ec.generate_private_key(ec.SECP256R1())
        new_cert = _ca_certificate(new_key, now)
        _write_key(key_path, new_key)
        _write(cert_path, new_cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
        return new_cert, new_key
    for present, missing in ((cert_path, key_path), (key_path, cert_path)):
        if not missing.exists():
            raise HubConfigError(
                f"{present} exists but {missing} is missing; restore it, or remove both to "
                "create a new CA (devices must then be given the new ca.pem)"
            )
    cert = load_certificates(cert_path)[0]
    key = _load_key(key_path)
    _tighten(key_path, say)
    if not _same_key(key, cert):
        raise HubConfigError(f"{key_path} is not the private key of the CA in {cert_path}")
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise HubConfigError(f"{key_path}: the hub's own CA key must be EC P-256")
    if now > cert.not_valid_after_utc:
        raise HubConfigError(
            f"the hub CA {cert_path} expired at {cert.not_valid_after_utc.isoformat()}; "
            "remove ca.pem and ca.key to create a new one, and give devices the new ca.pem"
        )
    return cert, key


def _ca_certificate(key: ec.EllipticCurvePrivateKey, now: dt.datetime) -> x509.Certificate:
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "iotsec"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"iotsec hub CA {now:%Y-%m-%d}"),
        ]
    )
    public = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
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
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )


# -- the server certificate -----------------------------------------------------------------


def _server_problem(
    cert_path: Path,
    key_path: Path,
    *,
    ca: x509.Certificate,
    names: Sequence[x509.GeneralName],
    now: dt.datetime,
    say: Progress,
) -> str | None:
    """Why the server certificate must be (re-)issued, or None to keep it."""
    if not cert_path.exists() or not key_path.exists():
        absent = cert_path if not cert_path.exists() else key_path
        return f"no {absent.name} yet"
    cert = load_certificates(cert_path)[0]
    key = _load_key(key_path)
    _tighten(key_path, say)
    if not _same_key(key, cert):
        return f"{key_path.name} does not match {cert_path.name}"
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return "it was not issued by the current CA"
    if cert.not_valid_after_utc - now < RENEW_BEFORE:
        return f"it expires at {cert.not_valid_after_utc.isoformat()}"
    try:
        present = set(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        present = set()
    missing = [n for n in names if n not in present]
    if missing:
        return f"new host name {_shown(missing[0])}"
    return None


def _server_certificate(
    key: ec.EllipticCurvePrivateKey,
    ca: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    names: Sequence[x509.GeneralName],
    now: dt.datetime,
) -> x509.Certificate:
    first = next((n.value for n in names if isinstance(n, x509.DNSName)), "localhost")
    public = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "iotsec"),
                    x509.NameAttribute(NameOID.COMMON_NAME, first),
                ]
            )
        )
        .issuer_name(ca.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(min(now + SERVER_VALIDITY, ca.not_valid_after_utc))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )


def _san_names(host_names: Sequence[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for raw in host_names:
        host = raw.strip().rstrip(".")
        if not host:
            raise HubConfigError("an empty host name cannot go in the server certificate")
        name: x509.GeneralName
        try:
            name = x509.IPAddress(ipaddress.ip_address(host.strip("[]")))
        except ValueError:
            if not host.isascii() or any(c.isspace() or c in "/:@" for c in host):
                raise HubConfigError(
                    f"host name {host!r} cannot go in a certificate; give its ASCII "
                    "(punycode) form, or an IP address"
                ) from None
            name = x509.DNSName(host.lower())
        if name not in names:
            names.append(name)
    return names


def _shown(name: x509.GeneralName) -> str:
    return str(name.value)


# -- keys and files -------------------------------------------------------------------------


def _same_key(key: PrivateKeyTypes, cert: x509.Certificate) -> bool:
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return key.public_key().public_bytes(*spki) == cert.public_key().public_bytes(*spki)


def _load_key(path: Path) -> PrivateKeyTypes:
    data = _read(path)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise HubConfigError(
            f"{path} is an encrypted private key; the hub needs it unencrypted (mode 0600)"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise HubConfigError(f"{path} is not a PEM private key") from None
    if not isinstance(
        key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
    ):
        raise HubConfigError(f"{path} holds a {type(key).__name__}, not a TLS server key")
    return key


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise HubConfigError(f"cannot read {path}: {error.strerror or error}") from None


def _private_dir(path: Path, say: Progress) -> None:
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        if os.name == "posix" and path.stat().st_mode & 0o077:
            say(f"tightening {path} to mode 0700")
            path.chmod(0o700)
    except OSError as error:
        raise HubConfigError(f"cannot create {path}: {error.strerror or error}") from None


def _tighten(path: Path, say: Progress) -> None:
    """Private files stay 0600 even when copied in with a looser mode."""
    try:
        if os.name == "posix" and path.stat().st_mode & 0o077:
            say(f"tightening {path} to mode 0600")
            path.chmod(0o600)
    except OSError as error:
        raise HubConfigError(f"cannot set the mode of {path}: {error.strerror or error}") from None


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write(path, pem, mode=0o600)


def _write(path: Path, data: bytes, *, mode: int) -> None:
    """Write ``data`` to a new file with ``mode`` from the start, then rename it into place."""
    try:
        # mkstemp creates the file 0600, so a key is never readable by others, even briefly.
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            if mode != 0o600:
                os.chmod(tmp, mode)
            with os.fdopen(fd, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as error:
        raise HubConfigError(f"cannot write {path}: {error.strerror or error}") from None
