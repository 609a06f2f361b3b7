"""The console's read-only pages: fleet, device, alerts, recommendations, query, settings.

Every page is open to every role (a viewer reads everything); the forms on them are shown to
the roles that may send them, and the POST routes in ``actions`` check the role again.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from iotsec.console.charts import alert_chart
from iotsec.console.context import Console, View
from iotsec.console.errors import ActionRefused, NotConfigured
from iotsec.console.models import (
    FEED_FIELDS,
    LIST_KINDS,
    SEVERITIES,
    Alert,
    DeviceDetail,
    FeedSettings,
    Recommendation,
)

__all__ = ["EXAMPLE_QUERIES", "explain_risk", "routes"]

#: Queries the query page offers to start from.
EXAMPLE_QUERIES = (
    "SecurityAlert | summarize count() by bin(TimeGenerated, 1h), AlertSeverity",
    'SecurityAlert | where Status in ("New", "Active") | project TimeGenerated, DeviceId,'
    " DisplayName, AlertSeverity | order by TimeGenerated desc | take 50",
    'SecurityRecommendation | where RecommendationState == "Active"'
    " | summarize count() by RecommendationDisplayName",
    "SecurityIoTRawEvent | summarize Events = count() by bin(TimeGenerated, 1h), RawEventName",
    "Device | project DeviceId, SecurityGroup, LastSeen, RiskScore, RiskLevel"
    " | order by RiskScore desc",
)


def explain_risk(
    detail: DeviceDetail, alerts: Sequence[Alert], recommendations: Sequence[Recommendation]
) -> tuple[str, ...]:
    """Why the device's risk is what it is: the analytics' own reasons, else what we count."""
    if detail.risk_explanation:
        return detail.risk_explanation
    lines = []
    open_alerts = Counter(a.severity for a in alerts if a.is_open)
    if open_alerts:
        parts = ", ".join(f"{open_alerts[s]} {s}" for s in SEVERITIES if open_alerts[s])
        lines.append(f"{sum(open_alerts.values())} open alert(s): {parts}")
    active = Counter(r.severity for r in recommendations if r.state == "Active")
    if active:
        parts = ", ".join(f"{active[s]} {s}" for s in SEVERITIES if active[s])
        lines.append(f"{sum(active.values())} active recommendation(s): {parts}")
    if detail.summary.status != "enabled":
        lines.append(f"the device is {detail.summary.status}")
    return tuple(lines) or ("no open alerts and no active recommendations",)


async def overview(console: Console, request: Request, view: View) -> Response:
    backend = console.backend
    days = console.settings.timeline_days
    devices, timeline, open_alerts, recommendations = await asyncio.gather(
        backend.devices(),
        backend.alert_timeline(days=days),
        backend.alerts(open_only=True, limit=1000),
        backend.recommendations(active_only=True),
    )
    now = datetime.fromtimestamp(console.clock(), UTC)
    return console.render(
        request,
        view,
        "overview.html",
        title="Fleet",
        devices=devices,
        chart=alert_chart(timeline, end=now, span_days=days),
        open_by_severity=Counter(a.severity for a in open_alerts),
        open_alerts=open_alerts[:10],
        open_count=len(open_alerts),
        recommendation_count=len(recommendations),
        severities=SEVERITIES,
    )


async def device(console: Console, request: Request, view: View) -> Response:
    device_id = request.path_params["device_id"]
    backend = console.backend
    detail = await backend.device(device_id)
    alerts, recommendations, events = await asyncio.gather(
        backend.alerts(device_id=device_id, limit=100),
        backend.recommendations(device_id=device_id, active_only=False, limit=200),
        backend.raw_events(device_id, limit=50),
    )
    return console.render(
        request,
        view,
        "device.html",
        title=device_id,
        detail=detail,
        device=detail.summary,
        explanation=explain_risk(detail, alerts, recommendations),
        alerts=alerts,
        recommendations=recommendations,
        events=events,
    )


async def alerts(console: Console, request: Request, view: View) -> Response:
    show_all = request.query_params.get("status") == "all"
    found = await console.backend.alerts(open_only=not show_all, limit=500)
    return console.render(
        request, view, "alerts.html", title="Alerts", alerts=found, show_all=show_all
    )


async def render_alert(
    console: Console,
    request: Request,
    view: View,
    alert_id: str,
    *,
    message: str | None = None,
    status: int = 200,
) -> Response:
    """The alert page, with an optional message about an action just refused."""
    alert = await console.backend.alert(alert_id)
    evidence = await console.backend.events_by_id(alert.evidence[:100])
    found = {e.raw_event_id for e in evidence}
    return console.render(
        request,
        view,
        "alert.html",
        status=status,
        title=alert.display_name,
        alert=alert,
        evidence=evidence,
        missing=[i for i in alert.evidence if i not in found],
        message=message,
    )


async def alert(console: Console, request: Request, view: View) -> Response:
    return await render_alert(console, request, view, request.path_params["alert_id"])


async def recommendations(console: Console, request: Request, view: View) -> Response:
    show_all = request.query_params.get("state") == "all"
    found = await console.backend.recommendations(active_only=not show_all)
    return console.render(
        request,
        view,
        "recommendations.html",
        title="Recommendations",
        recommendations=found,
        show_all=show_all,
    )


def render_query(
    console: Console, request: Request, view: View, text: str, **result: Any
) -> Response:
    """The query page with ``text`` in the editor and, after a run, its result or error."""
    context: dict[str, Any] = {"table": None, "chart": None, "error": None, "status": 200}
    context.update(result)
    status = context.pop("status")
    return console.render(
        request,
        view,
        "query.html",
        status=status,
        title="Query",
        text=text,
        examples=EXAMPLE_QUERIES,
        max_rows=console.settings.max_query_rows,
        **context,
    )


async def query(console: Console, request: Request, view: View) -> Response:
    text = request.query_params.get("q", EXAMPLE_QUERIES[0])
    return render_query(console, request, view, text)


async def render_settings(
    console: Console,
    request: Request,
    view: View,
    *,
    message: str | None = None,
    status: int = 200,
    feed_form: FeedSettings | None = None,
    feed_error: ActionRefused | None = None,
    adding: bool = False,
) -> Response:
    """Custom alerts per group and the threat-intelligence feeds; "not configured" where the
    server has none. ``feed_form`` is a feed form just refused (the add form when ``adding``,
    else that feed's edit form), shown again with ``feed_error`` next to the field it names."""
    backend = console.backend
    groups: Any = None
    feeds: Any = None
    try:
        groups = await backend.custom_alerts()
    except NotConfigured:
        groups = None
    try:
        feeds = await backend.intel_feeds()
    except NotConfigured:
        feeds = None
    names = {f.name for f in feeds or ()}
    return console.render(
        request,
        view,
        "settings.html",
        status=status,
        title="Settings",
        groups=groups,
        feeds=feeds,
        message=message,
        feed_form=feed_form,
        feed_editing=feed_form is not None and not adding and feed_form.name in names,
        feed_error=feed_error,
        feed_kinds=tuple(FEED_FIELDS),
        list_kinds=LIST_KINDS,
        blank_feed=FeedSettings(""),
    )


async def settings(console: Console, request: Request, view: View) -> Response:
    return await render_settings(console, request, view)


def routes(console: Console) -> list[BaseRoute]:
    """The page routes."""
    page = console.endpoint
    return [
        Route("/", page(overview), methods=["GET"], name="overview"),
        Route("/devices/{device_id}", page(device), methods=["GET"], name="device"),
        Route("/alerts", page(alerts), methods=["GET"], name="alerts"),
        Route("/alerts/{alert_id}", page(alert), methods=["GET"], name="alert"),
        Route("/recommendations", page(recommendations), methods=["GET"]),
        Route("/query", page(query), methods=["GET"], name="query"),
        Route("/settings", page(settings), methods=["GET"], name="settings"),
    ]
