"""Threat-intelligence feeds managed through the service API of a real ``iotsec up`` system.

``System`` runs on loopback (hub, analytics and console; no workspace) in a temporary data dir
whose ``analytics.yaml`` has a feed and a webhook output. Feeds are changed over HTTPS with SAS
tokens of the hub's own policies, and the change is checked where it must land: the file,
the running feed manager, and an alert raised by the rule engine for a device's connection.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml

from iotsec.analytics.intel import FeedManager
from iotsec.cli.device_cmd import SECURITY_MODULE, connection_string
from iotsec.cli.service_client import API_VERSION
from iotsec.cli.system import System
from iotsec.hub.settings import HubSettings
from iotsec.protocol import generate_sas_token
from iotsec.schema import ConnectionCreate, ConnectionCreateEvent
from iotsec.sdk import AsyncDeviceClient, RetryPolicy

SEED_IP = "192.0.2.10"
NEW_IP = "203.0.113.66"
PASSWORD = "hunter2-taxii-secret"
ANALYTICS_YAML = """\
# analytics for the feed API tests
rules: []
feeds:
  - {name: seed, kind: list-file, path: seed.txt}
outputs:
  webhooks:
    - {url: "https://127.0.0.1:9/hook", secret_file: hook.secret, minSeverity: High}
"""


class Api:
    """The service API as one of the hub's policies, over HTTPS."""

    def __init__(self, system: System, policy: str | None = "iothubowner") -> None:
        hub = system.hub
        info = hub.info()
        self._policy = policy
        self._key = None
        if policy is not None:
            found = hub.registry.policy(policy)
            assert found is not None
            self._key = found.keys.primary
        self._host = hub.settings.public_host
        self.client = httpx.AsyncClient(
            base_url=info["service_url"],
            verify=ssl.create_default_context(cafile=info["ca_file"]),
            timeout=30.0,
        )

    async def call(
        self, method: str, path: str, body: Any = None, *, raw: bytes | None = None
    ) -> httpx.Response:
        headers = {"Content-Type": "application/json"}
        if self._policy is not None and self._key is not None:
            expiry = int(time.time()) + 300
            headers["Authorization"] = generate_sas_token(
                self._host, self._key, expiry, self._policy
            )
        return await self.client.request(
            method,
            path,
            params={"api-version": API_VERSION},
            content=raw if body is None else orjson.dumps(body),
            headers=headers,
        )


@pytest.fixture
async def system(tmp_path: Path) -> AsyncIterator[System]:
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    (data / "seed.txt").write_text(f"{SEED_IP}\n")
    (data / "hook.secret").write_text("a-webhook-secret-of-32-bytes-or-more\n")
    (data / "analytics.yaml").write_text(ANALYTICS_YAML)
    settings = HubSettings(
        data_dir=data, hub_name="intel-hub", mqtt_port=0, https_port=0, local_agent=False
    )
    running = System(settings, on_progress=lambda _line: None, workspace=False)
    await running.start()
    try:
        assert await asyncio.to_thread(feeds_of(running).wait_loaded, 30)
        yield running
    finally:
        await running.stop()


@pytest.fixture
async def api(system: System) -> AsyncIterator[Api]:
    opened = Api(system)
    yield opened
    await opened.client.aclose()


def feeds_of(system: System) -> FeedManager:
    assert system.analytics is not None and system.analytics.feeds is not None
    return system.analytics.feeds


def config_file(system: System) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(
        (system.settings.data_dir / "analytics.yaml").read_text()
    )
    return loaded


def other_sections_intact(system: System) -> None:
    original = yaml.safe_load(ANALYTICS_YAML)
    now = config_file(system)
    assert (now["rules"], now["outputs"]) == (original["rules"], original["outputs"])


