"""IntelIndex semantics: CIDR edges, IPv6, mapped IPv4, subdomains, URLs and hashes."""

from __future__ import annotations

import doctest
import ipaddress
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iotsec.analytics.indicators import IndicatorKind, IntelLookup
from iotsec.analytics.intel import Indicator, IntelIndex
from iotsec.analytics.intel import index as index_module
from iotsec.analytics.intel.indicator import normalize_ip

NOW = datetime(2025, 1, 1, tzinfo=UTC)


def entry(kind: IndicatorKind, value: str, ident: str = "", **extra: object) -> Indicator:
    return Indicator(kind, value, value, "feed", ident or value, **extra)  # type: ignore[arg-type]


def ips(*values: str) -> IntelIndex:
    entries = [Indicator("ip", normalize_ip(v), v, "feed", v) for v in values]
    return IntelIndex(entries, clock=lambda: NOW)


def matched(index: IntelIndex, kind: IndicatorKind, value: str) -> str | None:
    match = index.match(kind, value)
    return None if match is None else match.indicator


def test_doctests() -> None:
    assert doctest.testmod(index_module).failed == 0


def test_it_is_an_intel_lookup() -> None:
    lookup: IntelLookup = IntelIndex()
    assert lookup.match("ip", "192.0.2.1") is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("10.0.0.0", "10.0.0.0/8"),
        ("10.255.255.255", "10.0.0.0/8"),
        ("9.255.255.255", None),
        ("11.0.0.0", None),
        ("192.168.1.0", "192.168.1.0/31"),
        ("192.168.1.1", "192.168.1.0/31"),
        ("192.168.1.2", None),
        ("0.0.0.0", "0.0.0.0/32"),
        ("255.255.255.255", "255.255.255.255"),
        ("255.255.255.254", None),
    ],
)
def test_cidr_edges(value: str, expected: str | None) -> None:
    index = ips("10.0.0.0/8", "192.168.1.0/31", "0.0.0.0/32", "255.255.255.255")
    got = matched(index, "ip", value)
    assert got == expected


def test_the_most_specific_entry_wins_and_the_outer_one_resumes() -> None:
    index = ips("10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24", "10.1.2.3", "10.255.255.0/24")
    assert matched(index, "ip", "10.1.2.3") == "10.1.2.3"
    assert matched(index, "ip", "10.1.2.4") == "10.1.2.0/24"
    assert matched(index, "ip", "10.1.3.0") == "10.1.0.0/16"
    assert matched(index, "ip", "10.2.0.0") == "10.0.0.0/8"
    assert matched(index, "ip", "10.255.255.255") == "10.255.255.0/24"  # same last address
    assert matched(index, "ip", "10.255.254.255") == "10.0.0.0/8"
    assert matched(index, "ip", "11.0.0.0") is None


def test_ipv6_and_mapped_ipv4() -> None:
    index = ips(
        "2001:db8::/32", "2001:db8:1::1", "::/128", "192.0.2.0/24", "::ffff:198.51.100.0/120"
    )
    assert matched(index, "ip", "2001:DB8:FFFF::1") == "2001:db8::/32"
    assert matched(index, "ip", "2001:db8:1:0:0:0:0:1") == "2001:db8:1::1"
    assert matched(index, "ip", "2001:db9::") is None
    assert matched(index, "ip", "::") == "::/128"  # the source as written
    assert matched(index, "ip", "::1") is None
    assert matched(index, "ip", "::ffff:192.0.2.9") == "192.0.2.0/24"  # mapped -> IPv4 CIDR
    assert matched(index, "ip", "::FFFF:c000:0209") == "192.0.2.0/24"
    assert matched(index, "ip", "198.51.100.255") == "::ffff:198.51.100.0/120"  # and back
    assert matched(index, "ip", "fe80::1%eth0") is None
    assert matched(ips("fe80::/10"), "ip", "fe80::1%eth0") == "fe80::/10"
    assert matched(index, "ip", "[2001:db8::5]") == "2001:db8::/32"


@pytest.mark.parametrize(
    "value",
    [
        "",
        "192.0.2",
        "192.0.2.1.",
        "192.0.2.01x",
        "1.2.3.4/24",
        " 192.0.2.1",
        "::g",
        "\x00",
        "\ud800",
    ],
)
def test_malformed_addresses_match_nothing_and_raise_nothing(value: str) -> None:
    assert ips("0.0.0.0/0", "::/0").match("ip", value) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("evil.example", "evil.example"),
        ("EVIL.Example.", "evil.example"),
        ("a.b.evil.example", "evil.example"),
        ("deep.sub.evil.example", "sub.evil.example"),  # the most specific listed parent
        ("notevil.example", None),
        ("evil.example.com", None),
        ("example", None),
        ("", None),
        (".", None),
        ("xn--bcher-kva.example", "bücher.example"),
        ("www.BÜCHER.example", "bücher.example"),
    ],
)
def test_domains_and_their_subdomains(value: str, expected: str | None) -> None:
    entries = [
        Indicator("domain", "evil.example", "evil.example", "f", "1"),
        Indicator("domain", "sub.evil.example", "sub.evil.example", "f", "2"),
        Indicator("domain", "xn--bcher-kva.example", "bücher.example", "f", "3"),
    ]
    assert matched(IntelIndex(entries), "domain", value) == expected


def test_a_long_domain_is_not_walked() -> None:
    index = IntelIndex([entry("domain", "evil.example")])
    assert index.match("domain", "a." * 200 + "evil.example") is None


