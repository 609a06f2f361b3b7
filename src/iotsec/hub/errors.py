"""Errors of the hub (see ``iotsec.errors`` for the whole tree)::

HubError
+-- RegistryError
|   +-- IdentityNotFound        no such device, module or policy
|   +-- IdentityExists          a create for an id that is taken
|   +-- PreconditionFailed      an If-Match etag that no longer matches
|   +-- InvalidIdentity         an id, key or thumbprint that IoT Hub would refuse
+-- TwinError
|   +-- TwinTooLarge            a twin section over its size limit (8 KB tags, 32 KB properties)
|   +-- InvalidTwinPatch        not a JSON object, too deep, or a forbidden key
+-- CertificateError            the trusted CA certificates of the service API's /certificates
|   +-- InvalidCertificate      a name or certificate the hub will not trust; ``field`` says which
|   +-- CertificateNotFound     no trusted CA certificate of that name
+-- AuthFailure                 a refused connect or request; ``reason`` says which check failed
+-- HubConfigError              hub configuration that cannot be used (bad CIDR, TLS version)
+-- PacketError                 a malformed MQTT packet; the connection is closed
+-- RateLimited                 a device over its message rate
"""

from __future__ import annotations

from enum import StrEnum

from iotsec.errors import IotsecError

__all__ = [
    "AuthFailure",
    "AuthFailureReason",
    "CertificateError",
    "CertificateNotFound",
    "HubConfigError",
    "HubError",
    "IdentityExists",
    "IdentityNotFound",
    "InvalidCertificate",
    "InvalidIdentity",
    "InvalidTwinPatch",
    "PacketError",
    "PreconditionFailed",
    "RateLimited",
    "RegistryError",
    "TwinError",
    "TwinTooLarge",
]


class HubError(IotsecError):
    """Base class of the hub's errors."""


class RegistryError(HubError):
    """Base class of registry errors."""


class IdentityNotFound(RegistryError):
    """No such device, module or access policy (``kind`` says which; for a policy, its name)."""

    def __init__(
        self, device_id: str, module_id: str | None = None, *, kind: str = "device"
    ) -> None:
        what = f"module {device_id}/{module_id}" if module_id else f"{kind} {device_id}"
        super().__init__(f"{what} not found")
        self.device_id = device_id
        self.module_id = module_id
        self.kind = "module" if module_id else kind


class IdentityExists(RegistryError):
    """A create for a device or module id that is already taken."""

    def __init__(self, device_id: str, module_id: str | None = None) -> None:
        what = f"module {device_id}/{module_id}" if module_id else f"device {device_id}"
        super().__init__(f"{what} already exists")
        self.device_id = device_id
        self.module_id = module_id


class PreconditionFailed(RegistryError):
    """An ``If-Match`` etag that does not match the current one."""


class InvalidIdentity(RegistryError):
    """An id, key or thumbprint that IoT Hub would refuse; ``field`` names it."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class TwinError(HubError):
    """Base class of twin errors."""


class TwinTooLarge(TwinError):
    """A twin section that would be over its size limit after the patch."""

    def __init__(self, section: str, size: int, limit: int) -> None:
        super().__init__(f"twin {section} would be {size} bytes, over the {limit}-byte limit")
        self.section = section
        self.size = size
        self.limit = limit


class InvalidTwinPatch(TwinError):
    """A twin patch that is not a JSON object, is too deep, or sets a forbidden key.

    ``path`` is the JSON path of the offending key or value (``desired.a.b``), when known.
    """

    def __init__(self, reason: str, *, path: str | None = None) -> None:
        super().__init__(f"{path}: {reason}" if path else reason)
        self.reason = reason
        self.path = path


class CertificateError(HubError):
    """Base class of the errors about the CA certificates the hub trusts."""


class InvalidCertificate(CertificateError):
    """A certificate name or body the hub will not trust.

    ``field`` is the JSON path of what is wrong (``name``, ``properties.certificate``);
    ``reason`` says why, without repeating the submitted text.
    """

    def __init__(self, reason: str, *, field: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.reason = reason
        self.field = field


class CertificateNotFound(CertificateError):
    """No trusted CA certificate is called ``name``."""

    def __init__(self, name: str) -> None:
        super().__init__(f"certificate {name!r} not found")
        self.name = name


class AuthFailureReason(StrEnum):
    """Why a connect or request was refused; recorded in the operation log."""

    EXPIRED_TOKEN = "expired-token"  # noqa: S105  # a reason name, not a secret
    BAD_SIGNATURE = "bad-signature"
    MALFORMED_TOKEN = "malformed-token"  # noqa: S105  # a reason name, not a secret
    WRONG_IDENTITY = "wrong-identity"  # a token or certificate for another device
    UNKNOWN_DEVICE = "unknown-device"
    DISABLED_IDENTITY = "disabled-identity"
    IP_FILTERED = "ip-filtered"
    BAD_CERTIFICATE = "bad-certificate"
    NO_CREDENTIALS = "no-credentials"
    INSUFFICIENT_PERMISSION = "insufficient-permission"
    TOPIC_NOT_ALLOWED = "topic-not-allowed"


class AuthFailure(HubError):
    """A refused connect or request; ``reason`` names the failed check, ``detail`` explains."""

    def __init__(
        self,
        reason: AuthFailureReason,
        detail: str,
        *,
        device_id: str | None = None,
        module_id: str | None = None,
    ) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail
        self.device_id = device_id
        self.module_id = module_id


class HubConfigError(HubError):
    """Hub configuration that cannot be used; the message names the setting."""


class PacketError(HubError):
    """A malformed or forbidden MQTT packet; the connection is closed and the reason logged."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RateLimited(HubError):
    """A device over its message rate."""

    def __init__(self, device_id: str, limit: float) -> None:
        super().__init__(f"device {device_id} is over its limit of {limit:g} messages/s")
        self.device_id = device_id
        self.limit = limit
