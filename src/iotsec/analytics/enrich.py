"""From durable-log entries to enriched observations.

The hub writes security messages (kind ``security``) and operation-log entries (kind
``oplog``) to the durable log; everything else is not for analytics. ``Enricher`` decodes an
entry and attaches the device's context from a ``DeviceDirectory``: its security group and
tags from the registry, and the hub's resource id. The analytics package never imports the hub:
the composition root (``iotsec.cli``) adapts the hub's registry to ``DeviceDirectory``.

>>> from iotsec.stream import Entry, Record
>>> body = (b'{"time": 1735689600.0, "category": "Connections", "operation": "authenticate",'
...         b' "result": "Failure", "protocol": "mqtt", "deviceId": "dev-1",'
...         b' "reason": "expired-token", "sourceIp": "198.51.100.7"}')
>>> enricher = Enricher(StaticDirectory({"dev-1": ("cameras", {})}), hub="/x/IotHubs/hub1")
>>> [obs] = enricher.observations(Entry(0, 9, Record("dev-1", "oplog", body, {}, 1735689600.0)))
>>> obs.name, obs.get("Reason"), obs.get("Group"), obs.event_id
('authenticate', 'expired-token', 'cameras', 'oplog:0:9')
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

import msgspec

from iotsec.analytics.observation import DeviceContext, Observation
from iotsec.schema import (
    ErrorPolicy,
    MessageInvalid,
    MessageTooLarge,
    SecurityMessage,
    decode_message,
)
from iotsec.stream import Entry

__all__ = [
    "HUB_DEVICE",
    "OPLOG_KIND",
    "SECURITY_KIND",
    "DeviceDirectory",
    "Enricher",
    "StaticDirectory",
]

log = logging.getLogger("iotsec.analytics.enrich")

# Durable-log record kinds, as the hub writes them (iotsec.hub is not imported on purpose).
SECURITY_KIND = "security"
OPLOG_KIND = "oplog"
#: The device id of observations that belong to no device (hub configuration, service sign-in).
HUB_DEVICE = "$hub"
#: Hub operations after which a device's group and tags may differ from what was looked up.
_CONTEXT_CHANGES = frozenset({"createOrUpdateDevice", "deleteDevice", "updateTwin", "replaceTwin"})


class DeviceDirectory(Protocol):
    """Looks up a device's context (group, tags); unknown devices still get a context.

    A directory that caches may also have ``forget(device_id)``: the enricher calls it when the
    log shows the device's identity or twin changed (a new device is usually tagged with its
    security group right after it is created), so its next observation is looked up afresh.
    """

    def context(self, device_id: str, module_id: str | None) -> DeviceContext:
        """The context of ``device_id`` (``known=False`` when the registry has no such device)."""
        ...


@dataclass
class StaticDirectory:
    """A directory from a mapping of device id to (group, tags); shipped for tests and tools."""

    devices: Mapping[str, tuple[str, Mapping[str, str]]] = field(default_factory=dict)
    hub: str = ""

    def context(self, device_id: str, module_id: str | None) -> DeviceContext:
        known = self.devices.get(device_id)
        if known is None:
            return DeviceContext(device_id, module_id, hub=self.hub, known=False)
        group, tags = known
        return DeviceContext(device_id, module_id, group=group, tags=tags, hub=self.hub)


class _OplogEntry(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """The hub's operation-log entry, as much of it as analytics reads."""

    time: float
    category: str
    operation: str
    result: str = "Success"
    protocol: str | None = None
    device_id: str | None = None
    module_id: str | None = None
    source_ip: str | None = None
    reason: str | None = None
    detail: str | None = None
    properties: dict[str, str] = msgspec.field(default_factory=dict)


_oplog_decoder = msgspec.json.Decoder(_OplogEntry)
# The hub stores a security message as it decoded and normalized it, re-encoded: canonical, so
# a typed decode gives the same message as ``decode_message``, in a third of the time. A body
# that does not decode that way (written by something else) takes the full decoder.
_canonical_decoder = msgspec.json.Decoder(SecurityMessage)
_row_to_builtins = msgspec.to_builtins


