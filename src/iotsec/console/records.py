"""From service API JSON (registry bodies, query rows) to the console's typed values.

The edge where raw dicts end: each function takes what one route answers and tolerates the
variants it may hold (a dynamic column as text or parsed, a list or a comma-separated string).

>>> table = table_from({"columns": [{"name": "DeviceId", "type": "string"}],
...                     "rows": [["dev-1"]], "truncated": False})
>>> records(table)
[{'DeviceId': 'dev-1'}]
>>> split_list("T1059, T1105")
('T1059', 'T1105')
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from iotsec.console.models import (
    Alert,
    DeviceSummary,
    FeedSettings,
    FeedStatus,
    GroupRules,
    QueryColumn,
    QueryTable,
    RawEvent,
    Recommendation,
)

__all__ = [
    "EVIDENCE_KEYS",
    "RISK_KEYS",
    "alert_from",
    "device_summary",
    "feed_from",
    "feed_settings_from",
    "group_rules_from",
    "merge_workspace",
    "raw_event_from",
    "recommendation_from",
    "records",
    "risk_lines",
    "split_list",
    "table_from",
    "time_of",
]

#: Where an alert row keeps its evidence event ids (in ExtendedProperties), first found wins.
EVIDENCE_KEYS = ("EvidenceEventIds", "Evidence", "evidence")
#: Where a Device row keeps why its risk is what it is (in Tags), first found wins.
RISK_KEYS = ("RiskExplanation", "RiskFactors", "riskExplanation")
#: IoT Hub's "never" (a device that never connected).
_NEVER_YEAR = 1


def time_of(value: object) -> datetime | None:
    """An ISO 8601 time (as the query API and the registry write them) as an aware datetime."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.year <= _NEVER_YEAR:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _json(value: object) -> object:
    """A dynamic value that may arrive as JSON text."""
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
    return value


def _mapping(value: object) -> dict[str, Any]:
    parsed = _json(value)
    return dict(parsed) if isinstance(parsed, dict) else {}


def _text(value: object) -> str:
    return "" if value is None else str(value)


def split_list(value: object) -> tuple[str, ...]:
    """A list, or a comma- (or newline-) separated string, as a tuple of non-empty strings."""
    parsed = _json(value)
    if isinstance(parsed, str):
        parts: Iterable[object] = parsed.replace("\n", ",").split(",")
    elif isinstance(parsed, list | tuple):
        parts = parsed
    else:
        return ()
    return tuple(s for s in (str(p).strip() for p in parts if p is not None) if s)


def table_from(answer: object) -> QueryTable:
    """The query API's JSON answer as a ``QueryTable``."""
    if not isinstance(answer, dict):
        raise ValueError("a query answer is a JSON object")
    columns = tuple(
        QueryColumn(str(c.get("name", "")), str(c.get("type", "dynamic")))
        for c in answer.get("columns", [])
        if isinstance(c, dict)
    )
    rows = tuple(tuple(row) for row in answer.get("rows", []) if isinstance(row, list))
    render = answer.get("render")
    kind = render.get("kind") if isinstance(render, dict) else render
    return QueryTable(
        columns=columns,
        rows=rows,
        truncated=bool(answer.get("truncated", False)),
        reason=answer.get("reason"),
        elapsed_ms=float(answer.get("elapsedMs") or 0.0),
        render=str(kind) if kind else None,
    )


def records(table: QueryTable) -> list[dict[str, Any]]:
    """The rows of ``table`` as dicts by column name."""
    names = [c.name for c in table.columns]
    return [dict(zip(names, row, strict=False)) for row in table.rows]


def _group_of(tags: object) -> str | None:
    for key, value in _mapping(tags).items():
        if key.lower() == "securitygroup" and isinstance(value, str) and value:
            return value
    return None


