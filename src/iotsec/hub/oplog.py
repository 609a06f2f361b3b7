"""Operation logs: the hub's own record of who connected, who failed and why, what changed.

Each entry goes to the durable log (kind ``oplog``) for the analytics pipeline and the
workspace's ``OperationLog`` table. Categories follow IoT Hub's resource-log categories.

Accepted device-to-cloud messages are counted, not logged one by one: ``TelemetryTally`` keeps
a count and a byte total per identity, protocol and source address, and turns them into one
``DeviceTelemetry`` ``d2c`` entry each when flushed (every minute, when an MQTT connection
ends, and when the hub stops). Refused messages and messages with dead-lettered events keep an
entry each, with the reason.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Literal

import msgspec

from iotsec.stream import DurableLog, Record

__all__ = [
    "HUB_KEY",
    "OPLOG_KIND",
    "Category",
    "OperationLog",
    "OperationLogEntry",
    "Protocol",
    "TelemetryKey",
    "TelemetryTally",
]

log = logging.getLogger("iotsec.hub.oplog")

OPLOG_KIND = "oplog"
#: The key of entries that belong to no device (hub configuration, service sign-in).
HUB_KEY = "$hub"

Category = Literal[
    "Connections",
    "DeviceTelemetry",
    "C2DCommands",
    "DeviceIdentityOperations",
    "D2CTwinOperations",
    "C2DTwinOperations",
    "Configurations",
]
Protocol = Literal["mqtt", "https", "service", "cli"]


class OperationLogEntry(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """One operation: what, on which identity, over which protocol, from where, and the result."""

    time: float
    category: Category
    operation: str
    result: Literal["Success", "Failure"] = "Success"
    protocol: Protocol
    device_id: str | None = None
    module_id: str | None = None
    source_ip: str | None = None
    reason: str | None = None
    detail: str | None = None
    properties: dict[str, str] = msgspec.field(default_factory=dict)

    @property
    def level(self) -> str:
        """``Error`` for failures, else ``Information``, as IoT Hub's logs say it."""
        return "Error" if self.result == "Failure" else "Information"


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(OperationLogEntry)


class OperationLog:
    """Appends operation-log entries to the durable log.

    ``record`` waits until the entry is durable; ``record_soon`` does not wait (for paths such as a
    connection closing, where nobody is waiting for an answer) and ``drain`` waits for those.
    """

    def __init__(self, durable: DurableLog) -> None:
        self._log = durable
        self._pending: set[asyncio.Task[None]] = set()

    @staticmethod
    def to_record(entry: OperationLogEntry) -> Record:
        """The durable-log record of ``entry`` (keyed by device, or ``$hub``)."""
        return Record(
            key=entry.device_id or HUB_KEY,
            kind=OPLOG_KIND,
            body=_encoder.encode(entry),
            headers={"category": entry.category, "operation": entry.operation},
            timestamp=entry.time,
        )

    @staticmethod
    def decode(body: bytes) -> OperationLogEntry:
        """Read an entry back from a record body."""
        return _decoder.decode(body)

    async def record(self, entry: OperationLogEntry) -> None:
        """Append ``entry`` and wait until it is durable."""
        await self._log.append([self.to_record(entry)])
        if entry.result == "Failure":
            log.info(
                "%s %s failed for %s: %s",
                entry.category,
                entry.operation,
                entry.device_id or "-",
                entry.reason,
            )

    def record_soon(self, entry: OperationLogEntry) -> None:
        """Append ``entry`` in the background; ``drain`` waits for it."""
        task = asyncio.get_running_loop().create_task(self._append_quietly(entry))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _append_quietly(self, entry: OperationLogEntry) -> None:
        try:
            await self.record(entry)
        except Exception:  # logged, not swallowed: an operator sees the failure
            log.exception(
                "could not append an operation-log entry (%s %s)", entry.category, entry.operation
            )

    async def drain(self) -> None:
        """Wait for every background append."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)


#: Whose messages a tally counts: device id, module id, protocol, source address.
TelemetryKey = tuple[str, str | None, Protocol, str]


@dataclass(slots=True)
class _Count:
    messages: int = 0
    size: int = 0


class TelemetryTally:
    """Counts of accepted device-to-cloud messages per identity, until they are logged.

    I/O-free: ``add`` counts a message, ``take`` returns the entries and starts over.

    >>> tally = TelemetryTally()
    >>> key = ("dev1", None, "mqtt", "10.0.0.7")
    >>> tally.add(key, 4000); tally.add(key, 96)
    >>> [entry] = tally.take(now=60.0)
    >>> entry.operation, entry.device_id, entry.properties
    ('d2c', 'dev1', {'count': '2', 'bytes': '4096', 'protocol': 'mqtt'})
    >>> tally.take(now=120.0)
    []
    """

    def __init__(self) -> None:
        self._counts: dict[TelemetryKey, _Count] = {}

    def add(self, key: TelemetryKey, size: int) -> None:
        """Count one message of ``size`` body bytes for ``key``."""
        count = self._counts.get(key)
        if count is None:
            count = self._counts[key] = _Count()
        count.messages += 1
        count.size += size

    def take(self, now: float, key: TelemetryKey | None = None) -> list[OperationLogEntry]:
        """One ``d2c`` entry per identity counted since the last take (only ``key``'s if given)."""
        if key is None:
            taken, self._counts = self._counts, {}
        else:
            count = self._counts.pop(key, None)
            taken = {} if count is None else {key: count}
        return [
            OperationLogEntry(
                time=now,
                category="DeviceTelemetry",
                operation="d2c",
                protocol=protocol,
                device_id=device_id,
                module_id=module_id,
                source_ip=source_ip,
                properties={
                    "count": str(count.messages),
                    "bytes": str(count.size),
                    "protocol": protocol,
                },
            )
            for (device_id, module_id, protocol, source_ip), count in taken.items()
        ]
