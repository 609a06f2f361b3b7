"""A small TAXII 2.1 server for tests: discovery, two API roots, collections and paged objects.

Served by uvicorn on 127.0.0.1 with real TLS (the test PKI's server certificate). It speaks only
``application/taxii+json;version=2.1``, requires HTTP basic auth, keeps every object's
``date_added``, honours ``added_after``, ``limit`` and ``next``, and sends the
``X-TAXII-Date-Added-First/Last`` headers. With ``give_next=False`` it pages the other way
TAXII 2.1 allows: ``more`` without ``next``, leaving the client to page by ``added_after``.
"""

from __future__ import annotations

import base64
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.tls import LoopbackPki

MEDIA_TYPE = "application/taxii+json;version=2.1"
COLLECTION = "91a7b528-80eb-42ed-a74d-c6fbd5a26116"
OTHER_COLLECTION = "52892447-4d7e-4f70-b94d-d7f22742ff63"
START = datetime(2025, 1, 1, tzinfo=UTC)


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class TaxiiState:
    username: str
    password: str
    give_next: bool = True
    #: Answer 500 to object requests after this many more (a server failing mid-pagination).
    fail_after: int | None = None
    #: (date_added, object) in the order added.
    objects: list[tuple[datetime, dict[str, object]]] = field(default_factory=list)
    #: (path, query) of every authenticated request, in order.
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    def add(self, *objects: dict[str, object]) -> None:
        for obj in objects:
            latest = self.objects[-1][0] if self.objects else START
            self.objects.append((latest + timedelta(seconds=1), obj))

    def object_requests(self) -> list[dict[str, str]]:
        return [query for path, query in self.requests if path.endswith("/objects/")]


def _json(body: object, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status, headers, media_type=MEDIA_TYPE)


def build_app(state: TaxiiState) -> Starlette:
    def guard(request: Request) -> Response | None:
        secret = base64.b64encode(f"{state.username}:{state.password}".encode()).decode()
        if request.headers.get("authorization") != "Basic " + secret:
            return _json({"title": "unauthorized"}, 401)
        if "application/taxii+json" not in request.headers.get("accept", ""):
            return _json({"title": "not acceptable"}, 406)
        state.requests.append((request.url.path, dict(request.query_params)))
        return None

    async def discovery(request: Request) -> Response:
        refused = guard(request)
        return refused or _json(
            {
                "title": "iotsec test TAXII",
                "default": "/api1/",
                "api_roots": ["/api1/", "/api2/"],
            }
        )

    async def api_root(request: Request) -> Response:
        refused = guard(request)
        return refused or _json(
            {"title": "root", "versions": [MEDIA_TYPE], "max_content_length": 10_485_760}
        )

    def collection_info(root: str) -> dict[str, object]:
        ident = OTHER_COLLECTION if root == "api1" else COLLECTION
        return {
            "id": ident,
            "title": "IoT threat indicators" if root == "api2" else "Other",
            "alias": "iot" if root == "api2" else "other",
            "can_read": True,
            "can_write": False,
            "media_types": ["application/stix+json;version=2.1"],
        }

    async def collections(request: Request) -> Response:
        refused = guard(request)
        return refused or _json({"collections": [collection_info(request.path_params["root"])]})

    async def collection(request: Request) -> Response:
        refused = guard(request)
        return refused or _json(collection_info(request.path_params["root"]))

    async def objects(request: Request) -> Response:
        refused = guard(request)
        if refused:
            return refused
        if request.path_params["id"] != COLLECTION:
            return _json({"objects": []})
        if state.fail_after is not None:
            if state.fail_after == 0:
                return _json({"title": "internal error"}, 500)
            state.fail_after -= 1
        query = request.query_params
        after = datetime.fromisoformat(query["added_after"]) if "added_after" in query else None
        listed = [(t, o) for t, o in state.objects if after is None or t > after]
        offset = int(query.get("next", "0"))
        limit = int(query.get("limit", "100"))
        page = listed[offset : offset + limit]
        more = offset + limit < len(listed)
        body: dict[str, object] = {"more": more, "objects": [o for _, o in page]}
        if more and state.give_next:
            body["next"] = str(offset + limit)
        headers = {}
        if page:
            headers["X-TAXII-Date-Added-First"] = stamp(page[0][0])
            headers["X-TAXII-Date-Added-Last"] = stamp(page[-1][0])
        return _json(body, headers=headers)

    return Starlette(
        routes=[
            Route("/taxii2/", discovery),
            Route("/{root}/", api_root),
            Route("/{root}/collections/", collections),
            Route("/{root}/collections/{id}/", collection),
            Route("/{root}/collections/{id}/objects/", objects),
        ]
    )


@contextmanager
def serve_taxii(state: TaxiiState, pki: LoopbackPki) -> Iterator[str]:
    """Serve the app over TLS on a free loopback port; yields the discovery URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        build_app(state),
        ssl_certfile=str(pki.server.cert),
        ssl_keyfile=str(pki.server.key),
        log_level="warning",
        lifespan="off",
        http="h11",
        ws="none",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the TAXII server did not start"
        time.sleep(0.01)
    try:
        yield f"https://127.0.0.1:{port}/taxii2/"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
        assert not thread.is_alive(), "the TAXII server did not stop (a connection left open?)"
