"""What the console shows, as typed frozen values the backend builds from service API answers.

Raw JSON stays at the backend's edge; pages and templates see these. Times are aware (UTC).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, Literal

__all__ = [
    "FEED_FIELDS",
    "LIST_KINDS",
    "OPEN_STATUSES",
    "SEVERITIES",
    "Alert",
    "AlertAction",
    "AlertDay",
    "DeviceDetail",
    "DeviceSummary",
    "FeedSettings",
    "FeedStatus",
    "GroupRules",
    "QueryColumn",
    "QueryTable",
    "RawEvent",
    "Recommendation",
]

#: Severities, most severe first (ASC's vocabulary).
SEVERITIES = ("High", "Medium", "Low", "Informational")
#: Alert statuses that still want an operator: "New" in ASC's table, "Active" in iotsec's lifecycle.
OPEN_STATUSES = ("New", "Active")

AlertAction = Literal["dismiss", "resolve"]

_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class DeviceSummary:
    """A device in the fleet list: identity, status, group, last seen and risk."""

    device_id: str
    status: str
    connection_state: str = "Disconnected"
    auth_type: str = "sas"
    group: str | None = None
    last_seen: datetime | None = None
    risk_score: float | None = None
    risk_level: str | None = None
    open_alerts: int = 0
    high_alerts: int = 0

    @property
    def risk_rank(self) -> tuple[float, int, int]:
        """Sort key, riskiest first when sorted descending; unscored devices sort by alerts."""
        score = -1.0 if self.risk_score is None else self.risk_score
        return (score, self.high_alerts, self.open_alerts)


@dataclass(frozen=True, slots=True)
class DeviceDetail:
    """One device: its summary, twin (tags and properties, without credentials) and risk."""

    summary: DeviceSummary
    twin: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    first_seen: datetime | None = None
    #: Why the risk is what it is: lines from the Device row, or counted from alerts.
    risk_explanation: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Alert:
    """A SecurityAlert row: what fired, on which device, why, and its status."""

    alert_id: str
    time: datetime | None
    name: str
    display_name: str
    severity: str
    status: str
    device_id: str | None
    description: str = ""
    #: The rule that fired (AlertType: ``IoT_ReverseShell``, ``IoT_CA_...``).
    rule: str = ""
    provider: str = ""
    start_time: datetime | None = None
    end_time: datetime | None = None
    tactics: tuple[str, ...] = ()
    techniques: tuple[str, ...] = ()
    remediation: tuple[str, ...] = ()
    extended_properties: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    entities: Sequence[Any] = ()
    #: Ids of the raw events that caused it (``<event id>:<row>``, or ``oplog:...``).
    evidence: tuple[str, ...] = ()

    @property
    def is_open(self) -> bool:
        """Whether an operator can still dismiss or resolve it."""
        return self.status in OPEN_STATUSES


@dataclass(frozen=True, slots=True)
class AlertDay:
    """How many alerts of one severity started in one time bucket."""

    start: datetime
    severity: str
    count: int


@dataclass(frozen=True, slots=True)
class Recommendation:
    """A SecurityRecommendation row."""

    recommendation_id: str
    time: datetime | None
    device_id: str | None
    name: str
    display_name: str
    severity: str
    state: str
    description: str = ""
    additional_data: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    discovered: datetime | None = None
    resolved: datetime | None = None


@dataclass(frozen=True, slots=True)
class RawEvent:
    """A SecurityIoTRawEvent row: one payload row of one security event."""

    raw_event_id: str
    time: datetime | None
    device_id: str | None
    name: str
    category: str
    event_type: str
    details: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)


@dataclass(frozen=True, slots=True)
class QueryColumn:
    """A result column and its KQL type."""

    name: str
    type: str

    @property
    def is_numeric(self) -> bool:
        """Whether the column holds numbers a chart can plot."""
        return self.type in ("long", "real", "int", "decimal")


@dataclass(frozen=True, slots=True)
class QueryTable:
    """A query's answer: typed columns, rows of JSON values, and whether it was cut short."""

    columns: tuple[QueryColumn, ...]
    rows: tuple[tuple[Any, ...], ...]
    truncated: bool = False
    reason: str | None = None
    elapsed_ms: float = 0.0
    #: The query's ``render`` directive (``timechart``, ...), when it had one.
    render: str | None = None


@dataclass(frozen=True, slots=True)
class GroupRules:
    """The custom alert rules of one device security group, in ASC's four rule families."""

    group: str
    #: ``thresholdRules``/``timeWindowRules``/``allowlistRules``/``denylistRules`` lists.
    rules: Mapping[str, Any] = field(default_factory=dict)

    @property
    def rule_count(self) -> int:
        """How many rules the group has, over all families."""
        return sum(len(v) for v in self.rules.values() if isinstance(v, list))


#: The settings each kind of feed uses, besides its name and refresh (``analytics.yaml`` keys).
FEED_FIELDS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "list-file": ("path", "list_kind"),
        "stix-file": ("path",),
        "taxii": ("url", "collection", "api_root", "username", "ca_file"),
    }
)
#: What every line of a ``list-file`` feed holds (``auto`` detects each line).
LIST_KINDS = ("auto", "ip", "domain", "url", "hash")
_DECIMAL = re.compile(r"[0-9]+(?:\.[0-9]+)?")
_ALL_FEED_FIELDS = ("path", "list_kind", "url", "collection", "api_root", "username", "ca_file")


@dataclass(frozen=True, slots=True)
class FeedSettings:
    """A threat-intelligence feed's settings as the console edits them (never its password).

    Every value is text as a form holds it; an empty one is not set. ``refresh`` is seconds or
    a duration such as ``15m`` (the server's parser decides).

    >>> FeedSettings("lab", "list-file", path="lab.txt", url="left over", refresh="3600").body()
    {'kind': 'list-file', 'path': 'lab.txt', 'list_kind': 'auto', 'refresh': 3600}
    """

    name: str
    kind: str = "list-file"
    path: str = ""
    list_kind: str = "auto"
    url: str = ""
    collection: str = ""
    api_root: str = ""
    username: str = ""
    ca_file: str = ""
    refresh: str = ""
    #: The server keeps a password for it (it never tells which).
    has_password: bool = False

    def body(self, *, password: str | None = None) -> dict[str, Any]:
        """The service API's PUT body: the kind's fields that are set, and ``password`` if given
        (``""`` removes the feed's password; None keeps it)."""
        out: dict[str, Any] = {"kind": self.kind}
        for key in FEED_FIELDS.get(self.kind, _ALL_FEED_FIELDS):
            value = getattr(self, key).strip()
            if value:
                out[key] = value
        refresh = self.refresh.strip()
        if refresh:
            out["refresh"] = _number(refresh)
        if password is not None:
            out["password"] = password
        return out


def _number(text: str) -> int | float | str:
    """``"3600"`` as a number (the parser reads a string as a duration such as ``"1h"``)."""
    if not _DECIMAL.fullmatch(text):
        return text
    value = float(text)
    return int(value) if value.is_integer() else value


@dataclass(frozen=True, slots=True)
class FeedStatus:
    """A threat-intelligence feed, its settings, and how its last load went."""

    name: str
    kind: str
    source: str = ""
    enabled: bool = True
    indicators: int | None = None
    last_loaded: datetime | None = None
    last_error: str | None = None
    last_attempt: datetime | None = None
    #: Whether the last load attempt succeeded (True before the first).
    ok: bool = True
    skipped: int = 0
    #: What an admin edits; None when the server does not say.
    settings: FeedSettings | None = None
