"""The query API over a real store, with a stand-in KQL compiler."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pyarrow as pa  # type: ignore[import-untyped]  # pyarrow ships no type hints
import pytest
from starlette.exceptions import HTTPException
from starlette.requests import Request

from iotsec.workspace.api import build_query_app
from iotsec.workspace.query import QueryLimits, Workspace
from iotsec.workspace.store import WorkspaceStore
from tests.workspace.samples import AT
from tests.workspace.test_query import SLOW, stand_in


async def authorize(request: Request) -> None:
    if request.headers.get("authorization") != "let-me-in":
        raise HTTPException(401, "unauthorized")


@pytest.fixture
async def client(store: WorkspaceStore) -> AsyncIterator[httpx.AsyncClient]:
    store.append(
        "DeadLetter",
        pa.table(
            {
                "DeadLetterId": [f"0:{i}" for i in range(300)],
                "DeviceId": ["dev-1"] * 300,
                "TimeGenerated": [AT] * 300,
            }
        ),
    )
    workspace = Workspace(store, compiler=stand_in, limits=QueryLimits(timeout=0.3))
    transport = httpx.ASGITransport(app=build_query_app(workspace, authorize))
    async with httpx.AsyncClient(
        transport=transport, base_url="http://test", headers={"authorization": "let-me-in"}
    ) as opened:
        yield opened


async def test_refused_authorization_runs_nothing(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/query", json={"query": "DeadLetter | count"}, headers={"authorization": "no"}
    )
    assert response.status_code == 401


async def test_kql_answers_typed_columns_and_rows(client: httpx.AsyncClient) -> None:
    response = await client.post("/query", json={"query": "DeadLetter | count"})
    assert response.status_code == 200
    body = response.json()
    assert body["columns"] == [{"name": "Count", "type": "long"}]
    assert body["rows"] == [[300]] and body["truncated"] is False
    assert body["render"] == "table" and body["elapsedMs"] >= 0


async def test_kql_errors_are_400_with_the_caret_and_position(client: httpx.AsyncClient) -> None:
    response = await client.post("/query", json={"query": "DeadLetter | nope"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "QueryInvalid" and error["message"].endswith("^")
    assert (error["line"], error["column"]) == (1, 14)
    assert response.json()["Message"] == error["message"]


async def test_sql_passthrough_with_max_rows(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/query",
        json={
            "query": "SELECT DeviceId, TimeGenerated, '{\"a\": [1]}'::JSON AS d FROM DeadLetter",
            "language": "sql",
            "maxRows": 5,
        },
    )
    assert response.status_code == 200
    body = response.json()
    assert [c["type"] for c in body["columns"]] == ["string", "datetime", "dynamic"]
    assert body["rows"][0] == ["dev-1", "2025-03-04T05:06:07Z", {"a": [1]}]
    assert len(body["rows"]) == 5 and body["truncated"] is True and "5 rows" in body["reason"]


async def test_refused_sql_is_400_naming_what(client: httpx.AsyncClient) -> None:
    response = await client.post("/query", json={"query": "DROP TABLE Device", "language": "sql"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "QueryRefused"
    assert "DROP" in response.json()["Message"]


async def test_timeouts_are_504(client: httpx.AsyncClient) -> None:
    response = await client.post("/query", json={"query": SLOW, "language": "sql"})
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "QueryTimeout"


async def test_malformed_bodies_are_400(client: httpx.AsyncClient) -> None:
    assert (await client.post("/query", content=b"{")).status_code == 400
    assert (
        await client.post("/query", json={"query": "x", "language": "cobol"})
    ).status_code == 400
    assert (await client.post("/query", json={"query": "x", "maxRows": 0})).status_code == 400
