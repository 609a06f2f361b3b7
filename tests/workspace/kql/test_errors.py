"""Error messages and caret rendering: exact text for each kind of mistake."""

from __future__ import annotations

import pytest

from iotsec.errors import IotsecError
from iotsec.workspace.kql import KqlError, compile_kql


def _error(text: str) -> KqlError:
    with pytest.raises(KqlError) as info:
        compile_kql(text)
    return info.value


def test_kql_error_is_an_iotsec_error() -> None:
    assert issubclass(KqlError, IotsecError)


def test_unknown_table_suggests() -> None:
    err = _error("SecurityAlerts | take 1")
    assert err.message == "unknown table 'SecurityAlerts' (did you mean 'SecurityAlert'?)"
    assert err.render() == (
        "unknown table 'SecurityAlerts' (did you mean 'SecurityAlert'?)\n"
        "  line 1, column 1\n"
        "  SecurityAlerts | take 1\n"
        "  ^^^^^^^^^^^^^^"
    )


def test_unknown_column_suggests_case() -> None:
    err = _error('SecurityAlert | where DeviceID == "d1"')
    assert err.message == "unknown column 'DeviceID' (did you mean 'DeviceId'?)"
    assert (err.line, err.column, err.length) == (1, 23, 8)
    assert err.render().splitlines()[-1] == "                        ^^^^^^^^"


def test_unknown_column_after_project() -> None:
    err = _error("Device | project DeviceId | where RiskScore > 1")
    assert err.message == "unknown column 'RiskScore'"


def test_unknown_function_suggests() -> None:
    err = _error("Device | extend x = tolowr(DeviceId)")
    assert err.message == "unknown function 'tolowr' (did you mean 'tolower'?)"
    assert err.render().splitlines()[-1] == "                      ^^^^^^^^^^^^^^^^"


def test_unterminated_string() -> None:
    err = _error('Device | where DeviceId == "dev-1')
    assert err.message == "unterminated string literal"
    assert err.render() == (
        "unterminated string literal\n"
        "  line 1, column 28\n"
        '  Device | where DeviceId == "dev-1\n'
        "                             ^^^^^^"
    )


def test_bad_pipe_unknown_operator() -> None:
    err = _error("Device\n| wher RiskScore > 1")
    assert err.message == "unknown tabular operator 'wher' (did you mean 'where'?)"
    assert (err.line, err.column) == (2, 3)
    assert err.render().splitlines()[-2:] == ["  | wher RiskScore > 1", "    ^^^^"]


def test_bad_pipe_empty() -> None:
    assert _error("Device | | take 1").message == "expected a tabular operator after '|', found '|'"


def test_missing_pipe() -> None:
    assert _error("Device take 1").message == "expected '|' or end of query, found 'take'"


def test_wrong_arity() -> None:
    err = _error("Device | extend x = strlen(DeviceId, 1)")
    assert err.message == "strlen() expects 1 argument, got 2"
    assert err.render().splitlines()[-1] == "                      ^^^^^^^^^^^^^^^^^^^"


def test_wrong_arity_aggregate() -> None:
    assert _error("Device | summarize count(DeviceId)").message == (
        "count() expects 0 arguments, got 1"
    )


def test_aggregate_outside_summarize() -> None:
    assert _error("Device | where count() > 1").message == (
        "aggregate count() is only allowed in summarize"
    )


def test_unknown_join_kind() -> None:
    assert _error("Device | join kind=lefouter (Device) on DeviceId").message == (
        "unknown join kind 'lefouter' (did you mean 'leftouter'?)"
    )


def test_type_errors() -> None:
    assert _error("Device | where RiskScore == 'x'").message == (
        "cannot compare real with string using '=='"
    )
    assert _error("Device | where DeviceId.x == 1").message == (
        "property access needs a dynamic value, got string"
    )
    assert _error("Device | mv-expand DeviceId").message == (
        "mv-expand needs a dynamic column, got string"
    )


def test_constant_arguments_required() -> None:
    assert _error("Device | where DeviceId has SecurityGroup").message == (
        "the right side of 'has' must be a constant string"
    )
    assert _error("Device | take RiskScore").message.startswith("unknown column") is False


def test_render_must_be_last() -> None:
    assert _error("Device | render table | take 1").message == "render must be the last operator"


def test_multiline_caret() -> None:
    err = _error("let x = 1;\nDevice\n| project Nope")
    assert err.render() == (
        "unknown column 'Nope'\n  line 3, column 11\n  | project Nope\n            ^^^^"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Device | where x == 'a\\q'", "unknown escape sequence '\\q'"),
        ("Device | where RiskScore > 5x", "unknown timespan unit 'x'"),
        ("Device | where a !foo b", "unknown operator '!foo'"),
        ("Device | where a == #", "unexpected character '#'"),
        (
            "Device | where TimeGenerated > datetime(2024-13-45)",
            "malformed datetime literal '2024-13-45'",
        ),
        ("Device | extend d = dynamic({bad})", "malformed dynamic literal (expected JSON)"),
        (
            "Device | extend d = extractjson('$..x', Tags)",
            "extractjson(): unsupported JSON path '$..x'",
        ),
        (
            "Device | extend d = ipv4_is_in_range(DeviceId, 'x')",
            "ipv4_is_in_range(): bad IPv4 range 'x'",
        ),
        ("Device | extend d = ago(DeviceId)", "ago(): argument 1 must be a constant"),
        ("Device | project DeviceId, DeviceId", "duplicate column name 'DeviceId' in project"),
    ],
)
def test_messages(text: str, message: str) -> None:
    assert _error(text).message == message


