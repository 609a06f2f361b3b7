"""``iotsec query`` output formats (the request itself goes through ServiceClient)."""

from __future__ import annotations

import argparse
import io

from iotsec.cli import query_cmd

ANSWER = {
    "columns": [{"name": "DeviceId", "type": "string"}, {"name": "n", "type": "long"}],
    "rows": [["dev-1", 3], ["dev-2", None]],
    "truncated": False,
}


def test_register_adds_the_query_command() -> None:
    parser = argparse.ArgumentParser()
    query_cmd.register(parser.add_subparsers())
    args = parser.parse_args(["query", "T | count", "--sql", "--format", "csv"])
    assert (args.text, args.sql, args.format) == ("T | count", True, "csv")


def test_formats() -> None:
    out = io.StringIO()
    query_cmd.write_answer(ANSWER, "table", out)
    assert out.getvalue().splitlines() == [
        "DeviceId  n",
        "--------  -",
        "dev-1     3",
        "dev-2",
        "(2 rows)",
    ]
    out = io.StringIO()
    query_cmd.write_answer(ANSWER, "csv", out)
    assert out.getvalue() == "DeviceId,n\ndev-1,3\ndev-2,\n"
    out = io.StringIO()
    query_cmd.write_answer(ANSWER, "json", out)
    assert '"DeviceId": "dev-1"' in out.getvalue()
