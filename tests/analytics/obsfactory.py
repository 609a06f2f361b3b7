"""Observations for the baseline, fleet and recommendation tests, with exact injected times."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from iotsec.analytics import DeviceContext, Observation

T0 = datetime(2025, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)

_ids = itertools.count(1)


def _time(at: datetime | timedelta) -> datetime:
    return T0 + at if isinstance(at, timedelta) else at


def obs(
    name: str,
    fields: Mapping[str, object] | None = None,
    *,
    at: datetime | timedelta = timedelta(0),
    device: str = "dev-7",
    group: str = "default",
    source: str = "agent",
    event_id: str | None = None,
    row: int = 0,
    hits: int = 1,
) -> Observation:
    """One observation ``at`` (a time, or an offset from T0)."""
    return Observation(
        source="hub" if source == "hub" else "agent",
        name=name,
        time=_time(at),
        device=DeviceContext(device, group=group),
        fields=dict(fields or {}),
        event_id=event_id or f"ev-{next(_ids)}",
        row_index=row,
        hit_count=hits,
    )


def process(exe: str, at: datetime | timedelta, **kw: Any) -> Observation:
    return obs("ProcessCreate", {"Executable": exe, "CommandLine": exe}, at=at, **kw)


def connection(
    address: str, port: str, at: datetime | timedelta, *, direction: str = "Out", **kw: Any
) -> Observation:
    fields = {
        "RemoteAddress": address,
        "RemotePort": port,
        "Protocol": "tcp",
        "Direction": direction,
    }
    return obs("ConnectionCreate", fields, at=at, **kw)


def login(
    user: str,
    at: datetime | timedelta,
    *,
    result: str = "Success",
    source: str | None = None,
    **kw: Any,
) -> Observation:
    fields: dict[str, object] = {"UserName": user, "Result": result, "Executable": "/usr/sbin/sshd"}
    if source is not None:
        fields["RemoteAddress"] = source
    return obs("Login", fields, at=at, **kw)


def snapshot(
    name: str,
    rows: Sequence[Mapping[str, object]],
    at: datetime | timedelta,
    *,
    device: str = "dev-7",
    group: str = "default",
) -> list[Observation]:
    """The observations of one periodic event (one per row; one without fields if empty)."""
    event_id = f"snap-{next(_ids)}"
    if not rows:
        return [obs(name, {}, at=at, device=device, group=group, event_id=event_id)]
    return [
        obs(name, row, at=at, device=device, group=group, event_id=event_id, row=index)
        for index, row in enumerate(rows)
    ]


def d2c(count: int, at: datetime | timedelta, *, device: str = "dev-7") -> Observation:
    """The hub's tally of ``count`` accepted device-to-cloud messages."""
    fields = {
        "Category": "DeviceTelemetry",
        "Operation": "d2c",
        "Result": "Success",
        "Properties": {"count": str(count), "bytes": str(count * 500), "protocol": "mqtt"},
    }
    return obs("d2c", fields, at=at, device=device, source="hub")
