"""Roles are enforced on the server: a viewer changes nothing, an analyst acts on alerts and
runs queries, an admin also changes custom alerts and users."""

from __future__ import annotations

import httpx
import pytest

from iotsec.console import MemoryBackend, SqliteUserStore
from tests.console.conftest import BASE, sign_in

READ_PAGES = ("/", "/devices/cam-1", "/alerts", "/alerts/a-1", "/recommendations", "/query")


@pytest.mark.parametrize("user", ["victor", "anna", "alice"])
async def test_every_role_reads_every_page(client: httpx.AsyncClient, user: str) -> None:
    await sign_in(client, user)
    for path in (*READ_PAGES, "/settings"):
        response = await client.get(f"{BASE}{path}")
        assert response.status_code == 200, path


async def test_a_viewer_is_refused_every_change(
    client: httpx.AsyncClient, backend: MemoryBackend, users: SqliteUserStore
) -> None:
    token = await sign_in(client, "victor")
    changes = {
        "/alerts/a-1/status": {"action": "dismiss"},
        "/query": {"q": "SecurityAlert | take 1"},
        "/settings/custom-alerts": {"group": "cameras", "rules": "{}"},
        "/settings/intel-feeds": {"name": "f", "kind": "list-file", "path": "f.txt"},
        "/settings/intel-feeds/delete": {"name": "blocklist"},
        "/users": {"username": "mallory", "role": "admin", "password": "mallory-password"},
        "/users/anna": {"op": "delete"},
    }
    for path, form in changes.items():
        response = await client.post(f"{BASE}{path}", data={"csrf": token, **form})
        assert response.status_code == 403, path
        assert "the viewer role cannot do this" in response.text
    assert backend.changes == []
    assert backend.queries == []
    assert users.get("mallory") is None
    assert users.get("anna") is not None
    assert (await backend.alert("a-1")).status == "Active"
    assert [f.name for f in await backend.intel_feeds()] == ["blocklist"]


async def test_a_viewer_sees_no_change_buttons(client: httpx.AsyncClient) -> None:
    await sign_in(client, "victor")
    alert = (await client.get(f"{BASE}/alerts/a-1")).text
    assert 'id="alert-actions"' not in alert
    query = (await client.get(f"{BASE}/query")).text
    assert 'id="run"' not in query
    assert "needs the analyst role" in query
    settings = (await client.get(f"{BASE}/settings")).text
    assert "/settings/custom-alerts" not in settings
    assert (await client.get(f"{BASE}/users")).status_code == 403


async def test_an_analyst_resolves_an_alert_with_a_reason(
    client: httpx.AsyncClient, backend: MemoryBackend
) -> None:
    token = await sign_in(client, "anna")
    assert 'id="alert-actions"' in (await client.get(f"{BASE}/alerts/a-1")).text
    response = await client.post(
        f"{BASE}/alerts/a-1/status",
        data={"csrf": token, "action": "resolve", "reason": "reimaged"},
    )
    assert response.status_code == 303
    assert response.headers["location"] == f"{BASE}/alerts/a-1"
    [change] = backend.changes
    assert (change.alert_id, change.action, change.reason, change.by) == (
        "a-1",
        "resolve",
        "reimaged",
        "anna",
    )
    page = (await client.get(f"{BASE}/alerts/a-1")).text
    assert 'id="alert-status">Resolved' in page
    assert 'id="alert-actions"' not in page


async def test_an_analyst_cannot_change_settings_or_users(
    client: httpx.AsyncClient, backend: MemoryBackend
) -> None:
    token = await sign_in(client, "anna")
    response = await client.post(
        f"{BASE}/settings/custom-alerts", data={"csrf": token, "group": "g", "rules": "{}"}
    )
    assert response.status_code == 403
    assert [g.group for g in await backend.custom_alerts()] == ["cameras"]
    assert (await client.get(f"{BASE}/users")).status_code == 403


async def test_an_admin_saves_custom_alerts(
    client: httpx.AsyncClient, backend: MemoryBackend
) -> None:
    token = await sign_in(client, "alice")
    rules = '{"denylistRules": [{"ruleType": "ConnectionToIpNotAllowed", "isEnabled": true}]}'
    response = await client.post(
        f"{BASE}/settings/custom-alerts", data={"csrf": token, "group": "gateways", "rules": rules}
    )
    assert response.status_code == 303
    groups = {g.group: g for g in await backend.custom_alerts()}
    assert groups["gateways"].rule_count == 1


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        ("not json", "not JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"mysteryRules": []}', "unknown rule families: mysteryRules"),
    ],
)
async def test_bad_custom_alerts_are_explained(
    client: httpx.AsyncClient, rules: str, expected: str
) -> None:
    token = await sign_in(client, "alice")
    response = await client.post(
        f"{BASE}/settings/custom-alerts", data={"csrf": token, "group": "g", "rules": rules}
    )
    assert response.status_code == 400
    assert expected in response.text


async def test_an_admin_manages_users(client: httpx.AsyncClient, users: SqliteUserStore) -> None:
    token = await sign_in(client, "alice")
    add = {"csrf": token, "username": "bob", "role": "analyst", "password": "bob-long-password"}
    assert (await client.post(f"{BASE}/users", data=add)).status_code == 303
    assert users.get("bob") is not None
    for form in (
        {"op": "role", "role": "viewer"},
        {"op": "disable"},
        {"op": "password", "password": "bob-other-password"},
    ):
        response = await client.post(f"{BASE}/users/bob", data={"csrf": token, **form})
        assert response.status_code == 303, form
    bob = users.get("bob")
    assert bob is not None
    assert (bob.role, bob.disabled) == ("viewer", True)
    assert (
        await client.post(f"{BASE}/users/bob", data={"csrf": token, "op": "delete"})
    ).status_code == 303
    assert users.get("bob") is None


async def test_an_admin_cannot_lock_themselves_out(
    client: httpx.AsyncClient, users: SqliteUserStore
) -> None:
    token = await sign_in(client, "alice")
    for form in ({"op": "role", "role": "viewer"}, {"op": "disable"}, {"op": "delete"}):
        response = await client.post(f"{BASE}/users/alice", data={"csrf": token, **form})
        assert response.status_code == 400
        assert "your own" in response.text
    alice = users.get("alice")
    assert alice is not None
    assert (alice.role, alice.disabled) == ("admin", False)


async def test_bad_user_input_is_explained(client: httpx.AsyncClient) -> None:
    token = await sign_in(client, "alice")
    cases = {
        ("owner", "admin", "long-enough-password"): "owner-credential sign-in",
        ("bob", "root", "long-enough-password"): "role: must be one of",
        ("bob", "viewer", "short"): "password: must have at least 10",
        ("anna", "viewer", "long-enough-password"): "user &#39;anna&#39; exists",
    }
    for (name, role, password), expected in cases.items():
        form = {"csrf": token, "username": name, "role": role, "password": password}
        response = await client.post(f"{BASE}/users", data=form)
        assert response.status_code == 400
        assert expected in response.text
