"""IoT Hub's device REST API: send events, receive and settle cloud-to-device messages, twin.

Paths, headers and answers are IoT Hub's (``Send Device Event``, ``Receive/Complete/Abandon
Device Bound Notification``), plus iotsec's documented twin extension that the SDK's HTTPS
transport uses (GET ``.../twin``, PATCH ``.../twin/properties/reported``).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from iotsec.hub.errors import PreconditionFailed, RateLimited
from iotsec.hub.http.context import HubContext
from iotsec.hub.http.endpoints import Call, Handler, device_endpoint, route
from iotsec.hub.http.responses import (
    JsonResponse,
    hub_error_response,
    json_object,
    quoted,
    read_body,
)
from iotsec.hub.ingest import MessageRejected, Origin
from iotsec.protocol import Message

__all__ = ["APP_PREFIX", "device_routes", "message_from_headers", "message_headers"]

#: Application properties travel as headers with this prefix.
APP_PREFIX = "iothub-app-"

_DEVICE = "/devices/{device_id}"
_MODULE = "/devices/{device_id}/modules/{module_id}"
_BOUND = "/devices/{device_id}/messages/deviceBound"


def _content_type(headers: Any) -> str | None:
    # HTTP clients label a body with no type as octet-stream (the SDK does): that is no type,
    # so a message reads the same whether it came over HTTPS or MQTT.
    value = headers.get("content-type")
    return None if value is None or value == "application/octet-stream" else str(value)


def message_from_headers(body: bytes, headers: Any) -> Message:
    """A message from a body and IoT Hub's ``iothub-*`` request headers."""
    properties = {
        name[len(APP_PREFIX) :]: value
        for name, value in headers.items()
        if name.lower().startswith(APP_PREFIX) and len(name) > len(APP_PREFIX)
    }
    return Message(
        body,
        properties=properties,
        message_id=headers.get("iothub-messageid"),
        correlation_id=headers.get("iothub-correlationid"),
        content_type=headers.get("iothub-contenttype") or _content_type(headers),
        content_encoding=headers.get("iothub-contentencoding"),
        interface_id=headers.get("iothub-interface-id"),
    )


def message_headers(message: Message) -> dict[str, str]:
    """The ``iothub-*`` headers that carry a message's properties."""
    headers = {f"{APP_PREFIX}{name}": value for name, value in message.properties.items()}
    for name, value in (
        ("iothub-messageid", message.message_id),
        ("iothub-correlationid", message.correlation_id),
        ("iothub-contenttype", message.content_type),
        ("iothub-contentencoding", message.content_encoding),
    ):
        if value is not None:
            headers[name] = value
    return headers


async def send_event(hub: HubContext, request: Request, call: Call) -> Response:
    """POST messages/events: ingest one device-to-cloud message; 204 once it is durable."""
    assert call.device_id is not None
    body = await read_body(request, hub.max_message_bytes)
    message = message_from_headers(body, request.headers)
    origin = Origin(call.device_id, call.module_id, "https", call.source_ip)
    try:
        await hub.ingestor.ingest(origin, message)
    except MessageRejected as exc:
        call.logged = True  # the ingestor logged and dead-lettered it
        return hub_error_response(exc)
    except RateLimited:
        call.properties["bytes"] = str(len(body))
        raise
    call.logged = True
    return Response(status_code=204)


async def receive_c2d(hub: HubContext, request: Request, call: Call) -> Response:
    """GET messages/deviceBound: the next message, locked, with its ETag; 204 when none."""
    assert call.device_id is not None
    delivery = hub.c2d.receive(call.device_id, lock_seconds=hub.c2d_lock_seconds)
    if delivery is None:
        call.properties["messages"] = "0"
        return Response(status_code=204)
    message = delivery.message
    headers = {
        **message_headers(message),
        "ETag": quoted(delivery.lock_token),
        "iothub-deliverycount": str(delivery.delivery_count),
        "iothub-to": f"/devices/{call.device_id}/messages/deviceBound",
    }
    call.properties["messageId"] = message.message_id or ""
    call.properties["deliveryCount"] = str(delivery.delivery_count)
    return Response(
        message.body,
        status_code=200,
        headers=headers,
        media_type=message.content_type or "application/octet-stream",
    )


def _lock_token(request: Request) -> str:
    return str(request.path_params["etag"]).strip().removeprefix("W/").strip('"')


async def settle_c2d(hub: HubContext, request: Request, call: Call) -> Response:
    """DELETE messages/deviceBound/{etag}: complete it, or reject it with ``?reject``."""
    assert call.device_id is not None
    token = _lock_token(request)
    rejecting = "reject" in request.query_params
    settle = hub.c2d.reject if rejecting else hub.c2d.complete
    call.properties["outcome"] = "reject" if rejecting else "complete"
    if not settle(call.device_id, token):
        raise PreconditionFailed(f"lock token {token[:64]!r} is unknown or its lock expired")
    return Response(status_code=204)


async def abandon_c2d(hub: HubContext, request: Request, call: Call) -> Response:
    """POST messages/deviceBound/{etag}/abandon: put the message back for redelivery."""
    assert call.device_id is not None
    token = _lock_token(request)
    if not hub.c2d.abandon(call.device_id, token):
        raise PreconditionFailed(f"lock token {token[:64]!r} is unknown or its lock expired")
    return Response(status_code=204)


async def get_twin(hub: HubContext, request: Request, call: Call) -> Response:
    """GET twin: ``{"desired": {...,"$version"}, "reported": {...,"$version"}}``."""
    assert call.device_id is not None
    twin = hub.registry.get_twin(call.device_id, call.module_id)
    return JsonResponse(twin.device_json())


async def patch_reported(hub: HubContext, request: Request, call: Call) -> Response:
    """PATCH twin/properties/reported: merge the patch (null deletes); answer the new version."""
    assert call.device_id is not None
    patch = await json_object(request)
    twin = hub.registry.patch_reported(call.device_id, call.module_id, patch)
    call.properties["version"] = str(twin.reported_version)
    return JsonResponse({"$version": twin.reported_version})


def device_routes(hub: HubContext) -> list[Route]:
    """The device API's routes, bound to ``hub``."""

    def bind(path: str, method: str, category: Any, operation: str, handler: Handler) -> Route:
        endpoint = device_endpoint(hub, category, operation, handler)
        return route(path, endpoint, method, f"device.{operation}")

    routes = [
        bind(f"{_DEVICE}/messages/events", "POST", "DeviceTelemetry", "d2c", send_event),
        bind(f"{_MODULE}/messages/events", "POST", "DeviceTelemetry", "d2c", send_event),
        bind(_BOUND, "GET", "C2DCommands", "receive", receive_c2d),
        bind(f"{_BOUND}/{{etag}}", "DELETE", "C2DCommands", "settle", settle_c2d),
        bind(f"{_BOUND}/{{etag}}/abandon", "POST", "C2DCommands", "abandon", abandon_c2d),
    ]
    for base in (_DEVICE, _MODULE):
        routes += [
            bind(f"{base}/twin", "GET", "D2CTwinOperations", "get", get_twin),
            bind(
                f"{base}/twin/properties/reported",
                "PATCH",
                "D2CTwinOperations",
                "patch-reported",
                patch_reported,
            ),
        ]
    return routes
