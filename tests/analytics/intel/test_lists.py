"""Plain lists: detection per line, typed lists, comments, and bad lines with their numbers."""

from __future__ import annotations

import doctest

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iotsec.analytics.intel import IntelIndex, read_list
from iotsec.analytics.intel import lists as lists_module

SHA256 = "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855"

MIXED = f"""\
# iotsec test blocklist
198.51.100.7
203.0.113.0/24          # scanners
2001:db8:bad::/48
::ffff:192.0.2.5
Pool.Miner.Example.
https://dl.evil.example/x86.sh#frag
{SHA256}
2fd4e1c67a2d28fced849ee1bb76e7391b93eb12
d41d8cd98f00b204e9800998ecf8427e

10.0.0.1/8
not an entry
1.2.3
cafe
localhost
"""


def test_doctests() -> None:
    assert doctest.testmod(lists_module).failed == 0


def test_each_line_kind_is_detected() -> None:
    load = read_list(MIXED, feed="block", source="block.txt")
    assert [(i.kind, i.value, i.indicator_id) for i in load.indicators] == [
        ("ip", "198.51.100.7", "block.txt:2"),
        ("ip", "203.0.113.0/24", "block.txt:3"),
        ("ip", "2001:db8:bad::/48", "block.txt:4"),
        ("ip", "192.0.2.5", "block.txt:5"),
        ("domain", "pool.miner.example", "block.txt:6"),
        ("url", "https://dl.evil.example/x86.sh", "block.txt:7"),
        ("hash", SHA256.lower(), "block.txt:8"),
        ("hash", "2fd4e1c67a2d28fced849ee1bb76e7391b93eb12", "block.txt:9"),
        ("hash", "d41d8cd98f00b204e9800998ecf8427e", "block.txt:10"),
    ]
    assert load.indicators[1].description == "scanners"
    assert load.indicators[1].source == "203.0.113.0/24"


def test_bad_lines_are_recorded_with_their_numbers_and_skipped() -> None:
    load = read_list(MIXED, feed="block", source="block.txt")
    assert [(s.where, s.reason) for s in load.skipped] == [
        ("block.txt:12", "'10.0.0.1/8' has host bits set (did you mean 10.0.0.0/8?)"),
        ("block.txt:13", "one entry per line (found spaces)"),
        ("block.txt:14", "'1.2.3' is not an IP address or CIDR"),
        ("block.txt:15", "not an IP address, CIDR, domain, URL or hash"),
        ("block.txt:16", "not an IP address, CIDR, domain, URL or hash"),
    ]
    assert load.skipped[1].text == "not an entry"


@pytest.mark.parametrize(
    ("kind", "line", "value"),
    [
        ("ip", "192.0.2.1", "192.0.2.1"),
        ("ip", "2001:DB8::/32", "2001:db8::/32"),
        ("domain", "EVIL.example", "evil.example"),
        ("domain", "bücher.example", "xn--bcher-kva.example"),
        ("url", "HTTPS://Evil.Example:443", "https://evil.example/"),
        ("url", "http://evil.example:8080/a?b=c", "http://evil.example:8080/a?b=c"),
        ("hash", SHA256, SHA256.lower()),
    ],
)
def test_a_typed_list_reads_every_line_as_its_kind(kind: str, line: str, value: str) -> None:
    load = read_list(line + "\n", feed="f", source="f.txt", kind=kind)  # type: ignore[arg-type]
    assert [(i.kind, i.value) for i in load.indicators] == [(kind, value)]


@pytest.mark.parametrize(
    ("kind", "line"),
    [
        ("ip", "evil.example"),
        ("domain", "192.0.2.1"),
        ("domain", SHA256),
        ("url", "evil.example/x"),
        ("hash", "evil.example"),
        ("hash", "abc"),
    ],
)
def test_a_typed_list_refuses_other_kinds(kind: str, line: str) -> None:
    load = read_list(line, feed="f", source="f.txt", kind=kind)  # type: ignore[arg-type]
    assert load.indicators == ()
    assert [s.where for s in load.skipped] == ["f.txt:1"]


def test_windows_line_ends_and_comment_only_lines() -> None:
    load = read_list("# c\r\n\r\n  evil.example  \r\n#192.0.2.1\r\n", feed="f", source="f.txt")
    assert [(i.value, i.indicator_id) for i in load.indicators] == [("evil.example", "f.txt:3")]
    assert load.skipped == ()


def test_a_url_keeps_its_hash_fragment_out_but_its_comment_in() -> None:
    load = read_list("http://evil.example/#x # phishing\n", feed="f", source="f.txt")
    [indicator] = load.indicators
    assert (indicator.value, indicator.description) == ("http://evil.example/", "phishing")


def test_list_entries_match_in_the_index() -> None:
    index = IntelIndex(read_list(MIXED, feed="block", source="block.txt").indicators)
    match = index.match("ip", "203.0.113.200")
    assert match is not None
    assert (match.indicator, match.indicator_id, match.feed) == (
        "203.0.113.0/24",
        "block.txt:3",
        "block",
    )
    assert index.match("domain", "eu.pool.miner.example") is not None
    assert index.match("hash", SHA256) is not None


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_arbitrary_text_never_raises(text: str) -> None:
    load = read_list(text, feed="f", source="f.txt")
    lines = [
        line for line in text.splitlines() if line.strip() and not line.strip().startswith("#")
    ]
    assert len(load.indicators) + len(load.skipped) <= len(lines)
