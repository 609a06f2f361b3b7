"""An indicator as the feeds produce it and the index stores it, and the normal form of its value.

Every feed (STIX bundle, TAXII collection, plain list) normalizes a value once, here, and the
index matches on that form: IPs and CIDRs in ``ipaddress``'s canonical spelling (IPv4-mapped IPv6
as IPv4), domains in lower case without the trailing dot (IDNs as A-labels), URLs with scheme and
host in lower case, hashes in lower-case hex.

>>> normalize_ip("::FFFF:192.0.2.1"), normalize_ip("2001:DB8::/32")
('192.0.2.1', '2001:db8::/32')
>>> normalize_domain("Evil.Example."), normalize_url("HTTP://Evil.Example:80")
('evil.example', ('http://evil.example/', 'evil.example'))
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

from iotsec.analytics.indicators import IndicatorKind

__all__ = [
    "HASH_LENGTHS",
    "Clock",
    "FeedLoad",
    "Indicator",
    "Skipped",
    "normalize_domain",
    "normalize_hash",
    "normalize_ip",
    "normalize_url",
    "utc_now",
]

#: Wall time as an aware UTC datetime; injected wherever validity or load times are decided.
Clock = Callable[[], datetime]

#: Hex digits of each hash the index knows, by algorithm.
HASH_LENGTHS = {"MD5": 32, "SHA-1": 40, "SHA-256": 64, "SHA-512": 128}

_HEX = re.compile(r"[0-9a-f]+")
_LABEL = re.compile(r"[a-z0-9_-]{1,63}")  # underscores occur in real names (_dmarc, SRV)
_HOST = re.compile(r"[a-z0-9_.-]+")
_DEFAULT_PORTS = {"http": 80, "https": 443, "ftp": 21}


def utc_now() -> datetime:
    """The machine's wall time (the default clock)."""
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Indicator:
    """One matchable value of one feed entry (a STIX pattern may yield several)."""

    kind: IndicatorKind
    #: The normalized value: ``192.0.2.1``, ``10.0.0.0/8``, ``evil.example``, a URL, a hash.
    value: str
    #: The entry as the feed wrote it (the STIX pattern, the list line).
    source: str
    feed: str
    #: The STIX id, or ``<file>:<line>`` for a list entry.
    indicator_id: str
    description: str = ""
    confidence: int | None = None
    valid_from: datetime | None = None
    valid_until: datetime | None = None

    def valid_at(self, now: datetime) -> bool:
        """Whether ``now`` lies in [valid_from, valid_until)."""
        if self.valid_from is not None and now < self.valid_from:
            return False
        return self.valid_until is None or now < self.valid_until


@dataclass(frozen=True, slots=True)
class Skipped:
    """An entry a feed could not use, and why (operators see these in the feed status)."""

    #: Where: a JSON path (``$.objects[3]``) or ``<file>:<line>``.
    where: str
    reason: str
    #: The STIX id when there is one.
    indicator_id: str = ""
    #: The offending pattern or line, as written.
    text: str = ""


@dataclass(frozen=True, slots=True)
class FeedLoad:
    """What one load of one feed produced."""

    feed: str
    indicators: tuple[Indicator, ...]
    skipped: tuple[Skipped, ...] = ()
    #: STIX objects that are not indicators (identities, relationships, ...): counted only.
    ignored: int = 0


def normalize_ip(text: str, *, version: int | None = None) -> str:
    """An address or CIDR in canonical form; IPv4-mapped IPv6 becomes IPv4.

    Raises:
        ValueError: not an address or CIDR (of ``version``, when given), or host bits set.
    """
    text = text.strip()
    address, slash, prefix = text.partition("/")
    if "%" in address:  # a scope id (fe80::1%eth0) names an interface, not an address
        address = address.partition("%")[0]
        text = address + slash + prefix
    try:
        net = ipaddress.ip_network(text, strict=False)
        first = ipaddress.ip_address(address)
    except ValueError as exc:
        raise ValueError(f"{text!r} is not an IP address or CIDR") from exc
    if version is not None and net.version != version:
        raise ValueError(f"{text!r} is not an IPv{version} address or CIDR")
    if slash and net.network_address != first:
        raise ValueError(f"{text!r} has host bits set (did you mean {net}?)")
    if isinstance(net, ipaddress.IPv6Network) and net.prefixlen >= 96:
        mapped = net.network_address.ipv4_mapped
        if mapped is not None:
            net = ipaddress.ip_network(f"{mapped}/{net.prefixlen - 96}")
    if net.prefixlen == net.max_prefixlen:
        return str(net.network_address)
    return str(net)


