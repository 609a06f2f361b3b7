"""The CA certificates the hub trusts for ``certificateAuthority`` devices, kept as files.

Each is ``tls/client-ca/<name>.pem`` in the data dir. The service API's ``/certificates``
routes (IoT Hub's "Certificates" operations) read and change them through
:class:`CaCertificateStore`, which holds what the hub trusts in memory and calls its
``on_change`` with the new set after each change, so the running hub trusts exactly that set for
new connections (see :class:`iotsec.hub.tls.ServerTls`). Files are read once, at start: a file
put there by hand is trusted from the next start, as before this API existed.

A certificate the API accepts is exactly one X.509 certificate, PEM or base64 DER (IoT Hub's
``.cer``), that is a CA (``basicConstraints`` CA=true), has not expired, and that OpenSSL can
load; :func:`parse_ca_certificate` checks all of it, and never repeats the submitted text in
its errors (a pasted private key must not end up in a log).

A file the store writes starts with two lines of explanatory text, which RFC 7468 allows
before the PEM and which OpenSSL and ``cryptography`` skip: the times it was created and last
updated (a file system keeps no creation time). For a file without them, both are its mtime.

>>> check_certificate_name("fleet-ca.2025")
'fleet-ca.2025'
>>> try:
...     check_certificate_name("../ca")
... except InvalidCertificate as error:
...     print(error.field, "-", error.reason)
name - must be 1-64 of A-Z, a-z, 0-9, '-', '.' and '_', not starting with '.'
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import os
import re
import ssl
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from iotsec.hub.errors import (
    CertificateError,
    CertificateNotFound,
    HubConfigError,
    InvalidCertificate,
    PreconditionFailed,
)

__all__ = [
    "MAX_CERTIFICATE_CHARS",
    "CaCertificate",
    "CaCertificateStore",
    "check_certificate_name",
    "parse_ca_certificate",
]

#: The longest certificate text accepted. A CA certificate is 1-3 KB of PEM; a chain, a
#: bundle or anything else pasted by mistake is refused well before this.
MAX_CERTIFICATE_CHARS = 16_384

# IoT Hub's rule (^[A-Za-z0-9-._]{1,64}$), without a leading dot: the name is a file name, and
# names like "." or ".." or hidden files have no place in tls/client-ca/.
_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}")
_FIELD = "properties.certificate"
_BEGIN = "-----BEGIN "
_CREATED, _UPDATED = "created: ", "updated: "

OnChange = Callable[[Sequence["CaCertificate"]], None]


def _unchanged(certificates: Sequence[CaCertificate]) -> None:
    return None


def check_certificate_name(name: str) -> str:
    """``name`` when it may name a certificate (and its file), else ``InvalidCertificate``."""
    if not _NAME.fullmatch(name):
        raise InvalidCertificate(
            "must be 1-64 of A-Z, a-z, 0-9, '-', '.' and '_', not starting with '.'",
            field="name",
        )
    return name


def parse_ca_certificate(text: str, *, now: float, field: str = _FIELD) -> x509.Certificate:
    """The one CA certificate in ``text`` (PEM, or base64 DER as IoT Hub takes a ``.cer``).

    ``field`` is where ``text`` came from, for the errors.

    Raises:
        InvalidCertificate: ``text`` is too long, holds a private key, holds no certificate or
            more than one, is not a CA, has expired at ``now`` (unix seconds), or cannot be
            loaded by OpenSSL. The reason never quotes ``text``.
    """
    if len(text) > MAX_CERTIFICATE_CHARS:
        raise InvalidCertificate(
            f"is {len(text)} characters, over the {MAX_CERTIFICATE_CHARS}-character limit "
            "for one CA certificate",
            field=field,
        )
    if "PRIVATE KEY" in text:
        raise InvalidCertificate(
            "holds a private key; send only the certificate, and keep the key off the hub",
            field=field,
        )
    certificate = _pem_certificate(text, field) if _BEGIN in text else _der_certificate(text, field)
    try:
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        raise InvalidCertificate(
            "is not a CA certificate: it has no basicConstraints extension (CA=true is needed "
            "to sign device certificates)",
            field=field,
        ) from None
    except ValueError:
        raise InvalidCertificate("has extensions that do not parse", field=field) from None
    if not constraints.ca:
        raise InvalidCertificate(
            "is not a CA certificate: basicConstraints says CA=false (an end-entity or device "
            "certificate; upload the CA that signed it)",
            field=field,
        )
    moment = dt.datetime.fromtimestamp(now, dt.UTC)
    if moment > certificate.not_valid_after_utc:
        raise InvalidCertificate(
            f"expired at {certificate.not_valid_after_utc.isoformat()}", field=field
        )
    try:
        # What the TLS listeners will load: refused here rather than after it is stored.
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_verify_locations(cadata=_pem(certificate))
    except ssl.SSLError as error:
        raise InvalidCertificate(
            f"cannot be loaded by OpenSSL: {error.reason or error}", field=field
        ) from None
    return certificate


def _pem_certificate(text: str, field: str) -> x509.Certificate:
    blocks = text.count(_BEGIN)
    if blocks != 1:
        raise InvalidCertificate(
            f"holds {blocks} PEM blocks; send exactly one certificate (the CA's, without its "
            "chain)",
            field=field,
        )
    if "-----BEGIN CERTIFICATE-----" not in text:
        raise InvalidCertificate(
            "holds a PEM block that is not a CERTIFICATE (a CSR, a CRL, a key?)", field=field
        )
    try:
        return x509.load_pem_x509_certificate(text.encode("utf-8"))
    except ValueError:
        raise InvalidCertificate("is not a valid PEM X.509 certificate", field=field) from None


def _der_certificate(text: str, field: str) -> x509.Certificate:
    compact = "".join(text.split())
    if not compact:
        raise InvalidCertificate("is empty", field=field)
    try:
        der = base64.b64decode(compact, validate=True)
        return x509.load_der_x509_certificate(der)
    except (binascii.Error, ValueError):
        raise InvalidCertificate(
            "is neither a PEM certificate nor the base64 of a DER certificate (.cer)",
            field=field,
        ) from None


def _pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")


@dataclass(frozen=True, slots=True)
class CaCertificate:
    """One trusted CA certificate file: its name, what it holds, when it changed, its etag.

    A file the API wrote holds one certificate; one put there by hand may hold several, which
    are all trusted and described by the first.
    """

    name: str
    certificates: tuple[x509.Certificate, ...]
    created: dt.datetime
    updated: dt.datetime
    etag: str

    @property
    def certificate(self) -> x509.Certificate:
        """The (first) certificate."""
        return self.certificates[0]

    @property
    def subject(self) -> str:
        """The subject, RFC 4514 (``CN=Fleet CA,O=Example``)."""
        return self.certificate.subject.rfc4514_string()

    @property
    def thumbprint(self) -> str:
        """The SHA-1 thumbprint in upper-case hex, as IoT Hub shows it."""
        der = self.certificate.public_bytes(serialization.Encoding.DER)
        return hashlib.sha1(der).hexdigest().upper()  # noqa: S324  # an identifier, not a MAC

    @property
    def expiry(self) -> dt.datetime:
        """When the (first) certificate stops being valid."""
        return self.certificate.not_valid_after_utc

    @property
    def pem(self) -> str:
        """Every certificate of the file, PEM."""
        return "".join(_pem(c) for c in self.certificates)


class CaCertificateStore:
    """The trusted CA certificates in ``directory``: read at start, changed through the API.

    Args:
        directory: ``tls/client-ca`` in the data dir (made, 0700, on the first write).
        on_change: called with every certificate after each change, once the file is written.
        clock: unix seconds now, for the created and updated times.

    Raises:
        HubConfigError: a ``.pem`` file in ``directory`` cannot be read or holds no certificate.
    """

    def __init__(
        self,
        directory: Path,
        *,
        on_change: OnChange = _unchanged,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.directory = directory
        self._on_change = on_change
        self._clock = clock
        self._certificates: dict[str, CaCertificate] = {}
        if directory.is_dir():
            for path in sorted(directory.glob("*.pem")):
                self._certificates[path.stem] = _load(path)

    def entries(self) -> list[CaCertificate]:
        """Every trusted certificate file, by name."""
        return [self._certificates[name] for name in sorted(self._certificates)]

    def trusted(self) -> list[x509.Certificate]:
        """Every certificate of every file (what device certificates may chain to)."""
        return [c for entry in self.entries() for c in entry.certificates]

    def get(self, name: str) -> CaCertificate:
        """The certificate called ``name``.

        Raises:
            CertificateNotFound: there is none.
        """
        found = self._certificates.get(name)
        if found is None:
            raise CertificateNotFound(name)
        return found

    def put(
        self,
        name: str,
        certificate: x509.Certificate,
        *,
        if_match: str | None = None,
        create_only: bool = False,
    ) -> tuple[CaCertificate, bool]:
        """Add ``certificate`` as ``name``, or replace the one of that name; True when added.

        Raises:
            InvalidCertificate: ``name`` is not a valid name.
            PreconditionFailed: ``if_match`` is not the current etag (or there is no such
                certificate), or ``create_only`` and the name is taken.
            CertificateError: the file cannot be written.
        """
        check_certificate_name(name)
        current = self._certificates.get(name)
        if create_only and current is not None:
            raise PreconditionFailed(
                f"certificate {name!r} already exists and the request asked to create it only "
                "(If-None-Match: *)"
            )
        _check_etag(name, current, if_match)
        now = self._clock()
        created = current.created.timestamp() if current is not None else now
        text = f"{_CREATED}{_iso(created)}\n{_UPDATED}{_iso(now)}\n{_pem(certificate)}"
        path = self._path(name)
        _write_atomically(path, text.encode("ascii"))
        self._certificates[name] = _load(path)
        self._on_change(self.entries())
        return self._certificates[name], current is None

    def delete(self, name: str, *, if_match: str | None = None) -> CaCertificate:
        """Remove the certificate called ``name``; returns what it was.

        Raises:
            CertificateNotFound: there is none.
            PreconditionFailed: ``if_match`` is not its etag.
            CertificateError: the file cannot be removed.
        """
        current = self.get(name)
        _check_etag(name, current, if_match)
        path = self._path(name)
        try:
            path.unlink(missing_ok=True)
            _sync_directory(path.parent)
        except OSError as error:
            raise CertificateError(f"cannot remove {path}: {error.strerror or error}") from None
        del self._certificates[name]
        self._on_change(self.entries())
        return current

    def _path(self, name: str) -> Path:
        # Names in the store came from file names; names from callers were checked.
        return self.directory / f"{name}.pem"


def _check_etag(name: str, current: CaCertificate | None, if_match: str | None) -> None:
    if if_match is None:
        return
    if current is None:
        raise PreconditionFailed(
            f"certificate {name!r} does not exist, so it cannot match If-Match {if_match!r}"
        )
    if current.etag != if_match:
        raise PreconditionFailed(f"certificate {name!r} etag is {current.etag!r}, not {if_match!r}")


def _iso(moment: float) -> str:
    return dt.datetime.fromtimestamp(moment, dt.UTC).isoformat()


def _load(path: Path) -> CaCertificate:
    try:
        data = path.read_bytes()
        mtime = path.stat().st_mtime
    except OSError as error:
        raise HubConfigError(f"cannot read {path}: {error.strerror or error}") from None
    try:
        certificates = tuple(x509.load_pem_x509_certificates(data))
    except ValueError:
        raise HubConfigError(f"{path} is not a PEM certificate file") from None
    header = data.split(_BEGIN.encode(), 1)[0].decode("utf-8", "replace")
    modified = dt.datetime.fromtimestamp(mtime, dt.UTC)
    return CaCertificate(
        name=path.stem,
        certificates=certificates,
        created=_header_time(header, _CREATED) or modified,
        updated=_header_time(header, _UPDATED) or modified,
        # Over the bytes, which carry the updated time: every write makes a new etag.
        etag=base64.b64encode(hashlib.sha256(data).digest()[:8]).decode("ascii"),
    )


def _header_time(header: str, key: str) -> dt.datetime | None:
    for line in header.splitlines():
        if line.startswith(key):
            try:
                moment = dt.datetime.fromisoformat(line[len(key) :].strip())
            except ValueError:
                return None
            return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)
    return None


def _write_atomically(path: Path, data: bytes) -> None:
    """Write a new file beside ``path`` and rename it into place: readers see old or new."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # The temporary name does not end in .pem, so a crash leaves nothing that is loaded.
        fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            os.chmod(temporary, 0o644)  # a certificate is public; mkstemp makes 0600
            with os.fdopen(fd, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        _sync_directory(path.parent)
    except OSError as error:
        raise CertificateError(f"cannot write {path}: {error.strerror or error}") from None


def _sync_directory(directory: Path) -> None:
    # The rename or unlink is durable once the directory entry is (POSIX).
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
