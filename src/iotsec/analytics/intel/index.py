"""The in-memory index the stream asks, once per connection, process or command line.

Built once from normalized :class:`Indicator` values and never changed afterwards, so any number
of threads may call :meth:`IntelIndex.match` without a lock (a reload builds a new index and swaps
it in). A lookup is one or two dict probes, or a bisect for CIDRs: no ``ipaddress`` objects and no
allocation on a miss, except the lower-cased copy of a domain or hash.

- IPs: exact addresses in a dict keyed by integer; CIDRs as sorted elementary intervals (CIDRs
  nest or are disjoint, so each interval has one innermost owner chain) searched with bisect.
  IPv4-mapped IPv6 (``::ffff:a.b.c.d``) is looked up as IPv4.
- Domains: the name, then each parent (``a.b.evil.example`` -> ``b.evil.example`` ->
  ``evil.example`` -> ``example``); case-insensitive, trailing dot ignored.
- URLs: the normalized URL, else its host as a domain (or IP).
- Hashes: lower-case hex; MD5, SHA-1, SHA-256 and SHA-512 side by side (their lengths differ).

>>> from iotsec.analytics.intel.indicator import Indicator
>>> index = IntelIndex([Indicator("domain", "evil.example", "evil.example", "demo", "demo:1")])
>>> index.match("domain", "A.B.Evil.Example.").indicator
'evil.example'
>>> index.match("url", "https://cdn.evil.example/x.sh").kind
'domain'
>>> index.match("domain", "example") is None
True
"""

from __future__ import annotations

import socket
from bisect import bisect_right
from collections.abc import Iterable
from socket import inet_pton

from iotsec.analytics.indicators import IndicatorKind, IntelMatch
from iotsec.analytics.intel.indicator import Clock, Indicator, normalize_url, utc_now

__all__ = ["IntelIndex"]

_Entries = tuple[Indicator, ...]
_EMPTY: _Entries = ()
_AF4 = socket.AF_INET
_AF6 = socket.AF_INET6
_MAPPED = 0xFFFF
_MAX_DOMAIN = 253


class _Ranges:
    """Disjoint elementary intervals over nested-or-disjoint CIDRs, each with its owner chain
    (innermost CIDR's indicators first, then those of the CIDRs around it)."""

    __slots__ = ("_owners", "_starts")

    def __init__(self, networks: dict[tuple[int, int], list[Indicator]]) -> None:
        starts: list[int] = []
        owners: list[_Entries] = []

        def emit(position: int, chain: _Entries) -> None:
            if starts and starts[-1] == position:
                owners[-1] = chain
            elif not owners or owners[-1] is not chain:
                starts.append(position)
                owners.append(chain)

        stack: list[tuple[int, _Entries]] = []  # (last address, chain) of the open CIDRs
        for (first, last), entries in sorted(networks.items(), key=lambda n: (n[0][0], -n[0][1])):
            while stack and stack[-1][0] < first:
                closed, _ = stack.pop()
                emit(closed + 1, stack[-1][1] if stack else _EMPTY)
            chain = tuple(entries) + (stack[-1][1] if stack else _EMPTY)
            stack.append((last, chain))
            emit(first, chain)
        while stack:
            closed, _ = stack.pop()
            emit(closed + 1, stack[-1][1] if stack else _EMPTY)
        self._starts = starts
        self._owners = owners

    def find(self, address: int) -> _Entries:
        i = bisect_right(self._starts, address) - 1
        return self._owners[i] if i >= 0 else _EMPTY


def _address(text: str) -> tuple[int, int]:
    """(4 or 6, the address as an integer) of a canonical address (inet_pton is strict)."""
    if ":" in text:
        number = int.from_bytes(inet_pton(_AF6, text), "big")
        if number >> 32 == _MAPPED:
            return 4, number & 0xFFFFFFFF
        return 6, number
    return 4, int.from_bytes(inet_pton(_AF4, text), "big")


