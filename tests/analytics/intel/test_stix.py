"""STIX bundles: what loads, what is skipped and why, and what fails the feed."""

from __future__ import annotations

import contextlib
import doctest
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iotsec.analytics.errors import FeedError
from iotsec.analytics.intel import IntelIndex, read_bundle
from iotsec.analytics.intel import stix as stix_module

FIXTURES = Path(__file__).parent / "fixtures"
NOW = datetime(2025, 1, 1, tzinfo=UTC)
SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def _id(n: int) -> str:
    return f"indicator--a1b2c3d4-{n:04d}-4000-8000-{n:012d}"


@pytest.fixture(scope="module")
def bundle() -> bytes:
    return (FIXTURES / "bundle.json").read_bytes()


def test_doctests() -> None:
    assert doctest.testmod(stix_module).failed == 0


def test_the_fixture_bundle_loads_each_kind(bundle: bytes) -> None:
    load = read_bundle(bundle, feed="cti", now=NOW)
    got = {(i.kind, i.value, i.indicator_id) for i in load.indicators}
    assert got == {
        ("ip", "198.51.100.7", _id(1)),
        ("ip", "203.0.113.0/24", _id(2)),
        ("ip", "2001:db8:bad::/48", _id(2)),
        ("domain", "pool.miner.example", _id(3)),
        ("url", "http://dl.evil.example/x86.sh", _id(3)),
        ("hash", SHA256, _id(4)),
        ("hash", "d41d8cd98f00b204e9800998ecf8427e", _id(4)),
        ("hash", "2fd4e1c67a2d28fced849ee1bb76e7391b93eb12", _id(10)),
        ("domain", "later.example", _id(12)),
        ("ip", "192.0.2.14", _id(13)),  # the later version of the same id wins
    }
    assert load.ignored == 2  # the identity and the relationship


def test_the_fixture_bundle_says_why_it_skipped_each_entry(bundle: bytes) -> None:
    load = read_bundle(bundle, feed="cti", now=NOW)
    reasons = {s.indicator_id: (s.where, s.reason) for s in load.skipped}
    assert reasons[_id(5)] == ("$.objects[5]", "revoked")
    assert reasons[_id(6)] == ("$.objects[6]", "expired at 2024-06-01T00:00:00+00:00")
    where, reason = reasons[_id(7)]
    assert where == "$.objects[7].pattern"
    assert reason == "malformed pattern: column 32: expected ']', found end of pattern"
    assert reasons[_id(8)] == (
        "$.objects[8].pattern_type",
        "pattern_type 'snort' is not matched (only 'stix')",
    )
    assert "joined by FOLLOWEDBY" in reasons[_id(9)][1]
    assert reasons[_id(10)][1].startswith("partly matched; left out: file:name")
    assert "AND across domain-name and ipv4-addr" in reasons[_id(11)][1]
    assert set(reasons) == {_id(n) for n in (5, 6, 7, 8, 9, 10, 11)}
    texts = {s.indicator_id: s.text for s in load.skipped}
    assert texts[_id(7)] == "[ipv4-addr:value = '192.0.2.88'"


def test_indicator_metadata_reaches_the_match(bundle: bytes) -> None:
    load = read_bundle(bundle, feed="cti", now=NOW)
    index = IntelIndex(load.indicators, clock=lambda: NOW)
    match = index.match("ip", "198.51.100.7")
    assert match is not None
    assert (match.feed, match.indicator_id, match.confidence) == ("cti", _id(1), 85)
    assert match.indicator == "[ipv4-addr:value = '198.51.100.7']"
    assert match.description == "Mirai C2: Command and control for a Mirai variant"
    assert index.match("hash", SHA256.upper()) is not None
    assert index.match("ip", "192.0.2.66") is None  # revoked
    assert index.match("ip", "192.0.2.77") is None  # expired
    assert index.match("ip", "192.0.2.13") is None  # superseded version
    assert index.match("domain", "later.example") is None  # valid only from 2030
    later = IntelIndex(load.indicators, clock=lambda: datetime(2030, 6, 1, tzinfo=UTC))
    assert later.match("domain", "www.later.example") is not None


def test_an_indicator_expires_while_the_index_is_in_use() -> None:
    bundle = _bundle(_indicator(1, "[ipv4-addr:value = '192.0.2.1']", valid_until="2025-01-02"))
    now = [NOW]
    index = IntelIndex(read_bundle(bundle, feed="f", now=NOW).indicators, clock=lambda: now[0])
    assert index.match("ip", "192.0.2.1") is not None
    now[0] = datetime(2025, 1, 2, tzinfo=UTC)
    assert index.match("ip", "192.0.2.1") is None


