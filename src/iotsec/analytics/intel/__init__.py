"""Threat intelligence: STIX 2.1 bundles, TAXII 2.1 collections and plain lists, in one index.

:class:`FeedManager` implements :class:`~iotsec.analytics.indicators.IntelLookup` over the
configured feeds; :class:`IntelIndex` is the index itself, for callers that build their own.

>>> from iotsec.analytics.intel import IntelIndex, read_list
>>> index = IntelIndex(read_list("10.0.0.0/8\\n", feed="lab", source="lab.txt").indicators)
>>> match = index.match("ip", "10.1.2.3")
>>> match.indicator, match.feed, match.indicator_id
('10.0.0.0/8', 'lab', 'lab.txt:1')
"""

from typing import TYPE_CHECKING, Any

from iotsec.analytics.intel.feeds import (
    FEED_KINDS,
    SOURCES,
    FeedConfig,
    FeedKind,
    FeedManager,
    FeedSource,
    FeedStatus,
    load_feed_configs,
    parse_feed_config,
)
from iotsec.analytics.intel.index import IntelIndex
from iotsec.analytics.intel.indicator import Clock, FeedLoad, Indicator, Skipped
from iotsec.analytics.intel.lists import LIST_KINDS, ListKind, read_list
from iotsec.analytics.intel.pattern import CompiledPattern, compile_pattern
from iotsec.analytics.intel.stix import read_bundle, read_objects

if TYPE_CHECKING:
    from iotsec.analytics.intel.taxii import TaxiiPoller


def __getattr__(name: str) -> Any:
    # TaxiiPoller loads requests and taxii2-client, so it is imported only when asked for.
    if name == "TaxiiPoller":
        from iotsec.analytics.intel.taxii import TaxiiPoller  # noqa: PLC0415

        return TaxiiPoller
    raise AttributeError(f"module 'iotsec.analytics.intel' has no attribute {name!r}")


__all__ = [
    "FEED_KINDS",
    "LIST_KINDS",
    "SOURCES",
    "Clock",
    "CompiledPattern",
    "FeedConfig",
    "FeedKind",
    "FeedLoad",
    "FeedManager",
    "FeedSource",
    "FeedStatus",
    "Indicator",
    "IntelIndex",
    "ListKind",
    "Skipped",
    "TaxiiPoller",
    "compile_pattern",
    "load_feed_configs",
    "parse_feed_config",
    "read_bundle",
    "read_list",
    "read_objects",
]
