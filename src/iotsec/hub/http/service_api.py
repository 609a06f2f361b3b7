"""The rest of the service API: twins, cloud-to-device send, hub configuration, dead letters.

Twins follow IoT Hub's ``/twins/{id}`` calls: GET, PATCH merging ``tags`` and
``properties.desired``, PUT replacing them, under ``If-Match``. Sending a cloud-to-device
message is AMQP-only in IoT Hub; iotsec takes it over HTTPS as
``POST /devices/{id}/messages/deviceBound`` with the body and ``iothub-*`` headers, the same
headers a device receives.
"""

from __future__ import annotations

import base64
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from iotsec.hub.deadletters import DeadLetter
from iotsec.hub.errors import PreconditionFailed
from iotsec.hub.http.context import HubContext
from iotsec.hub.http.credentials import Permissions
from iotsec.hub.http.device_api import message_from_headers
from iotsec.hub.http.endpoints import Call, Handler, notify, route, service_endpoint
from iotsec.hub.http.registry_api import MAX_TOP, query_int
from iotsec.hub.http.responses import (
    BadRequest,
    JsonResponse,
    if_match,
    json_object,
    quoted,
    read_body,
)
from iotsec.hub.hubconfig import HubConfiguration
from iotsec.hub.twins import Twin

__all__ = ["MAX_C2D_BYTES", "service_routes"]

#: IoT Hub's limit for a cloud-to-device message.
MAX_C2D_BYTES = 65_536

_TWIN = "/twins/{device_id}"
_MODULE_TWIN = "/twins/{device_id}/modules/{module_id}"


