"""IoT Hub's service JSON for identities, both ways: ``Device`` and ``Module`` bodies.

>>> from iotsec.hub.identity import Identity, SymmetricKeys
>>> device = Identity("dev1", None, "sas", "enabled", SymmetricKeys("a2V5MQ==", "a2V5Mg=="),
...                   generation_id="638", etag="MQ==")
>>> shape = device_json(device, c2d_count=0, connected=False)
>>> shape["authentication"]["symmetricKey"]["primaryKey"], shape["connectionState"]
('a2V5MQ==', 'Disconnected')
>>> spec = parse_identity(shape, device_id="dev1")
>>> spec.status, spec.ca_signed, spec.keys == device.keys
('enabled', False, True)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from iotsec.hub.http.responses import BadRequest
from iotsec.hub.identity import Identity, Status, SymmetricKeys, Thumbprints

__all__ = ["IdentitySpec", "device_json", "module_json", "parse_identity"]

#: What IoT Hub answers for a time that never happened (never connected, never active).
NEVER = "0001-01-01T00:00:00Z"


@dataclass(frozen=True, slots=True)
class IdentitySpec:
    """What a PUT body asks for: status and credentials (None keys: generate, or keep)."""

    status: Status
    keys: SymmetricKeys | None
    thumbprints: Thumbprints | None
    ca_signed: bool


def _time(value: datetime | None) -> str:
    if value is None:
        return NEVER
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _authentication(identity: Identity) -> dict[str, Any]:
    keys, prints = identity.keys, identity.thumbprints
    return {
        "type": identity.auth,
        "symmetricKey": {
            "primaryKey": keys.primary if keys else None,
            "secondaryKey": keys.secondary if keys else None,
        },
        "x509Thumbprint": {
            "primaryThumbprint": prints.primary if prints else None,
            "secondaryThumbprint": prints.secondary if prints else None,
        },
    }


def _common(identity: Identity, *, c2d_count: int, connected: bool) -> dict[str, Any]:
    return {
        "deviceId": identity.device_id,
        "generationId": identity.generation_id,
        "etag": identity.etag,
        "connectionState": "Connected" if connected else "Disconnected",
        "connectionStateUpdatedTime": NEVER,
        "lastActivityTime": NEVER,
        "cloudToDeviceMessageCount": c2d_count,
        "authentication": _authentication(identity),
    }


def device_json(identity: Identity, *, c2d_count: int, connected: bool) -> dict[str, Any]:
    """The ``Device`` body of IoT Hub's registry API."""
    return {
        **_common(identity, c2d_count=c2d_count, connected=connected),
        "status": identity.status,
        "statusReason": None,
        "statusUpdatedTime": _time(identity.created),
        "capabilities": {"iotEdge": False},
    }


def module_json(identity: Identity, *, connected: bool) -> dict[str, Any]:
    """The ``Module`` body of IoT Hub's registry API."""
    return {
        "moduleId": identity.module_id,
        **_common(identity, c2d_count=0, connected=connected),
        "managedBy": None,
    }


def _object(body: dict[str, Any], key: str) -> dict[str, Any]:
    value = body.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRequest(f"{key} must be a JSON object")
    return value


def _text(section: dict[str, Any], key: str, where: str) -> str | None:
    value = section.get(key)
    if value is not None and not isinstance(value, str):
        raise BadRequest(f"{where}.{key} must be a string")
    return value or None


def _keys(authentication: dict[str, Any]) -> SymmetricKeys | None:
    section = _object(authentication, "symmetricKey")
    where = "authentication.symmetricKey"
    primary = _text(section, "primaryKey", where)
    secondary = _text(section, "secondaryKey", where)
    if primary is None and secondary is None:
        return None
    if primary is None or secondary is None:
        raise BadRequest(f"{where} needs both primaryKey and secondaryKey, or neither")
    return SymmetricKeys(primary, secondary)


def _thumbprints(authentication: dict[str, Any]) -> Thumbprints:
    section = _object(authentication, "x509Thumbprint")
    where = "authentication.x509Thumbprint"
    primary = _text(section, "primaryThumbprint", where)
    secondary = _text(section, "secondaryThumbprint", where)
    if primary is None:
        raise BadRequest(f"selfSigned authentication needs {where}.primaryThumbprint")
    return Thumbprints(primary, secondary)


def parse_identity(
    body: dict[str, Any], *, device_id: str, module_id: str | None = None
) -> IdentitySpec:
    """Read a ``Device`` or ``Module`` PUT body; the ids in it, if any, must match the path.

    Raises:
        BadRequest: a mismatched id, an unknown status or authentication type, half a key pair.
    """
    if body.get("deviceId") not in (None, device_id):
        raise BadRequest(f"deviceId {body['deviceId']!r} in the body is not {device_id!r}")
    if module_id is not None and body.get("moduleId") not in (None, module_id):
        raise BadRequest(f"moduleId {body['moduleId']!r} in the body is not {module_id!r}")
    wanted = body.get("status") or "enabled"
    if wanted not in ("enabled", "disabled"):
        raise BadRequest(f"status must be 'enabled' or 'disabled', not {wanted!r}")
    status: Status = "disabled" if wanted == "disabled" else "enabled"
    if _object(body, "capabilities").get("iotEdge"):
        raise BadRequest("IoT Edge devices are not supported", code="NotSupported")
    authentication = _object(body, "authentication")
    kind = authentication.get("type") or "sas"
    if kind == "sas":
        return IdentitySpec(status, _keys(authentication), None, ca_signed=False)
    if kind == "selfSigned":
        return IdentitySpec(status, None, _thumbprints(authentication), ca_signed=False)
    if kind == "certificateAuthority":
        return IdentitySpec(status, None, None, ca_signed=True)
    raise BadRequest(
        f"authentication.type must be sas, selfSigned or certificateAuthority, not {kind!r}"
    )
