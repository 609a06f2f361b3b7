"""Fixtures of the SDK tests: a loopback HTTPS hub, and a sleep that records instead of waiting."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.sdk.loopback_https import LoopbackHttpsHub
from tests.tls import LoopbackPki


class RecordingSleep:
    """An injected ``sleep``: records each delay and returns at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


@pytest.fixture
def hub(pki: LoopbackPki) -> Iterator[LoopbackHttpsHub]:
    """A running loopback HTTPS hub that accepts SAS and (optional) client certificates."""
    with LoopbackHttpsHub(pki) as running:
        yield running


@pytest.fixture
def sleep() -> RecordingSleep:
    return RecordingSleep()
