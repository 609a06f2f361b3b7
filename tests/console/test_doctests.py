"""The console's docstring examples run."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "charts",
    "filters",
    "memory",
    "models",
    "passwords",
    "queries",
    "records",
    "security",
    "sessions",
    "users",
    "actions",
]


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name: str) -> None:
    module = importlib.import_module(f"iotsec.console.{name}")
    result = doctest.testmod(module)
    assert result.attempted > 0
    assert result.failed == 0
