"""Identities the hub knows: devices, modules and shared access policies, as typed values."""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

__all__ = [
    "DEFAULT_POLICIES",
    "SECURITY_MODULE_ID",
    "AccessPolicy",
    "AuthKind",
    "Identity",
    "Permission",
    "Status",
    "SymmetricKeys",
    "Thumbprints",
    "new_key",
]

#: The module every device gets for its security agent, as in ASC.
SECURITY_MODULE_ID = "azureiotsecurity"

#: IoT Hub's authentication types.
AuthKind = Literal["sas", "selfSigned", "certificateAuthority"]
Status = Literal["enabled", "disabled"]
Permission = Literal["RegistryRead", "RegistryWrite", "ServiceConnect", "DeviceConnect"]


def new_key() -> str:
    """A fresh 256-bit symmetric key, base64 encoded, as IoT Hub generates them."""
    return base64.b64encode(secrets.token_bytes(32)).decode("ascii")


@dataclass(frozen=True, slots=True)
class SymmetricKeys:
    """A primary and a secondary base64 key. Never shown in reprs or logs."""

    primary: str = field(repr=False)
    secondary: str = field(repr=False)

    @classmethod
    def generate(cls) -> SymmetricKeys:
        """Two fresh keys."""
        return cls(new_key(), new_key())


@dataclass(frozen=True, slots=True)
class Thumbprints:
    """Certificate thumbprints (upper-case hex SHA-1 or SHA-256) for self-signed X.509."""

    primary: str | None = None
    secondary: str | None = None


@dataclass(frozen=True, slots=True)
class Identity:
    """A device (``module_id`` None) or a module, with its credentials and status."""

    device_id: str
    module_id: str | None
    auth: AuthKind
    status: Status
    keys: SymmetricKeys | None = None
    thumbprints: Thumbprints | None = None
    generation_id: str = ""
    etag: str = ""
    created: datetime | None = None

    @property
    def key(self) -> str:
        """``device`` or ``device/module``: the identity as MQTT client ids spell it."""
        return self.device_id if self.module_id is None else f"{self.device_id}/{self.module_id}"

    @property
    def enabled(self) -> bool:
        """True when the identity may connect."""
        return self.status == "enabled"


@dataclass(frozen=True, slots=True)
class AccessPolicy:
    """A hub-level shared access policy: a name, its permissions and its keys."""

    name: str
    permissions: frozenset[Permission]
    keys: SymmetricKeys


#: The policies every hub starts with, as IoT Hub creates them.
DEFAULT_POLICIES: dict[str, frozenset[Permission]] = {
    "iothubowner": frozenset({"RegistryRead", "RegistryWrite", "ServiceConnect", "DeviceConnect"}),
    "service": frozenset({"ServiceConnect"}),
    "device": frozenset({"DeviceConnect"}),
    "registryRead": frozenset({"RegistryRead"}),
    "registryReadWrite": frozenset({"RegistryRead", "RegistryWrite"}),
}
