"""``iotsec query``: run KQL (or read-only SQL) on the workspace through the running server."""

from __future__ import annotations

import argparse
import csv
import sys
from typing import Any, TextIO

import orjson

from iotsec.cli.service_client import CliError, ServiceClient, add_data_dir_flag, data_dir_from

__all__ = ["QUERY_PATH", "register"]

#: Where the server mounts the workspace query app.
QUERY_PATH = "/workspace/query"
_CELL = 60


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``iotsec query``."""
    query = sub.add_parser("query", help="query the workspace with KQL (or --sql)")
    query.add_argument("text", metavar="QUERY", help="a KQL query (or SQL with --sql); - for stdin")
    query.add_argument("--sql", action="store_true", help="the query is read-only SQL")
    query.add_argument("--format", choices=("table", "json", "csv"), default="table")
    query.add_argument("--max-rows", type=int, default=None, help="cap on the rows returned")
    add_data_dir_flag(query)
    query.set_defaults(handler=_query)


def _query(args: argparse.Namespace) -> int:
    text = sys.stdin.read() if args.text == "-" else args.text
    body: dict[str, Any] = {"query": text, "language": "sql" if args.sql else "kql"}
    if args.max_rows is not None:
        body["maxRows"] = args.max_rows
    try:
        with ServiceClient(data_dir_from(getattr(args, "data_dir", None))) as client:
            answer = client.request("POST", QUERY_PATH, body=body)
    except CliError as exc:
        sys.stderr.write(f"iotsec: {exc}\n")
        return 1
    write_answer(answer, args.format, sys.stdout)
    if answer.get("truncated"):
        print(f"truncated: {answer.get('reason', 'the result was cut')}", file=sys.stderr)
    return 0


def write_answer(answer: dict[str, Any], fmt: str, out: TextIO) -> None:
    """Write a query answer as a table, JSON (one object per row) or CSV."""
    names = [c["name"] for c in answer["columns"]]
    rows: list[list[Any]] = answer["rows"]
    if fmt == "json":
        objects = [dict(zip(names, row, strict=True)) for row in rows]
        out.write(orjson.dumps(objects, option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    cells = [[_cell(v) for v in row] for row in rows]
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(names)
        writer.writerows(cells)
        return
    shown = [[c if len(c) <= _CELL else c[: _CELL - 1] + "…" for c in row] for row in cells]
    widths = [max([len(n)] + [len(r[i]) for r in shown]) for i, n in enumerate(names)]
    out.write("  ".join(n.ljust(w) for n, w in zip(names, widths, strict=True)).rstrip() + "\n")
    out.write("  ".join("-" * w for w in widths) + "\n")
    for row in shown:
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")
    out.write(f"({len(rows)} rows)\n")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return orjson.dumps(value).decode()
