"""The KQL surface the workspace promises (docs/queries.md), one case per name.

Each case compiles a small query, runs it on the fixture workspace and checks its value, so a
name that is dropped from the parser or the registries, or stops working, fails here by name.
"""

from __future__ import annotations

from typing import Any

import duckdb
import pytest

from iotsec.workspace.kql import compile_kql
from iotsec.workspace.kql.functions import AGGREGATES, FUNCTIONS
from iotsec.workspace.kql.parser import JOIN_KINDS, TABULAR_OPERATORS
from tests.workspace.kql.conftest import NOW
from tests.workspace.kql.golden import normalize

_NUMS = "datatable(x:long, g:string)[1, 'a', 2, 'a', 2, 'b', 3, 'b', long(null), 'b']"


def _rows(workspace: duckdb.DuckDBPyConnection, text: str) -> list[list[Any]]:
    compiled = compile_kql(text, now=NOW)
    kinds = [k for _, k in compiled.columns]
    return [
        [normalize(v, k) for v, k in zip(row, kinds, strict=True)]
        for row in workspace.execute(compiled.sql).fetchall()
    ]


def _value(workspace: duckdb.DuckDBPyConnection, text: str) -> Any:
    ((value,),) = _rows(workspace, text)
    return value


# --- tabular operators: (name, query, expected row count) -------------------------------------

OPERATORS = {
    "where": ("Device | where RiskScore > 0.5", 2),
    "filter": ("Device | filter RiskScore > 0.5", 2),
    "project": ("Device | project DeviceId, r = RiskScore * 2", 4),
    "project-away": ("Device | project-away Tags", 4),
    "project-keep": ("Device | project-keep Device*", 4),
    "project-rename": ("Device | project-rename Id = DeviceId", 4),
    "project-reorder": ("Device | project-reorder RiskScore", 4),
    "extend": ("Device | extend r = RiskScore", 4),
    "summarize": ("Device | summarize count() by bin(LastSeen, 1d)", 3),
    "count": ("Device | count", 1),
    "distinct": ("Device | distinct SecurityGroup", 3),
    "take": ("Device | take 2", 2),
    "limit": ("Device | limit 3", 3),
    "top": ("Device | top 2 by RiskScore", 2),
    "sort": ("Device | sort by RiskScore asc", 4),
    "order": ("Device | order by RiskScore", 4),
    "union": ("Device | union SecurityAlert", 8),
    "mv-expand": ("Device | mv-expand Tags", 4),
    "render": ("Device | render barchart", 4),
    "join": ("Device | join (SecurityAlert) on DeviceId", 3),
}


def test_every_operator_is_covered() -> None:
    assert set(OPERATORS) == TABULAR_OPERATORS


@pytest.mark.parametrize(("name", "case"), OPERATORS.items(), ids=list(OPERATORS))
def test_tabular_operator(
    name: str, case: tuple[str, int], workspace: duckdb.DuckDBPyConnection
) -> None:
    text, count = case
    assert len(_rows(workspace, text)) == count


SOURCES = {
    "table": ("Device", 4),
    "let": ("let t = Device; t", 4),
    "union": ("union Device, SecurityAlert", 8),
    "print": ("print x = 1", 1),
    "datatable": ("datatable(a:long)[1, 2]", 2),
    "range": ("range x from 1 to 3 step 1", 3),
}


@pytest.mark.parametrize(("name", "case"), SOURCES.items(), ids=list(SOURCES))
def test_source(name: str, case: tuple[str, int], workspace: duckdb.DuckDBPyConnection) -> None:
    text, count = case
    assert len(_rows(workspace, text)) == count


# --- join kinds: rows of SecurityAlert (a1, a2 on dev-2; a3 on dev-1; a4 on dev-9) joined with
# Device (dev-1 to dev-4) on DeviceId ----------------------------------------------------------

JOINS = {
    "innerunique": 2,  # the left side is cut to one alert per device first
    "inner": 3,
    "leftouter": 4,  # a4 has no device
    "rightouter": 5,  # dev-3 and dev-4 have no alert
    "fullouter": 6,
    "leftanti": 1,
    "leftsemi": 3,
}


