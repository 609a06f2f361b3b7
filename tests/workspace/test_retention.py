"""Retention per table, with an injected clock."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pyarrow as pa  # type: ignore[import-untyped]  # pyarrow ships no type hints
import pytest

from iotsec.workspace.retention import RetentionPolicy, apply_retention, run_retention
from iotsec.workspace.store import WorkspaceStore

NOW = datetime(2025, 6, 1, tzinfo=UTC)


def _letters(store: WorkspaceStore, ages_days: list[int]) -> None:
    store.append(
        "DeadLetter",
        pa.table(
            {
                "DeadLetterId": [f"0:{i}" for i in range(len(ages_days))],
                "TimeGenerated": [NOW - timedelta(days=d) for d in ages_days],
            }
        ),
    )


def test_defaults_come_from_the_registry() -> None:
    policy = RetentionPolicy.defaults()
    assert policy.days["SecurityIoTRawEvent"] == 30
    assert policy.days["SecurityAlert"] == policy.days["SecurityRecommendation"] == 365
    with pytest.raises(ValueError, match="unknown table"):
        RetentionPolicy.defaults({"Nope": 3})
    with pytest.raises(ValueError, match="at least 1 day"):
        RetentionPolicy.defaults({"DeadLetter": 0})


def test_rows_older_than_retention_are_deleted(store: WorkspaceStore) -> None:
    _letters(store, [1, 29, 31, 400])
    store.write_alerts([])
    deleted = apply_retention(store, RetentionPolicy.defaults(), NOW)
    assert deleted["DeadLetter"] == 2
    assert store.count("DeadLetter") == 2
    deleted = apply_retention(store, RetentionPolicy.defaults({"DeadLetter": 7}), NOW)
    assert deleted["DeadLetter"] == 1 and store.count("DeadLetter") == 1


async def test_the_background_job_runs_until_stopped(store: WorkspaceStore) -> None:
    _letters(store, [1, 100])
    stop = asyncio.Event()
    policy = RetentionPolicy.defaults(interval=0.01)
    task = asyncio.create_task(run_retention(store, policy, stop, clock=lambda: NOW))
    for _ in range(100):
        if store.count("DeadLetter") == 1:
            break
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(task, 2)
    assert store.count("DeadLetter") == 1