def normalize_domain(text: str) -> str:
    """A domain name in lower case, without its trailing dot, IDNs as A-labels.

    Raises:
        ValueError: not a domain name of at least two labels.
    """
    name = text.strip().rstrip(".").lower()
    if not name.isascii():
        try:
            name = name.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise ValueError(f"{text!r} is not a valid internationalized domain name") from exc
    labels = name.split(".")
    if len(name) > 253 or len(labels) < 2:
        raise ValueError(f"{text!r} is not a domain name (at least two labels, 253 characters)")
    for label in labels:
        if not _LABEL.fullmatch(label):
            raise ValueError(f"{text!r} is not a domain name (bad label {label!r})")
    if labels[-1].isdigit():
        raise ValueError(f"{text!r} is not a domain name (numeric top-level label)")
    return name


def normalize_url(text: str) -> tuple[str, str]:
    """The URL with scheme and host in lower case, default port, fragment and user info dropped,
    an empty path as ``/``; and its host (a normalized domain or IP).

    Raises:
        ValueError: no scheme or no host, or a bad host or port.
    """
    try:
        parts = urlsplit(text.strip())
    except ValueError as exc:  # unbalanced brackets
        raise ValueError(f"{text!r} is not a URL ({exc})") from exc
    if not parts.scheme or not parts.netloc:
        raise ValueError(f"{text!r} is not a URL (scheme and host required)")
    # The host and port by hand: SplitResult.hostname and .port cost more than the rest together.
    hostport = parts.netloc.rpartition("@")[2]
    if hostport.startswith("["):
        host, bracket, after = hostport[1:].partition("]")
        port = after[1:] if bracket and after.startswith(":") else after
    else:
        host, _, port = hostport.partition(":")
    if not host:
        raise ValueError(f"{text!r} is not a URL (scheme and host required)")
    if port and not (port.isascii() and port.isdigit() and int(port) <= 65535):
        raise ValueError(f"{text!r} has a bad port {port!r}")
    scheme = parts.scheme.lower()
    host = _url_host(host.lower(), text)
    netloc = f"[{host}]" if ":" in host else host
    if port and int(port) != _DEFAULT_PORTS.get(scheme):
        netloc += f":{int(port)}"
    url = f"{scheme}://{netloc}{parts.path or '/'}"
    return (f"{url}?{parts.query}" if parts.query else url), host


def _url_host(host: str, text: str) -> str:
    # Lenient where normalize_domain is strict: a URL may name a single-label host.
    if ":" in host or host.replace(".", "").isdigit():
        return normalize_ip(host)
    name = host.rstrip(".")
    if not name.isascii():
        try:
            name = name.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise ValueError(f"{text!r} has an invalid host ({exc})") from exc
    if not _HOST.fullmatch(name):
        raise ValueError(f"{text!r} has an invalid host {host!r}")
    return name


def normalize_hash(text: str, *, algorithm: str | None = None) -> str:
    """A hash in lower-case hex; MD5, SHA-1, SHA-256 or SHA-512 by its length.

    Raises:
        ValueError: not hex, or not the length of ``algorithm`` (or of any known hash).
    """
    value = text.strip().lower()
    if not _HEX.fullmatch(value):
        raise ValueError(f"{text!r} is not a hex hash")
    if algorithm is not None:
        if len(value) != HASH_LENGTHS[algorithm]:
            raise ValueError(f"{text!r} is not a {algorithm} hash ({HASH_LENGTHS[algorithm]} hex)")
    elif len(value) not in HASH_LENGTHS.values():
        raise ValueError(f"{text!r} is not an MD5, SHA-1, SHA-256 or SHA-512 hash")
    return value