def device_summary(
    identity: Mapping[str, Any], twin: Mapping[str, Any] | None = None
) -> DeviceSummary:
    """A registry ``Device`` body (and its twin, for the group) as a summary; keys are dropped."""
    auth = identity.get("authentication")
    return DeviceSummary(
        device_id=str(identity.get("deviceId", "")),
        status=str(identity.get("status", "enabled")),
        connection_state=str(identity.get("connectionState", "Disconnected")),
        auth_type=str(auth.get("type", "sas")) if isinstance(auth, dict) else "sas",
        group=_group_of(twin.get("tags")) if twin else None,
        last_seen=time_of(identity.get("lastActivityTime")),
    )


def merge_workspace(
    devices: Sequence[DeviceSummary],
    rows: Sequence[Mapping[str, Any]],
    seen: Sequence[Mapping[str, Any]],
    counts: Sequence[Mapping[str, Any]],
) -> list[DeviceSummary]:
    """Registry devices, with group, last seen and risk from the workspace's rows for them."""
    by_id = {str(r.get("DeviceId")): r for r in rows}
    seen_by = {str(r.get("DeviceId")): time_of(r.get("LastSeen")) for r in seen}
    count_by = {str(r.get("DeviceId")): r for r in counts}
    merged = []
    for device in devices:
        row = by_id.get(device.device_id, {})
        count = count_by.get(device.device_id, {})
        times = [
            t
            for t in (device.last_seen, time_of(row.get("LastSeen")), seen_by.get(device.device_id))
            if t is not None
        ]
        score = row.get("RiskScore")
        merged.append(
            dataclasses.replace(
                device,
                group=device.group or (_text(row.get("SecurityGroup")) or None),
                last_seen=max(times) if times else None,
                risk_score=float(score) if isinstance(score, int | float) else None,
                risk_level=_text(row.get("RiskLevel")) or None,
                open_alerts=int(count.get("Open") or 0),
                high_alerts=int(count.get("High") or 0),
            )
        )
    return merged


def risk_lines(tags: object) -> tuple[str, ...]:
    """The risk explanation a Device row carries in its tags, as lines."""
    found = _mapping(tags)
    for key in RISK_KEYS:
        if key in found:
            value = found[key]
            if isinstance(value, dict):
                return tuple(f"{k}: {v}" for k, v in value.items())
            return split_list(value) if not isinstance(value, str) else (value,)
    return ()


def _steps(value: object) -> tuple[str, ...]:
    """Remediation steps: a JSON list, or one text that may itself hold commas."""
    parsed = _json(value)
    if isinstance(parsed, list):
        return split_list(parsed)
    return (str(parsed),) if parsed else ()


def alert_from(row: Mapping[str, Any]) -> Alert:
    """A SecurityAlert row as an ``Alert``; evidence ids come from its ExtendedProperties."""
    extended = _mapping(row.get("ExtendedProperties"))
    evidence: tuple[str, ...] = ()
    for key in EVIDENCE_KEYS:
        if key in extended:
            evidence = split_list(extended[key])
            break
    entities = _json(row.get("Entities"))
    name = _text(row.get("AlertName")) or _text(row.get("AlertType"))
    return Alert(
        alert_id=_text(row.get("SystemAlertId")),
        time=time_of(row.get("TimeGenerated")),
        name=name,
        display_name=_text(row.get("DisplayName")) or name,
        severity=_text(row.get("AlertSeverity")) or "Informational",
        status=_text(row.get("Status")) or "New",
        device_id=_text(row.get("DeviceId")) or _text(extended.get("DeviceId")) or None,
        description=_text(row.get("Description")),
        rule=_text(row.get("AlertType")) or name,
        provider=_text(row.get("ProviderName")),
        start_time=time_of(row.get("StartTime")),
        end_time=time_of(row.get("EndTime")),
        tactics=split_list(row.get("Tactics")),
        techniques=split_list(row.get("Techniques")),
        remediation=_steps(row.get("RemediationSteps")),
        extended_properties=extended,
        entities=tuple(entities) if isinstance(entities, list) else (),
        evidence=evidence,
    )


