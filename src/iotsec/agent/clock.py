"""The agent's sense of time: wall time for event stamps, monotonic time for its timers.

Timers run on monotonic time, so a clock set back by NTP neither stalls nor floods the
schedule; events are stamped with wall time. :class:`FakeClock` (shipped for tests) moves only
when told, so a test of "every seven minutes" runs at once.

>>> clock = FakeClock(wall=1_700_000_000.0)
>>> clock.advance(420.0)
>>> clock.monotonic(), clock.now().isoformat()
(420.0, '2023-11-14T22:20:20+00:00')
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol

__all__ = ["Clock", "FakeClock", "SystemClock"]


class Clock(Protocol):
    """Wall time and monotonic time."""

    def time(self) -> float:
        """Unix seconds now (wall time)."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back; only differences mean anything."""
        ...

    def now(self) -> datetime:
        """Wall time as an aware UTC datetime."""
        ...


class SystemClock:
    """The machine's clocks."""

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> datetime:
        return datetime.now(UTC)


class FakeClock:
    """A clock that moves only by :meth:`advance`."""

    def __init__(self, *, wall: float = 1_700_000_000.0, monotonic: float = 0.0) -> None:
        self._wall = wall
        self._monotonic = monotonic

    def time(self) -> float:
        return self._wall

    def monotonic(self) -> float:
        return self._monotonic

    def advance(self, seconds: float) -> None:
        """Move both clocks forward by ``seconds``."""
        if seconds < 0:
            raise ValueError(f"time only moves forward, got {seconds}")
        self._wall += seconds
        self._monotonic += seconds

    def now(self) -> datetime:
        return datetime.fromtimestamp(self._wall, UTC)
