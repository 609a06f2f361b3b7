"""The identity registry: the store protocol every backend implements, and IoT Hub's id rules.

``RegistryStore`` is the seam: ``SqliteRegistry`` (``iotsec.hub.sqlite_registry``, also
importable from here) is the embedded default, and a PostgreSQL store can take its place.
The rules below are backend-independent; every store applies them before it writes.

Each device gets the security module ``azureiotsecurity`` (SAS, its own keys, its own module
twin) and a ``SecurityGroup`` tag on its device twin, as ASC for IoT set devices up.
Modules have no status of their own (IoT Hub cannot disable a module): a module reports its
device's status, so disabling a device shuts out its modules too.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import TYPE_CHECKING, Any, Literal, Protocol

from iotsec.hub.errors import InvalidIdentity
from iotsec.hub.hubconfig import HubConfiguration
from iotsec.hub.identity import (
    AccessPolicy,
    AuthKind,
    Identity,
    Status,
    SymmetricKeys,
    Thumbprints,
)
from iotsec.hub.twins import Twin

if TYPE_CHECKING:
    from iotsec.hub.sqlite_registry import SqliteRegistry

__all__ = [
    "KeyChoice",
    "RegistryStore",
    "SqliteRegistry",
    "check_credentials",
    "check_id",
    "check_keys",
    "check_status",
    "check_thumbprints",
    "parse_if_match",
]

#: Which of a policy's keys to regenerate: one at a time lets clients roll over.
KeyChoice = Literal["primary", "secondary", "both"]

# IoT Hub's identity rule: up to 128 ASCII alphanumerics plus - . % _ * ? ! ( ) , : = @ $ '
# IoT Hub's REST reference also allows + # ; but MQTT topics cannot carry + or #, and this
# must match iotsec.protocol.topics, which builds and parses the topics these ids go into.
_ID = re.compile(r"[A-Za-z0-9\-.%_*?!(),:=@$']{1,128}")
_HEX = re.compile(r"[0-9A-Fa-f]+")
_KEY_BYTES = (16, 64)  # IoT Hub accepts symmetric keys of 16 to 64 bytes
_THUMBPRINT_LENGTHS = (40, 64)  # SHA-1 or SHA-256, in hex


class RegistryStore(Protocol):
    """Devices, modules, their twins, the access policies and the hub configuration.

    Every call is one short transaction; implementations are safe to call from many threads.
    ``if_match`` is an etag (quoted or not); ``"*"`` or None match anything.
    """

    def identity(self, device_id: str, module_id: str | None) -> Identity | None:
        """The identity a device or module connects as, or None: the lookup behind every connect."""
        ...

    def create_device(
        self,
        device_id: str,
        *,
        keys: SymmetricKeys | None = None,
        thumbprints: Thumbprints | None = None,
        ca_signed: bool = False,
        status: Status = "enabled",
        tags: dict[str, Any] | None = None,
        security_group: str | None = None,
    ) -> Identity:
        """A new device and its security module; SAS keys are generated if no credential given.

        ``security_group`` becomes the ``SecurityGroup`` tag; when None, the tag from ``tags``
        is kept, else the group is "default".
        """
        ...

    def get_device(self, device_id: str) -> Identity:
        """The device, or ``IdentityNotFound``."""
        ...

    def list_devices(self, *, limit: int = 1000, offset: int = 0) -> list[Identity]:
        """Devices ordered by id (byte order), a page at a time."""
        ...

    def update_device(
        self,
        device_id: str,
        *,
        status: Status | None = None,
        keys: SymmetricKeys | None = None,
        thumbprints: Thumbprints | None = None,
        if_match: str | None = None,
    ) -> Identity:
        """Change status or credentials (keys switch to SAS, thumbprints to self-signed)."""
        ...

    def delete_device(self, device_id: str, *, if_match: str | None = None) -> None:
        """Delete the device, its modules and all their twins."""
        ...

    def device_count(self) -> int:
        """How many devices the hub has (modules not counted)."""
        ...

    def create_module(
        self,
        device_id: str,
        module_id: str,
        *,
        keys: SymmetricKeys | None = None,
        thumbprints: Thumbprints | None = None,
        ca_signed: bool = False,
    ) -> Identity:
        """A new module of an existing device, with its module twin."""
        ...

    def get_module(self, device_id: str, module_id: str) -> Identity:
        """The module, or ``IdentityNotFound``."""
        ...

    def list_modules(self, device_id: str) -> list[Identity]:
        """The device's modules, ordered by id."""
        ...

    def update_module(
        self,
        device_id: str,
        module_id: str,
        *,
        keys: SymmetricKeys | None = None,
        thumbprints: Thumbprints | None = None,
        if_match: str | None = None,
    ) -> Identity:
        """Change a module's credentials."""
        ...

    def delete_module(self, device_id: str, module_id: str, *, if_match: str | None = None) -> None:
        """Delete the module and its twin."""
        ...

    def get_twin(self, device_id: str, module_id: str | None = None) -> Twin:
        """The device twin (``module_id`` None) or a module twin."""
        ...

    def patch_desired(
        self,
        device_id: str,
        module_id: str | None,
        patch: dict[str, Any],
        *,
        if_match: str | None = None,
    ) -> Twin:
        """Merge a patch into the desired properties; returns the twin with the new ``$version``."""
        ...

    def replace_desired(
        self,
        device_id: str,
        module_id: str | None,
        desired: dict[str, Any],
        *,
        if_match: str | None = None,
    ) -> Twin:
        """Replace all desired properties."""
        ...

    def patch_reported(self, device_id: str, module_id: str | None, patch: dict[str, Any]) -> Twin:
        """Merge a device's patch into its reported properties."""
        ...

    def patch_tags(
        self,
        device_id: str,
        patch: dict[str, Any],
        *,
        module_id: str | None = None,
        if_match: str | None = None,
    ) -> Twin:
        """Merge a patch into the twin's tags."""
        ...

    def replace_tags(
        self,
        device_id: str,
        tags: dict[str, Any],
        *,
        module_id: str | None = None,
        if_match: str | None = None,
    ) -> Twin:
        """Replace all of the twin's tags."""
        ...

    def security_group(self, device_id: str) -> str:
        """The device's security group: its ``SecurityGroup`` tag, else "default"."""
        ...

    def policy(self, name: str) -> AccessPolicy | None:
        """A shared access policy by name, or None."""
        ...

    def policies(self) -> list[AccessPolicy]:
        """All shared access policies, ordered by name."""
        ...

    def regenerate_policy_keys(self, name: str, *, which: KeyChoice = "both") -> AccessPolicy:
        """New keys for a policy (one at a time lets clients roll over)."""
        ...

    def hub_configuration(self) -> HubConfiguration:
        """The stored hub configuration, or the default one when never set."""
        ...

    def set_hub_configuration(self, config: HubConfiguration) -> None:
        """Store the hub configuration."""
        ...

    def custom_alerts(self, group: str) -> dict[str, Any] | None:
        """The custom-alerts document of a security group (case-insensitive), or None."""
        ...

    def custom_alert_groups(self) -> dict[str, dict[str, Any]]:
        """Every group's custom-alerts document, by group name (as last written)."""
        ...

    def set_custom_alerts(self, group: str, document: dict[str, Any]) -> None:
        """Store a group's custom-alerts document (already validated), replacing any."""
        ...

    def delete_custom_alerts(self, group: str) -> bool:
        """Remove a group's custom alerts; False when it had none."""
        ...

    def close(self) -> None:
        """Release the store; later calls fail."""
        ...


