"""Fixtures for the workspace tests: a real DuckDB file in a temp dir."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from iotsec.workspace.store import WorkspaceStore


@pytest.fixture
def store(tmp_path: Path) -> Iterator[WorkspaceStore]:
    """An empty workspace in a DuckDB file."""
    with WorkspaceStore(tmp_path / "workspace.duckdb") as opened:
        yield opened
