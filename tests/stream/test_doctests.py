"""The examples in the durable log's docstrings run, so they never rot."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["iotsec.stream.memory", "iotsec.stream.record", "iotsec.stream.sqlite"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} has no examples"
    assert result.failed == 0
