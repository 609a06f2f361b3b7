"""The golden suite: every query compiles, runs in DuckDB and returns exactly its rows."""

from __future__ import annotations

import duckdb
import pytest

from iotsec.workspace.kql import compile_kql, format_query, parse
from tests.workspace.kql.conftest import NOW
from tests.workspace.kql.golden import Entry, load, normalize

ENTRIES = load()


def test_golden_file_is_not_empty() -> None:
    assert len(ENTRIES) >= 90
    assert len({e.name for e in ENTRIES}) == len(ENTRIES)


@pytest.mark.parametrize("entry", ENTRIES, ids=[e.name for e in ENTRIES])
def test_golden_rows(entry: Entry, workspace: duckdb.DuckDBPyConnection) -> None:
    compiled = compile_kql(entry.kql, now=NOW)
    assert list(compiled.column_names) == entry.columns
    kinds = [k for _, k in compiled.columns]
    rows = [
        [normalize(v, k) for v, k in zip(row, kinds, strict=True)]
        for row in workspace.execute(compiled.sql).fetchall()
    ]
    if not entry.ordered:
        rows.sort(key=repr)
    assert rows == entry.rows


@pytest.mark.parametrize("entry", ENTRIES, ids=[e.name for e in ENTRIES])
def test_identity_round_trip(entry: Entry) -> None:
    tree = parse(entry.kql)
    text = format_query(tree)
    assert parse(text) == tree
    assert format_query(parse(text)) == text


def test_render_hint_is_recorded() -> None:
    compiled = compile_kql(
        "SecurityAlert | summarize count() by AlertSeverity"
        ' | render piechart with (title="Sev", legend=hidden)'
    )
    assert compiled.render is not None
    assert compiled.render.kind == "piechart"
    assert dict(compiled.render.properties) == {"title": "Sev", "legend": "hidden"}


def test_ago_uses_injected_now() -> None:
    compiled = compile_kql("SecurityAlert | where TimeGenerated > ago(1d)", now=NOW)
    assert "2024-03-09 12:00:00.000000+00" in compiled.sql


def test_identifiers_are_quoted_and_lets_are_ctes() -> None:
    compiled = compile_kql("let T = Device | take 1; T | project DeviceId")
    assert compiled.sql.startswith('WITH "let_T" AS (')
    assert '"DeviceId"' in compiled.sql


def test_sort_follows_kql_defaults() -> None:
    assert "DESC" in compile_kql("Device | sort by RiskScore").sql
    assert "ASC NULLS FIRST" in compile_kql("Device | sort by RiskScore asc").sql
