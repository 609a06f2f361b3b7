"""IoT Hub's registry REST API: device and module identities, and registry statistics.

PUT without ``If-Match`` creates (409 when the id is taken); PUT with ``If-Match`` (an etag or
``*``) updates, as Microsoft's ``azure-iot-hub`` registry manager sends them. DELETE takes an
``If-Match`` etag or ``*`` (absent means ``*``). Every change gets an operation-log entry.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from iotsec.hub.http.context import HubContext
from iotsec.hub.http.endpoints import Call, Handler, route, service_endpoint
from iotsec.hub.http.responses import BadRequest, JsonResponse, if_match, json_object, quoted
from iotsec.hub.http.shapes import IdentitySpec, device_json, module_json, parse_identity
from iotsec.hub.identity import Identity, Permission

__all__ = ["MAX_TOP", "query_int", "registry_routes"]

#: The most identities one list call returns, as IoT Hub caps ``top``.
MAX_TOP = 1000

_DEVICE = "/devices/{device_id}"
_MODULE = "/devices/{device_id}/modules/{module_id}"


def query_int(request: Request, name: str, default: int, *, low: int, high: int) -> int:
    """An integer query parameter in ``[low, high]``, or ``BadRequest`` naming it."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"query parameter {name} must be an integer, not {raw[:32]!r}") from None
    if not low <= value <= high:
        raise BadRequest(f"query parameter {name} must be between {low} and {high}, not {value}")
    return value


def _device(hub: HubContext, identity: Identity) -> JsonResponse:
    shape = device_json(
        identity,
        c2d_count=hub.c2d.depth(identity.device_id),
        connected=hub.is_connected(identity.device_id, None),
    )
    return JsonResponse(shape, headers={"ETag": quoted(identity.etag)})


def _module(hub: HubContext, identity: Identity) -> JsonResponse:
    connected = hub.is_connected(identity.device_id, identity.module_id)
    return JsonResponse(
        module_json(identity, connected=connected), headers={"ETag": quoted(identity.etag)}
    )


def _check_kind(existing: Identity, spec: IdentitySpec) -> None:
    wanted = (
        "certificateAuthority" if spec.ca_signed else "selfSigned" if spec.thumbprints else "sas"
    )
    if wanted != existing.auth and (spec.ca_signed or existing.auth == "certificateAuthority"):
        raise BadRequest(
            f"{existing.key} uses {existing.auth} authentication; changing it to {wanted} needs "
            "a delete and a create"
        )


async def put_device(hub: HubContext, request: Request, call: Call) -> Response:
    """Create a device (no If-Match) or update it (If-Match etag or ``*``)."""
    assert call.device_id is not None
    spec = parse_identity(await json_object(request), device_id=call.device_id)
    registry = hub.registry
    if request.headers.get("if-match") is None:
        call.properties["action"] = "create"
        identity = registry.create_device(
            call.device_id,
            keys=spec.keys,
            thumbprints=spec.thumbprints,
            ca_signed=spec.ca_signed,
            status=spec.status,
        )
    else:
        call.properties["action"] = "update"
        _check_kind(registry.get_device(call.device_id), spec)
        identity = registry.update_device(
            call.device_id,
            status=spec.status,
            keys=spec.keys,
            thumbprints=spec.thumbprints,
            if_match=if_match(request),
        )
    call.properties["status"] = identity.status
    return _device(hub, identity)


async def get_device(hub: HubContext, request: Request, call: Call) -> Response:
    """One device identity, with its keys."""
    assert call.device_id is not None
    return _device(hub, hub.registry.get_device(call.device_id))


async def list_devices(hub: HubContext, request: Request, call: Call) -> Response:
    """Up to ``top`` devices (default and most 1000), from ``skip`` (an iotsec extension)."""
    top = query_int(request, "top", MAX_TOP, low=1, high=MAX_TOP)
    skip = query_int(request, "skip", 0, low=0, high=2**31)
    devices = hub.registry.list_devices(limit=top, offset=skip)
    return JsonResponse(
        [
            device_json(
                d,
                c2d_count=hub.c2d.depth(d.device_id),
                connected=hub.is_connected(d.device_id, None),
            )
            for d in devices
        ]
    )


