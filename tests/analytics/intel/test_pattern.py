"""STIX patterns: the matchable subset, what is left out and why, and malformed patterns."""

from __future__ import annotations

import doctest

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iotsec.analytics.intel import pattern as pattern_module
from iotsec.analytics.intel.pattern import compile_pattern

SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
SHA1 = "2fd4e1c67a2d28fced849ee1bb76e7391b93eb12"
MD5 = "d41d8cd98f00b204e9800998ecf8427e"


def test_doctests() -> None:
    assert doctest.testmod(pattern_module).failed == 0


@pytest.mark.parametrize(
    ("pattern", "values"),
    [
        ("[ipv4-addr:value = '198.51.100.1']", [("ip", "198.51.100.1")]),
        ("[ipv4-addr:value = '10.0.0.0/8']", [("ip", "10.0.0.0/8")]),
        ("[ipv4-addr:value = '198.51.100.1/32']", [("ip", "198.51.100.1")]),
        ("[ipv4-addr:value ISSUBSET '10.0.0.0/8']", [("ip", "10.0.0.0/8")]),
        ("[ipv6-addr:value = '2001:DB8::1']", [("ip", "2001:db8::1")]),
        ("[ipv6-addr:value ISSUBSET '2001:db8::/32']", [("ip", "2001:db8::/32")]),
        ("[ipv6-addr:value = '::ffff:192.0.2.1']", [("ip", "192.0.2.1")]),
        ("[domain-name:value = 'Evil.Example.']", [("domain", "evil.example")]),
        ("[url:value = 'HTTP://Evil.Example/a b']", [("url", "http://evil.example/a b")]),
        ("[url:value = 'http://x.example/it\\'s']", [("url", "http://x.example/it's")]),
        (f"[file:hashes.'SHA-256' = '{SHA256.upper()}']", [("hash", SHA256)]),
        (f"[file:hashes.MD5 = '{MD5}']", [("hash", MD5)]),
        (f"[file:hashes.'SHA-1' = '{SHA1}']", [("hash", SHA1)]),
        (f"[file:hashes.SHA1 = '{SHA1}']", [("hash", SHA1)]),
        (
            "[ipv4-addr:value = '192.0.2.1' OR ipv4-addr:value = '192.0.2.2']",
            [("ip", "192.0.2.1"), ("ip", "192.0.2.2")],
        ),
        (
            "[ipv4-addr:value IN ('192.0.2.1', '192.0.2.2', '192.0.2.1')]",
            [("ip", "192.0.2.1"), ("ip", "192.0.2.2")],
        ),
        (
            "[domain-name:value = 'a.example'] OR ([url:value = 'https://b.example/'])",
            [("domain", "a.example"), ("url", "https://b.example/")],
        ),
        # AND within one object: the hashes of one file each identify it ...
        (
            f"[file:hashes.'SHA-256' = '{SHA256}' AND file:hashes.MD5 = '{MD5}']",
            [("hash", SHA256), ("hash", MD5)],
        ),
        # ... and an address inside a CIDR is that address.
        (
            "[ipv4-addr:value ISSUBSET '10.0.0.0/8' AND ipv4-addr:value = '10.1.2.3']",
            [("ip", "10.1.2.3")],
        ),
        (
            "[(domain-name:value = 'a.example' OR domain-name:value = 'b.example') "
            "AND domain-name:value = 'a.example']",
            [("domain", "a.example")],
        ),
        ("  [ domain-name:value='tight.example' ]  ", [("domain", "tight.example")]),
    ],
)
def test_the_matchable_subset(pattern: str, values: list[tuple[str, str]]) -> None:
    compiled = compile_pattern(pattern)
    assert (compiled.error, compiled.skipped) == (None, ())
    assert list(compiled.values) == values


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("[file:name = 'a.exe']", "file:name cannot be matched"),
        ("[process:command_line MATCHES 'nc -e']", "process:command_line cannot be matched"),
        ("[network-traffic:dst_ref.value = '192.0.2.1']", "network-traffic:dst_ref.value"),
        ("[ipv4-addr:value != '192.0.2.1']", "!= cannot be matched"),
        ("[ipv4-addr:value NOT = '192.0.2.1']", "negation"),
        ("[domain-name:value LIKE '%.evil.example']", "LIKE cannot be matched"),
        ("[ipv4-addr:value ISSUPERSET '192.0.2.1']", "ISSUPERSET cannot be matched"),
        ("[domain-name:value ISSUBSET 'evil.example']", "ISSUBSET cannot be matched"),
        ("[EXISTS domain-name:value]", "EXISTS cannot be matched"),
        (f"[file:hashes.'SHA3-256' = '{SHA256}']", "only MD5, SHA-1, SHA-256 and SHA-512"),
        (
            "[ipv4-addr:value = '192.0.2.1' AND domain-name:value = 'a.example']",
            "AND across domain-name and ipv4-addr",
        ),
        (
            "[ipv4-addr:value = '192.0.2.1' AND ipv6-addr:value = '2001:db8::1']",
            "AND across ipv4-addr and ipv6-addr",
        ),
        ("[ipv4-addr:value = '192.0.2.1'] AND [ipv4-addr:value = '192.0.2.2']", "joined by AND"),
        (
            "[ipv4-addr:value = '192.0.2.1'] FOLLOWEDBY [domain-name:value = 'a.example']",
            "joined by FOLLOWEDBY",
        ),
        ("[ipv4-addr:value = '192.0.2.1'] WITHIN 60 SECONDS", "qualifier WITHIN 60 SECONDS"),
        ("[ipv4-addr:value = '192.0.2.1'] REPEATS 5 TIMES", "qualifier REPEATS 5 TIMES"),
        (
            "[ipv4-addr:value = '192.0.2.1'] START t'2024-01-01T00:00:00Z' "
            "STOP t'2024-02-01T00:00:00Z'",
            "qualifier START",
        ),
        ("[domain-name:value = 'a.example' AND domain-name:value = 'b.example']", "never match"),
        ("[ipv4-addr:value = '10.0.0.1' AND ipv4-addr:value ISSUBSET '11.0.0.0/8']", "never"),
        (f"[file:hashes.MD5 = '{MD5}' AND file:hashes.MD5 = '{'0' * 32}']", "never match"),
    ],
)
def test_what_cannot_be_matched_is_left_out_with_a_reason(pattern: str, reason: str) -> None:
    compiled = compile_pattern(pattern)
    assert compiled.error is None
    assert compiled.values == ()
    assert len(compiled.skipped) == 1
    assert reason in compiled.skipped[0]


