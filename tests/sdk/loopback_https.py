"""A real HTTPS server on 127.0.0.1 speaking IoT Hub's device REST shapes, for transport tests.

It checks SAS tokens the way the hub must (recompute, compare in constant time, check the
resource and the expiry) or the client certificate's CN for X.509 devices, records messages,
keeps twins, and can be scripted to answer the next requests with an error.
"""

from __future__ import annotations

import base64
import hmac
import json
import re
import secrets
import ssl
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from iotsec.protocol.sas import generate_sas_token, parse_sas_token, resource_uri
from iotsec.sdk.errors import SasTokenError
from iotsec.sdk.twin import merge_patch
from tests.tls import LoopbackPki

HOST_NAME = "localhost"
_ROUTE = re.compile(
    r"^/devices/(?P<device>[^/]+)(?:/modules/(?P<module>[^/]+))?"
    r"/(?P<what>messages/events|twin|twin/properties/reported)$"
)


def new_key() -> str:
    """A random base64 device key, as IoT Hub generates them."""
    return base64.b64encode(secrets.token_bytes(32)).decode()


@dataclass(frozen=True)
class Received:
    """One device-to-cloud message as the hub saw it (header names lower-cased)."""

    device_id: str
    module_id: str | None
    body: bytes
    headers: dict[str, str]

    @property
    def app_properties(self) -> dict[str, str]:
        return {
            name.removeprefix("iothub-app-"): value
            for name, value in self.headers.items()
            if name.startswith("iothub-app-")
        }


@dataclass(frozen=True)
class Scripted:
    status: int
    body: bytes
    headers: dict[str, str]


@dataclass
class _Twin:
    desired: dict[str, Any] = field(default_factory=dict)
    reported: dict[str, Any] = field(default_factory=dict)
    desired_version: int = 1
    reported_version: int = 1


