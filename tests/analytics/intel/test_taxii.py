"""TAXII 2.1 polling against a real server on loopback, over real TLS."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from iotsec.analytics.errors import FeedError
from iotsec.analytics.intel import FeedConfig, FeedManager, IntelIndex
from iotsec.analytics.intel.taxii import TaxiiPoller
from tests.analytics.intel.taxii_server import COLLECTION, TaxiiState, serve_taxii
from tests.tls import LoopbackPki

PASSWORD = "correct-horse-battery-staple"
NOW = datetime(2025, 6, 1, tzinfo=UTC)


def indicator(n: int, pattern: str, **extra: object) -> dict[str, object]:
    return {
        "type": "indicator",
        "spec_version": "2.1",
        "id": f"indicator--00000000-0000-4000-8000-{n:012d}",
        "created": "2025-01-01T00:00:00.000Z",
        "modified": "2025-01-01T00:00:00.000Z",
        "name": f"indicator {n}",
        "pattern": pattern,
        "pattern_type": "stix",
        "valid_from": "2025-01-01T00:00:00Z",
        **extra,
    }


IDENTITY = {
    "type": "identity",
    "spec_version": "2.1",
    "id": "identity--00000000-0000-4000-8000-000000000001",
    "created": "2025-01-01T00:00:00.000Z",
    "modified": "2025-01-01T00:00:00.000Z",
    "name": "test CTI",
}


@pytest.fixture
def state() -> TaxiiState:
    taxii = TaxiiState(username="reader", password=PASSWORD)
    taxii.add(
        IDENTITY,
        indicator(1, "[ipv4-addr:value = '198.51.100.7']"),
        indicator(2, "[domain-name:value = 'c2.example']"),
        indicator(3, "[ipv4-addr:value ISSUBSET '203.0.113.0/24']"),
        indicator(4, "[url:value = 'http://dl.evil.example/x86.sh']"),
        indicator(5, "[ipv4-addr:value = '192.0.2.5'] FOLLOWEDBY [ipv4-addr:value = '192.0.2.6']"),
    )
    return taxii


@pytest.fixture
def url(state: TaxiiState, pki: LoopbackPki) -> Iterator[str]:
    with serve_taxii(state, pki) as discovery:
        yield discovery


def poller(url: str, pki: LoopbackPki, **overrides: object) -> TaxiiPoller:
    options: dict[str, object] = {
        "feed": "cti",
        "url": url,
        "collection": COLLECTION,
        "username": "reader",
        "password": PASSWORD,
        "ca_file": pki.ca.cert,
        "page_size": 2,
        **overrides,
    }
    return TaxiiPoller(**options)  # type: ignore[arg-type]


def test_discovery_api_root_collection_and_paged_objects(
    url: str, state: TaxiiState, pki: LoopbackPki
) -> None:
    source = poller(url, pki)
    load = source.load(NOW)
    index = IntelIndex(load.indicators)
    match = index.match("ip", "198.51.100.7")
    assert match is not None
    assert (match.feed, match.indicator_id) == (
        "cti",
        "indicator--00000000-0000-4000-8000-000000000001",
    )
    assert index.match("ip", "203.0.113.77") is not None
    assert index.match("domain", "www.c2.example") is not None
    assert index.match("url", "http://dl.evil.example/x86.sh") is not None
    assert [s.reason for s in load.skipped] == [
        "observations joined by FOLLOWEDBY need more than one observation"
    ]
    # Discovery, then the default root (no such collection there), then the second root.
    paths = [path for path, _ in state.requests]
    assert paths[:3] == ["/taxii2/", "/api1/collections/", "/api2/collections/"]
    # Six objects two by two: three pages, following next, from the beginning.
    assert state.object_requests() == [
        {"limit": "2"},
        {"limit": "2", "next": "2"},
        {"limit": "2", "next": "4"},
    ]
    assert source.cursor == "2025-01-01T00:00:06.000000Z"


def test_the_next_poll_asks_only_for_what_was_added_since(
    url: str, state: TaxiiState, pki: LoopbackPki
) -> None:
    source = poller(url, pki)
    source.load(NOW)
    state.requests.clear()
    state.add(
        indicator(1, "[ipv4-addr:value = '198.51.100.7']", revoked=True,
                  modified="2025-02-01T00:00:00.000Z"),
        indicator(6, "[file:hashes.'SHA-256' = '" + "ab" * 32 + "']"),
    )  # fmt: skip
    load = source.load(NOW)
    assert state.object_requests() == [
        {"added_after": "2025-01-01T00:00:06.000000Z", "limit": "2"},
    ]
    index = IntelIndex(load.indicators)
    assert index.match("ip", "198.51.100.7") is None  # revoked by the newer version
    assert index.match("hash", "AB" * 32) is not None  # new
    assert index.match("domain", "c2.example") is not None  # from the first poll, kept
    assert source.cursor == "2025-01-01T00:00:08.000000Z"

    state.requests.clear()
    assert source.poll() == 0  # nothing new
    assert source.cursor == "2025-01-01T00:00:08.000000Z"


def test_paging_by_date_when_the_server_gives_no_next(
    url: str, state: TaxiiState, pki: LoopbackPki
) -> None:
    state.give_next = False
    load = poller(url, pki).load(NOW)
    assert len(load.indicators) == 4
    assert state.object_requests() == [
        {"limit": "2"},
        {"limit": "2", "added_after": "2025-01-01T00:00:02.000000Z"},
        {"limit": "2", "added_after": "2025-01-01T00:00:04.000000Z"},
    ]


def test_a_feed_manager_polls_a_taxii_feed(url: str, pki: LoopbackPki) -> None:
    config = FeedConfig(
        "cti",
        "taxii",
        url=url,
        collection="iot",  # the alias works too
        username="reader",
        password=PASSWORD,
        ca_file=pki.ca.cert,
    )
    manager = FeedManager([config], clock=lambda: NOW)
    manager.reload()
    assert manager.match("ip", "198.51.100.7").feed == "cti"  # type: ignore[union-attr]
    [status] = manager.status()
    assert (status.ok, status.indicators, status.skipped) == (True, 4, 1)


def test_tls_is_verified_by_default(
    url: str, pki: LoopbackPki, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with pytest.raises(FeedError) as caught:
        poller(url, pki, ca_file=None).poll()
    assert caught.value.reason.startswith("TLS verification failed")
    assert PASSWORD not in str(caught.value)
    assert PASSWORD not in caplog.text


def test_rejected_credentials_are_reported_without_them(
    url: str, pki: LoopbackPki, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    source = poller(url, pki, password="wrong-" + PASSWORD)
    with pytest.raises(FeedError) as caught:
        source.poll()
    assert caught.value.reason == f"HTTP 401 from {url} (credentials rejected)"
    assert PASSWORD not in caplog.text
    assert PASSWORD not in repr(source)
    assert PASSWORD not in str(caught.value.__cause__)


def test_an_unknown_collection_lists_what_there_is(url: str, pki: LoopbackPki) -> None:
    with pytest.raises(FeedError) as caught:
        poller(url, pki, collection="nope").poll()
    assert "no collection 'nope'" in caught.value.reason
    assert COLLECTION in caught.value.reason


def test_a_poll_that_fails_part_way_changes_nothing(
    url: str, state: TaxiiState, pki: LoopbackPki
) -> None:
    source = poller(url, pki)
    source.poll()
    cursor = source.cursor
    state.add(*(indicator(n, f"[domain-name:value = 'new{n}.example']") for n in (7, 8, 9)))
    state.fail_after = 1  # the first page of new objects, then a 500
    with pytest.raises(FeedError) as caught:
        source.load(NOW)
    assert caught.value.reason.startswith("HTTP 500 from")
    assert source.cursor == cursor
    state.requests.clear()
    state.fail_after = None
    index = IntelIndex(source.load(NOW).indicators)
    assert all(index.match("domain", f"new{n}.example") for n in (7, 8, 9))
    assert state.object_requests()[0] == {"added_after": cursor, "limit": "2"}


def test_a_server_that_never_answers_times_out(pki: LoopbackPki) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        source = poller(f"https://127.0.0.1:{port}/taxii2/", pki, timeout=0.3)
        with pytest.raises(FeedError) as caught:
            source.poll()
    assert caught.value.reason.startswith("cannot reach the server")