def test_an_or_keeps_its_matchable_alternatives_and_says_what_it_left_out() -> None:
    compiled = compile_pattern(
        f"[file:hashes.'SHA-1' = '{SHA1}' OR file:name = 'kworkerds'] "
        "OR ([domain-name:value = 'a.example'] FOLLOWEDBY [domain-name:value = 'b.example'])"
    )
    assert compiled.values == (("hash", SHA1),)
    assert [reason.split(" ")[0] for reason in compiled.skipped] == ["file:name", "observations"]


def test_qualifiers_bind_to_the_observation_they_follow() -> None:
    compiled = compile_pattern(
        "[domain-name:value = 'a.example'] OR [domain-name:value = 'b.example'] WITHIN 5 SECONDS"
    )
    assert compiled.values == (("domain", "a.example"),)
    grouped = compile_pattern(
        "([domain-name:value = 'a.example'] OR [domain-name:value = 'b.example']) WITHIN 5 SECONDS"
    )
    assert grouped.values == ()


@pytest.mark.parametrize(
    ("pattern", "error"),
    [
        ("", "column 1: expected '[' or '('"),
        ("[ipv4-addr:value = '192.0.2.1'", "column 31: expected ']', found end of pattern"),
        ("ipv4-addr:value = '192.0.2.1'", "column 1: expected '[' or '('"),
        ("[ipv4-addr:value = '192.0.2.1]", "column 20: unterminated string"),
        ("[ipv4-addr:value '192.0.2.1']", "column 18: expected a comparison operator"),
        ("[ipv4-addr:value == '192.0.2.1']", "column 19: expected a literal after ="),
        ("[ipv4-addr:value = 'not-an-ip']", "column 20: 'not-an-ip' is not an IP address"),
        ("[ipv4-addr:value = '2001:db8::1']", "not an IPv4 address"),
        ("[ipv4-addr:value = '10.0.0.1/8']", "host bits set (did you mean 10.0.0.0/8?)"),
        ("[domain-name:value = 'no spaces.example']", "not a domain name"),
        ("[url:value = 'no-scheme.example/x']", "scheme and host required"),
        (f"[file:hashes.MD5 = '{SHA1}']", "not a MD5 hash"),
        ("[ipv4-addr:value = 42]", "takes a string, not '42'"),
        ("[ipv4-addr:value = '192.0.2.1'] WITHIN SECONDS", "expected a number of seconds"),
        ("[ipv4-addr:value = '192.0.2.1'] START t'yesterday' STOP t'x'", "bad timestamp"),
        ("[ipv4-addr:value = '192.0.2.1'] or [ipv4-addr:value = '192.0.2.2']", "unexpected word"),
        ("[ipv4-addr:value = 'a\\x']", "only \\' and \\\\ may be escaped"),
        ("[ipv4-addr:value IN ('192.0.2.1' '192.0.2.2')]", "expected ')' closing the set"),
        ("[a:b = 'x'] extra", "unexpected word 'extra'"),
        ("(" * 100 + "[a:b = 'x']" + ")" * 100, "nested more than 64 deep"),
    ],
)
def test_malformed_patterns_say_where(pattern: str, error: str) -> None:
    compiled = compile_pattern(pattern)
    assert compiled.values == ()
    assert compiled.error is not None
    assert error in compiled.error


