"""The query API: ``POST /query`` with KQL or read-only SQL, answered as typed JSON.

Request: ``{"query": "...", "language": "kql" | "sql", "maxRows": n}``. Answer:
``{"columns": [{"name", "type"}], "rows": [[...]], "truncated", "reason"?, "elapsedMs",
"render"?}``. Errors answer ``{"Message": ..., "error": {"code", "message", "line"?,
"column"?}}`` with 400 (invalid or refused), 429 (busy) or 504 (timeout). ``authorize`` is
awaited first and refuses by raising (e.g. Starlette's ``HTTPException``).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, Literal

import msgspec
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from iotsec.workspace.errors import QueryError, QueryInvalid
from iotsec.workspace.query import QueryResult, Workspace

__all__ = ["QueryRequest", "build_query_app", "result_json"]

Authorize = Callable[[Request], Awaitable[None]]


class QueryRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The body of ``POST /query``."""

    query: str
    language: Literal["kql", "sql"] = "kql"
    maxRows: int | None = msgspec.field(default=None)  # noqa: N815  # the wire name


_decode_request = msgspec.json.Decoder(QueryRequest)


def build_query_app(workspace: Workspace, authorize: Authorize) -> Starlette:
    """A Starlette app serving ``POST /query`` over ``workspace``."""

    async def query(request: Request) -> Response:
        await authorize(request)
        try:
            body = _decode_request.decode(await request.body())
        except msgspec.DecodeError as exc:
            return _error(QueryInvalid(f"the request body is not a query: {exc}"))
        if body.maxRows is not None and body.maxRows < 1:
            return _error(QueryInvalid(f"maxRows must be at least 1, not {body.maxRows}"))
        run = workspace.query_kql if body.language == "kql" else workspace.query_sql
        try:
            result = await asyncio.to_thread(run, body.query, limit_rows=body.maxRows)
        except QueryError as exc:
            return _error(exc)
        return Response(result_json(result), media_type="application/json")

    return Starlette(routes=[Route("/query", query, methods=["POST"])])


def result_json(result: QueryResult) -> bytes:
    """The JSON answer for ``result``: dynamic values parsed, datetimes in ISO 8601 UTC."""
    dynamic = [i for i, c in enumerate(result.columns) if c.type == "dynamic"]
    rows = result.rows
    if dynamic:
        for row in rows:
            for i in dynamic:
                if isinstance(row[i], str):
                    row[i] = orjson.loads(row[i])
    answer: dict[str, Any] = {
        "columns": [{"name": c.name, "type": c.type} for c in result.columns],
        "rows": rows,
        "truncated": result.truncated,
        "elapsedMs": round(result.elapsed * 1000, 3),
    }
    if result.reason is not None:
        answer["reason"] = result.reason
    if result.render is not None:
        answer["render"] = _plain(result.render)
    return orjson.dumps(answer, default=_default, option=orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC)


def _default(value: object) -> object:
    if isinstance(value, timedelta):
        return _timespan(value)
    if isinstance(value, bytes | bytearray):
        return value.decode("utf-8", "replace")
    return str(value)


def _timespan(value: timedelta) -> str:
    """KQL's timespan text: ``[-][d.]hh:mm:ss[.fffffff]``."""
    sign = "-" if value < timedelta(0) else ""
    value = abs(value)
    hours, rest = divmod(value.seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    days = f"{value.days}." if value.days else ""
    fraction = f".{value.microseconds:06d}0" if value.microseconds else ""
    return f"{sign}{days}{hours:02d}:{minutes:02d}:{seconds:02d}{fraction}"


def _plain(render: object) -> object:
    if dataclasses.is_dataclass(render) and not isinstance(render, type):
        return dataclasses.asdict(render)
    if isinstance(render, msgspec.Struct):
        return msgspec.to_builtins(render)
    return render


def _error(exc: QueryError) -> Response:
    error: dict[str, Any] = {"code": type(exc).__name__, "message": exc.render()}
    if isinstance(exc, QueryInvalid):
        if exc.line is not None:
            error["line"] = exc.line
        if exc.column is not None:
            error["column"] = exc.column
    body = {"Message": exc.render(), "error": error}
    return Response(orjson.dumps(body), status_code=exc.status, media_type="application/json")
