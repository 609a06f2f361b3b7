"""Server-side SVG charts: what is a time series, and that the SVG is well formed and escaped."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime

from iotsec.console.charts import alert_chart, line_chart, time_series
from iotsec.console.models import AlertDay, QueryColumn, QueryTable

SVG = "{http://www.w3.org/2000/svg}"
T0 = "2025-03-10T10:00:00Z"
T1 = "2025-03-10T11:00:00Z"


def _table(columns: list[tuple[str, str]], rows: list[tuple[object, ...]]) -> QueryTable:
    return QueryTable(tuple(QueryColumn(n, t) for n, t in columns), tuple(rows))


def test_no_chart_without_a_datetime_and_a_number() -> None:
    assert time_series(_table([("n", "long")], [(1,)])) is None
    assert time_series(_table([("T", "datetime"), ("s", "string")], [(T0, "x")])) is None
    assert time_series(_table([("T", "datetime"), ("n", "long")], [(None, 1)])) is None


def test_numeric_columns_become_lines() -> None:
    table = _table([("T", "datetime"), ("a", "long"), ("b", "real")], [(T1, 2, 0.5), (T0, 1, None)])
    series = time_series(table)
    assert series is not None
    assert [line.name for line in series.lines] == ["a", "b"]
    a = series.lines[0]
    assert [v for _, v in a.points] == [1.0, 2.0]  # sorted by time
    assert a.points[0][0] == datetime(2025, 3, 10, 10, tzinfo=UTC)


def test_one_number_by_one_string_is_split_into_lines() -> None:
    table = _table(
        [("T", "datetime"), ("AlertSeverity", "string"), ("count_", "long")],
        [(T0, "High", 3), (T0, "Low", 1), (T1, "High", 4)],
    )
    series = time_series(table)
    assert series is not None
    assert {line.name: len(line.points) for line in series.lines} == {"High": 2, "Low": 1}


def test_line_charts_are_well_formed_and_escape_names() -> None:
    hostile = "<i>&'\"x</i>"  # legends keep 24 characters
    table = _table([("T", "datetime"), ("s", "string"), ("n", "long")], [(T0, hostile, 3)])
    series = time_series(table)
    assert series is not None
    svg = str(line_chart(series))
    assert "<i>" not in svg
    root = ET.fromstring(svg)
    legend = [t.text for t in root.iter(f"{SVG}text") if t.get("class") == "legend"]
    assert legend == [hostile]


def test_negative_values_get_an_axis_below_zero() -> None:
    table = _table([("T", "datetime"), ("n", "real")], [(T0, -5.0), (T1, 5.0)])
    series = time_series(table)
    assert series is not None
    root = ET.fromstring(str(line_chart(series)))
    ticks = [t.text for t in root.iter(f"{SVG}text") if t.get("class") == "tick"]
    assert "-5" in ticks


def test_the_alert_chart_stacks_each_day_by_severity() -> None:
    days = [
        AlertDay(datetime(2025, 3, 9, tzinfo=UTC), "High", 2),
        AlertDay(datetime(2025, 3, 9, tzinfo=UTC), "Low", 1),
        AlertDay(datetime(2025, 3, 1, tzinfo=UTC), "Medium", 9),  # outside the 7 days
    ]
    end = datetime(2025, 3, 10, 12, tzinfo=UTC)
    root = ET.fromstring(str(alert_chart(days, end=end, span_days=7)))
    bars = [r for r in root.iter(f"{SVG}rect") if r.get("class") == "bar"]
    titles = sorted(r.find(f"{SVG}title").text for r in bars)  # type: ignore[union-attr]
    assert titles == ["2025-03-09: 1 Low", "2025-03-09: 2 High"]
    assert root.get("aria-label") == "Alerts per day by severity, 3 in 7 days"


def test_an_empty_alert_chart_still_draws_its_axes() -> None:
    end = datetime(2025, 3, 10, tzinfo=UTC)
    root = ET.fromstring(str(alert_chart([], end=end)))
    assert not [r for r in root.iter(f"{SVG}rect") if r.get("class") == "bar"]
    assert [t for t in root.iter(f"{SVG}text") if t.get("class") == "tick"]
