"""Retention: delete rows older than each table's retention, from a background job.

>>> from datetime import UTC, datetime
>>> policy = RetentionPolicy.defaults({"DeadLetter": 7})
>>> policy.days["SecurityIoTRawEvent"], policy.days["SecurityAlert"], policy.days["DeadLetter"]
(30, 365, 7)
>>> policy.cutoff("DeadLetter", datetime(2025, 1, 8, tzinfo=UTC)).isoformat()
'2025-01-01T00:00:00+00:00'
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from iotsec.workspace.tables import TABLES

__all__ = ["Deleter", "RetentionPolicy", "apply_retention", "run_retention"]

log = logging.getLogger("iotsec.workspace.retention")


class Deleter(Protocol):
    """What retention needs of the store."""

    def delete_older_than(self, table: str, cutoff: datetime) -> int:
        """Delete rows of ``table`` older than ``cutoff``; returns how many."""


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """Retention in days per table, and how often the job runs (seconds)."""

    days: Mapping[str, int] = field(default_factory=dict)
    interval: float = 3600.0

    def __post_init__(self) -> None:
        for table, days in self.days.items():
            if table not in TABLES:
                raise ValueError(f"retention for unknown table {table!r}")
            if days < 1:
                raise ValueError(f"retention of {table} must be at least 1 day, not {days}")
        if self.interval <= 0:
            raise ValueError(f"the retention interval must be positive, not {self.interval}")

    @classmethod
    def defaults(
        cls, overrides: Mapping[str, int] | None = None, *, interval: float = 3600.0
    ) -> RetentionPolicy:
        """The registry's retention for every table, with ``overrides`` applied."""
        days = {name: table.retention_days for name, table in TABLES.items()}
        days.update(overrides or {})
        return cls(days=days, interval=interval)

    def cutoff(self, table: str, now: datetime) -> datetime:
        """Rows of ``table`` before this instant are past retention."""
        return now - timedelta(days=self.days[table])


def apply_retention(store: Deleter, policy: RetentionPolicy, now: datetime) -> dict[str, int]:
    """Delete what is past retention in every table of ``policy``; rows deleted per table."""
    return {
        table: store.delete_older_than(table, policy.cutoff(table, now)) for table in policy.days
    }


async def run_retention(
    store: Deleter,
    policy: RetentionPolicy,
    stop: asyncio.Event,
    *,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> None:
    """Apply ``policy`` now and then every ``policy.interval`` seconds until ``stop`` is set."""
    while not stop.is_set():
        deleted = await asyncio.to_thread(apply_retention, store, policy, clock())
        if any(deleted.values()):
            log.info("retention deleted %s", {t: n for t, n in deleted.items() if n})
        try:
            await asyncio.wait_for(stop.wait(), timeout=policy.interval)
        except TimeoutError:
            continue
