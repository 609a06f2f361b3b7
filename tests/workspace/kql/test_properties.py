"""Property tests: arbitrary text only ever raises KqlError; output is one read-only SELECT."""

from __future__ import annotations

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
]  # fmt: skip

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
