"""What each page shows, that everything from data is escaped, and graceful "not configured"."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import httpx
from starlette.applications import Starlette

from iotsec.console import (
    ConsoleSettings,
    MemoryBackend,
    SqliteUserStore,
    console_routes,
)
from tests.console.conftest import BASE, XSS, fleet_alerts, fleet_devices, open_client, sign_in

ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"


def _svgs(html: str) -> list[ET.Element]:
    return [ET.fromstring(s) for s in re.findall(r"<svg.*?</svg>", html, re.DOTALL)]


async def test_the_fleet_lists_devices_by_risk_with_the_alert_chart(
    client: httpx.AsyncClient,
) -> None:
    await sign_in(client, "victor")
    html = (await client.get(f"{BASE}/")).text
    order = [m for m in re.findall(r'/devices/([^"]+)"', html) if not m.startswith("{")]
    assert order[:2] == ["cam-1", "gw-2"]
    assert 'id="device-count">3<' in html
    [chart] = _svgs(html)
    assert chart.get("aria-label") == "Alerts per day by severity, 2 in 14 days"
    titles = [t.text for t in chart.iter("{http://www.w3.org/2000/svg}title")]
    assert "2025-03-10: 1 High" in titles
    assert "2025-03-09: 1 Low" in titles
    assert "Reverse shell detected" in html


async def test_the_device_page_shows_identity_twin_risk_alerts_and_events(
    client: httpx.AsyncClient,
) -> None:
    await sign_in(client, "victor")
    html = (await client.get(f"{BASE}/devices/cam-1")).text
    assert 'id="device-group">cameras<' in html
    assert "reverse shell seen (High)" in html
    assert "port 23 open" in html
    assert "Reverse shell detected" in html
    assert "Open ports on device" in html
    assert "ProcessCreate" in html
    assert "ListeningPorts" in html
    assert "&#34;fw&#34;: &#34;1.2&#34;" in html  # the twin, as escaped JSON
    assert ESCAPED in html
    assert XSS not in html


async def test_risk_is_explained_from_alerts_when_analytics_gave_no_reasons(
    client: httpx.AsyncClient,
) -> None:
    await sign_in(client, "victor")
    html = (await client.get(f"{BASE}/devices/gw-2")).text
    explanation = html.split('id="risk-explanation">', 1)[1].split("</ul>", 1)[0]
    assert "no open alerts and no active recommendations" in explanation


async def test_the_alert_page_says_what_fired_why_and_shows_the_evidence(
    client: httpx.AsyncClient,
) -> None:
    await sign_in(client, "anna")
    html = (await client.get(f"{BASE}/alerts/a-1")).text
    for expected in (
        "Reverse shell detected",
        "IoT_ReverseShell",
        "Execution",
        "T1059",
        "Isolate the device.",
        "Rotate its credentials.",
        "203.0.113.9",
        "e1:0",
        "/bin/bash",
        "<code>oplog:0:9</code>",  # evidence that is not a raw event is still listed
    ):
        assert expected in html, expected
    assert ESCAPED in html
    assert XSS not in html


async def test_hostile_ids_are_escaped_in_text_and_links(client: httpx.AsyncClient) -> None:
    await sign_in(client, "victor")
    html = (await client.get(f"{BASE}/")).text
    assert XSS not in html
    assert "/devices/dev-%3Cscript%3Ealert%281%29%3C%2Fscript%3E" in html
    assert f">dev-{ESCAPED}<" in html


async def test_missing_things_are_404(client: httpx.AsyncClient) -> None:
    await sign_in(client, "victor")
    for path in ("/devices/nope", "/alerts/nope", "/nowhere"):
        response = await client.get(f"{BASE}{path}")
        assert response.status_code == 404, path
    assert "no device &#39;nope&#39;" in (await client.get(f"{BASE}/devices/nope")).text


async def test_alert_and_recommendation_filters(client: httpx.AsyncClient) -> None:
    await sign_in(client, "victor")
    open_only = (await client.get(f"{BASE}/alerts")).text
    assert "Reverse shell detected" in open_only
    assert "Failed local login" not in open_only
    every = (await client.get(f"{BASE}/alerts?status=all")).text
    assert "Failed local login" in every
    recommendations = (await client.get(f"{BASE}/recommendations")).text
    assert "Open ports on device" in recommendations
    assert "Port 23 (telnet)" in recommendations


async def test_a_query_shows_its_table_and_a_time_series_chart(
    client: httpx.AsyncClient, backend: MemoryBackend
) -> None:
    token = await sign_in(client, "anna")
    text = "SecurityAlert | summarize count() by bin(TimeGenerated, 1h)"
    html = (await client.post(f"{BASE}/query", data={"csrf": token, "q": text})).text
    assert backend.queries == [text]
    assert 'id="query-results"' in html
    assert "2025-03-10T11:00:00Z" in html
    [chart] = _svgs(html.split('id="query-chart"', 1)[1])
    assert chart.get("aria-label") == "1 series over TimeGenerated"
    assert "2 row(s)" in html
    assert "SecurityAlert | summarize count() by bin(TimeGenerated, 1h)" in html


async def test_a_failed_query_shows_where(client: httpx.AsyncClient) -> None:
    token = await sign_in(client, "anna")
    response = await client.post(f"{BASE}/query", data={"csrf": token, "q": "bad | take 1"})
    assert response.status_code == 400
    assert "unknown table &#39;bad&#39;" in response.text
    assert "at line 1, column 1" in response.text
    assert 'id="query-results"' not in response.text


async def test_example_queries_prefill_the_editor_without_running(
    client: httpx.AsyncClient, backend: MemoryBackend
) -> None:
    await sign_in(client, "victor")
    html = (await client.get(f"{BASE}/query", params={"q": f"Device | take 1 {XSS}"})).text
    assert f"Device | take 1 {ESCAPED}</textarea>" in html
    assert backend.queries == []


async def test_settings_show_custom_alerts_and_feeds(client: httpx.AsyncClient) -> None:
    await sign_in(client, "alice")
    html = (await client.get(f"{BASE}/settings")).text
    assert "cameras" in html
    assert "ProcessNotAllowed" in html
    assert "blocklist" in html
    assert "/etc/iotsec/bad-ips.txt" in html
    assert "Not configured" not in html


async def test_a_server_without_the_routes_says_not_configured(users: SqliteUserStore) -> None:
    backend = MemoryBackend(devices=fleet_devices(), alerts=fleet_alerts(), alert_actions=False)
    settings = ConsoleSettings(secret=b"s" * 32)
    async with open_client(Starlette(routes=console_routes(backend, users, settings))) as client:
        token = await sign_in(client, "alice")
        html = (await client.get(f"{BASE}/settings")).text
        assert "Not configured: this server does not offer custom alerts yet." in html
        assert "does not report threat-intelligence feeds yet" in html
        response = await client.post(
            f"{BASE}/alerts/a-1/status", data={"csrf": token, "action": "dismiss"}
        )
        assert response.status_code == 501
        assert "dismissing and resolving alerts is not available" in response.text
        saved = await client.post(
            f"{BASE}/settings/custom-alerts", data={"csrf": token, "group": "g", "rules": "{}"}
        )
        assert saved.status_code == 501


async def test_a_closed_alert_cannot_be_dismissed(
    client: httpx.AsyncClient, backend: MemoryBackend
) -> None:
    token = await sign_in(client, "anna")
    response = await client.post(
        f"{BASE}/alerts/a-2/status", data={"csrf": token, "action": "dismiss"}
    )
    assert response.status_code == 409
    assert "alert a-2 is Dismissed" in response.text
    assert backend.changes == []
