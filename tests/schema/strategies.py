"""Hypothesis strategies for canonical security messages (what decode produces)."""

from __future__ import annotations

import types
import typing
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgspec
from hypothesis import strategies as st

from iotsec.schema import EVENT_TYPES, SecurityMessage
from iotsec.schema.events import AGGREGATION_KEYS

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
TEXT = st.text(max_size=12)
IPS = st.ip_addresses().map(str)
GUIDS = st.uuids().map(str)
PROTOCOLS = st.sampled_from(["TCP", "UDP", "ICMP", "ICMPv6"])
DETAILS = st.dictionaries(TEXT.filter(lambda k: k not in AGGREGATION_KEYS), TEXT, max_size=3)

# Fields whose values are checked beyond their JSON type.
_BY_NAME: dict[str, st.SearchStrategy[Any]] = {
    "remote_address": IPS,
    "local_address": IPS,
    "protocol": PROTOCOLS,
    "correlation_id": GUIDS,
    "extra_details": DETAILS,
}


def _for_type(tp: Any) -> st.SearchStrategy[Any]:
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return st.sampled_from([a for a in typing.get_args(tp) if a != 0 or isinstance(a, str)])
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        plain = [a for a in args if typing.get_origin(a) is not typing.Literal]
        inner = st.one_of([_for_type(a) for a in plain])
        return st.none() | inner if type(None) in typing.get_args(tp) else inner
    if origin is typing.Annotated:
        return _for_type(typing.get_args(tp)[0])
    if tp is str:
        return TEXT
    if tp is int:
        return INT64
    if tp is bool:
        return st.booleans()
    raise TypeError(f"no strategy for {tp!r}")


def rows(row_type: type[msgspec.Struct]) -> st.SearchStrategy[Any]:
    """Rows of ``row_type`` with canonical values."""
    hints = typing.get_type_hints(row_type, include_extras=True)
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for info in msgspec.structs.fields(row_type):
        strategy = _BY_NAME[info.name] if info.name in _BY_NAME else _for_type(hints[info.name])
        if not info.required and info.name != "extra_details":
            strategy = st.none() | strategy
        fields[info.name] = strategy
    built = st.fixed_dictionaries(fields).map(lambda kw: row_type(**kw))
    if row_type.__name__ == "Login":
        built = built.filter(lambda r: r.user_id is not None or r.user_name is not None)
    if row_type.__name__ == "ConnectionCreate":
        built = built.filter(lambda r: r.remote_port != 0)
    return built


@st.composite
def times(draw: st.DrawFn) -> tuple[datetime, datetime]:
    """(local, utc): one instant, with the device's local offset."""
    utc = draw(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)))
    utc = utc.replace(tzinfo=UTC)
    minutes = draw(st.integers(min_value=-14 * 60, max_value=14 * 60))
    zone = UTC if minutes == 0 else timezone(timedelta(minutes=minutes))
    return utc.astimezone(zone), utc


@st.composite
def aggregated_details(draw: st.DrawFn, at: datetime) -> dict[str, str]:
    """ExtraDetails of an aggregated row, in canonical form."""
    count = draw(st.integers(min_value=1, max_value=10**6))
    end = at.astimezone(UTC)
    start = end - timedelta(seconds=draw(st.integers(min_value=0, max_value=86_400)))
    return {
        "HitCount": str(count),
        "StartTimeUtc": start.isoformat().replace("+00:00", "Z"),
        "EndTimeUtc": end.isoformat().replace("+00:00", "Z"),
    }


@st.composite
def events(draw: st.DrawFn) -> Any:
    """Any of the 14 event types, canonical."""
    cls = draw(st.sampled_from(sorted(EVENT_TYPES.values(), key=lambda c: c.__name__)))
    periodic = "Periodic" in str(typing.get_type_hints(cls)["category"])
    payload = draw(st.lists(rows(cls.row_type), min_size=0 if periodic else 1, max_size=3))
    local, utc = draw(times())
    if not periodic and draw(st.booleans()):
        details = draw(aggregated_details(utc))
        payload = [
            msgspec.structs.replace(r, extra_details={**r.extra_details, **details})
            for r in payload
        ]
    return cls(
        id=draw(GUIDS),
        timestamp_local=local,
        timestamp_utc=utc,
        is_empty=not payload,
        payload=tuple(payload),
    )


@st.composite
def messages(draw: st.DrawFn) -> SecurityMessage:
    """Canonical security messages of 1 to 4 events."""
    return SecurityMessage(
        agent_version=draw(TEXT),
        agent_id=draw(GUIDS),
        events=tuple(draw(st.lists(events(), min_size=1, max_size=4))),
    )
