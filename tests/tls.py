"""Test certificates: a CA, a server certificate for loopback, and device client certificates."""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class CertFiles:
    """PEM files on disk, and the certificate's SHA-1 and SHA-256 thumbprints (upper-case hex)."""

    cert: Path
    key: Path
    thumbprint_sha1: str
    thumbprint_sha256: str


def _write(
    directory: Path,
    name: str,
    cert: x509.Certificate,
    key: ec.EllipticCurvePrivateKey,
) -> CertFiles:
    cert_path = directory / f"{name}.pem"
    key_path = directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    der = cert.public_bytes(serialization.Encoding.DER)
    sha1 = hashlib.sha1(der).hexdigest().upper()  # IoT Hub thumbprints are SHA-1
    return CertFiles(cert_path, key_path, sha1, hashlib.sha256(der).hexdigest().upper())


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


@dataclass(frozen=True)
class LoopbackPki:
    """A throwaway PKI in a directory: a CA, a loopback server certificate, device certificates."""

    directory: Path
    ca: CertFiles
    server: CertFiles
    _ca_key: ec.EllipticCurvePrivateKey
    _ca_cert: x509.Certificate

    @classmethod
    def create(cls, directory: Path) -> LoopbackPki:
        now = dt.datetime.now(dt.UTC)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_cert = (
            x509.CertificateBuilder()
            .subject_name(_name("iotsec test CA"))
            .issuer_name(_name("iotsec test CA"))
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256())
        )
        ca = _write(directory, "ca", ca_cert, ca_key)
        server_key = ec.generate_private_key(ec.SECP256R1())
        server_cert = (
            x509.CertificateBuilder()
            .subject_name(_name("localhost"))
            .issuer_name(ca_cert.subject)
            .public_key(server_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.DNSName("localhost"),
                        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    ]
                ),
                critical=False,
            )
            .sign(ca_key, hashes.SHA256())
        )
        server = _write(directory, "server", server_cert, server_key)
        return cls(directory, ca, server, ca_key, ca_cert)

    def device_cert(
        self, device_id: str, *, self_signed: bool = False, expired: bool = False
    ) -> CertFiles:
        """A client certificate with CN=device_id, CA-signed unless ``self_signed``."""
        now = dt.datetime.now(dt.UTC)
        key = ec.generate_private_key(ec.SECP256R1())
        start = now - dt.timedelta(days=3 if expired else 0, minutes=5)
        end = now - dt.timedelta(days=1) if expired else now + dt.timedelta(days=2)
        issuer_key = key if self_signed else self._ca_key
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(device_id))
            .issuer_name(_name(device_id) if self_signed else self._ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .sign(issuer_key, hashes.SHA256())
        )
        return _write(self.directory, f"device-{device_id}", cert, key)
