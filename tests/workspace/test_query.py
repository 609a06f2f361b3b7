"""Query execution: KQL through a compiler, SQL through the guard, limits, timeouts, slots."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pyarrow as pa  # type: ignore[import-untyped]  # pyarrow ships no type hints
import pytest

from iotsec.workspace.errors import QueryBusy, QueryFailed, QueryInvalid, QueryRefused, QueryTimeout
from iotsec.workspace.query import QueryLimits, Workspace
from iotsec.workspace.store import WorkspaceStore

SLOW = "SELECT count(*) FROM DeadLetter a, DeadLetter b, DeadLetter c, DeadLetter d"


@dataclass(frozen=True)
class Compiled:
    """The stand-in's compiled query (the real compiler's CompiledQuery has the same shape)."""

    sql: str
    columns: tuple[tuple[str, str], ...]
    render: Any = None


def stand_in(text: str, now: datetime | None) -> Compiled:
    """A tiny KQL stand-in: ``T | take n`` and ``T | count``; anything else is an error."""
    table, _, op = (part.strip() for part in text.partition("|"))
    if op.startswith("take "):
        return Compiled(
            f'SELECT DeviceId FROM "{table}" LIMIT {int(op[5:])}', (("DeviceId", "string"),)
        )
    if op == "count":
        return Compiled(f'SELECT count(*) AS "Count" FROM "{table}"', (("Count", "long"),), "table")
    if op == "drop":
        return Compiled(f'DROP TABLE "{table}"', ())
    raise QueryInvalid(
        f"unknown operator {op!r}", line=1, column=len(table) + 4, rendered=f"{text}\n^"
    )


def _fill(store: WorkspaceStore, n: int) -> None:
    store.append(
        "DeadLetter",
        pa.table(
            {
                "DeadLetterId": [f"0:{i}" for i in range(n)],
                "DeviceId": [f"dev-{i % 7}" for i in range(n)],
                "Body": ["x" * 100] * n,
            }
        ),
    )


@pytest.fixture
def workspace(store: WorkspaceStore) -> Workspace:
    _fill(store, 1000)
    return Workspace(store, compiler=stand_in, limits=QueryLimits(batch_rows=100))


def test_sql_results_are_typed_and_complete(workspace: Workspace) -> None:
    result = workspace.query_sql(
        "SELECT DeviceId, count(*) AS n, max(TimeGenerated) AS t FROM DeadLetter"
        " GROUP BY DeviceId ORDER BY DeviceId"
    )
    assert [(c.name, c.type) for c in result.columns] == [
        ("DeviceId", "string"),
        ("n", "long"),
        ("t", "datetime"),
    ]
    assert len(result.rows) == 7 and result.rows[0][:2] == ["dev-0", 143]
    assert not result.truncated and result.reason is None and result.elapsed >= 0


def test_kql_goes_through_the_compiler(workspace: Workspace) -> None:
    result = workspace.query_kql("DeadLetter | count")
    assert result.rows == [[1000]] and result.render == "table"
    assert [(c.name, c.type) for c in result.columns] == [("Count", "long")]
    with pytest.raises(QueryInvalid) as caught:
        workspace.query_kql("DeadLetter | nope")
    assert (caught.value.line, caught.value.column) == (1, 14)
    assert caught.value.render().endswith("^")


def test_compiled_sql_must_be_one_select(workspace: Workspace, store: WorkspaceStore) -> None:
    with pytest.raises(QueryRefused):
        workspace.query_kql("DeadLetter | drop")
    assert store.count("DeadLetter") == 1000


def test_results_are_truncated_by_rows(workspace: Workspace) -> None:
    result = workspace.query_sql("SELECT * FROM DeadLetter", limit_rows=250)
    assert result.table.num_rows == 250
    assert result.truncated and "250 rows" in str(result.reason)
    exact = workspace.query_kql("DeadLetter | take 1000", limit_rows=1000)
    assert exact.table.num_rows == 1000 and not exact.truncated


def test_results_are_truncated_by_bytes(workspace: Workspace) -> None:
    result = workspace.query_sql("SELECT Body FROM DeadLetter", limit_bytes=20_000)
    assert 0 < result.table.num_rows < 1000
    assert result.table.nbytes <= 20_000
    assert result.truncated and "bytes" in str(result.reason)


def test_limits_cannot_be_raised_past_the_workspace_caps(store: WorkspaceStore) -> None:
    _fill(store, 50)
    capped = Workspace(store, limits=QueryLimits(max_rows=10))
    result = capped.query_sql("SELECT * FROM DeadLetter", limit_rows=1_000_000)
    assert result.table.num_rows == 10 and result.truncated


def test_a_slow_query_is_interrupted_at_its_timeout(workspace: Workspace) -> None:
    with pytest.raises(QueryTimeout) as caught:
        workspace.query_sql(SLOW, timeout=0.2)
    assert caught.value.status == 504
    assert workspace.query_sql("SELECT count(*) FROM DeadLetter").rows == [[1000]]


def test_concurrent_queries_are_capped(store: WorkspaceStore) -> None:
    _fill(store, 1000)
    workspace = Workspace(store, limits=QueryLimits(slots=1, queue_timeout=0.05, timeout=1.0))
    errors: list[Exception] = []

    def slow() -> None:
        try:
            workspace.query_sql(SLOW)
        except QueryTimeout as exc:
            errors.append(exc)

    thread = threading.Thread(target=slow)
    thread.start()
    try:
        for _ in range(100):  # wait until the slow query holds the only slot
            if not workspace._slots.acquire(blocking=False):
                break
            workspace._slots.release()
            threading.Event().wait(0.01)
        with pytest.raises(QueryBusy) as caught:
            workspace.query_sql("SELECT 1")
        assert caught.value.status == 429
    finally:
        thread.join()
    assert len(errors) == 1
    assert workspace.query_sql("SELECT 1 AS one").rows == [[1]]


def test_runtime_errors_are_query_failed(workspace: Workspace) -> None:
    with pytest.raises(QueryFailed, match="Conversion"):
        workspace.query_sql("SELECT CAST(Body AS INTEGER) FROM DeadLetter")
