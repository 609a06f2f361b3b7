"""The shell around every route: authenticate, run, turn errors into answers, log the operation.

A handler is ``async (hub, request, call) -> Response`` and raises ``HubError`` subclasses for
refusals; it never catches broadly. The shell answers a ``HubError`` with its status and IoT Hub
error body, any other exception with a 500 (traceback logged), and writes one operation-log entry
per call: authentication failures under ``Connections`` with their reason, the rest under the
route's category (unless the handler says an entry was already written, as the ingestor does).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from iotsec.hub.errors import AuthFailure, HubError
from iotsec.hub.http.context import HubContext
from iotsec.hub.http.credentials import (
    Permissions,
    authenticate_device,
    authenticate_service,
    source_ip,
)
from iotsec.hub.http.responses import hub_error_response, server_error
from iotsec.hub.identity import AccessPolicy
from iotsec.hub.oplog import Category, OperationLogEntry, Protocol

__all__ = [
    "Call",
    "Endpoint",
    "Handler",
    "device_endpoint",
    "notify",
    "route",
    "service_endpoint",
]

log = logging.getLogger("iotsec.hub.http")

Endpoint = Callable[[Request], Awaitable[Response]]


@dataclass(slots=True)
class Call:
    """One request in progress: who, from where, and what its log entry should say."""

    device_id: str | None
    module_id: str | None
    source_ip: str
    policy: AccessPolicy | None = None
    properties: dict[str, str] = field(default_factory=dict)
    #: Set by a handler whose work already wrote the operation-log entry (the ingestor does).
    logged: bool = False


Handler = Callable[[HubContext, Request, Call], Awaitable[Response]]


def _call(request: Request) -> Call:
    params = request.path_params
    return Call(params.get("device_id"), params.get("module_id"), source_ip(request))


def _record(
    hub: HubContext,
    call: Call,
    protocol: Protocol,
    category: Category,
    operation: str,
    *,
    reason: str | None = None,
    detail: str | None = None,
    failed: bool = False,
) -> None:
    hub.oplog.record_soon(
        OperationLogEntry(
            time=hub.clock(),
            category=category,
            operation=operation,
            result="Failure" if failed else "Success",
            protocol=protocol,
            device_id=call.device_id,
            module_id=call.module_id,
            source_ip=call.source_ip,
            reason=reason,
            detail=detail,
            properties=call.properties,
        )
    )


def _refused(
    hub: HubContext, call: Call, protocol: Protocol, operation: str, exc: AuthFailure
) -> Response:
    call.properties["operation"] = operation
    _record(
        hub,
        call,
        protocol,
        "Connections",
        "authenticate",
        reason=exc.reason.value,
        detail=exc.detail[:1000],
        failed=True,
    )
    return hub_error_response(exc)


async def _run(
    hub: HubContext,
    request: Request,
    call: Call,
    handler: Handler,
    *,
    protocol: Protocol,
    log_as: tuple[Category, str] | None,
) -> Response:
    try:
        response = await handler(hub, request, call)
    except HubError as exc:
        if log_as is not None and not call.logged:
            _record(hub, call, protocol, *log_as, reason=str(exc)[:1000], failed=True)
        return hub_error_response(exc)
    except Exception:
        if log_as is not None:
            _record(hub, call, protocol, *log_as, reason="internal error", failed=True)
        return server_error(request)
    if log_as is not None and not call.logged:
        _record(hub, call, protocol, *log_as)
    return response


def device_endpoint(
    hub: HubContext, category: Category, operation: str, handler: Handler
) -> Endpoint:
    """A device route: the identity in the path must be the one the credential opens."""

    async def endpoint(request: Request) -> Response:
        call = _call(request)
        assert call.device_id is not None  # every device route has {device_id}
        try:
            authenticate_device(hub, request, call.device_id, call.module_id, call.source_ip)
        except AuthFailure as exc:
            return _refused(hub, call, "https", operation, exc)
        except Exception:
            return server_error(request)
        return await _run(
            hub, request, call, handler, protocol="https", log_as=(category, operation)
        )

    endpoint.__name__ = handler.__name__
    endpoint.__doc__ = handler.__doc__
    return endpoint


def service_endpoint(
    hub: HubContext,
    permission: Permissions,
    operation: str,
    handler: Handler,
    *,
    category: Category | None = None,
) -> Endpoint:
    """A service route: the policy token must grant ``permission``; changes are logged."""

    async def endpoint(request: Request) -> Response:
        call = _call(request)
        try:
            call.policy = authenticate_service(hub, request, permission, call.source_ip)
        except AuthFailure as exc:
            return _refused(hub, call, "service", operation, exc)
        except Exception:
            return server_error(request)
        if call.policy is not None:
            call.properties["policy"] = call.policy.name
        log_as = (category, operation) if category is not None else None
        return await _run(hub, request, call, handler, protocol="service", log_as=log_as)

    endpoint.__name__ = handler.__name__
    endpoint.__doc__ = handler.__doc__
    return endpoint


def configuration_route(
    path: str,
    method: str,
    permission: Permissions,
    operation: str,
    handler: Handler,
    *,
    hub: HubContext,
    logged: bool = False,
) -> Route:
    """A ``service.<operation>`` route; ``logged`` changes go to the Configurations log."""
    category: Category | None = "Configurations" if logged else None
    endpoint = service_endpoint(hub, permission, operation, handler, category=category)
    return route(path, endpoint, method, f"service.{operation}")


def notify(callback: Callable[..., None], *args: Any) -> None:
    """Call a push callback; its failure is logged, not answered (the change is already made)."""
    try:
        callback(*args)
    except Exception:
        log.exception("push callback %s failed", getattr(callback, "__name__", callback))


def route(path: str, endpoint: Endpoint, method: str, name: str) -> Route:
    """A route for one method. Starlette adds HEAD to GET routes; here HEAD is not served,
    because a GET may have effects (receiving a cloud-to-device message locks it)."""
    made = Route(path, endpoint, methods=[method], name=name)
    assert made.methods is not None
    made.methods.discard("HEAD")
    return made