def _indicator(n: int, text: str, **extra: object) -> dict[str, object]:
    return {
        "type": "indicator",
        "spec_version": "2.1",
        "id": _id(n),
        "created": "2024-01-01T00:00:00Z",
        "modified": "2024-01-01T00:00:00Z",
        "pattern": text,
        "pattern_type": "stix",
        "valid_from": "2024-01-01T00:00:00Z",
        **extra,
    }


def _bundle(*objects: object) -> bytes:
    return orjson.dumps({"type": "bundle", "id": "bundle--1", "objects": list(objects)})


@pytest.mark.parametrize(
    ("extra", "where", "reason"),
    [
        ({"confidence": 101}, "$.objects[0].confidence", "expected an integer from 0 to 100"),
        ({"confidence": True}, "$.objects[0].confidence", "expected an integer from 0 to 100"),
        ({"valid_from": "soon"}, "$.objects[0].valid_from", "expected an RFC 3339 timestamp"),
        ({"valid_until": "2023-01-01T00:00:00Z"}, "$.objects[0].valid_until", "not after"),
        ({"revoked": "yes"}, "$.objects[0].revoked", "expected true or false"),
        ({"name": 7}, "$.objects[0].name", "expected a string"),
        ({"pattern": None}, "$.objects[0].pattern", "expected the pattern as a string"),
        ({"id": "malware--1"}, "$.objects[0].id", "an indicator needs an id"),
    ],
)
def test_a_malformed_indicator_is_skipped_and_the_rest_loads(
    extra: dict[str, object], where: str, reason: str
) -> None:
    bad = _indicator(1, "[domain-name:value = 'bad.example']", **extra)
    good = _indicator(2, "[domain-name:value = 'good.example']")
    load = read_bundle(_bundle(bad, good, 42), feed="f", now=NOW)
    assert [i.value for i in load.indicators] == ["good.example"]
    skipped = {s.where: s.reason for s in load.skipped}
    assert reason in skipped[where]
    assert skipped["$.objects[2]"] == "expected an object, found a number"


def test_an_indicator_without_pattern_type_is_read_as_stix() -> None:
    obj = _indicator(1, "[domain-name:value = 'old.example']")
    del obj["pattern_type"]
    assert [i.value for i in read_bundle(_bundle(obj), feed="f", now=NOW).indicators] == [
        "old.example"
    ]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "$: not valid JSON"),
        (b'{"type": "bundle", "objects": [', "$: not valid JSON"),
        (b"[1, 2]", "$: expected a STIX bundle object, found a list"),
        (b'{"type": "indicator"}', "$.type: expected 'bundle', found 'indicator'"),
        (b'{"type": "bundle", "objects": {}}', "$.objects: expected a list, found an object"),
        (b"\xff\xfe", "$: not valid JSON"),
    ],
)
def test_a_file_that_is_no_bundle_fails_the_feed_naming_the_path(data: bytes, reason: str) -> None:
    with pytest.raises(FeedError) as caught:
        read_bundle(data, feed="cti", now=NOW)
    assert caught.value.feed == "cti"
    assert caught.value.reason.startswith(reason)
    assert str(caught.value).startswith("feed cti: $")


def test_an_empty_bundle_is_an_empty_feed() -> None:
    load = read_bundle(b'{"type": "bundle", "id": "bundle--1"}', feed="f", now=NOW)
    assert (load.indicators, load.skipped, load.ignored) == ((), (), 0)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(), st.binary()))
def test_arbitrary_input_raises_only_feed_errors(data: str | bytes) -> None:
    with contextlib.suppress(FeedError):
        read_bundle(data, feed="f", now=NOW)


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
_FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["indicator", "bundle", "malware"]) | _JSON,
        "id": st.sampled_from([_id(1), _id(2)]) | _JSON,
        "pattern": st.sampled_from(["[ipv4-addr:value = '192.0.2.1']", "[x"]) | st.text(),
        "pattern_type": st.just("stix") | _JSON,
        "modified": st.sampled_from(["2024-01-01T00:00:00Z", "2024-02-01"]) | _JSON,
        "valid_from": st.sampled_from(["2024-01-01T00:00:00Z"]) | _JSON,
        "valid_until": st.sampled_from(["2026-01-01T00:00:00Z", "2024-01-01T00:00:00"]) | _JSON,
        "revoked": _JSON,
        "confidence": _JSON,
        "name": _JSON,
        "description": _JSON,
    },
)


@settings(max_examples=150, deadline=None)
@given(st.lists(_FIELDS | _JSON, max_size=6))
def test_arbitrary_objects_raise_only_feed_errors(objects: list[object]) -> None:
    data = orjson.dumps({"type": "bundle", "objects": objects})
    load = read_bundle(data, feed="f", now=NOW)
    IntelIndex(load.indicators).match("ip", "192.0.2.1")