def check_id(value: str, field: str = "device_id") -> str:
    """``value`` if it is a valid device or module id, else ``InvalidIdentity`` naming ``field``."""
    if not isinstance(value, str) or not _ID.fullmatch(value):
        shown = repr(value[:64]) if isinstance(value, str) else type(value).__name__
        raise InvalidIdentity(
            f"invalid {field} {shown}: expected 1-128 ASCII letters, digits or "
            "- . % _ * ? ! ( ) , : = @ $ '",
            field=field,
        )
    return value


def check_status(status: str) -> Status:
    """``status`` when it is "enabled" or "disabled"."""
    if status == "enabled":
        return "enabled"
    if status == "disabled":
        return "disabled"
    raise InvalidIdentity(f"status must be enabled or disabled, not {status!r}", field="status")


def check_keys(keys: SymmetricKeys, field: str = "keys") -> SymmetricKeys:
    """``keys`` when both are base64 of 16 to 64 bytes (IoT Hub's rule); never shows the key."""
    for name, key in (("primary", keys.primary), ("secondary", keys.secondary)):
        where = f"{field}.{name}"
        if not isinstance(key, str):
            raise InvalidIdentity(f"{where} must be a base64 string", field=where)
        try:
            raw = base64.b64decode(key.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError):
            raise InvalidIdentity(f"{where} is not valid base64", field=where) from None
        low, high = _KEY_BYTES
        if not low <= len(raw) <= high:
            raise InvalidIdentity(
                f"{where} decodes to {len(raw)} bytes; IoT Hub keys are {low} to {high} bytes",
                field=where,
            )
    return keys


