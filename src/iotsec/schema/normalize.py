"""Normalize what real agents send into the canonical form (reference Appendix B).

Runs once on every freshly decoded event, so it is written for speed: checks are dictionary
lookups where the common canonical case costs almost nothing, and fixes are made in place on the
new (not yet shared) objects. Everything here returns issues rather than raising, so the codec
can apply the caller's error policy.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any

from msgspec.structs import force_setattr

from iotsec.schema.errors import FieldIssue
from iotsec.schema.events import AGGREGATION_KEYS, Event
from iotsec.schema.payloads import (
    ConnectionCreate,
    FirewallConfiguration,
    ListeningPorts,
    Login,
)

__all__ = ["canonical_protocol", "is_ip_address", "normalize_event", "parse_agent_time"]

_MAX_OFFSET = timedelta(hours=14)
_CACHE_LIMIT = 4096
_zones: dict[timedelta, tzinfo | None] = {}
_canonical_times: set[str] = set()
_WINDOW_KEYS = tuple((key, key.endswith("Utc")) for key in AGGREGATION_KEYS[1:])
_ip_seen: dict[str, bool] = {}
_protocols: dict[str, str] = {}
# .NET's InvariantCulture DateTime.ToString(), which the C# agent uses for aggregation windows.
_INVARIANT_TIME = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4}) (\d{1,2}):(\d{2}):(\d{2})")
_PROTOCOL_ALIASES = {"TCP6": "TCP", "UDP6": "UDP", "ICMPV6": "ICMPv6", "ICMP6": "ICMPv6"}


def is_ip_address(text: str) -> bool:
    """True for an IPv4 or IPv6 address as Microsoft's schema formats accept them."""
    known = _ip_seen.get(text)
    if known is not None:
        return known
    valid = False
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, text)
        except (OSError, ValueError):
            continue
        valid = True
        break
    if len(_ip_seen) >= _CACHE_LIMIT:
        _ip_seen.clear()
    _ip_seen[text] = valid
    return valid


def canonical_protocol(text: str) -> str:
    """``tcp``, ``Tcp`` and ``tcp6`` all become ``TCP``; unknown names are upper-cased."""
    known = _protocols.get(text)
    if known is not None:
        return known
    upper = text.strip().upper()
    canonical = _PROTOCOL_ALIASES.get(upper, upper)
    if len(_protocols) >= _CACHE_LIMIT:
        _protocols.clear()
    _protocols[text] = canonical
    return canonical


def parse_agent_time(text: str) -> datetime:
    """Parse an agent timestamp: ISO 8601 (``T`` or space) or the C# ``MM/dd/yyyy HH:mm:ss``."""
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        match = _INVARIANT_TIME.fullmatch(text)
        if match is None:
            raise
        month, day, year, hour, minute, second = map(int, match.groups())
        return datetime(year, month, day, hour, minute, second)


def _zone_for(diff: timedelta) -> tzinfo | None:
    """The fixed zone whose offset is ``diff`` rounded to the minute; None past 14 hours."""
    zone = _zones.get(diff)
    if zone is None and diff not in _zones:
        offset = timedelta(minutes=round(diff.total_seconds() / 60))
        zone = None if abs(offset) > _MAX_OFFSET else (UTC if not offset else timezone(offset))
        if len(_zones) >= _CACHE_LIMIT:
            _zones.clear()
        _zones[diff] = zone
    return zone


def _fix_times(ev: Event, path: str, issues: list[FieldIssue]) -> None:
    # datetime.replace() costs ~2 us on CPython 3.11, so new values are built with combine().
    utc = ev.timestamp_utc
    if utc.tzinfo is not UTC:
        utc = (
            datetime.combine(utc.date(), utc.time(), UTC)
            if utc.tzinfo is None
            else utc.astimezone(UTC)
        )
        force_setattr(ev, "timestamp_utc", utc)
    local = ev.timestamp_local
    zone = local.tzinfo
    if zone is not None and zone is not UTC and local.utcoffset():
        return  # an explicit offset is trusted
    # No zone, or local time marked "Z" (the C agent): the offset is the wall-clock difference.
    wall = local if zone is UTC else datetime.combine(local.date(), local.time(), UTC)
    diff = wall - utc
    if not diff and zone is not None:
        return  # a device whose local zone is UTC
    local_zone = _zone_for(diff)
    if local_zone is None:
        issues.append(
            FieldIssue(
                f"{path}.TimestampLocal",
                "differs from TimestampUTC by more than 14 hours",
            )
        )
        return
    force_setattr(ev, "timestamp_local", datetime.combine(local.date(), local.time(), local_zone))


