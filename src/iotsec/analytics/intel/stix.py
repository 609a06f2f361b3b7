"""STIX 2.1 bundles, and the object lists of TAXII envelopes, read into indicators.

Plain JSON (orjson), not the ``stix2`` library: it is slow to parse large bundles and we need
only the indicators. Of those, only ``pattern_type: stix`` ones are matched (a missing
``pattern_type`` is read as ``stix``, as STIX 2.0 wrote them); the rest are listed as skipped
with their reason, as are revoked, expired and malformed indicators, so one bad entry never
costs the feed. Objects of other types are counted as ``ignored``. Where a bundle holds several
versions of one indicator, the latest ``modified`` wins.

>>> bundle = '''{"type": "bundle", "id": "bundle--1", "objects": [{"type": "indicator",
...   "id": "indicator--1", "pattern": "[domain-name:value = 'c2.example']",
...   "pattern_type": "stix", "name": "C2"}]}'''
>>> [(i.kind, i.value, i.description) for i in read_bundle(bundle, feed="demo").indicators]
[('domain', 'c2.example', 'C2')]
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import orjson

from iotsec.analytics.errors import FeedError
from iotsec.analytics.intel.indicator import FeedLoad, Indicator, Skipped, utc_now
from iotsec.analytics.intel.pattern import compile_pattern

__all__ = ["read_bundle", "read_objects"]


def read_bundle(data: bytes | str, *, feed: str, now: datetime | None = None) -> FeedLoad:
    """The indicators of a STIX bundle; ``now`` decides what has expired.

    Raises:
        FeedError: not JSON, or not a bundle (the reason names the JSON path).
    """
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise FeedError(feed, f"$: not valid JSON ({exc})") from exc
    if not isinstance(document, dict):
        raise FeedError(feed, f"$: expected a STIX bundle object, found {_json_type(document)}")
    if document.get("type") != "bundle":
        found = document.get("type")
        raise FeedError(feed, f"$.type: expected 'bundle', found {found!r}")
    objects = document.get("objects", [])
    if not isinstance(objects, list):
        raise FeedError(feed, f"$.objects: expected a list, found {_json_type(objects)}")
    return read_objects(objects, feed=feed, now=now)


def read_objects(
    objects: Sequence[object], *, feed: str, now: datetime | None = None, path: str = "$.objects"
) -> FeedLoad:
    """The indicators among parsed STIX objects (``path`` prefixes the JSON paths reported)."""
    now = now or utc_now()
    skipped: list[Skipped] = []
    ignored = 0
    latest: dict[str, tuple[datetime | None, str, dict[str, object]]] = {}
    for number, obj in enumerate(objects):
        where = f"{path}[{number}]"
        if not isinstance(obj, dict):
            skipped.append(Skipped(where, f"expected an object, found {_json_type(obj)}"))
            continue
        if obj.get("type") != "indicator":
            ignored += 1
            continue
        ident = obj.get("id")
        if not isinstance(ident, str) or not ident.startswith("indicator--"):
            skipped.append(Skipped(f"{where}.id", "an indicator needs an id 'indicator--...'"))
            continue
        modified = parse_timestamp(obj.get("modified"))
        previous = latest.get(ident)
        if previous is None or _not_older(modified, previous[0]):
            latest[ident] = (modified, where, obj)
    indicators: list[Indicator] = []
    for ident, (_, where, obj) in latest.items():
        found, problem = _read_indicator(obj, ident, where, feed, now)
        indicators.extend(found)
        if problem is not None:
            skipped.append(problem)
    return FeedLoad(feed, tuple(indicators), tuple(skipped), ignored)


def _read_indicator(  # noqa: PLR0911, PLR0912 - one return per property checked
    obj: dict[str, object], ident: str, where: str, feed: str, now: datetime
) -> tuple[list[Indicator], Skipped | None]:
    """The indicator's values, and why it (or a part of its pattern) was skipped."""

    def skip(field: str, reason: str, text: str = "") -> tuple[list[Indicator], Skipped]:
        return [], Skipped(f"{where}.{field}" if field else where, reason, ident, text)

    revoked = obj.get("revoked", False)
    if not isinstance(revoked, bool):
        return skip("revoked", "expected true or false")
    if revoked:
        return skip("", "revoked")
    pattern_type = obj.get("pattern_type", "stix")
    if pattern_type != "stix":
        return skip("pattern_type", f"pattern_type {pattern_type!r} is not matched (only 'stix')")
    pattern = obj.get("pattern")
    if not isinstance(pattern, str):
        return skip("pattern", "expected the pattern as a string")
    texts: dict[str, str] = {}
    for field in ("name", "description"):
        value = obj.get(field, "")
        if not isinstance(value, str):
            return skip(field, "expected a string")
        texts[field] = value
    confidence = obj.get("confidence")
    if confidence is not None and (
        type(confidence) is not int or not 0 <= confidence <= 100  # bool is no confidence
    ):
        return skip("confidence", "expected an integer from 0 to 100")
    bounds: dict[str, datetime | None] = {}
    for field in ("valid_from", "valid_until"):
        raw = obj.get(field)
        bounds[field] = parse_timestamp(raw)
        if raw is not None and bounds[field] is None:
            return skip(field, f"expected an RFC 3339 timestamp, found {raw!r}")
    valid_from, valid_until = bounds["valid_from"], bounds["valid_until"]
    if valid_until is not None:
        if valid_from is not None and valid_until <= valid_from:
            return skip("valid_until", "not after valid_from")
        if valid_until <= now:
            return skip("", f"expired at {valid_until.isoformat()}")
    compiled = compile_pattern(pattern)
    if compiled.error is not None:
        return skip("pattern", f"malformed pattern: {compiled.error}", pattern)
    if not compiled.values:
        return skip("pattern", "; ".join(compiled.skipped), pattern)
    description = ": ".join(text for text in texts.values() if text)
    found = [
        Indicator(
            kind=kind,
            value=value,
            source=pattern,
            feed=feed,
            indicator_id=ident,
            description=description,
            confidence=confidence,
            valid_from=valid_from,
            valid_until=valid_until,
        )
        for kind, value in compiled.values
    ]
    if compiled.skipped:
        reason = "partly matched; left out: " + "; ".join(compiled.skipped)
        return found, Skipped(f"{where}.pattern", reason, ident, pattern)
    return found, None


def parse_timestamp(value: object) -> datetime | None:
    """A STIX timestamp as an aware datetime (naive ones are UTC), or None if absent or bad."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _not_older(modified: datetime | None, previous: datetime | None) -> bool:
    return previous is None or (modified is not None and modified >= previous)


def _json_type(value: object) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    return names.get(type(value), "a number")