def test_summarize_expression_points_at_the_loose_column() -> None:
    err = _error("Device | summarize n = count() + RiskScore by SecurityGroup")
    assert err.message == "column 'RiskScore' must be inside an aggregate or be a 'by' column"
    assert err.render().splitlines()[-1] == " " * 35 + "^" * 9


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Device | summarize n = sum(count())", "aggregate calls cannot be nested"),
        (
            "Device | summarize x = arg_max(RiskScore, DeviceId) + 1",
            "arg_max() returns several columns and cannot be part of an expression",
        ),
        (
            "Device | summarize x = RiskScore + 1",
            "summarize expects an aggregate function call, such as count()",
        ),
        (
            "Device | summarize n = count(), n = count() * 2",
            "duplicate column name 'n' in summarize",
        ),
        (
            "datatable(a:int, b:string)[1, 'x', 2]",
            "datatable has 3 values, not a whole number of rows of 2",
        ),
        ("datatable(a:int)['x']", "datatable column 'a' is long, got a string value"),
        ("datatable(a:int)[strlen('x')]", "datatable values must be literals"),
        ("datatable(a:strng)[1]", "unknown type 'strng' (did you mean 'string'?)"),
        ("datatable(a:int, a:long)[1, 2]", "duplicate column name 'a' in datatable"),
        ("range x from 1 to 10 step 0", "range step must not be zero"),
        ("range x from 1 to 10 step 1d", "range cannot go from a long to a long by a timespan"),
        ("range x from 1 to 100000000 step 1", "range would produce more than 1000000 rows"),
        ("range x from 1e-300 to 1e300 step 1e-300", "range would produce more than 1000000 rows"),
        (
            "range x from 1 to tolong(now() - ago(1h)) step 1",
            "range bounds and step must be constant numbers, times or spans",
        ),
        ("print a = 1, a = 2", "duplicate column name 'a' in print"),
        ("print x = DeviceId", "unknown column 'DeviceId'"),
        ("Device | mv-expand Tags, Tags", "mv-expand names column 'Tags' twice"),
        (
            "Device | mv-expand with_itemindex=DeviceId Tags",
            "with_itemindex column 'DeviceId' already exists",
        ),
        (
            "Device | mv-expand Tags to typeof(timespan)",
            "mv-expand cannot cast elements to timespan",
        ),
        ("Device | mv-expand kind=list Tags", "expected 'bag' or 'array', found 'list'"),
        ("Device | mv-expand Tags limit -1", "the row count must be a constant, non-negative long"),
        ("Device | mv-expand dynamic([1])", "mv-expand needs a column, or 'name = expression'"),
        ("union Nope*", "no table matches 'Nope*'"),
        ("Device | join (Secur*) on DeviceId", "expected ')', found '*'"),
        ("Device | join Secur* on DeviceId", "table wildcards are only allowed in union"),
        (
            "Device | where DeviceId in ((SecurityAlert | project DeviceId), 'x')",
            "a tabular expression must be the only value inside 'in (...)'",
        ),
        (
            "Device | where DeviceId in ((SecurityAlert | project TimeGenerated))",
            "cannot compare string with datetime using 'in'",
        ),
        (
            "Device | where DeviceId in ((SecurityAlert | count | render table))",
            "render is not allowed in a subquery",
        ),
        ("Device | project-keep Nope", "unknown column 'Nope'"),
        (
            "Device | project-reorder DeviceID",
            "unknown column 'DeviceID' (did you mean 'DeviceId'?)",
        ),
        ("Device | project-away Risk*, Nope", "unknown column 'Nope'"),
        (
            "union withsource=DeviceId Device, SecurityAlert",
            "union: withsource column 'DeviceId' is already a column",
        ),
        (
            "union kind=inner (print x = 1), (print x = 'a')",
            "union: column 'x' is long in one input and string in another",
        ),
    ],
)
def test_new_construct_messages(text: str, message: str) -> None:
    assert _error(text).message == message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("print x = read_csv('/etc/passwd')", "unknown function 'read_csv'"),
        ("datatable(a:string)[read_csv('/etc/passwd')]", "datatable values must be literals"),
        ("range x from 1 to read_csv('/etc/passwd') step 1", "unknown function 'read_csv'"),
        (
            "datatable(a:string)['x'] | where a in ((read_csv('/etc/passwd')))",
            "unknown function 'read_csv'",
        ),
        ("print x = 1 | union read_csv", "unknown table 'read_csv'"),
        ("union withsource=T read_*", "no table matches 'read_*'"),
        ("print x = 1 | join (read_csv('/etc/passwd')) on x", "expected ')', found '('"),
        ("let f = read_parquet('x'); print y = f", "unknown function 'read_parquet'"),
    ],
)
def test_new_sources_cannot_reach_table_functions(text: str, message: str) -> None:
    assert _error(text).message == message
