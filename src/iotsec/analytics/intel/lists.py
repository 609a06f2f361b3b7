"""Plain indicator lists: one entry per line, ``#`` comments.

An entry is an IPv4 or IPv6 address, a CIDR, a domain, a URL, or an MD5, SHA-1, SHA-256 or
SHA-512 hash; each line's kind is detected (``kind="auto"``), or the feed says what every line
must be. Text after `` #`` is a comment, and becomes the entry's description. A line that is no
such entry is skipped and recorded with its line number; the rest of the list still loads.

>>> load = read_list("# blocklist\\n198.51.100.0/24  # scanners\\nc2.example\\nnot an entry\\n",
...                  feed="demo", source="block.txt")
>>> [(i.kind, i.value, i.indicator_id, i.description) for i in load.indicators]
[('ip', '198.51.100.0/24', 'block.txt:2', 'scanners'), ('domain', 'c2.example', 'block.txt:3', '')]
>>> load.skipped[0].where, load.skipped[0].reason
('block.txt:4', 'one entry per line (found spaces)')
"""

from __future__ import annotations

from typing import Literal

from iotsec.analytics.indicators import IndicatorKind
from iotsec.analytics.intel.indicator import (
    FeedLoad,
    Indicator,
    Skipped,
    normalize_domain,
    normalize_hash,
    normalize_ip,
    normalize_url,
)

__all__ = ["LIST_KINDS", "ListKind", "read_list"]

ListKind = Literal["auto", "ip", "domain", "url", "hash"]
LIST_KINDS: tuple[ListKind, ...] = ("auto", "ip", "domain", "url", "hash")

_AUTO_ERROR = "not an IP address, CIDR, domain, URL or hash"


def read_list(text: str, *, feed: str, source: str, kind: ListKind = "auto") -> FeedLoad:
    """The entries of a list; ``source`` (the file name) prefixes each entry's line id."""
    indicators: list[Indicator] = []
    skipped: list[Skipped] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line, _, comment = _split_comment(raw)
        if not line:
            continue
        where = f"{source}:{number}"
        if any(char.isspace() for char in line):
            skipped.append(Skipped(where, "one entry per line (found spaces)", text=raw))
            continue
        try:
            found_kind, value = _entry(line, kind)
        except ValueError as exc:
            skipped.append(Skipped(where, str(exc), text=raw))
            continue
        indicators.append(Indicator(found_kind, value, line, feed, where, comment.strip()))
    return FeedLoad(feed, tuple(indicators), tuple(skipped))


def _split_comment(raw: str) -> tuple[str, str, str]:
    """(entry, separator, comment): a comment starts a line, or follows whitespace (a URL may
    hold a ``#`` fragment)."""
    stripped = raw.strip()
    if stripped.startswith("#"):
        return "", "#", stripped[1:]
    for i, char in enumerate(stripped):
        if char == "#" and stripped[i - 1].isspace():
            return stripped[:i].strip(), "#", stripped[i + 1 :]
    return stripped, "", ""


def _entry(line: str, kind: ListKind) -> tuple[IndicatorKind, str]:  # noqa: PLR0911 - per kind
    """The entry's kind and normalized value.

    Raises:
        ValueError: the line is not an entry (of ``kind``), with the reason.
    """
    if kind == "ip":
        return "ip", normalize_ip(line)
    if kind == "domain":
        return "domain", normalize_domain(line)
    if kind == "url":
        return "url", normalize_url(line)[0]
    if kind == "hash":
        return "hash", normalize_hash(line)
    if "://" in line:
        return "url", normalize_url(line)[0]
    if ":" in line or line.replace(".", "").replace("/", "").isdigit():
        return "ip", normalize_ip(line)  # it looks like one: its own reason says more
    if "." not in line:
        try:
            return "hash", normalize_hash(line)
        except ValueError as exc:
            raise ValueError(_AUTO_ERROR) from exc
    try:
        return "domain", normalize_domain(line)
    except ValueError as exc:
        raise ValueError(_AUTO_ERROR) from exc
