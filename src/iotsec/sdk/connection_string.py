"""IoT Hub device connection strings, and the credentials a transport needs to connect.

>>> cs = ConnectionString.parse(
...     "HostName=hub.example.net;DeviceId=dev1;SharedAccessKey=c2VjcmV0LWtleQ==")
>>> cs.device_id, cs.resource_uri
('dev1', 'hub.example.net/devices/dev1')
>>> str(cs)
'HostName=hub.example.net;DeviceId=dev1;SharedAccessKey=<redacted>'
"""

from __future__ import annotations

import binascii
import difflib
import re
import ssl
from base64 import b64decode
from dataclasses import dataclass, field
from pathlib import Path

from iotsec.protocol.sas import resource_uri
from iotsec.sdk.errors import ConnectionStringError

__all__ = ["ConnectionString", "DeviceAuth"]

_HOST_NAME = "HostName"
_DEVICE_ID = "DeviceId"
_MODULE_ID = "ModuleId"
_KEY = "SharedAccessKey"
_KEY_NAME = "SharedAccessKeyName"
_X509 = "x509"
_GATEWAY = "GatewayHostName"
_KNOWN = (_HOST_NAME, _DEVICE_ID, _MODULE_ID, _KEY, _KEY_NAME, _X509, _GATEWAY)
_UNSUPPORTED = {
    "SharedAccessSignature": "a fixed SharedAccessSignature is not supported; give the "
    "SharedAccessKey so tokens can be renewed",
}

# IoT Hub's rule for device and module ids: up to 128 ASCII letters, digits and - . % _ * ? ! ( )
# , : = @ $ ' (no '/', which would change the resource URI the SAS token signs).
_ID = re.compile(r"[A-Za-z0-9\-.%_*?!(),:=@$']{1,128}")
_HOST = re.compile(r"[A-Za-z0-9\-.:\[\]]{1,255}")


@dataclass(frozen=True, slots=True)
class ConnectionString:
    """A parsed device or module connection string; the key never appears in repr or str."""

    host_name: str
    device_id: str
    module_id: str | None = None
    shared_access_key: str | None = field(default=None, repr=False)
    shared_access_key_name: str | None = None
    x509: bool = False
    gateway_host_name: str | None = None

    def __post_init__(self) -> None:
        _check_host(_HOST_NAME, self.host_name)
        _check_id(_DEVICE_ID, self.device_id)
        if self.module_id is not None:
            _check_id(_MODULE_ID, self.module_id)
        if self.gateway_host_name is not None:
            _check_host(_GATEWAY, self.gateway_host_name)
        if self.x509 and self.shared_access_key is not None:
            raise ConnectionStringError(
                f"{_KEY} and {_X509}=true are exclusive: choose one way to authenticate"
            )
        if not self.x509 and self.shared_access_key is None:
            raise ConnectionStringError(f"missing key {_KEY} (or {_X509}=true for certificates)")
        if self.shared_access_key is not None:
            _check_key(self.shared_access_key)
        if self.shared_access_key_name is not None and self.shared_access_key is None:
            raise ConnectionStringError(f"{_KEY_NAME} needs a {_KEY}")
        if self.shared_access_key_name == "":
            raise ConnectionStringError(f"empty value for key {_KEY_NAME}")

    @classmethod
    def parse(cls, text: str) -> ConnectionString:
        """Parse ``HostName=...;DeviceId=...;[ModuleId=...;]SharedAccessKey=...``.

        Raises:
            ConnectionStringError: naming the missing, unknown, duplicate or invalid key.
        """
        values: dict[str, str] = {}
        for index, raw in enumerate(text.strip().split(";")):
            part = raw.strip()
            if not part:
                continue  # tolerate a trailing or doubled ';'
            key, sep, value = (piece.strip() for piece in part.partition("="))
            if not sep:
                raise ConnectionStringError(
                    f"part {index + 1} ({_shown(key)!r}) is not of the form Key=value"
                )
            if key not in _KNOWN:
                raise ConnectionStringError(_unknown_key(key))
            if key in values:
                raise ConnectionStringError(f"duplicate key {key}")
            if not value:
                raise ConnectionStringError(f"empty value for key {key}")
            values[key] = value
        for required in (_HOST_NAME, _DEVICE_ID):
            if required not in values:
                raise ConnectionStringError(f"missing key {required}")
        x509 = values.get(_X509)
        if x509 is not None and x509.lower() not in ("true", "false"):
            raise ConnectionStringError(f"{_X509} must be true or false, not {x509!r}")
        return cls(
            host_name=values[_HOST_NAME],
            device_id=values[_DEVICE_ID],
            module_id=values.get(_MODULE_ID),
            shared_access_key=values.get(_KEY),
            shared_access_key_name=values.get(_KEY_NAME),
            x509=x509 is not None and x509.lower() == "true",
            gateway_host_name=values.get(_GATEWAY),
        )

    @property
    def resource_uri(self) -> str:
        """The resource this identity's SAS tokens sign: ``{host}/devices/{id}[/modules/{m}]``."""
        return resource_uri(self.host_name, self.device_id, self.module_id)

    @property
    def connect_host(self) -> str:
        """The host to open connections to: the gateway when there is one, else the hub."""
        return self.gateway_host_name or self.host_name

    @property
    def auth(self) -> str:
        """``"x509"`` or ``"sas"``."""
        return "x509" if self.x509 else "sas"

    def __repr__(self) -> str:
        parts = [f"host_name={self.host_name!r}", f"device_id={self.device_id!r}"]
        if self.module_id is not None:
            parts.append(f"module_id={self.module_id!r}")
        if self.gateway_host_name is not None:
            parts.append(f"gateway_host_name={self.gateway_host_name!r}")
        parts.append(f"auth={self.auth!r}")
        if self.shared_access_key_name is not None:
            parts.append(f"shared_access_key_name={self.shared_access_key_name!r}")
        if self.shared_access_key is not None:
            parts.append("shared_access_key=<redacted>")
        return f"ConnectionString({', '.join(parts)})"

    def __str__(self) -> str:
        parts = [f"{_HOST_NAME}={self.host_name}", f"{_DEVICE_ID}={self.device_id}"]
        if self.module_id is not None:
            parts.append(f"{_MODULE_ID}={self.module_id}")
        if self.shared_access_key_name is not None:
            parts.append(f"{_KEY_NAME}={self.shared_access_key_name}")
        if self.shared_access_key is not None:
            parts.append(f"{_KEY}=<redacted>")
        if self.x509:
            parts.append(f"{_X509}=true")
        if self.gateway_host_name is not None:
            parts.append(f"{_GATEWAY}={self.gateway_host_name}")
        return ";".join(parts)