def test_every_join_kind_is_covered() -> None:
    assert set(JOINS) == JOIN_KINDS


@pytest.mark.parametrize(("kind", "count"), JOINS.items(), ids=list(JOINS))
def test_join_kind(kind: str, count: int, workspace: duckdb.DuckDBPyConnection) -> None:
    rows = _rows(workspace, f"SecurityAlert | join kind={kind} (Device) on DeviceId")
    assert len(rows) == count


# --- scalar functions: (expression, value) ----------------------------------------------------

FUNCTION_CASES = {
    "ago": ("ago(1h)", "2024-03-10T11:00:00.000000Z"),
    "now": ("now()", "2024-03-10T12:00:00.000000Z"),
    "bin": ("bin(datetime(2024-03-10 10:47), 1h)", "2024-03-10T10:00:00.000000Z"),
    "floor": ("floor(17, 5)", 15),
    "datetime": ("datetime(2024-01-02 03:04:05)", "2024-01-02T03:04:05.000000Z"),
    "todatetime": ('todatetime("2024-01-02T03:04:05Z")', "2024-01-02T03:04:05.000000Z"),
    "tostring": ("tostring(42)", "42"),
    "toint": ('toint("42")', 42),
    "tolong": ("tolong(4.7)", 4),
    "todouble": ('todouble("1.5")', 1.5),
    "toreal": ("toreal(2)", 2.0),
    "tobool": ('tobool("true")', True),
    "toboolean": ('toboolean("false")', False),
    "tolower": ('tolower("AbC")', "abc"),
    "toupper": ('toupper("AbC")', "ABC"),
    "strlen": ('strlen("abcd")', 4),
    "substring": ('substring("abcdef", 1, 3)', "bcd"),
    "strcat": ('strcat("a", 1, "b")', "a1b"),
    "split": ('split("a,b,c", ",")', ["a", "b", "c"]),
    "extract": ('extract("id=(\\\\d+)", 1, "x id=42 y")', "42"),
    "extractjson": ('extractjson("$.a.b", "{\\"a\\": {\\"b\\": 7}}")', "7"),
    "extract_json": ('extract_json("$.a", "{\\"a\\": 1}")', "1"),
    "isempty": ('isempty("")', True),
    "isnotempty": ('isnotempty("x")', True),
    "isnull": ("isnull(long(null))", True),
    "isnotnull": ("isnotnull(1)", True),
    "iff": ('iff(1 > 2, "yes", "no")', "no"),
    "iif": ('iif(1 < 2, "yes", "no")', "yes"),
    "case": ('case(1 > 2, "a", 2 > 1, "b", "c")', "b"),
    "coalesce": ('coalesce("", "x")', "x"),
    "format_datetime": (
        'format_datetime(datetime(2024-03-10 08:05), "yyyy-MM-dd HH:mm")',
        "2024-03-10 08:05",
    ),
    "startofday": ("startofday(datetime(2024-03-10 08:05))", "2024-03-10T00:00:00.000000Z"),
    "array_length": ("array_length(dynamic([1, 2, 3]))", 3),
    "parse_json": ('parse_json("{\\"a\\": [1]}")', {"a": [1]}),
    "todynamic": ('todynamic("[1, 2]")', [1, 2]),
    "pack": ('pack("a", 1, "b", "x")', {"a": 1, "b": "x"}),
    "bag_pack": ('bag_pack("a", 1)', {"a": 1}),
    "pack_array": (
        'pack_array(1, "a", datetime(2024-01-01))',
        [1, "a", "2024-01-01T00:00:00.000000Z"],
    ),
    "ipv4_is_in_range": ('ipv4_is_in_range("10.1.2.3", "10.0.0.0/8")', True),
    "not": ("not(1 > 2)", True),
    "round": ("round(2.567, 2)", 2.57),
    "abs": ("abs(-3)", 3),
}


def test_every_function_is_covered() -> None:
    assert set(FUNCTION_CASES) == set(FUNCTIONS)


