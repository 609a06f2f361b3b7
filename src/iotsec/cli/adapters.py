"""Adapters between the hub, analytics and the workspace (the composition root's glue).

The three never import each other. Here the hub's registry becomes analytics' device directory
and hub state, and analytics' alerts, recommendations and device inventory become rows of the
workspace's SecurityAlert, SecurityRecommendation and Device tables.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec
import pyarrow as pa  # type: ignore[import-untyped]  # pyarrow ships no type hints

from iotsec.analytics.alerts import Alert
from iotsec.analytics.observation import DeviceContext
from iotsec.analytics.processor import DeviceRecord
from iotsec.analytics.recommendations import (
    HubDevice,
    HubState,
    RecommendationChange,
    credential_fingerprint,
)
from iotsec.analytics.recommendations import IpFilterRule as AnalyticsIpRule
from iotsec.hub.registry import RegistryStore
from iotsec.workspace.sinks import AlertRow, RecommendationRow
from iotsec.workspace.store import WorkspaceStore

__all__ = [
    "RegistryDirectory",
    "WorkspaceAnalyticsSink",
    "alert_row",
    "hub_state",
    "recommendation_row",
]

PRODUCT = "iotsec"
_TAGS_CACHE_SECONDS = 30.0


class RegistryDirectory:
    """Analytics' ``DeviceDirectory`` over the hub registry, cached for ``ttl`` seconds."""

    def __init__(
        self,
        registry: RegistryStore,
        *,
        hub: str,
        ttl: float = _TAGS_CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._registry = registry
        self._hub = hub
        self._ttl = ttl
        self._clock = clock
        self._cache: dict[str, tuple[float, DeviceContext]] = {}
        self._lock = threading.Lock()

    def context(self, device_id: str, module_id: str | None) -> DeviceContext:
        now = self._clock()
        with self._lock:
            cached = self._cache.get(device_id)
        if cached is not None and now - cached[0] < self._ttl:
            base = cached[1]
        else:
            base = self._load(device_id)
            with self._lock:
                self._cache[device_id] = (now, base)
        if module_id == base.module_id:
            return base
        return DeviceContext(
            device_id, module_id, group=base.group, tags=base.tags, hub=base.hub, known=base.known
        )

    def forget(self, device_id: str) -> None:
        """Drop ``device_id``'s cached context (its identity or twin changed)."""
        with self._lock:
            self._cache.pop(device_id, None)

    def _load(self, device_id: str) -> DeviceContext:
        identity = self._registry.identity(device_id, None)
        if identity is None:
            return DeviceContext(device_id, None, hub=self._hub, known=False)
        twin = self._registry.get_twin(device_id)
        tags = {k: str(v) for k, v in twin.tags.items() if isinstance(v, str | int | float | bool)}
        group = self._registry.security_group(device_id)
        return DeviceContext(device_id, None, group=group, tags=tags, hub=self._hub)


def hub_state(registry: RegistryStore, *, hub: str, limit: int = 100_000) -> HubState:
    """The registry and hub configuration as analytics' ``HubState`` (for hub recommendations).

    Credentials become fingerprints (SHA-256), never the keys themselves.
    """
    devices = []
    for identity in registry.list_devices(limit=limit):
        secrets: list[str] = []
        if identity.keys is not None:
            secrets += [identity.keys.primary, identity.keys.secondary]
        if identity.thumbprints is not None:
            secrets += [
                t for t in (identity.thumbprints.primary, identity.thumbprints.secondary) if t
            ]
        devices.append(
            HubDevice(
                device=DeviceContext(
                    identity.device_id,
                    group=registry.security_group(identity.device_id),
                    hub=hub,
                ),
                credentials=tuple(credential_fingerprint(s) for s in secrets if s),
                enabled=identity.enabled,
                created=identity.created,
            )
        )
    config = registry.hub_configuration()
    return HubState(
        hub=hub,
        devices=tuple(devices),
        ip_filter_rules=tuple(
            AnalyticsIpRule(rule.name, rule.action, rule.ip_mask) for rule in config.ip_filter_rules
        ),
        ip_filter_default=config.ip_filter_default_action,
        min_tls_version=config.min_tls_version,
    )


def alert_row(alert: Alert) -> AlertRow:
    """The SecurityAlert row of ``alert`` (ASC's columns; evidence in ExtendedProperties)."""
    extended: dict[str, Any] = {
        **dict(alert.properties),
        "DeviceId": alert.device_id,
        "Count": alert.count,
        "EvidenceEventIds": list(alert.evidence),
        "EvidenceTotal": alert.evidence_total,
        "Origin": alert.origin,
        "SecurityGroup": alert.group,
    }
    if alert.status_reason:
        extended["StatusReason"] = alert.status_reason
        extended["StatusBy"] = alert.status_by or ""
    return AlertRow(
        time_generated=alert.updated,
        system_alert_id=alert.alert_id,
        alert_name=alert.rule_id,
        alert_severity=alert.severity,
        display_name=alert.display_name,
        alert_type=alert.rule_id,
        description=alert.description,
        vendor_name=PRODUCT,
        vendor_original_id=alert.dedup_key,
        resource_id=alert.hub or None,
        device_id=alert.device_id,
        is_incident=False,
        start_time=alert.start_time,
        end_time=alert.end_time,
        processing_end_time=alert.updated,
        remediation_steps=list(alert.remediation),
        extended_properties=extended,
        entities=[{"Type": "iot-device", "DeviceId": alert.device_id}],
        product_name=PRODUCT,
        status=alert.status,
        compromised_entity=alert.device_id,
        tactics=", ".join(alert.tactics) or None,
        techniques=", ".join(alert.techniques) or None,
    )


def recommendation_row(change: RecommendationChange) -> RecommendationRow:
    """The SecurityRecommendation row of a recommendation as it is after ``change``."""
    tracked = change.recommendation
    finding = tracked.finding
    return RecommendationRow(
        time_generated=tracked.status_changed,
        recommendation_id=tracked.recommendation_id,
        recommendation_name=finding.kind,
        recommendation_severity=finding.severity,
        recommendation_state=tracked.state,
        assessed_resource_id=finding.device.hub or None,
        device_id=finding.device.device_id,
        recommendation_display_name=finding.display_name,
        description=finding.description,
        recommendation_additional_data=_jsonable(finding.additional_data),
        discovered_time_utc=tracked.discovered,
        resolved_time_utc=tracked.resolved,
        first_evaluation_date=tracked.first_evaluated,
        status_change_date=tracked.status_changed,
        provider_name=PRODUCT,
        properties={"Key": finding.key, "Remediation": list(finding.remediation)},
    )


def _jsonable(data: Mapping[str, object]) -> dict[str, Any]:
    converted = msgspec.to_builtins(dict(data))
    return converted if isinstance(converted, dict) else {}


class WorkspaceAnalyticsSink:
    """Writes analytics' alerts, recommendations and device inventory to the workspace."""

    def __init__(self, store: WorkspaceStore) -> None:
        self._store = store

    def write_alerts(self, alerts: Sequence[Alert]) -> int:
        return self._store.write_alerts([alert_row(a) for a in alerts]) if alerts else 0

    def write_recommendations(self, changes: Sequence[RecommendationChange]) -> int:
        if not changes:
            return 0
        return self._store.write_recommendations([recommendation_row(c) for c in changes])

    def write_devices(self, records: Sequence[DeviceRecord]) -> int:
        if not records:
            return 0
        rows: dict[str, list[object]] = {
            name: []
            for name in (
                "TimeGenerated",
                "DeviceId",
                "ResourceId",
                "SecurityGroup",
                "FirstSeen",
                "LastSeen",
                "RiskScore",
                "RiskLevel",
                "Tags",
            )
        }
        for record in records:
            risk = record.risk
            explanation = (
                [f"+{c.points:g} {c.source}: {c.name}" for c in risk.contributions] if risk else []
            )
            rows["TimeGenerated"].append(record.updated.astimezone(UTC))
            rows["DeviceId"].append(record.device_id)
            rows["ResourceId"].append(record.hub or None)
            rows["SecurityGroup"].append(record.group or None)
            rows["FirstSeen"].append(record.first_seen)
            rows["LastSeen"].append(record.last_seen)
            rows["RiskScore"].append(float(risk.score) if risk else None)
            rows["RiskLevel"].append(risk.level if risk else None)
            rows["Tags"].append(msgspec.json.encode({"RiskExplanation": explanation}).decode())
        table = pa.table(
            {
                **rows,
                "TimeGenerated": pa.array(rows["TimeGenerated"], pa.timestamp("us", tz="UTC")),
                "FirstSeen": pa.array(rows["FirstSeen"], pa.timestamp("us", tz="UTC")),
                "LastSeen": pa.array(rows["LastSeen"], pa.timestamp("us", tz="UTC")),
            }
        )
        return self._store.upsert_devices(table)


def utc_now() -> datetime:
    """Now, aware, in UTC."""
    return datetime.now(UTC)