@pytest.mark.parametrize(
    ("value", "expected", "kind"),
    [
        ("http://dl.bad.example/x86.sh", "http://dl.bad.example/x86.sh", "url"),
        ("HTTP://DL.Bad.Example:80/x86.sh#top", "http://dl.bad.example/x86.sh", "url"),
        ("http://user:pw@dl.bad.example/x86.sh", "http://dl.bad.example/x86.sh", "url"),
        ("http://dl.bad.example/X86.sh", None, None),  # paths are case-sensitive
        ("dl.bad.example/x86.sh", "http://dl.bad.example/x86.sh", "url"),  # as wget reads it
        ("https://cdn.evil.example/anything", "evil.example", "domain"),  # host is listed
        ("http://192.0.2.7:8080/bins", "192.0.2.0/24", "ip"),
        ("http://[2001:db8::1]/", "2001:db8::/32", "ip"),
        ("https://good.example/", None, None),
        ("not a url", None, None),
        ("http://[::1/", None, None),
        ("http://host:99999/", None, None),
    ],
)
def test_urls_match_exactly_or_by_their_host(
    value: str, expected: str | None, kind: str | None
) -> None:
    index = IntelIndex(
        [
            entry("url", "http://dl.bad.example/x86.sh"),
            entry("domain", "evil.example"),
            entry("ip", "192.0.2.0/24"),
            entry("ip", "2001:db8::/32"),
        ]
    )
    match = index.match("url", value)
    assert (match.indicator if match else None, match.kind if match else None) == (
        expected,
        kind,
    )
    if match:
        assert match.value == value  # as seen


def test_hashes_of_each_length_any_case() -> None:
    md5, sha1, sha256 = "d41d8cd9" * 4, "2fd4e1c6" * 5, "e3b0c442" * 8
    index = IntelIndex([entry("hash", h) for h in (md5, sha1, sha256)])
    assert matched(index, "hash", md5.upper()) == md5
    assert matched(index, "hash", sha1) == sha1
    assert matched(index, "hash", sha256.upper()) == sha256
    assert matched(index, "hash", sha256[:-1]) is None
    assert matched(index, "hash", "") is None


def test_an_unknown_kind_matches_nothing() -> None:
    assert IntelIndex([entry("domain", "evil.example")]).match("file", "evil.example") is None  # type: ignore[arg-type]


def test_validity_is_decided_by_the_injected_clock_on_each_hit() -> None:
    now = [NOW]
    index = IntelIndex(
        [
            entry("ip", "192.0.2.1", "expiring", valid_until=NOW + timedelta(hours=1)),
            entry("ip", "192.0.2.0/24", "later", valid_from=NOW + timedelta(days=1)),
            entry("ip", "0.0.0.0/0", "always"),
        ],
        clock=lambda: now[0],
    )
    assert index.match("ip", "192.0.2.1").indicator_id == "expiring"  # type: ignore[union-attr]
    now[0] = NOW + timedelta(hours=2)
    assert index.match("ip", "192.0.2.1").indicator_id == "always"  # type: ignore[union-attr]
    now[0] = NOW + timedelta(days=2)
    assert index.match("ip", "192.0.2.1").indicator_id == "later"  # type: ignore[union-attr]


def test_the_same_value_from_two_feeds_answers_with_the_first_loaded() -> None:
    a = Indicator("domain", "evil.example", "evil.example", "feed-a", "a:1")
    b = Indicator("domain", "evil.example", "[domain-name:value = 'evil.example']", "feed-b", "b")
    index = IntelIndex([a, b])
    assert index.match("domain", "evil.example").feed == "feed-a"  # type: ignore[union-attr]
    assert index.counts == {"ip": 0, "domain": 2, "url": 0, "hash": 0}
    assert len(index) == 2


_NETWORKS = st.one_of(
    st.builds(
        lambda address, prefix: ipaddress.ip_network(f"{address}/{prefix}", strict=False),
        st.ip_addresses(v=4),
        st.integers(8, 32),
    ),
    st.builds(
        lambda address, prefix: ipaddress.ip_network(f"{address}/{prefix}", strict=False),
        st.ip_addresses(v=6),
        st.integers(16, 128),
    ),
)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(_NETWORKS, max_size=30),
    st.lists(st.ip_addresses(), max_size=30),
)
def test_cidr_lookup_agrees_with_ipaddress(
    networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network],
    probes: list[ipaddress.IPv4Address | ipaddress.IPv6Address],
) -> None:
    index = IntelIndex([entry("ip", normalize_ip(str(net)), str(net)) for net in networks])
    canonical = [ipaddress.ip_network(normalize_ip(str(net))) for net in networks]
    # Probe inside, at both ends and just outside each network, and at random.
    candidates = list(probes)
    for net in networks:
        first, last = int(net.network_address), int(net.broadcast_address)
        make = ipaddress.IPv4Address if net.version == 4 else ipaddress.IPv6Address
        top = 2**32 if net.version == 4 else 2**128
        candidates += [
            make(n) for n in (first - 1, first, (first + last) // 2, last, last + 1) if 0 <= n < top
        ]
    for probe in candidates:
        address = getattr(probe, "ipv4_mapped", None) or probe  # the index reads mapped as IPv4
        containing = [net for net in canonical if net.version == address.version and address in net]
        match = index.match("ip", str(probe))
        if not containing:
            assert match is None, probe
        else:
            innermost = max(net.prefixlen for net in containing)
            assert match is not None, probe
            found = ipaddress.ip_network(normalize_ip(match.indicator_id))
            assert found.prefixlen == innermost


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["ip", "domain", "url", "hash"]), st.text())
def test_arbitrary_values_never_raise(kind: IndicatorKind, value: str) -> None:
    index = IntelIndex(
        [
            entry("ip", "0.0.0.0/0"),
            entry("ip", "::/0"),
            entry("domain", "example"),
            entry("url", "http://a.example/"),
            entry("hash", "0" * 32),
        ]
    )
    index.match(kind, value)
