"""``MemoryBackend``: a ``ConsoleBackend`` over fixture data, shipped for tests and demos.

>>> import asyncio
>>> from iotsec.console.models import DeviceDetail, DeviceSummary
>>> backend = MemoryBackend(devices=[DeviceDetail(DeviceSummary("dev-1", "enabled"))])
>>> [d.device_id for d in asyncio.run(backend.devices())]
['dev-1']
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from iotsec.console.errors import ActionRefused, NotConfigured, NotFound, QueryFailed
from iotsec.console.models import (
    FEED_FIELDS,
    SEVERITIES,
    Alert,
    AlertAction,
    AlertDay,
    DeviceDetail,
    DeviceSummary,
    FeedSettings,
    FeedStatus,
    GroupRules,
    QueryTable,
    RawEvent,
    Recommendation,
)

__all__ = ["AlertChange", "MemoryBackend"]

_FAR_PAST = datetime(1970, 1, 1).astimezone()


def _newest_first(items: Iterable[Any]) -> list[Any]:
    return sorted(items, key=lambda item: item.time or _FAR_PAST, reverse=True)


def _no_query(text: str, max_rows: int) -> QueryTable:
    raise QueryFailed("this backend runs no queries", status=400)


@dataclass(frozen=True, slots=True)
class AlertChange:
    """A dismiss or resolve the backend was asked for."""

    alert_id: str
    action: AlertAction
    reason: str
    by: str


class MemoryBackend:
    """Fixture devices, alerts, recommendations and events; changes are applied and recorded.

    ``groups`` or ``feeds`` left as None behave like a server without those routes
    (``NotConfigured``). ``run_query`` answers the query page. A feed put here is checked only
    for what its kind needs (the server's parser checks the rest) and is not loaded.
    """

    def __init__(
        self,
        *,
        devices: Sequence[DeviceDetail] = (),
        alerts: Sequence[Alert] = (),
        recommendations: Sequence[Recommendation] = (),
        events: Sequence[RawEvent] = (),
        groups: Sequence[GroupRules] | None = None,
        feeds: Sequence[FeedStatus] | None = None,
        run_query: Callable[[str, int], QueryTable] = _no_query,
        alert_actions: bool = True,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        self._devices = {d.summary.device_id: d for d in devices}
        self._alerts = {a.alert_id: a for a in alerts}
        self._recommendations = list(recommendations)
        self._events = list(events)
        self._groups = None if groups is None else {g.group: g for g in groups}
        self._feeds = None if feeds is None else list(feeds)
        self._run_query = run_query
        self._alert_actions = alert_actions
        self._now = now
        self.changes: list[AlertChange] = []
        self.queries: list[str] = []

    def _counted(self, summary: DeviceSummary) -> DeviceSummary:
        open_alerts = [
            a for a in self._alerts.values() if a.device_id == summary.device_id and a.is_open
        ]
        return dataclasses.replace(
            summary,
            open_alerts=len(open_alerts),
            high_alerts=sum(a.severity == "High" for a in open_alerts),
        )

    async def devices(self) -> Sequence[DeviceSummary]:
        summaries = [self._counted(d.summary) for d in self._devices.values()]
        return sorted(summaries, key=lambda d: d.risk_rank, reverse=True)

    async def device(self, device_id: str) -> DeviceDetail:
        try:
            detail = self._devices[device_id]
        except KeyError:
            raise NotFound("device", device_id) from None
        return dataclasses.replace(detail, summary=self._counted(detail.summary))

    async def alerts(
        self, *, device_id: str | None = None, open_only: bool = False, limit: int = 200
    ) -> Sequence[Alert]:
        found = [
            a
            for a in self._alerts.values()
            if (device_id is None or a.device_id == device_id) and (a.is_open or not open_only)
        ]
        return _newest_first(found)[:limit]

    async def alert(self, alert_id: str) -> Alert:
        try:
            return self._alerts[alert_id]
        except KeyError:
            raise NotFound("alert", alert_id) from None

    async def alert_timeline(self, *, days: int = 14) -> Sequence[AlertDay]:
        dated = [a for a in self._alerts.values() if a.time is not None]
        if not dated:
            return []
        latest = self._now() if self._now else max(a.time for a in dated if a.time)
        since = latest - timedelta(days=days)
        counts: dict[tuple[datetime, str], int] = {}
        for alert in dated:
            assert alert.time is not None
            if alert.time >= since:
                day = alert.time.replace(hour=0, minute=0, second=0, microsecond=0)
                counts[day, alert.severity] = counts.get((day, alert.severity), 0) + 1
        return [AlertDay(day, sev, n) for (day, sev), n in sorted(counts.items())]

    async def recommendations(
        self, *, device_id: str | None = None, active_only: bool = True, limit: int = 500
    ) -> Sequence[Recommendation]:
        rank = {s: i for i, s in enumerate(SEVERITIES)}
        found = [
            r
            for r in _newest_first(self._recommendations)
            if (device_id is None or r.device_id == device_id)
            and (r.state == "Active" or not active_only)
        ]
        return sorted(found, key=lambda r: rank.get(r.severity, len(rank)))[:limit]

    async def raw_events(self, device_id: str, *, limit: int = 50) -> Sequence[RawEvent]:
        return _newest_first(e for e in self._events if e.device_id == device_id)[:limit]

    async def events_by_id(self, raw_event_ids: Sequence[str]) -> Sequence[RawEvent]:
        wanted = set(raw_event_ids)
        return [e for e in self._events if e.raw_event_id in wanted]

    async def query(self, text: str, *, max_rows: int) -> QueryTable:
        self.queries.append(text)
        return self._run_query(text, max_rows)

    async def change_alert_status(
        self, alert_id: str, action: AlertAction, *, reason: str, by: str
    ) -> None:
        if not self._alert_actions:
            raise NotConfigured("dismissing and resolving alerts")
        alert = await self.alert(alert_id)
        if not alert.is_open:
            raise ActionRefused(f"alert {alert_id} is {alert.status}", status=409)
        status = "Dismissed" if action == "dismiss" else "Resolved"
        self._alerts[alert_id] = dataclasses.replace(alert, status=status)
        self.changes.append(AlertChange(alert_id, action, reason, by))

    async def custom_alerts(self) -> Sequence[GroupRules]:
        if self._groups is None:
            raise NotConfigured("custom alerts")
        return list(self._groups.values())

    async def set_custom_alerts(self, group: str, rules: Mapping[str, Any]) -> None:
        if self._groups is None:
            raise NotConfigured("custom alerts")
        known = {"thresholdRules", "timeWindowRules", "allowlistRules", "denylistRules"}
        unknown = sorted(set(rules) - known)
        if unknown:
            raise ActionRefused(f"unknown rule families: {', '.join(unknown)}", status=400)
        self._groups[group] = GroupRules(group, dict(rules))

    async def intel_feeds(self) -> Sequence[FeedStatus]:
        if self._feeds is None:
            raise NotConfigured("threat intelligence")
        return list(self._feeds)

    async def put_intel_feed(self, feed: FeedSettings, *, password: str | None = None) -> None:
        if self._feeds is None:
            raise NotConfigured("managing threat-intelligence feeds")
        if feed.kind not in FEED_FIELDS:
            kinds = ", ".join(FEED_FIELDS)
            raise ActionRefused(
                f"kind: unknown kind {feed.kind!r} ({kinds})", status=400, field="kind"
            )
        needed = ("url", "collection") if feed.kind == "taxii" else ("path",)
        for key in needed:
            if not getattr(feed, key).strip():
                reason = f"{key}: a {feed.kind} feed needs a {key}"
                raise ActionRefused(reason, status=400, field=key)
        old = next((f for f in self._feeds if f.name == feed.name), None)
        keep = old is not None and old.settings is not None and old.settings.has_password
        has_password = bool(password) if password is not None else keep
        settings = dataclasses.replace(feed, has_password=has_password)
        source = feed.path if feed.kind != "taxii" else feed.url
        status = FeedStatus(feed.name, feed.kind, source, settings=settings)
        self._feeds = [status if f.name == feed.name else f for f in self._feeds]
        if old is None:
            self._feeds.append(status)

    async def delete_intel_feed(self, name: str) -> None:
        if self._feeds is None:
            raise NotConfigured("managing threat-intelligence feeds")
        if not any(f.name == name for f in self._feeds):
            raise NotFound("feed", name)
        self._feeds = [f for f in self._feeds if f.name != name]
