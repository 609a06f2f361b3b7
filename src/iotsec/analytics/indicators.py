"""The seam between detectors and threat intelligence: look a value up, get the indicator.

Rules (``intel:`` conditions), custom alerts and the pipeline depend only on this protocol;
``iotsec.analytics.intel`` implements it over STIX 2.1 bundles, TAXII 2.1 collections and plain
lists, and ``NO_INTEL`` is the empty implementation.

>>> NO_INTEL.match("ip", "203.0.113.7") is None
True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

__all__ = ["NO_INTEL", "IndicatorKind", "IntelLookup", "IntelMatch", "NoIntel"]

IndicatorKind = Literal["ip", "domain", "url", "hash"]


@dataclass(frozen=True, slots=True)
class IntelMatch:
    """An indicator a value matched, and where it came from (an alert names both)."""

    kind: IndicatorKind
    #: The value that matched, as seen (an address, a domain, a URL, a hash).
    value: str
    #: The indicator as the feed wrote it (a STIX pattern, a CIDR, a list line).
    indicator: str
    #: The feed's name (its configured name, or the file or collection).
    feed: str
    #: The indicator's id (STIX id) or "<file>:<line>" for plain lists.
    indicator_id: str = ""
    description: str = ""
    confidence: int | None = None


class IntelLookup(Protocol):
    """Answers whether a value is a known indicator; must be fast (in-memory) and thread-safe."""

    def match(self, kind: IndicatorKind, value: str) -> IntelMatch | None:
        """The indicator ``value`` matches (an IP within a CIDR, a subdomain of a listed domain,
        a URL whose host is listed, a hash of either kind), or None."""
        ...


class NoIntel:
    """No threat intelligence: nothing matches."""

    def match(self, kind: IndicatorKind, value: str) -> IntelMatch | None:
        return None


NO_INTEL = NoIntel()
