from __future__ import annotations

import importlib

import iotsec.sdk


def test_every_exported_name_exists() -> None:
    missing = [name for name in iotsec.sdk.__all__ if not hasattr(iotsec.sdk, name)]
    assert missing == []


def test_all_is_sorted_and_unique() -> None:
    assert len(set(iotsec.sdk.__all__)) == len(iotsec.sdk.__all__)
    assert sorted(iotsec.sdk.__all__) == list(iotsec.sdk.__all__)


def test_each_modules_all_names_exist() -> None:
    for name in (
        "client",
        "connection_string",
        "core",
        "errors",
        "https",
        "memory",
        "message",
        "retry",
        "sas",
        "transport",
        "twin",
    ):
        module = importlib.import_module(f"iotsec.sdk.{name}")
        assert [n for n in module.__all__ if not hasattr(module, n)] == [], name


def test_every_error_is_an_sdk_error() -> None:
    for name in iotsec.sdk.__all__:
        value = getattr(iotsec.sdk, name)
        if isinstance(value, type) and issubclass(value, Exception):
            assert issubclass(value, iotsec.sdk.SdkError), name
