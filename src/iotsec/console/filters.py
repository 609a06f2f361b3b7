"""Template filters: times, JSON, severity classes and URL path segments.

>>> from datetime import UTC, datetime
>>> when(datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)), when(None)
('2025-03-04 05:06:07Z', '—')
>>> severity_class("High"), severity_class('"><script>')
('sev-high', 'sev-other')
>>> segment("a b/c?")
'a%20b%2Fc%3F'
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import orjson
from jinja2 import Environment

from iotsec.console.models import SEVERITIES

__all__ = ["install", "pretty", "segment", "severity_class", "when"]

_CLASSES = {s: f"sev-{s.lower()}" for s in SEVERITIES}


def when(value: datetime | None) -> str:
    """A time in UTC, to the second; a dash for none."""
    if value is None:
        return "—"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def pretty(value: Any) -> str:
    """``value`` as indented JSON (the template escapes it)."""
    return orjson.dumps(
        value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS, default=str
    ).decode("utf-8")


def severity_class(value: str) -> str:
    """The CSS class of a severity (only known ones get their own)."""
    return _CLASSES.get(value, "sev-other")


def segment(value: str) -> str:
    """``value`` quoted as one URL path segment."""
    return quote(value, safe="")


def scalar(value: Any) -> str:
    """A query result cell as text: JSON for lists and objects, blank for null."""
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return orjson.dumps(value, default=str).decode("utf-8")
    return str(value)


def install(env: Environment) -> None:
    """Add the console's filters to ``env``."""
    env.filters.update(when=when, pretty=pretty, sev=severity_class, segment=segment, scalar=scalar)
