"""Sign-in, sessions, CSRF, rate limits and security headers, through the real app."""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette

from iotsec.console import (
    ConsoleSettings,
    MemoryBackend,
    SqliteUserStore,
    build_console_app,
    console_routes,
)
from tests.console.conftest import BASE, OWNER_KEY, csrf_of, login_token, open_client, sign_in

COOKIE = "__Host-iotsec-console"


async def test_strangers_are_sent_to_sign_in(client: httpx.AsyncClient) -> None:
    response = await client.get(f"{BASE}/devices/cam-1")
    assert response.status_code == 303
    assert response.headers["location"] == f"{BASE}/login?next=/console/devices/cam-1"


async def test_root_redirects_to_the_console(client: httpx.AsyncClient) -> None:
    response = await client.get("/")
    assert response.status_code == 307
    assert response.headers["location"] == f"{BASE}/"


async def test_the_session_cookie_is_host_only_secure_httponly_strict(
    client: httpx.AsyncClient,
) -> None:
    [cookie] = (await client.get(f"{BASE}/login")).headers.get_list("set-cookie")
    assert cookie.startswith(f"{COOKIE}=")
    for attribute in ("httponly", "secure", "samesite=strict", "path=/"):
        assert attribute in cookie.lower()
    assert "domain" not in cookie.lower()


async def test_sign_in_and_out(client: httpx.AsyncClient) -> None:
    token = await login_token(client)
    form = {"csrf": token, "username": "anna", "password": "anna-analyst-pass"}
    response = await client.post(f"{BASE}/login", data={**form, "next": f"{BASE}/alerts"})
    assert response.status_code == 303
    assert response.headers["location"] == f"{BASE}/alerts"
    page = await client.get(f"{BASE}/alerts")
    assert page.status_code == 200
    assert 'id="whoami">anna' in page.text
    new_token = csrf_of(page.text)
    assert new_token != token  # sign-in rotates the CSRF token
    out = await client.post(f"{BASE}/logout", data={"csrf": new_token})
    assert out.status_code == 303
    assert (await client.get(f"{BASE}/alerts")).status_code == 303


async def test_a_wrong_password_is_401_and_names_no_part(client: httpx.AsyncClient) -> None:
    token = await login_token(client)
    for name in ("anna", "nobody"):
        response = await client.post(
            f"{BASE}/login", data={"csrf": token, "username": name, "password": "wrong-password"}
        )
        assert response.status_code == 401
        assert "Wrong user name or password." in response.text
        assert "wrong-password" not in response.text


@pytest.mark.parametrize(
    "target", ["https://evil.example/", "//evil.example/x", "/elsewhere", f"{BASE}//x"]
)
async def test_the_next_parameter_cannot_leave_the_console(
    client: httpx.AsyncClient, target: str
) -> None:
    token = await login_token(client)
    data = {"csrf": token, "username": "anna", "password": "anna-analyst-pass", "next": target}
    response = await client.post(f"{BASE}/login", data=data)
    assert response.headers["location"] == f"{BASE}/"


async def test_failed_sign_ins_are_rate_limited_per_address(app: Starlette) -> None:
    async with open_client(app) as client:
        token = await login_token(client)
        bad = {"csrf": token, "username": "anna", "password": "not-the-password"}
        for _ in range(5):
            assert (await client.post(f"{BASE}/login", data=bad)).status_code == 401
        good = {**bad, "password": "anna-analyst-pass"}
        limited = await client.post(f"{BASE}/login", data=good)
        assert limited.status_code == 429
        assert int(limited.headers["retry-after"]) > 0
        assert "Too many failed sign-ins" in limited.text
    other = httpx.ASGITransport(app=app, client=("198.51.100.7", 40000))
    async with httpx.AsyncClient(transport=other, base_url="https://testserver") as client:
        await sign_in(client, "anna")  # another address is not held back


async def test_owner_credential_signs_in_as_admin(client: httpx.AsyncClient) -> None:
    await sign_in(client, "owner", OWNER_KEY)
    page = await client.get(f"{BASE}/users")
    assert page.status_code == 200
    assert 'id="whoami">owner <span class="role">admin' in page.text


async def test_owner_accepts_the_whole_connection_string(client: httpx.AsyncClient) -> None:
    line = f"HostName=hub.local;SharedAccessKeyName=iothubowner;SharedAccessKey={OWNER_KEY}"
    await sign_in(client, "owner", line)
    assert (await client.get(f"{BASE}/users")).status_code == 200


async def test_no_owner_sign_in_without_an_owner_key(
    backend: MemoryBackend, users: SqliteUserStore
) -> None:
    settings = ConsoleSettings(secret=b"s" * 32, owner_key=None)
    async with open_client(Starlette(routes=console_routes(backend, users, settings))) as client:
        data = {"csrf": await login_token(client), "username": "owner", "password": OWNER_KEY}
        assert (await client.post(f"{BASE}/login", data=data)).status_code == 401


