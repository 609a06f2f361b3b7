"""The console in a real headless Chromium, on a real hub over HTTPS.

The hub serves the console next to the workspace's query API, exactly as ``iotsec up`` will:
the console's ``ServiceApiBackend`` calls the hub's own service API over TLS with an owner SAS
token. The workspace holds a small fleet; a stand-in for the analytics alert route records
dismiss/resolve. Chromium (Debian's ``chromium``) is driven by ``playwright-core`` from
``tests/console/browser`` (``npm ci`` there): sign in, see a device, open an alert, resolve it,
run a query, and a viewer is refused a change.

Skips when chromium, node or playwright-core is missing, unless ``IOTSEC_BROWSER_TEST=required``
(CI sets it), which turns the skip into a failure.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import shutil
import ssl
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import orjson
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from iotsec.console import ConsoleSettings, ServiceApiBackend, SqliteUserStore, console_routes
from iotsec.console.sessions import load_or_create_secret
from iotsec.hub.server import HubServer
from iotsec.hub.settings import HubSettings
from iotsec.protocol import generate_sas_token
from iotsec.workspace.api import build_query_app
from iotsec.workspace.query import Workspace
from iotsec.workspace.store import WorkspaceStore
from tests.console import fleet

HERE = Path(__file__).parent / "browser"
CHROMIUM = Path(os.environ.get("IOTSEC_CHROMIUM", "/usr/bin/chromium"))
ANALYST = {"username": "anna", "password": "anna-analyst-pass"}
VIEWER = {"username": "victor", "password": "victor-view-pass"}
QUERY = "SecurityIoTRawEvent | summarize Events = count() by bin(TimeGenerated, 1m), RawEventName"


def _missing() -> str | None:
    if not CHROMIUM.exists():
        return f"no chromium at {CHROMIUM} (apt-get install chromium)"
    if shutil.which("node") is None:
        return "no node on PATH (apt-get install nodejs)"
    if not (HERE / "node_modules" / "playwright-core").is_dir():
        return f"no playwright-core in {HERE} (npm ci --prefix {HERE})"
    return None


def _skip_or_fail() -> None:
    reason = _missing()
    if reason is None:
        return
    if os.environ.get("IOTSEC_BROWSER_TEST") == "required":
        pytest.fail(f"the browser test is required but cannot run: {reason}")
    pytest.skip(reason)


def _spki_hash(cert_pem: Path) -> str:
    """What ``--ignore-certificate-errors-spki-list`` takes: base64 SHA-256 of the SPKI."""
    cert = x509.load_pem_x509_certificate(cert_pem.read_bytes())
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(spki).digest()).decode("ascii")


def _owner(data_dir: Path) -> dict[str, str]:
    """The owner policy connection string's parts, as ``iotsec up`` writes them."""
    text = (data_dir / "owner.credential").read_text("utf-8").strip()
    return dict(part.split("=", 1) for part in text.split(";") if "=" in part)


def _owner_token(data_dir: Path) -> Callable[[], str]:
    def token() -> str:
        owner = _owner(data_dir)
        return generate_sas_token(
            owner["HostName"],
            owner["SharedAccessKey"],
            int(time.time()) + 300,
            owner["SharedAccessKeyName"],
        )

    return token


@dataclass
class Served:
    hub: HubServer
    store: WorkspaceStore
    data_dir: Path

    @property
    def base(self) -> str:
        return f"https://localhost:{self.hub.https_port}/console"


