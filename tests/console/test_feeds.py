"""The settings page's threat-intelligence feeds: admins add, edit and remove them; everyone
else reads the table. (The same forms against a real server: tests/cli/test_intel_api.py.)"""

from __future__ import annotations

import re

import httpx
import pytest
from starlette.applications import Starlette

from iotsec.console import (
    ConsoleSettings,
    FeedSettings,
    FeedStatus,
    MemoryBackend,
    SqliteUserStore,
    console_routes,
)
from tests.console.conftest import BASE, XSS, open_client, sign_in

#: The edit form of feed "partner"; the add form also sends ``new``.
EDIT = {"name": "partner", "kind": "list-file", "path": "intel/partner.txt", "refresh": "15m"}
ADD = {**EDIT, "new": "1"}


async def feeds_of(backend: MemoryBackend) -> dict[str, FeedStatus]:
    return {f.name: f for f in await backend.intel_feeds()}


async def test_an_admin_gets_the_forms_and_a_viewer_only_the_table(
    client: httpx.AsyncClient, app: Starlette
) -> None:
    await sign_in(client, "alice")
    admin = (await client.get(f"{BASE}/settings")).text
    assert 'id="feed-list"' in admin
    assert 'id="add-feed"' in admin
    assert f'action="{BASE}/settings/intel-feeds/delete"' in admin

    async with open_client(app) as other:
        await sign_in(other, "victor")
        viewer = (await other.get(f"{BASE}/settings")).text
    assert 'id="feed-list"' in viewer
    assert 'data-feed="blocklist"' in viewer and "/etc/iotsec/bad-ips.txt" in viewer
    assert "/settings/intel-feeds" not in viewer
    assert 'id="add-feed"' not in viewer


async def test_an_admin_adds_edits_and_removes_a_feed(
    client: httpx.AsyncClient, backend: MemoryBackend
) -> None:
    token = await sign_in(client, "alice")
    added = await client.post(f"{BASE}/settings/intel-feeds", data={"csrf": token, **ADD})
    assert added.status_code == 303
    assert added.headers["location"] == f"{BASE}/settings#intel-feeds"
    partner = (await feeds_of(backend))["partner"]
    assert partner.settings == FeedSettings(
        "partner", "list-file", path="intel/partner.txt", refresh="15m"
    )
    page = (await client.get(f"{BASE}/settings")).text
    assert 'data-feed="partner"' in page
    assert "Edit <strong>partner</strong>" in page

    edit = {**EDIT, "path": "intel/other.txt", "list_kind": "ip", "refresh": "3600"}
    edited = await client.post(f"{BASE}/settings/intel-feeds", data={"csrf": token, **edit})
    assert edited.status_code == 303
    settings = (await feeds_of(backend))["partner"].settings
    assert settings is not None
    assert (settings.path, settings.list_kind, settings.refresh) == (
        "intel/other.txt",
        "ip",
        "3600",
    )
    assert list(await feeds_of(backend)) == ["blocklist", "partner"]  # replaced, not added twice

    removed = await client.post(
        f"{BASE}/settings/intel-feeds/delete", data={"csrf": token, "name": "partner"}
    )
    assert removed.status_code == 303
    assert list(await feeds_of(backend)) == ["blocklist"]
    gone = await client.post(
        f"{BASE}/settings/intel-feeds/delete", data={"csrf": token, "name": "partner"}
    )
    assert gone.status_code == 404
    assert "no feed &#39;partner&#39;" in gone.text


@pytest.mark.parametrize(
    ("form", "field", "reason"),
    [
        ({**ADD, "path": ""}, "path", "a list-file feed needs a path"),
        ({**ADD, "kind": "stix"}, "kind", "unknown kind &#39;stix&#39;"),
        ({"name": "", "kind": "taxii", "url": "https://cti.example/"}, "name", "name the feed"),
        ({"name": "cti", "kind": "taxii", "url": "https://cti.example/"}, "collection", "needs"),
        ({**ADD, "name": "blocklist"}, "name", "a feed named &#39;blocklist&#39; exists"),
    ],
)
async def test_a_refused_feed_comes_back_with_the_error_beside_its_field(
    client: httpx.AsyncClient,
    backend: MemoryBackend,
    form: dict[str, str],
    field: str,
    reason: str,
) -> None:
    token = await sign_in(client, "alice")
    response = await client.post(
        f"{BASE}/settings/intel-feeds", data={"csrf": token, **form, "username": XSS}
    )
    assert response.status_code in (400, 409)
    html = response.text
    error = re.search(rf'id="feed-error-{field}">([^<]*)</span>', html)
    assert error is not None, html
    assert reason in error.group(1)
    # The refused form is open again with what was typed (escaped), beside the error.
    add = html[html.index('id="add-feed"') :]
    assert add.startswith('id="add-feed" open')
    assert f'name="{field}"' in add
    assert "&lt;script&gt;" in add and XSS not in html
    assert list(await feeds_of(backend)) == ["blocklist"]
    blocklist = (await feeds_of(backend))["blocklist"]
    assert blocklist.kind == "ip-list"  # not replaced by the add form


async def test_a_refused_edit_opens_that_feeds_form(
    client: httpx.AsyncClient, backend: MemoryBackend
) -> None:
    token = await sign_in(client, "alice")
    await client.post(f"{BASE}/settings/intel-feeds", data={"csrf": token, **ADD})
    response = await client.post(
        f"{BASE}/settings/intel-feeds", data={"csrf": token, **EDIT, "path": " "}
    )
    assert response.status_code == 400
    html = response.text
    assert '<details class="group" open>\n<summary>Edit <strong>partner</strong>' in html
    assert 'id="feed-error-path"' in html
    assert not html[html.index('id="add-feed"') :].startswith('id="add-feed" open')


@pytest.mark.parametrize("user", ["victor", "anna"])
async def test_only_an_admin_changes_feeds(
    client: httpx.AsyncClient, backend: MemoryBackend, user: str
) -> None:
    token = await sign_in(client, user)
    add = await client.post(f"{BASE}/settings/intel-feeds", data={"csrf": token, **ADD})
    assert add.status_code == 403
    remove = await client.post(
        f"{BASE}/settings/intel-feeds/delete", data={"csrf": token, "name": "blocklist"}
    )
    assert remove.status_code == 403
    assert list(await feeds_of(backend)) == ["blocklist"]


async def test_a_feed_form_needs_the_csrf_token(
    client: httpx.AsyncClient, backend: MemoryBackend
) -> None:
    await sign_in(client, "alice")
    response = await client.post(f"{BASE}/settings/intel-feeds", data={"csrf": "stale", **ADD})
    assert response.status_code == 403
    assert list(await feeds_of(backend)) == ["blocklist"]


async def test_a_server_that_cannot_change_feeds_says_so(users: SqliteUserStore) -> None:
    backend = MemoryBackend()  # no feed routes at all
    settings = ConsoleSettings(secret=b"s" * 32)
    async with open_client(Starlette(routes=console_routes(backend, users, settings))) as client:
        token = await sign_in(client, "alice")
        response = await client.post(f"{BASE}/settings/intel-feeds", data={"csrf": token, **ADD})
        assert response.status_code == 501
        assert "not available on this server" in response.text
