"""Helpers for rule tests: observations at exact times, a fake intel feed, rules from text."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from iotsec.analytics import DeviceContext, Observation
from iotsec.analytics.indicators import IndicatorKind, IntelMatch

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    """``T0`` plus ``seconds``."""
    return T0 + timedelta(seconds=seconds)


def make_obs(
    name: str = "ProcessCreate",
    fields: dict[str, object] | None = None,
    *,
    t: float = 0,
    device: str = "dev-1",
    group: str = "default",
    tags: dict[str, str] | None = None,
    source: str = "agent",
    event_id: str | None = None,
    hits: int = 1,
) -> Observation:
    """An observation ``t`` seconds after ``T0``."""
    return Observation(
        source="hub" if source == "hub" else "agent",
        name=name,
        time=at(t),
        device=DeviceContext(device, group=group, tags=tags or {}),
        fields=fields or {},
        event_id=event_id or f"{name}-{device}-{t}",
        hit_count=hits,
    )


@dataclass
class FakeIntel:
    """An in-memory IntelLookup: exact values per kind; records what it was asked."""

    values: dict[str, set[str]] = field(default_factory=dict)
    asked: list[tuple[str, str]] = field(default_factory=list)

    def match(self, kind: IndicatorKind, value: str) -> IntelMatch | None:
        self.asked.append((kind, value))
        if value.lower() in self.values.get(kind, set()):
            return IntelMatch(kind, value, value, "test-feed", indicator_id="indicator--1")
        return None
