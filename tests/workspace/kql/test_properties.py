"""Property tests: arbitrary text only ever raises KqlError; output is one read-only SELECT."""

from __future__ import annotations

import json
import re

import duckdb
import pytest
import sqlglot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlglot import exp

from iotsec.workspace.kql import KqlError, compile_kql, format_query, parse
from iotsec.workspace.kql.lexer import tokenize
from iotsec.workspace.tables import TABLES

_WORDS = [
    "Device", "SecurityAlert", "SecurityIoTRawEvent", "DeadLetter", "|", "where", "project",
    "extend", "summarize", "by", "count", "count()", "take", "10", "sort", "top", "join", "on",
    "kind=leftouter", "union", "let", "=", "==", "!=", "=~", "has", "contains", "in", "(", ")",
    ",", ";", "DeviceId", "RiskScore", "Tags", "EventDetails", ".", "[", "]", "'x'", '"y"',
    "1d", "ago(1d)", "bin(TimeGenerated, 1h)", "arg_max(TimeGenerated, *)", "mv-expand",
    "render", "timechart", "and", "or", "not(", "true", "-", "*", "datetime(2024-01-01)",
    "dynamic([1])", "$left.DeviceId", "$right.DeviceId", "read_csv('/etc/passwd')",
    "'; DROP TABLE x; --", "\"\\\"", "@'a''b'", "//c\n", "1.5", "between", "..",
    "print", "x = 1", "datatable(a:long, b:string)", "[1, 'x']", "[]", "range", "from", "to",
    "step", "withsource=T", "Security*", "Risk*", "project-keep", "project-reorder", "asc",
    "granny-asc", "with_itemindex=i", "to typeof(long)", "kind=array", "limit", "long(null)",
    "((", "))", "!in", "round(", "countif(", "dynamic({\"a\": 1})",
]  # fmt: skip

# DuckDB functions that read files, URLs or other databases: never in compiled SQL.
_FILE_FUNCTIONS = re.compile(
    r"(read_|parquet_|csv_|json_scan|iceberg_|delta_|sqlite_|postgres_|mysql_|glob$|sniff_csv$"
    r"|query$|query_table$)"
)

_token_soup = st.lists(st.sampled_from(_WORDS), max_size=25).map(" ".join)
_SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _check_sql(sql: str) -> None:
    statements = sqlglot.parse(sql, read="duckdb")
    assert len(statements) == 1
    (tree,) = statements
    assert isinstance(tree, exp.Select | exp.Union)
    ctes = {cte.alias for cte in tree.find_all(exp.CTE)}
    for table in tree.find_all(exp.Table):
        assert table.name in TABLES or table.name in ctes, table.name
    for forbidden in (exp.Insert, exp.Update, exp.Delete, exp.Drop, exp.Create, exp.Command):
        assert not list(tree.find_all(forbidden))
    for function in tree.find_all(exp.Anonymous):
        assert not _FILE_FUNCTIONS.match(function.name.lower()), function.name


def _compile_or_kql_error(text: str) -> None:
    try:
        compiled = compile_kql(text)
    except KqlError as err:
        err.render()
        return
    _check_sql(compiled.sql)


@_SETTINGS
@given(st.text(max_size=200))
def test_arbitrary_text_raises_only_kql_error(text: str) -> None:
    _compile_or_kql_error(text)


@_SETTINGS
@given(_token_soup)
def test_token_soup_raises_only_kql_error(text: str) -> None:
    _compile_or_kql_error(text)


@_SETTINGS
@given(st.text(max_size=60))
def test_string_literals_are_escaped(value: str) -> None:
    quoted = '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    try:
        compiled = compile_kql(
            f"Device | where DeviceId == {quoted} | project DeviceId, v = {quoted}"
        )
    except KqlError as err:  # only the escapes KQL does not have
        assert "escape" in err.message or "unterminated" in err.message
        return
    _check_sql(compiled.sql)
    tree = sqlglot.parse_one(compiled.sql, read="duckdb")
    literals = {lit.this for lit in tree.find_all(exp.Literal) if lit.is_string}
    if "\r" not in value and "\t" not in value:
        assert value in literals


@_SETTINGS
@given(st.text(min_size=1, max_size=30))
def test_identifiers_are_quoted(name: str) -> None:
    text = "Device | extend [" + '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"] = 1'
    try:
        compiled = compile_kql(text)
    except KqlError:
        return
    assert name in compiled.column_names
    _check_sql(compiled.sql)


@_SETTINGS
@given(_token_soup)
def test_format_round_trips_whatever_parses(text: str) -> None:
    try:
        tree = parse(text)
    except KqlError:
        return
    assert parse(format_query(tree)) == tree


@_SETTINGS
@given(st.text(max_size=100))
def test_lexer_raises_only_kql_error(text: str) -> None:
    try:
        tokens = tokenize(text)
    except KqlError:
        return
    assert tokens[-1].value == ""


_NEW_SOURCES = [
    "print x = 1, y = 'a', z = dynamic({\"k\": [1, 2]})",
    "datatable(a:long, b:string, d:dynamic)"
    "[1, 'read_csv', dynamic(['/etc/passwd']), long(null), '', dynamic(null)]",
    "range x from 1 to 10 step 3 | extend y = x * 2",
    "range t from ago(1d) to now() step 1h",
    "let d = datatable(x:string)['dev-1']; Device | where DeviceId in (d)"
    " | join kind=leftouter d on $left.DeviceId == $right.x",
    "print p = dynamic([1, 2]) | mv-expand with_itemindex=i p to typeof(long) limit 1",
    "union withsource=T Security*, (print x = 'a')",
    "Device | where DeviceId !in ((SecurityAlert | project DeviceId))"
    " | project-keep Risk* | project-reorder RiskLevel",
    "print x = \"'); SELECT * FROM read_csv('/etc/passwd'); --\"",
]


@pytest.mark.parametrize("text", _NEW_SOURCES)
def test_new_sources_compile_to_one_read_only_select(
    text: str, workspace: duckdb.DuckDBPyConnection
) -> None:
    compiled = compile_kql(text)
    _check_sql(compiled.sql)
    workspace.execute(compiled.sql).fetchall()


def test_print_keeps_sql_in_a_string(workspace: duckdb.DuckDBPyConnection) -> None:
    text = "'); SELECT * FROM read_csv('/etc/passwd'); --"
    compiled = compile_kql(f"print x = {json.dumps(text)}")
    assert workspace.execute(compiled.sql).fetchall() == [(text,)]
