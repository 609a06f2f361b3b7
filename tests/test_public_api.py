"""Every package's public facade is honest: what ``__all__`` names exists, sorted, unique."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import iotsec
from iotsec.errors import IotsecError

MODULES = sorted(
    info.name
    for info in pkgutil.walk_packages(iotsec.__path__, prefix="iotsec.")
    if not info.name.endswith("__main__")
)
PACKAGES = sorted(
    info.name for info in pkgutil.walk_packages(iotsec.__path__, prefix="iotsec.") if info.ispkg
)


@pytest.mark.parametrize("name", MODULES)
def test_every_name_in_all_exists(name: str) -> None:
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", [])
    assert [n for n in exported if not hasattr(module, n)] == []


@pytest.mark.parametrize("name", PACKAGES)
def test_facades_list_their_names_once(name: str) -> None:
    # Order is ruff's business (RUF022); this checks nothing is listed twice.
    exported = list(importlib.import_module(name).__all__)
    assert len(set(exported)) == len(exported)


@pytest.mark.parametrize("name", PACKAGES)
def test_every_exported_error_is_an_iotsec_error(name: str) -> None:
    module = importlib.import_module(name)
    for exported in module.__all__:
        value = getattr(module, exported)
        if isinstance(value, type) and issubclass(value, Exception):
            assert issubclass(value, IotsecError), exported


def test_the_sdk_exports_its_transport_lazily() -> None:
    import iotsec.sdk  # noqa: PLC0415  # the lazy attribute is what is under test

    assert iotsec.sdk.MqttTransport.__name__ == "MqttTransport"
