"""Reading and writing the golden file, and normalizing DuckDB rows for comparison.

Format: entries separated by a line ``=== <name> [ordered]``; the KQL text; a line ``---``;
then the expected column names (a JSON list) and one JSON list per row. ``ordered`` entries
compare rows in order, the others as multisets.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GOLDEN = Path(__file__).parent / "golden" / "queries.kql"


@dataclass(frozen=True)
class Entry:
    name: str
    ordered: bool
    kql: str
    columns: list[str]
    rows: list[list[Any]]


def load(path: Path = GOLDEN) -> list[Entry]:
    entries = []
    for chunk in path.read_text(encoding="utf-8").split("\n=== ")[1:]:
        header, _, rest = chunk.partition("\n")
        kql, _, expected = (rest + "\n").partition("\n---\n")
        lines = [json.loads(line) for line in expected.strip().splitlines() if line.strip()]
        name, _, flag = header.strip().partition(" ")
        entries.append(
            Entry(name, flag == "ordered", kql.strip(), lines[0] if lines else [], lines[1:])
        )
    return entries


def dump(entries: list[Entry], path: Path = GOLDEN) -> None:
    out = [
        "// Golden KQL queries over the fixture workspace (tests/workspace/kql/conftest.py).",
        "",
    ]
    for e in entries:
        out.append(f"=== {e.name}{' ordered' if e.ordered else ''}")
        out.append(e.kql)
        out.append("---")
        out.append(json.dumps(e.columns))
        out += [json.dumps(r, ensure_ascii=False) for r in e.rows]
        out.append("")
    path.write_text("\n".join(out), encoding="utf-8")


def normalize(value: Any, kind: str) -> Any:
    """A DuckDB value as plain JSON: datetimes as UTC ISO strings, JSON parsed."""
    if value is None:
        return None
    if kind == "dynamic":
        return json.loads(value) if isinstance(value, str) else value
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if isinstance(value, dt.timedelta):
        return f"{value.total_seconds()}s"
    if isinstance(value, float | decimal.Decimal):
        return round(float(value), 9)
    return value
