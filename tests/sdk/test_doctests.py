"""The examples in the SDK's docstrings run, so they never rot."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "iotsec.sdk",
    "iotsec.sdk.client",
    "iotsec.sdk.connection_string",
    "iotsec.sdk.https",
    "iotsec.sdk.memory",
    "iotsec.sdk.retry",
    "iotsec.protocol.sas",
    "iotsec.sdk.twin",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} has no examples"
    assert result.failed == 0