@pytest.mark.parametrize(("name", "case"), FUNCTION_CASES.items(), ids=list(FUNCTION_CASES))
def test_function(name: str, case: tuple[str, Any], workspace: duckdb.DuckDBPyConnection) -> None:
    text, expected = case
    assert _value(workspace, f"print v = {text}") == expected


def test_dynamic_access(workspace: duckdb.DuckDBPyConnection) -> None:
    value = 'dynamic({"a": {"b": [10, 20]}, "c d": 1})'
    assert _value(workspace, f"print v = {value}.a.b[1]") == 20
    assert _value(workspace, f'print v = {value}["c d"]') == 1
    assert _value(workspace, f'print v = {value}["a"]["b"][0]') == 10


# --- operators: (expression, value) -----------------------------------------------------------

SCALAR_OPERATORS = {
    "==": ('"a" == "A"', False),
    "!=": ('"a" != "A"', True),
    "=~": ('"a" =~ "A"', True),
    "!~": ('"a" !~ "A"', False),
    "contains": ('"Hello" contains "ELL"', True),
    "!contains": ('"Hello" !contains "ELL"', False),
    "contains_cs": ('"Hello" contains_cs "ELL"', False),
    "has": ('"curl http://x" has "CURL"', True),
    "!has": ('"curling" !has "curl"', True),
    "startswith": ('"Hello" startswith "he"', True),
    "endswith": ('"Hello" endswith "LO"', True),
    "matches regex": ('"abc123" matches regex "[a-z]+[0-9]+"', True),
    "in": ('"b" in ("a", "b")', True),
    "!in": ('"B" !in ("a", "b")', True),
    "in~": ('"B" in~ ("a", "b")', True),
    "between": ("5 between (1 .. 10)", True),
    "and": ("true and false", False),
    "or": ("true or false", True),
    "not()": ("not(true)", False),
}


@pytest.mark.parametrize(("name", "case"), SCALAR_OPERATORS.items(), ids=list(SCALAR_OPERATORS))
def test_scalar_operator(
    name: str, case: tuple[str, Any], workspace: duckdb.DuckDBPyConnection
) -> None:
    text, expected = case
    assert _value(workspace, f"print v = {text}") == expected


# --- aggregates over x = 1, 2, 2, 3, null (g: a, a, b, b, b) -----------------------------------

AGGREGATE_CASES = {
    "count": ("count()", 5),
    "countif": ("countif(x > 1)", 3),
    "dcount": ("dcount(x)", 3),
    "dcountif": ("dcountif(x, g == 'b')", 2),
    "sum": ("sum(x)", 8),
    "sumif": ("sumif(x, g == 'a')", 3),
    "avg": ("avg(x)", 2.0),
    "min": ("min(x)", 1),
    "max": ("max(x)", 3),
    "any": ("any(g)", None),  # any value: only its presence is checked
    "take_any": ("take_any(g)", None),
    "stdev": ("round(stdev(x), 6)", 0.816497),
    "make_set": ("make_set(x)", [1, 2, 3]),
    "makeset": ("makeset(g)", ["a", "b"]),
    "make_list": ("array_length(make_list(x))", 4),
    "makelist": ("array_length(makelist(g))", 5),
    "percentile": ("percentile(x, 50)", 2),
    "percentiles": ("percentiles(x, 50)", 2),
    "arg_max": ("arg_max(x, g)", 3),
    "arg_min": ("arg_min(x, g)", 1),
}


def test_every_aggregate_is_covered() -> None:
    assert set(AGGREGATE_CASES) == set(AGGREGATES)


@pytest.mark.parametrize(("name", "case"), AGGREGATE_CASES.items(), ids=list(AGGREGATE_CASES))
def test_aggregate(name: str, case: tuple[str, Any], workspace: duckdb.DuckDBPyConnection) -> None:
    text, expected = case
    ((value, *_),) = _rows(workspace, f"{_NUMS} | summarize {text}")
    if expected is None:
        assert value in ("a", "b")
    else:
        assert value == expected
