"""``ServiceApiBackend``: the console's data from the server's own service API, over HTTPS.

It signs each call with a service token from a callable the composition root hands it (a
short-lived SAS token of a policy), reads devices and twins from the registry routes, and
everything else from the workspace with KQL (``POST /workspace/query``). Alert actions, custom
alerts and threat-intelligence feeds go to the routes named in ``ServiceRoutes``; when the
server answers that it has no such route, the call raises ``NotConfigured`` and the page says so.

The base URL and the TLS context may be callables: the server's port is known only once it
listens, and its CA is made at its first start; both are asked for at the first call.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import orjson

from iotsec.console import queries
from iotsec.console.errors import ActionRefused, BackendError, NotConfigured, NotFound, QueryFailed
from iotsec.console.models import (
    Alert,
    AlertAction,
    AlertDay,
    DeviceDetail,
    DeviceSummary,
    FeedSettings,
    FeedStatus,
    GroupRules,
    QueryTable,
    RawEvent,
    Recommendation,
)
from iotsec.console.records import (
    alert_from,
    device_summary,
    feed_from,
    group_rules_from,
    merge_workspace,
    raw_event_from,
    recommendation_from,
    records,
    risk_lines,
    table_from,
    time_of,
)

__all__ = ["ServiceApiBackend", "ServiceRoutes"]

API_VERSION = "2021-04-12"
#: Error codes the hub answers for a path (or method) it has no route for.
_NO_ROUTE = ("ErrorCode:NotFound;", "ErrorCode:MethodNotAllowed;")


@dataclass(frozen=True, slots=True)
class ServiceRoutes:
    """Where the service API keeps what the console needs (paths with ``{placeholders}``)."""

    devices: str = "/devices"
    device: str = "/devices/{device_id}"
    twin: str = "/twins/{device_id}"
    query: str = "/workspace/query"
    #: POST ``{"reason", "by"}``; ``action`` is ``dismiss`` or ``resolve``.
    alert_action: str = "/security/alerts/{alert_id}/{action}"
    #: GET ``{"value": [{"name": group, "properties": {thresholdRules, ...}}]}``.
    custom_alerts: str = "/security/deviceSecurityGroups"
    #: PUT ``{"properties": {thresholdRules, timeWindowRules, allowlistRules, denylistRules}}``.
    custom_alerts_group: str = "/security/deviceSecurityGroups/{group}"
    #: GET ``{"value": [{"name", "kind", "source", "config", "indicators", "lastLoaded", ...}]}``.
    intel_feeds: str = "/security/intelFeeds"
    #: PUT one feed's settings (``analytics.yaml`` keys: ``kind``, ``path``, ...); DELETE it.
    intel_feed: str = "/security/intelFeeds/{name}"


def _path(template: str, **values: str) -> str:
    return template.format(**{k: quote(v, safe="") for k, v in values.items()})


def _field(response: httpx.Response) -> str | None:
    """The field a refusal names (``{"field": "path"}``), if it names one."""
    try:
        body = response.json()
    except ValueError:
        return None
    field = body.get("field") if isinstance(body, dict) else None
    return field if isinstance(field, str) else None


def _reason(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300]
    message = body.get("Message", "") if isinstance(body, dict) else ""
    text = str(message or response.text[:300])
    if text.startswith("ErrorCode:") and ";" in text:
        text = text.split(";", 1)[1]
    return text


class ServiceApiBackend:
    """A ``ConsoleBackend`` over the service API of a running iotsec server."""

    def __init__(
        self,
        *,
        base_url: str | Callable[[], str],
        token: Callable[[], str],
        verify: ssl.SSLContext | bool | Callable[[], ssl.SSLContext] = True,
        transport: httpx.AsyncBaseTransport | None = None,
        routes: ServiceRoutes = ServiceRoutes(),
        timeout: float = 30.0,
        max_devices: int = 1000,
    ) -> None:
        self._base_url = base_url
        self._token = token
        self._verify = verify
        self._transport = transport
        self.routes = routes
        self._timeout = timeout
        self._max_devices = max_devices
        self._client: httpx.AsyncClient | None = None

    async def aclose(self) -> None:
        """Close the connection pool (it reopens on the next call)."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            base = self._base_url() if callable(self._base_url) else self._base_url
            verify = self._verify() if callable(self._verify) else self._verify
            self._client = httpx.AsyncClient(
                base_url=base,
                verify=verify,
                transport=self._transport,
                timeout=self._timeout,
                params={"api-version": API_VERSION},
            )
        return self._client

    async def _call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        feature: str | None = None,
        missing: NotFound | None = None,
    ) -> Any:
        """One call; the JSON answer, or a typed error (never the token, never the body)."""
        headers = {"Authorization": self._token()}
        content = None
        if body is not None:
            content = orjson.dumps(body)
            headers["Content-Type"] = "application/json"
        try:
            response = await self._http().request(method, path, content=content, headers=headers)
        except httpx.HTTPError as exc:
            raise BackendError(
                f"the service API is not reachable ({type(exc).__name__}: {exc})"
            ) from None
        status = response.status_code
        if status < 300:
            return response.json() if response.content else None
        reason = _reason(response)
        if (
            status in (404, 405)
            and feature is not None
            and any(code in response.text for code in _NO_ROUTE)
        ):
            raise NotConfigured(feature)
        if status == 404 and missing is not None:
            raise missing
        if status in (401, 403):
            raise BackendError(
                f"the server refused the console's service credential ({status}: {reason})",
                status=status,
            )
        if status in (400, 409, 412, 422):
            raise ActionRefused(reason, status=status, field=_field(response))
        raise BackendError(f"{method} {path.partition('?')[0]}: {status} {reason}", status=status)

    async def query(self, text: str, *, max_rows: int) -> QueryTable:
        body = {"query": text, "language": "kql", "maxRows": max_rows}
        headers = {"Authorization": self._token(), "Content-Type": "application/json"}
        try:
            response = await self._http().post(
                self.routes.query, content=orjson.dumps(body), headers=headers
            )
        except httpx.HTTPError as exc:
            raise BackendError(f"the workspace is not reachable ({type(exc).__name__})") from None
        if response.status_code == 404:
            raise NotConfigured("the workspace")
        try:
            answer = response.json()
        except ValueError:
            raise QueryFailed(
                f"the workspace answered {response.status_code} without JSON",
                status=response.status_code,
            ) from None
        if response.status_code >= 300:
            error = (answer.get("error") or {}) if isinstance(answer, dict) else {}
            if response.status_code in (401, 403):
                raise BackendError(
                    f"the workspace refused the console's credential ({response.status_code})",
                    status=response.status_code,
                )
            raise QueryFailed(
                str(error.get("message") or _reason(response)),
                status=response.status_code,
                line=error.get("line"),
                column=error.get("column"),
            )
        return table_from(answer)

    async def _records(self, text: str, *, max_rows: int = 10_000) -> list[dict[str, Any]]:
        return records(await self.query(text, max_rows=max_rows))

    async def _optional(self, text: str) -> list[dict[str, Any]]:
        """Rows of a workspace table that may not be filled (or mounted) yet: none then."""
        try:
            return await self._records(text)
        except NotConfigured:
            return []

    async def devices(self) -> Sequence[DeviceSummary]:
        listed, rows, seen, counts = await asyncio.gather(
            self._call("GET", f"{self.routes.devices}?top={self._max_devices}"),
            self._optional(queries.device_rows()),
            self._optional(queries.last_seen_by_device()),
            self._optional(queries.alert_counts_by_device()),
        )
        if not isinstance(listed, list):
            raise BackendError("the registry's device list is not a JSON array")
        devices = [device_summary(item) for item in listed if isinstance(item, dict)]
        merged = merge_workspace(devices, rows, seen, counts)
        return sorted(merged, key=lambda d: d.risk_rank, reverse=True)

    async def device(self, device_id: str) -> DeviceDetail:
        missing = NotFound("device", device_id)
        path = _path(self.routes.device, device_id=device_id)
        twin_path = _path(self.routes.twin, device_id=device_id)
        where = f"| where DeviceId == {queries.kql_string(device_id)}"
        identity, twin, rows, seen, counts = await asyncio.gather(
            self._call("GET", path, missing=missing),
            self._call("GET", twin_path, missing=missing),
            self._optional(f"{queries.device_rows()} {where}"),
            self._optional(f"{queries.last_seen_by_device()} {where}"),
            self._optional(f"{queries.alert_counts_by_device()} {where}"),
        )
        if not isinstance(identity, dict) or not isinstance(twin, dict):
            raise BackendError(f"the registry's answer for {device_id!r} is not a JSON object")
        [summary] = merge_workspace([device_summary(identity, twin)], rows, seen, counts)
        row = rows[0] if rows else {}
        return DeviceDetail(
            summary=summary,
            twin=twin,
            first_seen=time_of(row.get("FirstSeen")),
            risk_explanation=risk_lines(row.get("Tags")),
        )

    async def alerts(
        self, *, device_id: str | None = None, open_only: bool = False, limit: int = 200
    ) -> Sequence[Alert]:
        text = queries.alerts(device_id=device_id, open_only=open_only, limit=limit)
        return [alert_from(row) for row in await self._optional(text)]

    async def alert(self, alert_id: str) -> Alert:
        rows = await self._records(queries.alert_by_id(alert_id))
        if not rows:
            raise NotFound("alert", alert_id)
        return alert_from(rows[0])

    async def alert_timeline(self, *, days: int = 14) -> Sequence[AlertDay]:
        days_rows = await self._optional(queries.alert_timeline(days))
        out = []
        for row in days_rows:
            start = time_of(row.get("Day"))
            if start is not None:
                severity = str(row.get("AlertSeverity") or "Informational")
                out.append(AlertDay(start, severity, int(row.get("Count") or 0)))
        return out

    async def recommendations(
        self, *, device_id: str | None = None, active_only: bool = True, limit: int = 500
    ) -> Sequence[Recommendation]:
        text = queries.recommendations(device_id=device_id, active_only=active_only, limit=limit)
        return [recommendation_from(row) for row in await self._optional(text)]

    async def raw_events(self, device_id: str, *, limit: int = 50) -> Sequence[RawEvent]:
        rows = await self._optional(queries.raw_events(device_id, limit))
        return [raw_event_from(row) for row in rows]

    async def events_by_id(self, raw_event_ids: Sequence[str]) -> Sequence[RawEvent]:
        if not raw_event_ids:
            return []
        rows = await self._optional(queries.events_by_id(raw_event_ids))
        return [raw_event_from(row) for row in rows]

    async def change_alert_status(
        self, alert_id: str, action: AlertAction, *, reason: str, by: str
    ) -> None:
        path = _path(self.routes.alert_action, alert_id=alert_id, action=action)
        await self._call(
            "POST",
            path,
            body={"reason": reason, "by": by},
            feature="dismissing and resolving alerts",
            missing=NotFound("alert", alert_id),
        )

    async def custom_alerts(self) -> Sequence[GroupRules]:
        answer = await self._call("GET", self.routes.custom_alerts, feature="custom alerts")
        return group_rules_from(answer)

    async def set_custom_alerts(self, group: str, rules: Mapping[str, Any]) -> None:
        path = _path(self.routes.custom_alerts_group, group=group)
        await self._call("PUT", path, body={"properties": dict(rules)}, feature="custom alerts")

    async def intel_feeds(self) -> Sequence[FeedStatus]:
        answer = await self._call("GET", self.routes.intel_feeds, feature="threat intelligence")
        items = answer.get("value", []) if isinstance(answer, dict) else answer
        if not isinstance(items, list):
            raise BackendError("the feed list is not a JSON array")
        return [feed_from(item) for item in items if isinstance(item, dict)]

    async def put_intel_feed(self, feed: FeedSettings, *, password: str | None = None) -> None:
        path = _path(self.routes.intel_feed, name=feed.name)
        body = feed.body(password=password)
        await self._call("PUT", path, body=body, feature="managing threat-intelligence feeds")

    async def delete_intel_feed(self, name: str) -> None:
        path = _path(self.routes.intel_feed, name=name)
        await self._call(
            "DELETE",
            path,
            feature="managing threat-intelligence feeds",
            missing=NotFound("feed", name),
        )