def test_the_whole_grammar_parses_even_where_nothing_matches() -> None:
    pattern = (
        "([file:size > 1000 AND file:name MATCHES '^a' AND file:mtime <= t'2024-01-01T00:00:00Z'"
        " AND file:extensions.'x-ext'.flag = true AND artifact:payload_bin = b'AAAA'"
        " AND artifact:hashes.'SHA-256' = h'00ff' AND process:child_refs[*].pid IN (1, 2.5, -3)]"
        " AND [x-custom-object:list[0].value NOT LIKE 'x%']) REPEATS 2 TIMES"
    )
    compiled = compile_pattern(pattern)
    assert compiled.error is None
    assert compiled.values == ()
    assert compiled.skipped == ("qualifier REPEATS 2 TIMES cannot be matched on one value",)


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_arbitrary_text_never_raises(text: str) -> None:
    compiled = compile_pattern(text)
    assert compiled.error is not None or compiled.values or compiled.skipped


_PIECES = st.sampled_from(
    ["[", "]", "(", ")", " AND ", " OR ", " FOLLOWEDBY ", " = ", " IN ", " NOT ", "'x'", ",",
     "ipv4-addr:value", "domain-name:value", "file:hashes.'SHA-256'", " WITHIN 5 SECONDS",
     "'192.0.2.1'", "'a.example'", "t'2024-01-01T00:00:00Z'", "\\", "'", "1", "."]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(_PIECES, max_size=30).map("".join))
def test_pattern_shaped_noise_never_raises(text: str) -> None:
    compile_pattern(text)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.ip_addresses(), min_size=1, max_size=8))
def test_an_or_of_addresses_yields_each_address(addresses: list[object]) -> None:
    tests = [
        f"{'ipv4-addr' if ':' not in str(a) else 'ipv6-addr'}:value = '{a}'" for a in addresses
    ]
    compiled = compile_pattern("[" + " OR ".join(tests) + "]")
    expected = {
        str(a.ipv4_mapped) if getattr(a, "ipv4_mapped", None) else str(a)  # type: ignore[attr-defined]
        for a in addresses
    }
    assert {value for _, value in compiled.values} == expected