def _canonical_time(value: str, utc: bool) -> str | None:
    """The canonical ISO form of an aggregation time, or None when it is not a time."""
    try:
        when = parse_agent_time(value)
    except ValueError:
        return None
    if utc:
        when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
        text = when.isoformat().replace("+00:00", "Z")
    else:
        text = when.isoformat()
    if len(_canonical_times) >= _CACHE_LIMIT:
        _canonical_times.clear()
    _canonical_times.add(text)
    return text


def _fix_aggregation(ev: Event, path: str, issues: list[FieldIssue]) -> None:
    aggregated = ev.category == "Aggregated"
    if aggregated:
        force_setattr(ev, "category", "Triggered")
    for r, row in enumerate(ev.payload):
        details = row.extra_details
        count = details.get("HitCount")
        if count is None:
            if not aggregated:
                continue
            count = details["HitCount"] = "1"
        if not (count.isdigit() and count.isascii() and count != "0" and count[0] != "0"):
            issues.append(
                FieldIssue(
                    f"{path}.Payload[{r}].ExtraDetails.HitCount",
                    f"expected a positive integer, got {count!r}",
                )
            )
        if len(details) == 1:
            continue
        for key, utc in _WINDOW_KEYS:
            value = details.get(key)
            if value is None or value in _canonical_times:
                continue
            canonical = _canonical_time(value, utc)
            if canonical is None:
                issues.append(
                    FieldIssue(
                        f"{path}.Payload[{r}].ExtraDetails.{key}",
                        f"expected a date-time, got {value!r}",
                    )
                )
            elif canonical != value:
                details[key] = canonical


def _fix_protocol(row: Any) -> None:
    proto = row.protocol
    if proto is not None and proto not in _CANONICAL_PROTOCOLS:
        force_setattr(row, "protocol", canonical_protocol(proto))


def _connection(row: ConnectionCreate) -> bool:
    if row.remote_port == 0:
        force_setattr(row, "remote_port", "")
    if row.protocol not in _CANONICAL_PROTOCOLS:
        _fix_protocol(row)
    return not (
        _ip_seen.get(row.remote_address)
        and (row.local_address is None or _ip_seen.get(row.local_address))
    ) and _any_bad_ip(row)


def _login(row: Login) -> bool:
    return (row.user_id is None and row.user_name is None) or (
        row.remote_address is not None and not _ip_seen.get(row.remote_address) and _any_bad_ip(row)
    )


def _listening(row: ListeningPorts) -> bool:
    if row.protocol not in _CANONICAL_PROTOCOLS:
        _fix_protocol(row)
    return _any_bad_ip(row)


def _firewall(row: FirewallConfiguration) -> bool:
    _fix_protocol(row)
    return False


def _any_bad_ip(row: Any) -> bool:
    return any(
        value is not None and not is_ip_address(value)
        for value in (getattr(row, name, None) for name in _IP_FIELDS)
    )


def _row_issues(row: Any, path: str, issues: list[FieldIssue]) -> None:
    """Name what is wrong with a row that failed its check (the slow path)."""
    if isinstance(row, Login) and row.user_id is None and row.user_name is None:
        issues.append(FieldIssue(path, "needs UserId or UserName"))
    for name, wire in _IP_FIELDS.items():
        value = getattr(row, name, None)
        if value is not None and not is_ip_address(value):
            issues.append(
                FieldIssue(f"{path}.{wire}", f"expected an IPv4 or IPv6 address, got {value!r}")
            )


_IP_FIELDS = {"remote_address": "RemoteAddress", "local_address": "LocalAddress"}
_CANONICAL_PROTOCOLS = frozenset({"TCP", "UDP", "ICMP", "ICMPv6"})
#: Per row type: fix the row in place, and return True when it has an issue to report.
_ROW_CHECKS: dict[type, Callable[[Any], bool]] = {
    ConnectionCreate: _connection,
    Login: _login,
    ListeningPorts: _listening,
    FirewallConfiguration: _firewall,
}