@dataclass(frozen=True, slots=True)
class DeviceAuth:
    """The identity plus its TLS files: CA to trust (system store if None), X.509 cert and key."""

    connection: ConnectionString
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    def __post_init__(self) -> None:
        if (self.cert_file is None) != (self.key_file is None):
            raise ConnectionStringError("cert_file and key_file must be given together")
        if self.connection.x509 and self.cert_file is None:
            raise ConnectionStringError(
                f"{_X509}=true needs a client certificate: pass cert_file and key_file"
            )
        if not self.connection.x509 and self.cert_file is not None:
            raise ConnectionStringError(
                f"cert_file was given but the connection string authenticates with {_KEY}; "
                f"use {_X509}=true for certificate authentication"
            )

    @classmethod
    def from_connection_string(
        cls,
        connection: ConnectionString | str,
        *,
        ca_file: str | Path | None = None,
        cert_file: str | Path | None = None,
        key_file: str | Path | None = None,
    ) -> DeviceAuth:
        """Credentials from a connection string plus optional certificate files."""
        conn = (
            connection
            if isinstance(connection, ConnectionString)
            else (ConnectionString.parse(connection))
        )
        return cls(conn, _path(ca_file), _path(cert_file), _path(key_file))

    def ssl_context(self) -> ssl.SSLContext:
        """A client TLS context: verifies the hub against ``ca_file`` and presents the cert.

        Raises:
            ConnectionStringError: a certificate, key or CA file is missing or unreadable.
        """
        try:
            context = ssl.create_default_context(
                cafile=str(self.ca_file) if self.ca_file is not None else None
            )
        except (OSError, ssl.SSLError) as exc:
            raise ConnectionStringError(f"ca_file {self.ca_file}: {_reason(exc)}") from exc
        if self.cert_file is not None and self.key_file is not None:
            try:
                context.load_cert_chain(str(self.cert_file), str(self.key_file))
            except (OSError, ssl.SSLError) as exc:
                raise ConnectionStringError(
                    f"cert_file {self.cert_file} / key_file {self.key_file}: {_reason(exc)}",
                ) from exc
        return context


def _path(value: str | Path | None) -> Path | None:
    return None if value is None else Path(value)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _shown(text: str) -> str:
    # Never echo something that may be a key: a part without '=' is shown cut short.
    return text if len(text) <= 16 else text[:16] + "..."


def _unknown_key(key: str) -> str:
    if key in _UNSUPPORTED:
        return f"unsupported key {key}: {_UNSUPPORTED[key]}"
    folded = {known.lower(): known for known in _KNOWN}
    close = (
        [folded[key.lower()]]
        if key.lower() in folded
        else difflib.get_close_matches(key, _KNOWN, n=1, cutoff=0.6)
    )
    hint = f" (did you mean {close[0]}?)" if close else ""
    return f"unknown key {_shown(key)!r}{hint}; known keys: {', '.join(_KNOWN)}"


def _check_id(key: str, value: str) -> None:
    if not _ID.fullmatch(value):
        raise ConnectionStringError(
            f"invalid {key} {_shown(value)!r}: expected 1-128 ASCII letters, digits or "
            "- . % _ * ? ! ( ) , : = @ $ '"
        )


def _check_host(key: str, value: str) -> None:
    if not _HOST.fullmatch(value):
        raise ConnectionStringError(f"invalid {key} {_shown(value)!r}: expected a host name")


def _check_key(value: str) -> None:
    try:
        raw = b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ConnectionStringError(f"{_KEY} is not valid base64") from None
    if not raw:
        raise ConnectionStringError(f"{_KEY} is empty")