class IntelIndex:
    """Indicators by kind, for :class:`~iotsec.analytics.indicators.IntelLookup` lookups.

    ``clock`` decides validity (``valid_from``/``valid_until``); it is read only on a hit whose
    indicator has such bounds. Where several indicators match, the most specific wins (an
    address before its CIDR, a domain before its parent), then the first loaded.
    """

    __slots__ = (
        "_clock",
        "_counts",
        "_domains",
        "_has_ips",
        "_hashes",
        "_ip4",
        "_ip6",
        "_ranges4",
        "_ranges6",
        "_urls",
    )

    def __init__(self, indicators: Iterable[Indicator] = (), *, clock: Clock = utc_now) -> None:
        self._clock = clock
        ip4: dict[int, list[Indicator]] = {}
        ip6: dict[int, list[Indicator]] = {}
        nets4: dict[tuple[int, int], list[Indicator]] = {}
        nets6: dict[tuple[int, int], list[Indicator]] = {}
        domains: dict[str, list[Indicator]] = {}
        urls: dict[str, list[Indicator]] = {}
        hashes: dict[str, list[Indicator]] = {}
        counts: dict[IndicatorKind, int] = {"ip": 0, "domain": 0, "url": 0, "hash": 0}
        for indicator in indicators:
            counts[indicator.kind] += 1
            if indicator.kind == "ip":
                address, _, prefix = indicator.value.partition("/")
                version, number = _address(address)
                if not prefix:
                    (ip4 if version == 4 else ip6).setdefault(number, []).append(indicator)
                    continue
                host_bits = (32 if version == 4 else 128) - int(prefix)
                span = (number, number | ((1 << host_bits) - 1))
                (nets4 if version == 4 else nets6).setdefault(span, []).append(indicator)
            elif indicator.kind == "domain":
                domains.setdefault(indicator.value, []).append(indicator)
            elif indicator.kind == "url":
                urls.setdefault(indicator.value, []).append(indicator)
            else:
                hashes.setdefault(indicator.value, []).append(indicator)
        self._ip4 = {k: tuple(v) for k, v in ip4.items()}
        self._ip6 = {k: tuple(v) for k, v in ip6.items()}
        self._ranges4 = _Ranges(nets4)
        self._ranges6 = _Ranges(nets6)
        self._domains = {k: tuple(v) for k, v in domains.items()}
        self._urls = {k: tuple(v) for k, v in urls.items()}
        self._hashes = {k: tuple(v) for k, v in hashes.items()}
        self._counts = counts
        self._has_ips = bool(ip4 or ip6 or nets4 or nets6)

    @property
    def counts(self) -> dict[IndicatorKind, int]:
        """Indicators held, by kind."""
        return dict(self._counts)

    def __len__(self) -> int:
        return sum(self._counts.values())

    def match(self, kind: IndicatorKind, value: str) -> IntelMatch | None:
        """The indicator ``value`` matches, or None; never raises on a malformed value.

        The match's ``kind`` is the indicator's (a URL whose host is a listed domain matches a
        ``domain`` indicator); its ``value`` is ``value`` as given.
        """
        if kind == "ip":
            return self._match_ip(value, value)
        if kind == "domain":
            return self._match_domain(value, value)
        if kind == "hash":
            entries = self._hashes.get(value.lower())
            return self._hit(entries, value) if entries is not None else None
        if kind == "url":
            return self._match_url(value)
        return None

    def _match_ip(self, text: str, seen: str) -> IntelMatch | None:
        if not self._has_ips:
            return None
        exact, ranges = self._ip4, self._ranges4
        try:
            if ":" in text:
                if "%" in text:  # a scope id (fe80::1%eth0) is not part of the address
                    text = text.partition("%")[0]
                number = int.from_bytes(inet_pton(_AF6, text.strip("[]")), "big")
                if number >> 32 == _MAPPED:
                    number &= 0xFFFFFFFF
                else:
                    exact, ranges = self._ip6, self._ranges6
            else:
                number = int.from_bytes(inet_pton(_AF4, text), "big")
        except (OSError, ValueError):  # not an address: inet_pton's OSError, or a NUL/surrogate
            return None
        entries = exact.get(number)
        if entries is not None:
            hit = self._hit(entries, seen)
            if hit is not None:
                return hit
        chain = ranges.find(number)
        return self._hit(chain, seen) if chain else None

    def _match_domain(self, text: str, seen: str) -> IntelMatch | None:
        domains = self._domains
        if not domains or len(text) > _MAX_DOMAIN + 1:
            return None
        name = text.lower().rstrip(".")
        if not name.isascii():
            try:
                name = name.encode("idna").decode("ascii")
            except UnicodeError:
                return None
        while True:
            entries = domains.get(name)
            if entries is not None:
                hit = self._hit(entries, seen)
                if hit is not None:
                    return hit
            dot = name.find(".")
            if dot < 0:
                return None
            name = name[dot + 1 :]

    def _match_url(self, text: str) -> IntelMatch | None:
        try:
            url, host = normalize_url(text if "://" in text else "http://" + text)
        except ValueError:
            return None
        entries = self._urls.get(url)
        if entries is not None:
            hit = self._hit(entries, text)
            if hit is not None:
                return hit
        if ":" in host or host.replace(".", "").isdigit():
            return self._match_ip(host, text)
        return self._match_domain(host, text)

    def _hit(self, entries: _Entries, seen: str) -> IntelMatch | None:
        now = None
        for entry in entries:
            if entry.valid_from is not None or entry.valid_until is not None:
                now = now or self._clock()
                if not entry.valid_at(now):
                    continue
            return IntelMatch(
                kind=entry.kind,
                value=seen,
                indicator=entry.source,
                feed=entry.feed,
                indicator_id=entry.indicator_id,
                description=entry.description,
                confidence=entry.confidence,
            )
        return None