def normalize_event(ev: Event, index: int, prefix: str = "Events") -> list[FieldIssue] | None:
    """Bring a freshly decoded ``ev`` into canonical form in place.

    Returns what is wrong with it, or None when nothing is. ``prefix[index]`` names the event in
    issue paths (``Events[3]``). This is the decoder's hot path: the canonical case is a handful
    of identity checks, and paths are only built when there is something to fix or report.
    """
    issues: list[FieldIssue] = []
    local = ev.timestamp_local
    zone = local.tzinfo
    if (
        ev.timestamp_utc.tzinfo is not UTC
        or zone is None
        or (zone is UTC and local != ev.timestamp_utc)
    ):
        _fix_times(ev, f"{prefix}[{index}]", issues)
    payload = ev.payload
    if ev.is_empty or not payload:
        _fix_empty(ev, f"{prefix}[{index}]", issues)
    elif ev.category == "Aggregated" or payload[0].extra_details.get("HitCount") is not None:
        _fix_aggregation(ev, f"{prefix}[{index}]", issues)
    check = _ROW_CHECKS.get(type(payload[0])) if payload else None
    if check is not None:
        for r, row in enumerate(payload):
            if check(row):
                _row_issues(row, f"{prefix}[{index}].Payload[{r}]", issues)
    return issues or None


def _fix_empty(ev: Event, path: str, issues: list[FieldIssue]) -> None:
    if not ev.is_empty:
        issues.append(
            FieldIssue(f"{path}.Payload", "expected at least 1 item when IsEmpty is false")
        )
    elif ev.category != "Periodic":
        issues.append(FieldIssue(f"{path}.IsEmpty", "a Triggered event is never empty"))
    elif ev.payload:
        force_setattr(ev, "is_empty", False)  # Microsoft's schema tolerates this too


def normalize_events(
    events: tuple[Event, ...],
    prefix: str = "Events",
) -> dict[int, list[FieldIssue]]:
    """Normalize every event in place; return the issues of the events that have any, by index.

    The loop screens out canonical events that need no row checks (most process events) with a
    few identity checks before paying for a call to ``normalize_event``.
    """
    bad: dict[int, list[FieldIssue]] = {}
    checked = _ROW_CHECKS
    zones = _zones
    combine = datetime.combine
    for index, ev in enumerate(events):
        local = ev.timestamp_local
        zone = local.tzinfo
        utc = ev.timestamp_utc
        if zone is UTC and utc.tzinfo is UTC and local != utc:
            # The C agent's local time marked "Z": fix it here when its offset is known.
            local_zone = zones.get(local - utc)
            if local_zone is not None:
                local = combine(local.date(), local.time(), local_zone)
                force_setattr(ev, "timestamp_local", local)
                zone = local_zone
        payload = ev.payload
        if (
            payload
            and zone is not None
            and utc.tzinfo is UTC
            and (zone is not UTC or local == utc)
            and not ev.is_empty
        ):
            first = payload[0]
            plain = True
            if ev.category == "Aggregated" or "HitCount" in first.extra_details:
                plain = _plain_count(payload)
                if plain and ev.category == "Aggregated":
                    force_setattr(ev, "category", "Triggered")
            check = checked.get(type(first))
            # Row checks fix rows in place and return True only when there is an issue; every
            # row is checked (no short-circuit), and a lone row skips building a list.
            if plain and (
                check is None
                or not (check(first) if len(payload) == 1 else any([check(r) for r in payload]))
            ):
                continue
        found = normalize_event(ev, index, prefix)
        if found:
            bad[index] = found
    return bad


def _plain_count(payload: tuple[Any, ...]) -> bool:
    """True when every row's aggregation details are already canonical: a hit count alone."""
    for row in payload:
        details = row.extra_details
        count = details.get("HitCount")
        if count is None or (len(details) > 1 and any(k in details for k in AGGREGATION_KEYS[1:])):
            return False
        if not (count.isdigit() and count.isascii() and count[0] != "0"):
            return False
    return True