@pytest.mark.parametrize("token", [None, "", "forged-token"])
async def test_posts_without_the_session_csrf_token_are_refused(
    client: httpx.AsyncClient, backend: MemoryBackend, token: str | None
) -> None:
    await sign_in(client, "anna")
    data = {"action": "resolve"} if token is None else {"action": "resolve", "csrf": token}
    response = await client.post(f"{BASE}/alerts/a-1/status", data=data)
    assert response.status_code == 403
    assert "expired" in response.text
    assert backend.changes == []


async def test_posts_from_another_origin_are_refused(
    client: httpx.AsyncClient, backend: MemoryBackend
) -> None:
    token = await sign_in(client, "anna")
    response = await client.post(
        f"{BASE}/alerts/a-1/status",
        data={"csrf": token, "action": "resolve"},
        headers={"origin": "https://evil.example"},
    )
    assert response.status_code == 403
    assert backend.changes == []


async def test_a_login_post_without_a_session_is_refused(client: httpx.AsyncClient) -> None:
    data = {"csrf": "x", "username": "anna", "password": "anna-analyst-pass"}
    assert (await client.post(f"{BASE}/login", data=data)).status_code == 403


async def test_forms_must_be_urlencoded(client: httpx.AsyncClient) -> None:
    token = await sign_in(client, "anna")
    response = await client.post(f"{BASE}/query", files={"csrf": (None, token), "q": (None, "x")})
    assert response.status_code == 415


async def test_a_tampered_cookie_is_an_anonymous_session(client: httpx.AsyncClient) -> None:
    await sign_in(client, "alice")
    payload, signature = client.cookies[COOKIE].split(".")
    client.cookies.clear()
    client.cookies.set(COOKIE, f"{payload[:-2]}AA.{signature}", domain="testserver")
    assert (await client.get(f"{BASE}/")).status_code == 303


@pytest.mark.parametrize("change", ["password", "disable", "role", "delete"])
async def test_changing_a_user_ends_their_sessions(
    client: httpx.AsyncClient, users: SqliteUserStore, change: str
) -> None:
    await sign_in(client, "anna")
    assert (await client.get(f"{BASE}/")).status_code == 200
    if change == "password":
        users.set_password("anna", "another-long-password")
    elif change == "disable":
        users.set_disabled("anna", True)
    elif change == "role":
        users.set_role("anna", "viewer")
    else:
        users.delete("anna")
    assert (await client.get(f"{BASE}/")).status_code == 303


async def test_sessions_expire(backend: MemoryBackend, users: SqliteUserStore) -> None:
    now = [1000.0]
    settings = ConsoleSettings(secret=b"s" * 32, session_ttl=60)
    app = Starlette()
    app.mount(BASE, build_console_app(backend, users, settings, clock=lambda: now[0]))
    async with open_client(app) as client:
        await sign_in(client, "anna")
        assert (await client.get(f"{BASE}/")).status_code == 200
        now[0] += 61
        assert (await client.get(f"{BASE}/")).status_code == 303


async def test_every_response_carries_the_security_headers(client: httpx.AsyncClient) -> None:
    for path in (f"{BASE}/login", f"{BASE}/static/console.js", f"{BASE}/nowhere"):
        headers = (await client.get(path)).headers
        csp = headers["content-security-policy"]
        assert "script-src 'self'" in csp
        assert "unsafe-inline" not in csp
        assert "unsafe-eval" not in csp
        assert "frame-ancestors 'none'" in csp
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["x-frame-options"] == "DENY"
    assert (await client.get(f"{BASE}/login")).headers["cache-control"] == "no-store"


async def test_pages_have_no_inline_script_or_style(client: httpx.AsyncClient) -> None:
    await sign_in(client, "alice")
    for path in ("/", "/devices/cam-1", "/alerts/a-1", "/query", "/settings", "/users"):
        html = (await client.get(f"{BASE}{path}")).text
        assert "<script>" not in html
        assert "<script src=" in html
        assert " style=" not in html
        assert "<style" not in html
        assert " onclick=" not in html


async def test_the_script_and_stylesheet_are_served(client: httpx.AsyncClient) -> None:
    js = await client.get(f"{BASE}/static/console.js")
    assert js.status_code == 200
    assert "javascript" in js.headers["content-type"]
    assert (await client.get(f"{BASE}/static/console.css")).status_code == 200


async def test_the_owner_key_is_read_when_needed_and_rotation_signs_the_owner_out(
    backend: MemoryBackend, users: SqliteUserStore
) -> None:
    key: list[str | None] = [None]  # the server makes the key at its first start
    settings = ConsoleSettings(secret=b"s" * 32, owner_key=lambda: key[0])
    async with open_client(Starlette(routes=console_routes(backend, users, settings))) as client:
        data = {"csrf": await login_token(client), "username": "owner", "password": OWNER_KEY}
        assert (await client.post(f"{BASE}/login", data=data)).status_code == 401
        key[0] = OWNER_KEY
        await sign_in(client, "owner", OWNER_KEY)
        assert (await client.get(f"{BASE}/users")).status_code == 200
        key[0] = "cm90YXRlZC1rZXk="
        assert (await client.get(f"{BASE}/users")).status_code == 303
