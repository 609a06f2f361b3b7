"""Charts as SVG drawn on the server: no script, no library, every label escaped.

``alert_chart`` stacks alerts per day by severity; ``time_series`` finds a chartable series in
a query result (a datetime column plus numeric columns, or one numeric column split by one
string column) and ``line_chart`` draws it. Both return ``Markup`` so templates insert them as
they are; all text that came from data goes through ``escape`` first.

>>> from datetime import UTC, datetime
>>> from iotsec.console.models import QueryColumn, QueryTable
>>> table = QueryTable((QueryColumn("T", "datetime"), QueryColumn("n", "long")),
...                    (("2025-01-01T00:00:00Z", 3), ("2025-01-01T01:00:00Z", 5)))
>>> series = time_series(table)
>>> [s.name for s in series.lines], series.lines[0].points[1][1]
(['n'], 5.0)
>>> str(line_chart(series)).startswith("<svg")
True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from html import escape

from markupsafe import Markup

from iotsec.console.models import SEVERITIES, AlertDay, QueryTable
from iotsec.console.records import time_of

__all__ = ["SEVERITY_COLORS", "Line", "Series", "alert_chart", "line_chart", "time_series"]

#: Fill colours by severity (also used by the CSS badges).
SEVERITY_COLORS = {
    "High": "#c62828",
    "Medium": "#ef6c00",
    "Low": "#f9a825",
    "Informational": "#1565c0",
}
_PALETTE = ("#1565c0", "#c62828", "#2e7d32", "#ef6c00", "#6a1b9a", "#00838f", "#ad1457", "#5d4037")
#: Most lines one chart draws (a split by a string column keeps the largest).
MAX_LINES = 8
_W, _H = 760, 260
_LEFT, _RIGHT, _TOP, _BOTTOM = 56, 16, 34, 30


@dataclass(frozen=True, slots=True)
class Line:
    """One named series of (time, value) points, in time order."""

    name: str
    points: tuple[tuple[datetime, float], ...]


@dataclass(frozen=True, slots=True)
class Series:
    """Lines that share a time axis."""

    time_column: str
    lines: tuple[Line, ...]
    #: What is plotted: the numeric columns (and the column that splits them).
    measure: str = ""


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def time_series(table: QueryTable) -> Series | None:
    """The chartable series in ``table``, or None when it is not a time series."""
    kinds = [c.type for c in table.columns]
    if "datetime" not in kinds:
        return None
    at = kinds.index("datetime")
    numeric = [i for i, c in enumerate(table.columns) if c.is_numeric]
    text = [i for i, c in enumerate(table.columns) if c.type == "string"]
    if not numeric:
        return None
    grouped: dict[str, list[tuple[datetime, float]]] = {}
    split = len(numeric) == 1 and len(text) == 1
    for row in table.rows:
        when = time_of(row[at])
        if when is None:
            continue
        for i in numeric:
            value = _number(row[i])
            if value is None:
                continue
            name = str(row[text[0]]) if split else table.columns[i].name
            grouped.setdefault(name, []).append((when, value))
    if not grouped:
        return None
    largest = sorted(grouped, key=lambda n: -sum(v for _, v in grouped[n]))[:MAX_LINES]
    lines = tuple(Line(n, tuple(sorted(grouped[n]))) for n in sorted(largest))
    measure = ", ".join(table.columns[i].name for i in numeric)
    if split:
        measure = f"{measure} by {table.columns[text[0]].name}"
    return Series(table.columns[at].name, lines, measure)


def _nice_step(top: float, ticks: int = 4) -> float:
    raw = max(top, 1e-9) / ticks
    power = 10.0 ** math.floor(math.log10(raw))
    for factor in (1.0, 2.0, 2.5, 5.0, 10.0):
        if raw <= factor * power:
            return factor * power
    return 10 * power


def _label(value: float) -> str:
    if value == int(value) and abs(value) < 1e15:
        return f"{int(value):,}"
    return f"{value:,.3g}"


def _time_label(when: datetime, span: timedelta) -> str:
    if span > timedelta(days=2):
        return when.strftime("%m-%d")
    if span > timedelta(hours=2):
        return when.strftime("%m-%d %H:%M")
    return when.strftime("%H:%M:%S")


def _frame(title: str, top: float, parts: list[str], *, base: float = 0.0) -> float:
    """Title, grid and y labels for values base..base+top; returns the rounded-up top."""
    step = _nice_step(top)
    ceiling = step * math.ceil(top / step) if top > 0 else step * 4
    parts.append(f'<text x="{_LEFT}" y="18" class="chart-title">{escape(title)}</text>')
    plot_h = _H - _TOP - _BOTTOM
    value = 0.0
    while value <= ceiling + step / 2:
        y = _TOP + plot_h - plot_h * value / ceiling
        parts.append(
            f'<line x1="{_LEFT}" y1="{y:.1f}" x2="{_W - _RIGHT}" y2="{y:.1f}" class="grid"/>'
            f'<text x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">'
            f"{escape(_label(base + value))}</text>"
        )
        value += step
    return ceiling


def _legend(names: Sequence[tuple[str, str]], parts: list[str]) -> None:
    x = _W - _RIGHT
    for name, color in reversed(names):
        label = escape(name[:24])
        x -= 14 + 7 * len(name[:24]) + 12
        parts.append(
            f'<rect x="{x}" y="8" width="10" height="10" fill="{color}"/>'
            f'<text x="{x + 14}" y="17" class="legend">{label}</text>'
        )


def _svg(parts: list[str], label: str) -> Markup:
    body = "".join(parts)
    return Markup(  # noqa: S704 - every piece of data above went through escape()
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {_W} {_H}"'
        f' role="img" aria-label="{escape(label)}">{body}</svg>'
    )


def alert_chart(days: Sequence[AlertDay], *, end: datetime, span_days: int = 14) -> Markup:
    """Alerts per day as bars stacked by severity, for the ``span_days`` days up to ``end``."""
    last = end.replace(hour=0, minute=0, second=0, microsecond=0)
    starts = [last - timedelta(days=span_days - 1 - i) for i in range(span_days)]
    counts = {(d.start.date(), d.severity): d.count for d in days}
    totals = [sum(counts.get((s.date(), sev), 0) for sev in SEVERITIES) for s in starts]
    parts: list[str] = []
    ceiling = _frame("Alerts per day by severity", float(max(totals, default=0)), parts)
    plot_w, plot_h = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM
    slot = plot_w / span_days
    for i, start in enumerate(starts):
        x = _LEFT + i * slot + slot * 0.15
        y = float(_TOP + plot_h)
        for severity in reversed(SEVERITIES):
            count = counts.get((start.date(), severity), 0)
            if not count:
                continue
            h = plot_h * count / ceiling
            y -= h
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{slot * 0.7:.1f}" height="{h:.1f}"'
                f' fill="{SEVERITY_COLORS[severity]}" class="bar">'
                f"<title>{escape(f'{start:%Y-%m-%d}: {count} {severity}')}</title></rect>"
            )
        if i % max(1, span_days // 7) == 0:
            parts.append(
                f'<text x="{x + slot * 0.35:.1f}" y="{_H - 10}" text-anchor="middle" class="tick">'
                f"{start:%m-%d}</text>"
            )
    _legend([(s, SEVERITY_COLORS[s]) for s in SEVERITIES], parts)
    return _svg(parts, f"Alerts per day by severity, {sum(totals)} in {span_days} days")


def line_chart(series: Series, *, title: str | None = None) -> Markup:
    """``series`` as lines over time, with points when there are few."""
    points = [p for line in series.lines for p in line.points]
    first = min(t for t, _ in points)
    last = max(t for t, _ in points)
    if last == first:
        first, last = first - timedelta(hours=1), last + timedelta(hours=1)
    span = last - first
    low = min(0.0, *(v for _, v in points))
    parts: list[str] = []
    top = max(v for _, v in points) - low
    heading = title or f"{series.measure} over {series.time_column}".strip()
    ceiling = _frame(heading, top, parts, base=low)
    plot_w, plot_h = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM

    def xy(when: datetime, value: float) -> tuple[float, float]:
        x = _LEFT + plot_w * ((when - first) / span)
        return x, _TOP + plot_h - plot_h * (value - low) / ceiling

    for i in range(5):
        when = first + span * i / 4
        x, _ = xy(when, low)
        parts.append(
            f'<text x="{x:.1f}" y="{_H - 10}" text-anchor="middle" class="tick">'
            f"{escape(_time_label(when, span))}</text>"
        )
    colors = []
    for n, line in enumerate(series.lines):
        color = _PALETTE[n % len(_PALETTE)]
        colors.append((line.name, color))
        coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in (xy(t, v) for t, v in line.points))
        parts.append(f'<polyline points="{coords}" fill="none" stroke="{color}" stroke-width="2"/>')
        if len(line.points) <= 60:
            for when, value in line.points:
                x, y = xy(when, value)
                tip = escape(f"{line.name}: {_label(value)} at {when:%Y-%m-%d %H:%M:%S}")
                parts.append(
                    f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{color}"><title>{tip}</title>'
                    "</circle>"
                )
    _legend(colors, parts)
    return _svg(parts, f"{len(series.lines)} series over {series.time_column}")