class LoopbackHttpsHub:
    """The hub's HTTPS device API on 127.0.0.1 with real TLS; use as a context manager."""

    def __init__(
        self,
        pki: LoopbackPki,
        *,
        require_client_cert: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.pki = pki
        self.clock = clock
        self.device_keys: dict[str, str] = {}
        self.policy_keys: dict[str, str] = {}
        self.x509_devices: set[str] = set()
        self.received: list[Received] = []
        self.requests: list[tuple[str, str]] = []
        self.auth_failures: list[str] = []
        self.errors: list[BaseException] = []
        self.twins: dict[str, _Twin] = {}
        self._script: deque[Scripted] = deque()
        self._lock = threading.Lock()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(pki.server.cert, pki.server.key)
        context.load_verify_locations(pki.ca.cert)
        context.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
        self._server = _Server(("127.0.0.1", 0), _Handler, context, self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def __enter__(self) -> LoopbackHttpsHub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    # --- registry ----------------------------------------------------------------------------

    def add_device(
        self, device_id: str, *, module_id: str | None = None, key: str | None = None
    ) -> str:
        """Register a SAS identity; returns its connection string."""
        key = key or new_key()
        self.device_keys[_identity(device_id, module_id)] = key
        module = f"ModuleId={module_id};" if module_id else ""
        return f"HostName={HOST_NAME};DeviceId={device_id};{module}SharedAccessKey={key}"

    def add_policy(self, name: str) -> str:
        """Register a shared access policy; returns its key."""
        self.policy_keys[name] = key = new_key()
        return key

    def add_x509_device(self, device_id: str) -> str:
        """Register an X.509 identity (cert CN must equal the id); returns its connection string."""
        self.x509_devices.add(device_id)
        return f"HostName={HOST_NAME};DeviceId={device_id};x509=true"

    def twin(self, device_id: str, module_id: str | None = None) -> _Twin:
        with self._lock:
            return self.twins.setdefault(_identity(device_id, module_id), _Twin())

    # --- scripting ---------------------------------------------------------------------------

    def answer_next(
        self,
        status: int,
        *,
        body: Any = None,
        headers: dict[str, str] | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next ``times`` requests with ``status`` (before any auth check)."""
        raw = (
            b"" if body is None else body if isinstance(body, bytes) else json.dumps(body).encode()
        )
        with self._lock:
            self._script.extend([Scripted(status, raw, headers or {})] * times)

    def _next_scripted(self) -> Scripted | None:
        with self._lock:
            return self._script.popleft() if self._script else None

    # --- authentication ----------------------------------------------------------------------

    def authenticate(
        self, authorization: str | None, device_id: str, module_id: str | None, peer_cn: str | None
    ) -> str | None:
        """None when the caller may act as the identity, else the reason it may not."""
        if authorization is None:
            if module_id is None and device_id in self.x509_devices and peer_cn == device_id:
                return None
            return f"no SAS token and no client certificate for {device_id} (got CN {peer_cn})"
        try:
            token = parse_sas_token(authorization)
        except SasTokenError as exc:
            return str(exc)
        if token.sr != resource_uri(HOST_NAME, device_id, module_id):
            return f"token is for {token.sr}, not this device"
        if token.expired(self.clock()):
            return "token expired"
        key = (
            self.policy_keys.get(token.skn)
            if token.skn is not None
            else self.device_keys.get(_identity(device_id, module_id))
        )
        if key is None:
            return "unknown identity or policy"
        expected = generate_sas_token(token.sr, key, token.se, token.skn)
        if not hmac.compare_digest(expected.encode(), authorization.encode()):
            return "signature mismatch"
        return None


def _identity(device_id: str, module_id: str | None) -> str:
    return device_id if module_id is None else f"{device_id}/{module_id}"


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        context: ssl.SSLContext,
        hub: LoopbackHttpsHub,
    ) -> None:
        super().__init__(address, handler)
        self.context = context
        self.hub = hub

    def get_request(self) -> tuple[Any, Any]:
        sock, address = super().get_request()
        # Handshake in the handler's thread, so a bad client cannot stall the accept loop.
        return self.context.wrap_socket(
            sock, server_side=True, do_handshake_on_connect=False
        ), address

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if exc is not None:
            self.hub.errors.append(exc)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 5
    disable_nagle_algorithm = True  # headers and body go out in separate writes
    server: _Server

    def setup(self) -> None:
        # Handshake before the base class opens its files: a failed handshake then leaves
        # nothing open but the socket, which the server closes.
        self.request.do_handshake()
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:  # stdlib names it format
        return None  # keep test output clean

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PATCH(self) -> None:
        self._serve("PATCH")

    def _serve(self, method: str) -> None:
        hub = self.server.hub
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        url = urlsplit(self.path)
        hub.requests.append((method, url.path))
        scripted = hub._next_scripted()
        if scripted is not None:
            self._send(scripted.status, scripted.body, scripted.headers)
            return
        route = _ROUTE.match(url.path)
        if route is None or parse_qs(url.query).get("api-version") is None:
            self._json(404, {"Message": f"no such resource {url.path}"})
            return
        device_id = unquote(route["device"])
        module_id = unquote(route["module"]) if route["module"] else None
        refusal = hub.authenticate(
            self.headers.get("Authorization"), device_id, module_id, self._peer_cn()
        )
        if refusal is not None:
            hub.auth_failures.append(refusal)
            self._json(401, {"Message": "ErrorCode:IotHubUnauthorizedAccess;Unauthorized"})
            return
        what = route["what"]
        if what == "messages/events" and method == "POST":
            headers = {name.lower(): value for name, value in self.headers.items()}
            hub.received.append(Received(device_id, module_id, body, headers))
            self._send(204, b"", {})
        elif what == "twin" and method == "GET":
            twin = hub.twin(device_id, module_id)
            self._json(
                200,
                {
                    "desired": {**twin.desired, "$version": twin.desired_version},
                    "reported": {**twin.reported, "$version": twin.reported_version},
                },
            )
        elif what == "twin/properties/reported" and method == "PATCH":
            try:
                patch = json.loads(body)
            except ValueError:
                self._json(400, {"Message": "reported patch is not JSON"})
                return
            if not isinstance(patch, dict):
                self._json(400, {"Message": "reported patch must be an object"})
                return
            twin = hub.twin(device_id, module_id)
            twin.reported = merge_patch(twin.reported, patch)
            twin.reported_version += 1
            self._json(200, {"$version": twin.reported_version})
        else:
            self._json(405, {"Message": f"{method} not allowed on {url.path}"})

    def _peer_cn(self) -> str | None:
        cert = self.request.getpeercert()
        if not cert:
            return None
        for rdn in cert.get("subject", ()):
            for name, value in rdn:
                if name == "commonName":
                    return str(value)
        return None

    def _json(self, status: int, value: Any) -> None:
        self._send(status, json.dumps(value).encode(), {"Content-Type": "application/json"})

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)