async def test_a_feed_put_at_runtime_is_written_and_matched_at_once(
    system: System, api: Api
) -> None:
    data = system.settings.data_dir
    (data / "intel").mkdir()
    (data / "intel" / "partner.txt").write_text(f"# partner list\n{NEW_IP}\nnot an entry here\n")
    body = {"kind": "list-file", "path": "intel/partner.txt", "list_kind": "ip", "refresh": "15m"}
    assert feeds_of(system).match("ip", NEW_IP) is None

    response = await api.call("PUT", "/security/intelFeeds/partner", body)

    assert response.status_code == 201, response.text
    answer = response.json()
    assert answer["config"] == {
        "name": "partner",
        "kind": "list-file",
        "path": "intel/partner.txt",
        "list_kind": "ip",
        "refresh": 900.0,
    }
    assert (answer["source"], answer["hasPassword"]) == ("intel/partner.txt", False)
    assert (answer["ok"], answer["indicators"], answer["skipped"]) == (True, 1, 1)
    assert answer["lastLoaded"] is not None and answer["lastError"] is None
    found = feeds_of(system).match("ip", NEW_IP)
    assert found is not None and found.feed == "partner"
    assert feeds_of(system).match("ip", SEED_IP) is not None  # the other feed is untouched

    assert config_file(system)["feeds"] == [
        {"name": "seed", "kind": "list-file", "path": "seed.txt"},
        {"name": "partner", **body},
    ]
    other_sections_intact(system)
    assert "# analytics for" not in (data / "analytics.yaml").read_text()  # rewritten whole
    assert not [p for p in data.iterdir() if p.name.endswith(".tmp")]

    listed = (await api.call("GET", "/security/intelFeeds")).json()["value"]
    assert [(f["name"], f["indicators"]) for f in listed] == [("seed", 1), ("partner", 1)]
    one = await api.call("GET", "/security/intelFeeds/partner")
    assert one.status_code == 200 and one.json()["config"]["path"] == "intel/partner.txt"


async def test_the_rule_engine_alerts_on_a_feed_added_at_runtime(system: System, api: Api) -> None:
    data = system.settings.data_dir
    (data / "c2.txt").write_text(f"{NEW_IP}\n")
    put = await api.call(
        "PUT", "/security/intelFeeds/c2-list", {"kind": "list-file", "path": "c2.txt"}
    )
    assert put.status_code == 201, put.text

    created = await api.call("PUT", "/devices/cam-9", {"deviceId": "cam-9", "status": "enabled"})
    assert created.status_code == 200, created.text
    module = (await api.call("GET", f"/devices/cam-9/modules/{SECURITY_MODULE}")).json()
    info = system.hub.info()
    client = AsyncDeviceClient.from_connection_string(
        connection_string(info["device_host"], module, SECURITY_MODULE),
        transport="mqtt",
        ca_file=info["ca_file"],
        port=int(info["mqtt_port"]),
        agent_id=str(uuid.uuid4()),
        retry=RetryPolicy(max_attempts=3, max_delay=2.0),
    )
    beacon = ConnectionCreate(
        remote_address=NEW_IP,
        remote_port="443",
        local_address="10.0.0.9",
        local_port="40022",
        direction="Out",
        protocol="TCP",
        process_id=4242,
        executable="/usr/bin/curl",
        command_line=f"curl https://{NEW_IP}/x",
    )
    async with client:
        await client.send_security_message(
            [ConnectionCreateEvent.create([beacon], at=datetime.now(UTC))]
        )

    alerts = system.analytics.alerts if system.analytics is not None else None
    assert alerts is not None
    deadline = time.monotonic() + 30
    fired = []
    while not fired and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        found = await asyncio.to_thread(alerts.list, device_id="cam-9")
        fired = [a for a in found if a.rule_id == "IoT_SuspiciousIpCommunication"]
    assert fired, "no IoT_SuspiciousIpCommunication alert within 30 s"
    assert "c2-list" in fired[0].description and NEW_IP in fired[0].description


