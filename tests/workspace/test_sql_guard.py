"""The read-only SQL guard: every forbidden class refused, by name; fuzzed text never escapes."""

from __future__ import annotations

import pytest
import sqlglot
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlglot import exp

from iotsec.workspace.errors import QueryError, QueryInvalid, QueryRefused
from iotsec.workspace.sql_guard import guard_sql
from iotsec.workspace.tables import TABLES


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT DeviceId FROM SecurityIoTRawEvent WHERE TimeGenerated > now() - INTERVAL 1 DAY",
        "WITH d AS (SELECT DeviceId FROM Device)"
        " SELECT * FROM d JOIN SecurityAlert USING (DeviceId)",
        "SELECT DeviceId FROM SecurityAlert UNION ALL SELECT DeviceId FROM SecurityRecommendation",
        "SELECT DeviceId FROM Device EXCEPT SELECT DeviceId FROM DeadLetter",
        "SELECT json_extract_string(EventDetails, '$.TimestampLocal') FROM securityiotrawevent",
        "SELECT * FROM (SELECT 1 AS a) t",
        "FROM OperationLog SELECT count(*)",
    ],
)
def test_read_only_queries_over_catalog_tables_pass(sql: str) -> None:
    guarded = guard_sql(sql)
    assert isinstance(sqlglot.parse_one(guarded, read="duckdb"), exp.Select | exp.SetOperation)


@pytest.mark.parametrize(
    ("sql", "what"),
    [
        ("INSERT INTO Device (DeviceId) VALUES ('x')", "INSERT"),
        ("UPDATE Device SET Status = 'x'", "UPDATE"),
        ("DELETE FROM Device", "DELETE"),
        ("CREATE TABLE t (a INT)", "CREATE"),
        ("DROP TABLE Device", "DROP"),
        ("ALTER TABLE Device ADD COLUMN x INT", "ALTER"),
        ("PRAGMA version", "PRAGMA"),
        ("ATTACH 'x.db'", "ATTACH"),
        ("COPY Device TO 'x.csv'", "COPY"),
        ("INSTALL httpfs", "INSTALL"),
        ("LOAD httpfs", "LOAD"),
        ("SET threads = 1", "SET"),
        ("CALL pragma_version()", "CALL"),
        ("SELECT 1; SELECT 2", "2 statements"),
        ("SELECT * FROM read_csv('/etc/passwd')", "table function"),
        ("SELECT * FROM read_csv_auto('x')", "table function"),
        ("SELECT * FROM read_parquet('x')", "table function"),
        ("SELECT * FROM read_json_auto('x')", "table function"),
        ("SELECT * FROM glob('/etc/*')", "table function"),
        ("SELECT * FROM read_text('x')", "table function"),
        ("SELECT * FROM read_blob('x')", "table function"),
        ("SELECT * FROM range(10)", "table function"),
        ("SELECT * FROM duckdb_settings()", "table function"),
        ("SELECT * FROM '/etc/passwd'", "table '/etc/passwd'"),
        ("SELECT * FROM 'https://example.com/x.parquet'", "table"),
        ("SELECT * FROM information_schema.tables", "table information_schema.tables"),
        ("SELECT * FROM main.Device", "table main.Device"),
        ("SELECT * FROM pg_class", "table 'pg_class'"),
        ("SELECT getenv('HOME')", "function getenv"),
        ("SELECT current_setting('threads')", "function current_setting"),
        ("SELECT nextval('_SecurityIoTRawEventSourceKeys')", "function nextval"),
        ("SELECT currval('_SecurityIoTRawEventSourceKeys')", "function currval"),
        ("SELECT (SELECT content FROM read_text('x'))", "table function"),
        ("SELECT DeviceId FROM Device WHERE DeviceId IN (SELECT * FROM glob('*'))", "glob"),
    ],
)
def test_every_forbidden_class_is_refused_by_name(sql: str, what: str) -> None:
    with pytest.raises(QueryRefused) as caught:
        guard_sql(sql)
    assert what.lower() in caught.value.what.lower()


def test_unparseable_sql_is_invalid_with_a_position() -> None:
    with pytest.raises(QueryInvalid) as caught:
        guard_sql("SELECT FROM WHERE (")
    assert isinstance(caught.value, QueryError)


_WORDS = st.sampled_from(
    [
        "SELECT",
        "*",
        "FROM",
        "WHERE",
        "WITH",
        "AS",
        "UNION",
        "JOIN",
        "ON",
        "(",
        ")",
        ",",
        ";",
        "Device",
        "DeadLetter",
        "x",
        "read_csv('/etc/passwd')",
        "glob('*')",
        "'f.csv'",
        "1",
        "INSERT",
        "INTO",
        "VALUES",
        "COPY",
        "TO",
        "ATTACH",
        "main.Device",
        "range(3)",
        "=",
        "DeviceId",
        "count(*)",
        "t",
        "LATERAL",
        "PRAGMA",
        "SET",
        "x=1",
        "DROP",
        "TABLE",
    ]
)


def _check_passed(guarded: str) -> None:
    allowed = {name.lower() for name in TABLES}
    tree = sqlglot.parse_one(guarded, read="duckdb")
    assert isinstance(tree, exp.Select | exp.SetOperation)
    ctes = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}
    for table in tree.find_all(exp.Table):
        assert isinstance(table.this, exp.Identifier)
        assert table.name.lower() in allowed | ctes


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_arbitrary_text_is_refused_or_touches_only_catalog_tables(text: str) -> None:
    try:
        guarded = guard_sql(text)
    except QueryError:
        return
    _check_passed(guarded)


@settings(max_examples=500, deadline=None)
@given(st.lists(_WORDS, min_size=1, max_size=14).map(" ".join))
def test_sql_like_text_is_refused_or_touches_only_catalog_tables(text: str) -> None:
    try:
        guarded = guard_sql(text)
    except QueryError:
        return
    _check_passed(guarded)


def test_sql_the_generator_cannot_round_trip_is_refused_as_invalid() -> None:
    # Found by the property test in CI: sqlglot regenerates this as text it cannot parse.
    with pytest.raises(QueryInvalid, match="cannot be regenerated"):
        guard_sql("SELECT LATERAL SELECT")