def recommendation_from(row: Mapping[str, Any]) -> Recommendation:
    """A SecurityRecommendation row as a ``Recommendation``."""
    name = _text(row.get("RecommendationName"))
    return Recommendation(
        recommendation_id=_text(row.get("RecommendationId")),
        time=time_of(row.get("TimeGenerated")),
        device_id=_text(row.get("DeviceId")) or None,
        name=name,
        display_name=_text(row.get("RecommendationDisplayName")) or name,
        severity=_text(row.get("RecommendationSeverity")) or "Informational",
        state=_text(row.get("RecommendationState")) or "Active",
        description=_text(row.get("Description")),
        additional_data=_mapping(row.get("RecommendationAdditionalData")),
        discovered=time_of(row.get("DiscoveredTimeUTC")),
        resolved=time_of(row.get("ResolvedTimeUTC")),
    )


def raw_event_from(row: Mapping[str, Any]) -> RawEvent:
    """A SecurityIoTRawEvent row as a ``RawEvent``."""
    return RawEvent(
        raw_event_id=_text(row.get("IoTRawEventId")),
        time=time_of(row.get("TimeGenerated")),
        device_id=_text(row.get("DeviceId")) or None,
        name=_text(row.get("RawEventName")),
        category=_text(row.get("RawEventCategory")),
        event_type=_text(row.get("RawEventType")),
        details=_mapping(row.get("EventDetails")),
    )


def group_rules_from(answer: object) -> list[GroupRules]:
    """Custom alert groups: ARM's ``{"value": [{"name", "properties"}]}``, a list, or a map."""
    items = answer.get("value", answer) if isinstance(answer, dict) else answer
    if isinstance(items, dict):
        return [GroupRules(str(k), _mapping(v)) for k, v in sorted(items.items())]
    if not isinstance(items, list):
        return []
    out = []
    for item in items:
        if isinstance(item, dict):
            group = _text(item.get("name") or item.get("group"))
            rules = item.get("properties", item.get("rules", item.get("customAlerts")))
            out.append(GroupRules(group, _mapping(rules)))
    return out


def feed_from(item: Mapping[str, Any]) -> FeedStatus:
    """One entry of the feed list as a ``FeedStatus`` (with its settings when it has them)."""
    count = item.get("indicatorCount", item.get("indicators"))
    error = item.get("lastError")
    skipped = item.get("skipped")
    config = item.get("config")
    return FeedStatus(
        name=_text(item.get("name")),
        kind=_text(item.get("kind") or item.get("type")),
        source=_text(item.get("source") or item.get("url") or item.get("path")),
        enabled=bool(item.get("enabled", True)),
        indicators=int(count) if isinstance(count, int | float) else None,
        last_loaded=time_of(item.get("lastLoaded")),
        last_error=_text(error) if error else None,
        last_attempt=time_of(item.get("lastAttempt")),
        ok=bool(item.get("ok", not error)),
        skipped=int(skipped) if isinstance(skipped, int | float) else 0,
        settings=(
            feed_settings_from(config, has_password=bool(item.get("hasPassword")))
            if isinstance(config, Mapping)
            else None
        ),
    )


def feed_settings_from(config: Mapping[str, Any], *, has_password: bool = False) -> FeedSettings:
    """A feed's settings as the API answers them (``analytics.yaml`` keys) as form values.

    >>> feed_settings_from({"name": "lab", "kind": "list-file", "path": "lab.txt",
    ...                     "refresh": 900.0}).refresh
    '900'
    """
    refresh = config.get("refresh")
    if isinstance(refresh, float) and refresh.is_integer():
        refresh = int(refresh)
    return FeedSettings(
        name=_text(config.get("name")),
        kind=_text(config.get("kind")),
        path=_text(config.get("path")),
        list_kind=_text(config.get("list_kind") or "auto"),
        url=_text(config.get("url")),
        collection=_text(config.get("collection")),
        api_root=_text(config.get("api_root")),
        username=_text(config.get("username")),
        ca_file=_text(config.get("ca_file")),
        refresh=_text(refresh),
        has_password=has_password,
    )