def check_thumbprints(thumbprints: Thumbprints, field: str = "thumbprints") -> Thumbprints:
    """Thumbprints in upper case, when each is 40 (SHA-1) or 64 (SHA-256) hex digits."""
    if thumbprints.primary is None:
        raise InvalidIdentity(
            f"{field}.primary is required for self-signed X.509", field=f"{field}.primary"
        )
    normalized: list[str | None] = []
    for name, value in (("primary", thumbprints.primary), ("secondary", thumbprints.secondary)):
        where = f"{field}.{name}"
        if value is None:
            normalized.append(None)
            continue
        if (
            not isinstance(value, str)
            or len(value) not in _THUMBPRINT_LENGTHS
            or not _HEX.fullmatch(value)
        ):
            raise InvalidIdentity(
                f"{where} must be 40 (SHA-1) or 64 (SHA-256) hex digits", field=where
            )
        normalized.append(value.upper())
    return Thumbprints(normalized[0], normalized[1])


def check_credentials(
    keys: SymmetricKeys | None,
    thumbprints: Thumbprints | None,
    ca_signed: bool,
    *,
    generate: bool = True,
) -> tuple[AuthKind, SymmetricKeys | None, Thumbprints | None]:
    """The authentication kind and checked credentials; at most one kind may be given.

    With none given, fresh SAS keys when ``generate``, else ``InvalidIdentity``.
    """
    given = [name for name, v in (("keys", keys), ("thumbprints", thumbprints)) if v is not None]
    if ca_signed:
        given.append("ca_signed")
    if len(given) > 1:
        raise InvalidIdentity(
            f"give one kind of credential, not {' and '.join(given)}", field="credentials"
        )
    if thumbprints is not None:
        return "selfSigned", None, check_thumbprints(thumbprints)
    if ca_signed:
        return "certificateAuthority", None, None
    if keys is not None:
        return "sas", check_keys(keys), None
    if not generate:
        raise InvalidIdentity("no credential given", field="credentials")
    return "sas", SymmetricKeys.generate(), None


def parse_if_match(if_match: str | None) -> str | None:
    """The bare etag of an ``If-Match`` value; None for None or ``*`` (matches anything)."""
    if if_match is None:
        return None
    value = if_match.strip()
    if value.startswith("W/"):
        value = value[2:]
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    return None if value == "*" else value


def __getattr__(name: str) -> Any:
    # The SQLite store imports the rules above, so it is loaded on first use, not at import.
    if name == "SqliteRegistry":
        from iotsec.hub.sqlite_registry import SqliteRegistry  # noqa: PLC0415  # see above

        return SqliteRegistry
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