async def delete_device(hub: HubContext, request: Request, call: Call) -> Response:
    """Delete a device (and its modules, twin and queued messages); If-Match etag or ``*``."""
    assert call.device_id is not None
    hub.registry.delete_device(call.device_id, if_match=if_match(request))
    call.properties["purgedMessages"] = str(hub.c2d.purge(call.device_id))
    return Response(status_code=204)


async def put_module(hub: HubContext, request: Request, call: Call) -> Response:
    """Create a module (no If-Match) or update it (If-Match etag or ``*``).

    Modules have no status of their own: they follow their device's, so ``status`` is ignored.
    """
    assert call.device_id is not None and call.module_id is not None
    body = await json_object(request)
    spec = parse_identity(body, device_id=call.device_id, module_id=call.module_id)
    registry = hub.registry
    if request.headers.get("if-match") is None:
        call.properties["action"] = "create"
        identity = registry.create_module(
            call.device_id,
            call.module_id,
            keys=spec.keys,
            thumbprints=spec.thumbprints,
            ca_signed=spec.ca_signed,
        )
    else:
        call.properties["action"] = "update"
        _check_kind(registry.get_module(call.device_id, call.module_id), spec)
        identity = registry.update_module(
            call.device_id,
            call.module_id,
            keys=spec.keys,
            thumbprints=spec.thumbprints,
            if_match=if_match(request),
        )
    return _module(hub, identity)


async def get_module(hub: HubContext, request: Request, call: Call) -> Response:
    """One module identity, with its keys."""
    assert call.device_id is not None and call.module_id is not None
    return _module(hub, hub.registry.get_module(call.device_id, call.module_id))


async def list_modules(hub: HubContext, request: Request, call: Call) -> Response:
    """Every module of a device (404 when the device is unknown)."""
    assert call.device_id is not None
    modules = hub.registry.list_modules(call.device_id)
    return JsonResponse(
        [module_json(m, connected=hub.is_connected(m.device_id, m.module_id)) for m in modules]
    )


async def delete_module(hub: HubContext, request: Request, call: Call) -> Response:
    """Delete a module and its twin; If-Match etag or ``*``."""
    assert call.device_id is not None and call.module_id is not None
    hub.registry.delete_module(call.device_id, call.module_id, if_match=if_match(request))
    return Response(status_code=204)


async def device_statistics(hub: HubContext, request: Request, call: Call) -> Response:
    """``{"totalDeviceCount", "enabledDeviceCount", "disabledDeviceCount"}``."""
    total = enabled = offset = 0
    while True:
        page = hub.registry.list_devices(limit=MAX_TOP, offset=offset)
        total += len(page)
        enabled += sum(1 for d in page if d.enabled)
        offset += len(page)
        if len(page) < MAX_TOP:
            break
    return JsonResponse(
        {
            "totalDeviceCount": total,
            "enabledDeviceCount": enabled,
            "disabledDeviceCount": total - enabled,
        }
    )


def registry_routes(hub: HubContext) -> list[Route]:
    """The registry API's routes, bound to ``hub``."""

    def bind(
        path: str, method: str, permission: Permission, operation: str, handler: Handler
    ) -> Route:
        changes = method in ("PUT", "DELETE")
        category: Any = "DeviceIdentityOperations" if changes else None
        endpoint = service_endpoint(hub, permission, operation, handler, category=category)
        return route(path, endpoint, method, f"registry.{operation}")

    return [
        bind("/devices", "GET", "RegistryRead", "listDevices", list_devices),
        bind(_DEVICE, "PUT", "RegistryWrite", "createOrUpdateDevice", put_device),
        bind(_DEVICE, "GET", "RegistryRead", "getDevice", get_device),
        bind(_DEVICE, "DELETE", "RegistryWrite", "deleteDevice", delete_device),
        bind(f"{_DEVICE}/modules", "GET", "RegistryRead", "listModules", list_modules),
        bind(_MODULE, "PUT", "RegistryWrite", "createOrUpdateModule", put_module),
        bind(_MODULE, "GET", "RegistryRead", "getModule", get_module),
        bind(_MODULE, "DELETE", "RegistryWrite", "deleteModule", delete_module),
        bind("/statistics/devices", "GET", "RegistryRead", "deviceStatistics", device_statistics),
    ]