def _twin_sections(
    body: dict[str, Any], device_id: str
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The ``tags`` and ``properties.desired`` of a twin body (None when absent)."""
    if body.get("deviceId") not in (None, device_id):
        raise BadRequest(f"deviceId {body['deviceId']!r} in the body is not {device_id!r}")
    tags = body.get("tags")
    if tags is not None and not isinstance(tags, dict):
        raise BadRequest("tags must be a JSON object")
    properties = body.get("properties") or {}
    if not isinstance(properties, dict):
        raise BadRequest("properties must be a JSON object")
    if properties.get("reported") is not None:
        raise BadRequest(
            "reported properties are written by the device, not the service: "
            "leave properties.reported out"
        )
    desired = properties.get("desired")
    if desired is not None and not isinstance(desired, dict):
        raise BadRequest("properties.desired must be a JSON object")
    return tags, desired


async def get_twin(hub: HubContext, request: Request, call: Call) -> Response:
    """The device or module twin in IoT Hub's service shape."""
    assert call.device_id is not None
    twin = hub.registry.get_twin(call.device_id, call.module_id)
    return JsonResponse(twin.to_json(), headers={"ETag": quoted(twin.etag)})


async def _update_twin(hub: HubContext, request: Request, call: Call, *, replace: bool) -> Response:
    assert call.device_id is not None
    device_id, module_id = call.device_id, call.module_id
    tags, desired = _twin_sections(await json_object(request), device_id)
    registry = hub.registry
    # If-Match guards the first change; the second (tags after desired) follows at once.
    etag = if_match(request)
    twin: Twin | None = None
    if desired is not None and (replace or desired):
        if replace:
            before = registry.get_twin(device_id, module_id).desired
            twin = registry.replace_desired(device_id, module_id, desired, if_match=etag)
            # Devices merge what they are pushed: removed keys go as nulls.
            pushed = {**dict.fromkeys(set(before) - set(desired)), **desired}
        else:
            twin = registry.patch_desired(device_id, module_id, desired, if_match=etag)
            pushed = desired
        etag = None
        call.properties["desiredVersion"] = str(twin.desired_version)
        patch = {**pushed, "$version": twin.desired_version}
        notify(hub.notify_desired, device_id, module_id, patch)
    if tags is not None and (replace or tags):
        change = registry.replace_tags if replace else registry.patch_tags
        twin = change(device_id, tags, module_id=module_id, if_match=etag)
        call.properties["tags"] = ",".join(sorted(tags))[:500]
    if twin is None:
        twin = registry.get_twin(device_id, module_id)
        if etag is not None and twin.etag != etag:
            raise PreconditionFailed(f"twin etag is {twin.etag!r}, not {etag!r}")
    return JsonResponse(twin.to_json(), headers={"ETag": quoted(twin.etag)})


async def patch_twin(hub: HubContext, request: Request, call: Call) -> Response:
    """Merge tags and desired properties (null deletes); pushes the desired patch."""
    return await _update_twin(hub, request, call, replace=False)


async def put_twin(hub: HubContext, request: Request, call: Call) -> Response:
    """Replace the tags and/or desired properties given (a section left out is kept)."""
    return await _update_twin(hub, request, call, replace=True)


async def send_c2d(hub: HubContext, request: Request, call: Call) -> Response:
    """Queue a cloud-to-device message; 204 with its ``iothub-messageid``."""
    assert call.device_id is not None
    hub.registry.get_device(call.device_id)
    body = await read_body(request, MAX_C2D_BYTES)
    message_id = hub.c2d.enqueue(call.device_id, message_from_headers(body, request.headers))
    call.properties["messageId"] = message_id
    notify(hub.notify_c2d, call.device_id)
    return Response(status_code=204, headers={"iothub-messageid": message_id})


async def get_configuration(hub: HubContext, request: Request, call: Call) -> Response:
    """The hub configuration: IP filter, minimum TLS version, message rates."""
    return JsonResponse(hub.registry.hub_configuration().to_json())


async def put_configuration(hub: HubContext, request: Request, call: Call) -> Response:
    """Replace the hub configuration; 400 names the bad key or value."""
    config = HubConfiguration.from_json(await json_object(request))
    hub.registry.set_hub_configuration(config)
    notify(hub.notify_configuration, config)
    call.properties["ipFilterRules"] = str(len(config.ip_filter_rules))
    return JsonResponse(config.to_json())


def _letter(letter: DeadLetter) -> dict[str, Any]:
    try:
        body, encoding = letter.body.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        body, encoding = base64.b64encode(letter.body).decode("ascii"), "base64"
    return {
        "time": letter.time,
        "deviceId": letter.device_id,
        "moduleId": letter.module_id,
        "protocol": letter.protocol,
        "reason": letter.reason,
        "eventIndex": letter.event_index,
        "truncated": letter.truncated,
        "body": body,
        "bodyEncoding": encoding,
    }


async def list_deadletters(hub: HubContext, request: Request, call: Call) -> Response:
    """The newest refused messages and events first; ``deviceId`` and ``top`` filter."""
    top = query_int(request, "top", 100, low=1, high=MAX_TOP)
    device_id = request.query_params.get("deviceId") or None
    letters = hub.deadletters.list(device_id=device_id, limit=top)
    return JsonResponse([_letter(letter) for letter in letters])


def service_routes(hub: HubContext) -> list[Route]:
    """Twin, cloud-to-device, configuration and dead-letter routes, bound to ``hub``."""

    def bind(
        path: str,
        method: str,
        permission: Permissions,
        operation: str,
        handler: Handler,
        *,
        category: Any = None,
    ) -> Route:
        endpoint = service_endpoint(hub, permission, operation, handler, category=category)
        return route(path, endpoint, method, f"service.{operation}")

    twins = "C2DTwinOperations"
    # IoT Hub's twin calls need ServiceConnect; reading with RegistryRead is allowed too.
    read_twin: Permissions = ("ServiceConnect", "RegistryRead")
    return [
        bind(_TWIN, "GET", read_twin, "getTwin", get_twin),
        bind(_TWIN, "PATCH", "ServiceConnect", "updateTwin", patch_twin, category=twins),
        bind(_TWIN, "PUT", "ServiceConnect", "replaceTwin", put_twin, category=twins),
        bind(_MODULE_TWIN, "GET", read_twin, "getModuleTwin", get_twin),
        bind(
            _MODULE_TWIN, "PATCH", "ServiceConnect", "updateModuleTwin", patch_twin, category=twins
        ),
        bind(_MODULE_TWIN, "PUT", "ServiceConnect", "replaceModuleTwin", put_twin, category=twins),
        bind(
            "/devices/{device_id}/messages/deviceBound",
            "POST",
            "ServiceConnect",
            "sendC2d",
            send_c2d,
            category="C2DCommands",
        ),
        bind("/configuration", "GET", "RegistryRead", "getConfiguration", get_configuration),
        bind(
            "/configuration",
            "PUT",
            "RegistryWrite",
            "setConfiguration",
            put_configuration,
            category="Configurations",
        ),
        bind("/deadletters", "GET", "RegistryRead", "listDeadLetters", list_deadletters),
    ]