def _alert_route(hub: Callable[[], HubServer], store: WorkspaceStore) -> Route:
    """A stand-in for the analytics alert lifecycle route the integrator wires in."""
    rows = {row.system_alert_id: row for row in fleet.alert_rows(datetime.now(UTC))}

    async def change(request: Request) -> Response:
        await hub().authorize_service(request, "ServiceConnect")
        row = rows.get(request.path_params["alert_id"])
        if row is None:
            return JSONResponse({"Message": "ErrorCode:AlertNotFound;no such alert"}, 404)
        status = {"dismiss": "Dismissed", "resolve": "Resolved"}[request.path_params["action"]]
        rows[row.system_alert_id] = msgspec.structs.replace(row, status=status)
        await asyncio.to_thread(store.write_alerts, [rows[row.system_alert_id]])
        return Response(status_code=204)

    return Route("/security/alerts/{alert_id}/{action}", change, methods=["POST"])


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    _skip_or_fail()
    data_dir = tmp_path / "data"
    settings = HubSettings(
        data_dir=data_dir, hub_name="browser-hub", mqtt_port=0, https_port=0, local_agent=False
    )
    data_dir.mkdir(mode=0o700)
    store = WorkspaceStore(data_dir / "workspace.duckdb")
    fleet.fill(store, datetime.now(UTC))
    users = SqliteUserStore(data_dir / "users.db", cost=2**12)
    users.add(ANALYST["username"], "analyst", ANALYST["password"])
    users.add(VIEWER["username"], "viewer", VIEWER["password"])
    holder: list[HubServer] = []

    async def authorize(request: Request) -> None:
        await holder[0].authorize_service(request, "RegistryRead")

    def tls() -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(holder[0].pki.ca))

    backend = ServiceApiBackend(
        base_url=lambda: f"https://localhost:{holder[0].https_port}",
        token=_owner_token(data_dir),
        verify=tls,
    )
    console = ConsoleSettings(
        secret=load_or_create_secret(data_dir / "console.secret"),
        owner_key=lambda: _owner(data_dir)["SharedAccessKey"],
        hub_name=settings.hub_name,
    )
    routes: list[BaseRoute] = [
        Mount("/workspace", app=build_query_app(Workspace(store), authorize)),
        _alert_route(lambda: holder[0], store),
        *console_routes(backend, users, console),
    ]
    hub = HubServer(settings, extra_routes=routes)
    holder.append(hub)
    await hub.start()
    try:
        for device, group in ((fleet.DEVICE, "cameras"), (fleet.QUIET_DEVICE, "gateways")):
            hub.registry.create_device(device, tags={"SecurityGroup": group})
        yield Served(hub, store, data_dir)
    finally:
        await backend.aclose()
        await hub.stop()
        store.close()


async def test_the_console_in_a_real_browser(served: Served, tmp_path: Path) -> None:
    assert served.hub.pki.cert is not None
    config = {
        "base": served.base,
        "chromium": str(CHROMIUM),
        "userDataDir": str(tmp_path / "chromium-profile"),
        "spki": _spki_hash(served.hub.pki.cert),
        "artifacts": str(tmp_path),
        "analyst": ANALYST,
        "viewer": VIEWER,
        "device": fleet.DEVICE,
        "alertId": fleet.ALERT_ID,
        "alertTitle": "Reverse shell detected",
        "viewerAlertId": fleet.OPEN_ALERT_ID,
        "query": QUERY,
        "screens": os.environ.get("IOTSEC_BROWSER_SCREENS"),
    }
    config_path = tmp_path / "browser.json"
    config_path.write_bytes(orjson.dumps(config))
    node = shutil.which("node")
    assert node is not None
    process = await asyncio.create_subprocess_exec(
        node,
        str(HERE / "drive.mjs"),
        str(config_path),
        cwd=HERE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout=180)
    except TimeoutError:
        process.kill()
        await process.wait()
        pytest.fail("the browser run took over 180 s")
    lines = out.decode("utf-8", "replace").strip().splitlines()
    assert lines, f"the driver printed nothing; stderr:\n{err.decode('utf-8', 'replace')}"
    verdict = orjson.loads(lines[-1])
    if not verdict["ok"]:
        sys.stderr.write(err.decode("utf-8", "replace"))
    assert verdict["ok"], orjson.dumps(verdict, option=orjson.OPT_INDENT_2).decode()
    assert verdict["steps"] == [
        "sign in as the analyst",
        "see the device in the fleet",
        "open the alert",
        "resolve the alert",
        "run a query",
        "the session cookie is out of reach of scripts",
        "sign out",
        "sign in as the viewer",
        "a viewer is refused a change",
    ]
    status = await asyncio.to_thread(
        lambda: (
            served.store.query_cursor()
            .execute(
                'SELECT "Status" FROM "SecurityAlert" WHERE "SystemAlertId" = ?',
                [fleet.OPEN_ALERT_ID],
            )
            .fetchone()
        )
    )
    assert status == ("Active",)  # the viewer's attempt changed nothing on the server
