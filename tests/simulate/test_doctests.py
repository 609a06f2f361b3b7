"""The simulator's docstring examples run as written."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "iotsec.simulate",
    "iotsec.simulate.agent",
    "iotsec.simulate.benign",
    "iotsec.simulate.feed",
    "iotsec.simulate.fleet",
    "iotsec.simulate.scenarios",
]


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name))
    assert result.failed == 0 and result.attempted > 0