async def test_replacing_a_feed_swaps_its_indicators_in_place(system: System, api: Api) -> None:
    data = system.settings.data_dir
    (data / "seed-v2.txt").write_text(f"{NEW_IP}\n")
    response = await api.call(
        "PUT",
        "/security/intelFeeds/seed",
        {"name": "seed", "kind": "list-file", "path": "seed-v2.txt"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["indicators"] == 1
    assert feeds_of(system).match("ip", SEED_IP) is None
    found = feeds_of(system).match("ip", NEW_IP)
    assert found is not None and found.feed == "seed"
    assert config_file(system)["feeds"] == [
        {"name": "seed", "kind": "list-file", "path": "seed-v2.txt"}
    ]
    other_sections_intact(system)


async def test_deleting_a_feed_and_an_unknown_one(system: System, api: Api) -> None:
    response = await api.call("DELETE", "/security/intelFeeds/seed")
    assert response.status_code == 200, response.text
    assert response.json() == {"name": "seed", "deleted": True}
    assert feeds_of(system).match("ip", SEED_IP) is None
    assert feeds_of(system).status() == ()
    assert config_file(system)["feeds"] == []
    other_sections_intact(system)

    again = await api.call("DELETE", "/security/intelFeeds/seed")
    assert again.status_code == 404
    assert again.json()["ErrorCode"] == "FeedNotFound"
    missing = await api.call("GET", "/security/intelFeeds/seed")
    assert missing.status_code == 404


#: Refused bodies, the field the answer must name, and part of its reason.
BAD: list[tuple[dict[str, Any], str, str]] = [
    ({"kind": "list-file"}, "path", "a list-file feed needs a path"),
    ({"kind": "list-fil", "path": "x.txt"}, "kind", "did you mean 'list-file'?"),
    ({"kind": "list-file", "path": "x.txt", "refresh": "soon"}, "refresh", "refresh: expected"),
    ({"kind": "list-file", "path": "x.txt", "colour": "red"}, "colour", "unknown key"),
    ({"kind": "list-file", "path": 7}, "path", "path: expected a string"),
    ({"kind": "list-file", "path": "x.txt", "list_kind": "ips"}, "list_kind", "'ip'?"),
    ({"kind": "taxii", "url": "http://cti.example/", "collection": "c"}, "url", "https"),
    ({"kind": "taxii", "url": "https://cti.example/"}, "collection", "collection id"),
    ({"name": "other", "kind": "list-file", "path": "x.txt"}, "name", "another feed"),
    ({"kind": "list-file", "path": "owner.credential"}, "path", "own state or a secret"),
    ({"kind": "list-file", "path": "tls/server.key"}, "path", "own state or a secret"),
    ({"kind": "list-file", "path": "registry.db"}, "path", "own state or a secret"),
    (
        {"kind": "taxii", "url": "https://cti.example/", "collection": "c",
         "username": "u", "password_file": "/etc/hostname"},
        "password_file",
        "give the password itself",
    ),
]  # fmt: skip


async def test_a_bad_feed_is_400_naming_the_field_and_changes_nothing(
    system: System, api: Api
) -> None:
    before = (system.settings.data_dir / "analytics.yaml").read_bytes()
    for body, field, reason in BAD:
        response = await api.call("PUT", "/security/intelFeeds/bad", body)
        assert response.status_code == 400, (body, response.text)
        answer = response.json()
        assert (answer["ErrorCode"], answer["field"]) == ("ArgumentInvalid", field), body
        assert reason in answer["Message"], body
    path = system.settings.data_dir / "analytics.yaml"
    assert path.read_bytes() == before
    assert [s.name for s in feeds_of(system).status()] == ["seed"]

    # A file broken by hand since the start is not overwritten: the change is refused.
    path.write_text("feeds: [\n")
    body = {"kind": "list-file", "path": "seed.txt"}
    conflict = await api.call("PUT", "/security/intelFeeds/x", body)
    assert conflict.status_code == 409, conflict.text
    assert conflict.json()["ErrorCode"] == "ConfigConflict"
    assert "not valid YAML at line 2" in conflict.json()["Message"]
    assert (await api.call("DELETE", "/security/intelFeeds/seed")).status_code == 409
    assert path.read_text() == "feeds: [\n"
    assert [s.name for s in feeds_of(system).status()] == ["seed"]


async def test_a_body_that_is_not_one_small_json_object_is_refused(
    system: System, api: Api
) -> None:
    for raw, status in ((b"[1]", 400), (b"{nope", 400), (b" " * 20_000, 413)):
        response = await api.call("PUT", "/security/intelFeeds/x", raw=raw)
        assert response.status_code == status, response.text
    assert [s.name for s in feeds_of(system).status()] == ["seed"]


async def test_a_missing_file_is_accepted_and_its_status_says_why(system: System, api: Api) -> None:
    response = await api.call(
        "PUT", "/security/intelFeeds/later", {"kind": "stix-file", "path": "/nonexistent/b.json"}
    )
    assert response.status_code == 201, response.text
    answer = response.json()
    assert answer["ok"] is False
    assert answer["lastError"] == "cannot read /nonexistent/b.json: No such file or directory"
    assert [s.name for s in feeds_of(system).status()] == ["seed", "later"]


async def test_reads_need_registry_read_and_changes_registry_write(system: System) -> None:
    before = (system.settings.data_dir / "analytics.yaml").read_bytes()
    body = {"kind": "list-file", "path": "seed.txt"}
    anonymous, reader = Api(system, policy=None), Api(system, policy="registryRead")
    try:
        for method in ("GET", "PUT", "DELETE"):
            path = "/security/intelFeeds/seed"
            refused = await anonymous.call(method, path, body if method == "PUT" else None)
            assert refused.status_code == 401, (method, refused.text)
        assert (await anonymous.call("GET", "/security/intelFeeds")).status_code == 401
        assert (await reader.call("GET", "/security/intelFeeds")).status_code == 200
        assert (await reader.call("GET", "/security/intelFeeds/seed")).status_code == 200
        put = await reader.call("PUT", "/security/intelFeeds/new", body)
        assert put.status_code == 403, put.text
        assert (await reader.call("DELETE", "/security/intelFeeds/seed")).status_code == 403
    finally:
        await anonymous.client.aclose()
        await reader.client.aclose()
    assert (system.settings.data_dir / "analytics.yaml").read_bytes() == before
    assert [s.name for s in feeds_of(system).status()] == ["seed"]


async def test_a_taxii_password_is_kept_in_a_private_file_and_never_shown(
    system: System, api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    data = system.settings.data_dir
    body = {
        "kind": "taxii",
        "url": "https://127.0.0.1:9/taxii2/",  # nothing listens: the load fails, quickly
        "collection": "c1",
        "username": "reader",
        "password": PASSWORD,
        "refresh": "1h",
    }
    created = await api.call("PUT", "/security/intelFeeds/cti", body)
    assert created.status_code == 201, created.text
    assert created.json()["hasPassword"] is True
    assert created.json()["config"]["username"] == "reader"
    stored = next(e for e in config_file(system)["feeds"] if e["name"] == "cti")
    assert "password" not in stored
    secret = data / stored["password_file"]
    assert secret.parent.name == "intel-secrets"
    assert secret.read_text() == PASSWORD + "\n"
    assert secret.stat().st_mode & 0o777 == 0o600
    config = next(c for c in feeds_of(system).configs() if c.name == "cti")
    assert config.password == PASSWORD

    # A change without a password keeps it; an empty one removes it, and its file.
    kept = await api.call(
        "PUT", "/security/intelFeeds/cti", {**body, "password": None, "refresh": 60}
    )
    assert kept.status_code == 200 and kept.json()["hasPassword"] is True
    config = next(c for c in feeds_of(system).configs() if c.name == "cti")
    assert (config.password, config.refresh) == (PASSWORD, 60.0)
    listed = await api.call("GET", "/security/intelFeeds")
    cleared = await api.call("PUT", "/security/intelFeeds/cti", {**body, "password": ""})
    assert cleared.status_code == 200 and cleared.json()["hasPassword"] is False
    assert not secret.exists()
    assert "password_file" not in next(
        e for e in config_file(system)["feeds"] if e["name"] == "cti"
    )

    again = await api.call("PUT", "/security/intelFeeds/cti", body)
    assert again.status_code == 200
    assert secret.exists()
    assert (await api.call("DELETE", "/security/intelFeeds/cti")).status_code == 200
    assert not secret.exists()

    for text in (created.text, kept.text, listed.text, cleared.text, again.text, caplog.text):
        assert PASSWORD not in text
    assert PASSWORD not in (data / "analytics.yaml").read_text()


_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


async def console_client(system: System, username: str, password: str) -> httpx.AsyncClient:
    """A browser stand-in signed in to the system's console over HTTPS."""
    info = system.hub.info()
    client = httpx.AsyncClient(
        base_url=f"https://localhost:{info['https_port']}",
        verify=ssl.create_default_context(cafile=info["ca_file"]),
        timeout=30.0,
    )
    page = await client.get("/console/login")
    token = _CSRF.search(page.text)
    assert token is not None, page.text
    signed = await client.post(
        "/console/login",
        data={"csrf": token.group(1), "username": username, "password": password},
    )
    assert signed.status_code == 303, signed.text
    return client


async def csrf(client: httpx.AsyncClient) -> str:
    page = await client.get("/console/settings")
    assert page.status_code == 200, page.text
    found = _CSRF.search(page.text)
    assert found is not None
    return found.group(1)


async def test_the_console_manages_the_feeds_of_the_running_system(system: System) -> None:
    data = system.settings.data_dir
    (data / "console.txt").write_text(f"{NEW_IP}\n")
    owner_key = system.hub.registry.policy("iothubowner")
    assert owner_key is not None
    admin = await console_client(system, "owner", owner_key.keys.primary)
    try:
        token = await csrf(admin)
        form = {"csrf": token, "name": "from-console", "kind": "list-file", "path": "console.txt"}
        added = {**form, "new": "1", "refresh": "30m"}  # as the add form sends it
        saved = await admin.post("/console/settings/intel-feeds", data=added)
        assert saved.status_code == 303, saved.text
        found = feeds_of(system).match("ip", NEW_IP)
        assert found is not None and found.feed == "from-console"
        entry = config_file(system)["feeds"][-1]
        assert entry == {"name": "from-console", "kind": "list-file", "path": "console.txt",
                         "list_kind": "auto", "refresh": "30m"}  # fmt: skip
        page = (await admin.get("/console/settings")).text
        assert 'data-feed="from-console"' in page
        assert 'value="console.txt"' in page  # the edit form, filled in from the server

        # The server's parser refuses an edit; the page says so beside the field, and nothing
        # changes.
        refused = await admin.post(
            "/console/settings/intel-feeds", data={**form, "refresh": "soon"}
        )
        assert refused.status_code == 400
        error = re.search(r'id="feed-error-refresh">([^<]*)<', refused.text)
        assert error is not None, refused.text
        assert "expected seconds or a duration" in error.group(1)
        assert config_file(system)["feeds"][-1] == entry

        removed = await admin.post(
            "/console/settings/intel-feeds/delete", data={"csrf": token, "name": "from-console"}
        )
        assert removed.status_code == 303, removed.text
        assert feeds_of(system).match("ip", NEW_IP) is None
        assert [e["name"] for e in config_file(system)["feeds"]] == ["seed"]
        other_sections_intact(system)
    finally:
        await admin.aclose()


async def test_a_console_viewer_cannot_change_the_feeds(system: System) -> None:
    assert system.console is not None
    await asyncio.to_thread(system.console.users.add, "victor", "viewer", "victor-view-pass")
    before = (system.settings.data_dir / "analytics.yaml").read_bytes()
    viewer = await console_client(system, "victor", "victor-view-pass")
    try:
        page = (await viewer.get("/console/settings")).text
        assert 'data-feed="seed"' in page
        assert "/settings/intel-feeds" not in page
        token = await csrf(viewer)
        form = {"csrf": token, "name": "sneaky", "kind": "list-file", "path": "seed.txt"}
        added = await viewer.post("/console/settings/intel-feeds", data=form)
        assert added.status_code == 403
        removed = await viewer.post(
            "/console/settings/intel-feeds/delete", data={"csrf": token, "name": "seed"}
        )
        assert removed.status_code == 403
    finally:
        await viewer.aclose()
    assert (system.settings.data_dir / "analytics.yaml").read_bytes() == before
    assert [s.name for s in feeds_of(system).status()] == ["seed"]