class Enricher:
    """Decodes log entries into observations with their device context."""

    def __init__(self, directory: DeviceDirectory, *, hub: str = "") -> None:
        self.directory = directory
        self.hub = hub
        #: Entries that could not be decoded (the workspace dead-letters them with the reason).
        self.undecodable = 0

    def observations(self, entry: Entry) -> list[Observation]:
        """The observations of one log entry (none for kinds analytics does not read)."""
        kind = entry.record.kind
        if kind == SECURITY_KIND:
            return self._security(entry)
        if kind == OPLOG_KIND:
            return self._oplog(entry)
        return []

    def _context(self, device_id: str, module_id: str | None) -> DeviceContext:
        context = self.directory.context(device_id, module_id)
        if self.hub and not context.hub:
            context = DeviceContext(
                context.device_id,
                context.module_id,
                group=context.group,
                tags=context.tags,
                hub=self.hub,
                known=context.known,
            )
        return context

    def _security(self, entry: Entry) -> list[Observation]:
        record = entry.record
        try:
            message = _canonical_decoder.decode(record.body)
        except (msgspec.ValidationError, msgspec.DecodeError):
            message = None
        try:
            if message is None:
                message = decode_message(record.body, policy=ErrorPolicy.KEEP_VALID).message
        except (MessageInvalid, MessageTooLarge) as exc:
            self.undecodable += 1
            log.warning("security record %d:%d does not decode: %s", *_at(entry), exc)
            return []
        device = self._context(record.header("device_id") or record.key, record.header("module_id"))
        position = _at(entry)
        out: list[Observation] = []
        append = out.append
        # The hottest loop of analytics: per event what its rows share, positional arguments,
        # and the rows turned into dicts in one call.
        for event in message.events:
            name, event_id = event.name, event.id
            time = event.timestamp_utc.astimezone(UTC)
            category, event_type = event.category, event.event_type
            rows = event.payload
            # The hit count of an aggregated event (``aggregation_of``), read without its
            # window's times, which analytics does not use.
            count = rows[0].extra_details.get("HitCount") if rows else None
            hits = 1 if count is None else int(count)
            if not rows:
                append(
                    Observation(
                        "agent", name, time, device, {}, event_id, 0, hits, category, event_type,
                        position,
                    )
                )  # fmt: skip
                continue
            for index, fields in enumerate(_row_to_builtins(rows, builtin_types=(datetime,))):
                append(
                    Observation(
                        "agent", name, time, device, fields, event_id, index, hits, category,
                        event_type, position,
                    )
                )  # fmt: skip
        return out

    def _oplog(self, entry: Entry) -> list[Observation]:
        try:
            op = _oplog_decoder.decode(entry.record.body)
        except msgspec.DecodeError as exc:
            self.undecodable += 1
            log.warning("oplog record %d:%d does not decode: %s", *_at(entry), exc)
            return []
        fields: dict[str, object] = {
            "Category": op.category,
            "Operation": op.operation,
            "Result": op.result,
            "Protocol": op.protocol,
            "SourceIp": op.source_ip,
            "Reason": op.reason,
            "Detail": op.detail,
            "Properties": dict(op.properties),
        }
        device_id = op.device_id or HUB_DEVICE
        if op.device_id and op.operation in _CONTEXT_CHANGES and op.result == "Success":
            forget = getattr(self.directory, "forget", None)
            if forget is not None:
                forget(op.device_id)
        return [
            Observation(
                source="hub",
                name=op.operation,
                time=datetime.fromtimestamp(op.time, UTC),
                device=self._context(device_id, op.module_id),
                fields={k: v for k, v in fields.items() if v is not None},
                event_id="oplog:{}:{}".format(*_at(entry)),
                category=op.category,
                event_type="Hub",
                position=_at(entry),
            )
        ]


def _at(entry: Entry) -> tuple[int, int]:
    return entry.partition, entry.offset
