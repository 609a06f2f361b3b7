"""What every baseline shares: the learning policy, device contexts kept as data, time text.

A baseline learns a device from its first observation for ``LearningPolicy.period`` of
observation time, and only once it has seen ``min_observations``; until then the device is in
learning and nothing about it can deviate. The period is measured in the observations' own
times (not the wall clock), so a replay of old data learns exactly as the live stream did.

>>> span_text(timedelta(days=7)), span_text(timedelta(hours=36)), span_text(timedelta(minutes=90))
('7-day', '36-hour', '90-minute')
>>> learned_at(datetime(2025, 1, 1, tzinfo=UTC), LearningPolicy(period=timedelta(days=7)))
datetime.datetime(2025, 1, 8, 0, 0, tzinfo=datetime.timezone.utc)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

__all__ = [
    "BaselineStatus",
    "LearningPolicy",
    "learned_at",
    "span_text",
    "window_text",
]


@dataclass(frozen=True, slots=True)
class LearningPolicy:
    """How long, and on how much data, a baseline learns a device before it judges it."""

    #: Observation time from the device's first observation.
    period: timedelta = timedelta(days=7)
    #: Observations the device must have sent, besides the period having passed.
    min_observations: int = 50

    def __post_init__(self) -> None:
        if self.period <= timedelta(0):
            raise ValueError("the learning period must be positive")
        if self.min_observations < 0:
            raise ValueError("min_observations must be zero or more")


@dataclass(frozen=True, slots=True)
class BaselineStatus:
    """Where a device stands in a baseline: still learning, or judged since ``learned_at``."""

    device_id: str
    learning: bool
    first_time: datetime
    observations: int
    learned_at: datetime | None = None


def learned_at(first_time: datetime, policy: LearningPolicy) -> datetime | None:
    """When the period that started at ``first_time`` ends; None past the calendar's end."""
    try:
        return first_time + policy.period  # on every observation while learning: kept cheap
    except OverflowError:
        return None


def span_text(span: timedelta) -> str:
    """A duration as an adjective ("7-day", "36-hour"), the unit the largest that divides it."""
    seconds = int(span.total_seconds())
    for unit, size in (("day", 86_400), ("hour", 3_600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}-{unit}"
    return f"{seconds}-second"


def window_text(start: datetime, width: timedelta) -> str:
    """A window as "2025-01-08 10:00-11:00 UTC" (the end's date too when it differs)."""
    start = start.astimezone(UTC)
    try:
        end = start + width
    except OverflowError:
        return f"{start:%Y-%m-%d %H:%M} UTC (+{span_text(width)})"
    same_day = end.date() == start.date() or end == datetime.combine(
        start.date() + timedelta(days=1), datetime.min.time(), UTC
    )
    tail = f"{end:%H:%M}" if same_day else f"{end:%Y-%m-%d %H:%M}"
    return f"{start:%Y-%m-%d %H:%M}-{tail} UTC"
