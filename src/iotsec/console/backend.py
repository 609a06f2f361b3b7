"""``ConsoleBackend``: everything the console reads and changes, as one async protocol.

The console imports nothing of the hub, the workspace or analytics. It is handed a backend by
the composition root (``iotsec.cli``): normally ``ServiceApiBackend``, which calls the server's
own service API over HTTPS; in tests ``MemoryBackend`` with fixture data.

Failures are typed (``iotsec.console.errors``): ``NotFound`` for a missing device or alert,
``NotConfigured`` when the server has no route for a feature yet (the page then says "not
configured"), ``ActionRefused`` for a refused change, ``QueryFailed`` for a query that did not
run, ``BackendError`` for the rest.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from iotsec.console.models import (
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

__all__ = ["ConsoleBackend"]


class ConsoleBackend(Protocol):
    """The console's view of the server: the registry, the workspace, analytics settings."""

    async def devices(self) -> Sequence[DeviceSummary]:
        """Every device, with its group, last seen, risk and open alert counts."""
        ...

    async def device(self, device_id: str) -> DeviceDetail:
        """One device with its twin and risk explanation; ``NotFound`` when there is none."""
        ...

    async def alerts(
        self, *, device_id: str | None = None, open_only: bool = False, limit: int = 200
    ) -> Sequence[Alert]:
        """Alerts, newest first; of one device, or only those still open."""
        ...

    async def alert(self, alert_id: str) -> Alert:
        """One alert; ``NotFound`` when there is none."""
        ...

    async def alert_timeline(self, *, days: int = 14) -> Sequence[AlertDay]:
        """Alerts per day and severity over the last ``days`` days."""
        ...

    async def recommendations(
        self, *, device_id: str | None = None, active_only: bool = True, limit: int = 500
    ) -> Sequence[Recommendation]:
        """Recommendations, most severe first; of one device, or only active ones."""
        ...

    async def raw_events(self, device_id: str, *, limit: int = 50) -> Sequence[RawEvent]:
        """A device's latest raw security events, newest first."""
        ...

    async def events_by_id(self, raw_event_ids: Sequence[str]) -> Sequence[RawEvent]:
        """The raw events with these ids (an alert's evidence); ids not found are left out."""
        ...

    async def query(self, text: str, *, max_rows: int) -> QueryTable:
        """Run a KQL query on the workspace; ``QueryFailed`` with its position when refused."""
        ...

    async def change_alert_status(
        self, alert_id: str, action: AlertAction, *, reason: str, by: str
    ) -> None:
        """Dismiss or resolve an alert, recording who and why."""
        ...

    async def custom_alerts(self) -> Sequence[GroupRules]:
        """Custom alert rules per device security group; ``NotConfigured`` without the route."""
        ...

    async def set_custom_alerts(self, group: str, rules: Mapping[str, Any]) -> None:
        """Replace one group's custom alert rules; ``ActionRefused`` names what is invalid."""
        ...

    async def intel_feeds(self) -> Sequence[FeedStatus]:
        """Threat-intelligence feeds and their load status; ``NotConfigured`` without the route."""
        ...

    async def put_intel_feed(self, feed: FeedSettings, *, password: str | None = None) -> None:
        """Add the feed, or replace the feed of that name; ``ActionRefused`` names the field at
        fault. ``password`` None keeps the feed's password, ``""`` removes it."""
        ...

    async def delete_intel_feed(self, name: str) -> None:
        """Remove a feed; ``NotFound`` when there is none."""
        ...
