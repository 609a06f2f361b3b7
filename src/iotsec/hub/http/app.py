"""The hub's HTTPS application: the device API and the service API on one Starlette app."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from iotsec import __version__
from iotsec.hub.http.certificates_api import certificate_routes
from iotsec.hub.http.context import HubContext
from iotsec.hub.http.customalerts_api import custom_alert_routes
from iotsec.hub.http.device_api import device_routes
from iotsec.hub.http.openapi import openapi_document
from iotsec.hub.http.registry_api import registry_routes
from iotsec.hub.http.responses import JsonResponse, error_response
from iotsec.hub.http.service_api import service_routes

__all__ = ["build_app"]

_CODES = {404: "NotFound", 405: "MethodNotAllowed"}


class _CanonicalPaths:
    """Microsoft's C and Java device SDKs spell it ``devicebound``; routes say ``deviceBound``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and "/messages/devicebound" in scope["path"]:
            path = scope["path"].replace("/messages/devicebound", "/messages/deviceBound")
            raw = scope.get("raw_path") or b""
            raw = raw.replace(b"/messages/devicebound", b"/messages/deviceBound")
            scope = {**scope, "path": path, "raw_path": raw}
        await self.app(scope, receive, send)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    text = f"{request.method} {request.url.path}: {exc.detail}"
    headers = dict(exc.headers) if exc.headers else None
    return error_response(
        exc.status_code, _CODES.get(exc.status_code, "BadRequest"), text, headers=headers
    )


def build_app(hub: HubContext, extra_routes: Sequence[BaseRoute] = ()) -> Starlette:
    """The device and service APIs over ``hub``, with ``/healthz`` and ``/openapi.json``.

    Every route accepts (and ignores) ``?api-version=``. Errors are IoT Hub JSON bodies; an
    unexpected exception is a 500 with its traceback logged, never a crash.
    """
    document = openapi_document(hub.hub_host, version=__version__)

    async def healthz(request: Request) -> Response:
        return JsonResponse({"status": "ok", "hub": hub.hub_name})

    async def openapi(request: Request) -> Response:
        return JsonResponse(document)

    routes: list[Any] = [
        *device_routes(hub),
        *registry_routes(hub),
        *service_routes(hub),
        *custom_alert_routes(hub),
        *certificate_routes(hub),
        Route("/healthz", healthz, methods=["GET"], name="healthz"),
        Route("/openapi.json", openapi, methods=["GET"], name="openapi"),
        *extra_routes,
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: _http_error})
    app.state.hub = hub
    app.add_middleware(_CanonicalPaths)
    return app
