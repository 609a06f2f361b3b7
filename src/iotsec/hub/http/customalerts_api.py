"""Custom alerts per device security group on the service API (ASC's deviceSecurityGroups).

``GET /securityGroups`` lists the groups that have custom alerts; ``GET``, ``PUT`` and
``DELETE /securityGroups/{group}/customAlerts`` read, replace and remove one group's document
(``{"thresholdRules": [], "timeWindowRules": [...], "allowlistRules": [...],
"denylistRules": [...]}``). Reads need ``RegistryRead``; changes need ``RegistryWrite`` (as the
hub configuration does) and are written to the operation log under ``Configurations``. A
document is checked by the context's validator before it is stored; a bad one is answered 400
with each ``{path, reason}``. DELETE answers 200 when it removed something and 204 when there
was nothing (ARM's convention).
"""

from __future__ import annotations

import functools
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from iotsec.hub.customalerts import FAMILIES, check_group, rule_counts
from iotsec.hub.http.context import HubContext
from iotsec.hub.http.endpoints import Call, configuration_route
from iotsec.hub.http.responses import JsonResponse, json_object

__all__ = ["MAX_CUSTOM_ALERTS_BYTES", "custom_alert_routes"]

#: A group's document may carry long allow lists; still small enough to hold in memory.
MAX_CUSTOM_ALERTS_BYTES = 1_048_576

_GROUP = "/securityGroups/{group}/customAlerts"


def _group(request: Request, call: Call) -> str:
    group = check_group(str(request.path_params["group"]))
    call.properties["group"] = group
    return group


async def list_groups(hub: HubContext, request: Request, call: Call) -> Response:
    """Every group with custom alerts: ``[{"name", "customAlerts"}]``, by name."""
    groups = hub.registry.custom_alert_groups()
    ordered = sorted(groups.items(), key=lambda item: item[0].casefold())
    return JsonResponse([{"name": name, "customAlerts": doc} for name, doc in ordered])


async def get_custom_alerts(hub: HubContext, request: Request, call: Call) -> Response:
    """The group's custom alerts; every family empty when it has none."""
    document = hub.registry.custom_alerts(_group(request, call))
    empty: dict[str, Any] = {family: [] for family in FAMILIES}
    return JsonResponse(empty if document is None else document)


async def put_custom_alerts(hub: HubContext, request: Request, call: Call) -> Response:
    """Replace the group's custom alerts with the validated body; answers what was stored."""
    group = _group(request, call)
    body = await json_object(request, limit=MAX_CUSTOM_ALERTS_BYTES)
    document = hub.validate_custom_alerts(body)
    hub.registry.set_custom_alerts(group, document)
    for family, count in rule_counts(document).items():
        call.properties[family] = str(count)
    return JsonResponse(document)


async def delete_custom_alerts(hub: HubContext, request: Request, call: Call) -> Response:
    """Remove the group's custom alerts: 200 when there were some, 204 when not."""
    group = _group(request, call)
    removed = hub.registry.delete_custom_alerts(group)
    call.properties["removed"] = str(removed).lower()
    if not removed:
        return Response(status_code=204)
    return JsonResponse({"name": group, "deleted": True})


def custom_alert_routes(hub: HubContext) -> list[Route]:
    """The security-group routes, bound to ``hub``."""

    bind = functools.partial(configuration_route, hub=hub)
    return [
        bind("/securityGroups", "GET", "RegistryRead", "listSecurityGroups", list_groups),
        bind(_GROUP, "GET", "RegistryRead", "getCustomAlerts", get_custom_alerts),
        bind(_GROUP, "PUT", "RegistryWrite", "setCustomAlerts", put_custom_alerts, logged=True),
        bind(
            _GROUP,
            "DELETE",
            "RegistryWrite",
            "deleteCustomAlerts",
            delete_custom_alerts,
            logged=True,
        ),
    ]
