"""Ingestion: every device-to-cloud message is checked, then appended durably, then acked.

Security messages (marked with the ASC interface id) are decoded with the schema codec: the
valid events are kept in canonical form, invalid ones are dead-lettered with their reasons, and a
message with nothing valid is refused. A refused message, and one with dead-lettered events, gets
an operation-log entry of its own, appended in the same durable write; accepted messages are
counted per identity (``TelemetryTally``) and logged as one entry per identity when flushed:
``flush_telemetry_every`` in the hub, ``take_telemetry`` when an MQTT connection ends.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from iotsec.hub.deadletters import DEADLETTER_KIND, KEEP_BYTES, DeadLetter, DeadLetterStore
from iotsec.hub.errors import HubError, RateLimited
from iotsec.hub.oplog import OperationLog, OperationLogEntry, TelemetryKey, TelemetryTally
from iotsec.hub.ratelimit import RateLimiter
from iotsec.protocol import Message
from iotsec.schema import (
    MAX_MESSAGE_BYTES,
    ErrorPolicy,
    FieldIssue,
    MessageInvalid,
    MessageTooLarge,
    decode_message,
    encode_message,
)
from iotsec.stream import DurableLog, Record, StreamError

__all__ = [
    "SECURITY_KIND",
    "TELEMETRY_FLUSH_SECONDS",
    "TELEMETRY_KIND",
    "Ingestor",
    "MessageRejected",
    "Origin",
    "Outcome",
]

log = logging.getLogger("iotsec.hub.ingest")

#: Durable-log kinds: validated security messages (canonical JSON), and any other telemetry.
SECURITY_KIND = "security"
TELEMETRY_KIND = "d2c"
#: How often the counts of accepted messages go to the operation log.
TELEMETRY_FLUSH_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class Origin:
    """Who sent a message, how and from where.

    An MQTT session makes one for its connection, so what follows from it (the record headers
    every message from it carries, its tally key) is worked out once, here.
    """

    device_id: str
    module_id: str | None
    protocol: Literal["mqtt", "https"]
    source_ip: str
    headers: dict[str, str] = field(init=False, repr=False, compare=False)
    key: str = field(init=False, repr=False, compare=False)
    tally_key: TelemetryKey = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        headers = {
            "device_id": self.device_id,
            "protocol": self.protocol,
            "source_ip": self.source_ip,
        }
        if self.module_id is not None:
            headers["module_id"] = self.module_id
        key = self.device_id if self.module_id is None else f"{self.device_id}/{self.module_id}"
        object.__setattr__(self, "headers", headers)
        object.__setattr__(self, "key", key)
        tally = (self.device_id, self.module_id, self.protocol, self.source_ip)
        object.__setattr__(self, "tally_key", tally)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to an accepted message."""

    partition: int
    offset: int
    events: int = 0
    rejected: tuple[FieldIssue, ...] = field(default=())


class MessageRejected(HubError):
    """A message the hub refused; ``status`` is the HTTP answer, ``reason`` says why."""

    def __init__(
        self, reason: str, *, status: int = 400, issues: tuple[FieldIssue, ...] = ()
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.issues = issues


class Ingestor:
    """Checks, dead-letters and durably appends device-to-cloud messages."""

    def __init__(
        self,
        durable: DurableLog,
        deadletters: DeadLetterStore,
        limiter: RateLimiter,
        *,
        clock: Callable[[], float] = time.time,
        max_bytes: int = MAX_MESSAGE_BYTES,
    ) -> None:
        self._log = durable
        self._deadletters = deadletters
        self._limiter = limiter
        self._clock = clock
        self._max_bytes = max_bytes
        self._tally = TelemetryTally()

    async def ingest(self, origin: Origin, message: Message) -> Outcome:
        """Append ``message`` durably; returns once it is on disk.

        Raises:
            RateLimited: the identity is over its message rate (nothing is stored).
            MessageRejected: the message is too large, or a security message with nothing
                valid in it; it is dead-lettered and logged before this is raised.
        """
        key = origin.key
        if not self._limiter.allow(key):
            raise RateLimited(key, self._limiter.rate)
        now = self._clock()
        body = message.body
        if len(body) > self._max_bytes:
            reason = f"message is {len(body)} bytes, over the {self._max_bytes}-byte limit"
            await self._refuse(origin, now, reason, body)
            raise MessageRejected(reason, status=413)
        kind, events = TELEMETRY_KIND, 0
        issues: tuple[FieldIssue, ...] = ()
        letters: list[DeadLetter] = []
        if message.is_security_message:
            try:
                decoded = decode_message(
                    body, policy=ErrorPolicy.KEEP_VALID, max_bytes=self._max_bytes
                )
            except (MessageInvalid, MessageTooLarge) as exc:
                found = getattr(exc, "issues", (FieldIssue("$", str(exc)),))
                reason = f"invalid security message: {exc}"
                await self._refuse(origin, now, reason, body)
                raise MessageRejected(reason, issues=tuple(found)) from None
            kind, body = SECURITY_KIND, encode_message(decoded.message)
            events = len(decoded.message.events)
            if decoded.rejected:
                issues = decoded.issues
                letters = [
                    self._letter(
                        origin, now, "; ".join(map(str, rej.issues)), rej.raw, event_index=rej.index
                    )
                    for rej in decoded.rejected
                ]
        records = [
            Record(
                key=origin.device_id,
                kind=kind,
                body=body,
                headers=_headers(origin, message, now),
                timestamp=now,
            )
        ]
        if issues:
            entry = OperationLogEntry(
                time=now,
                category="DeviceTelemetry",
                operation="d2c",
                protocol=origin.protocol,
                device_id=origin.device_id,
                module_id=origin.module_id,
                source_ip=origin.source_ip,
                result="Failure",
                reason=f"{len(issues)} invalid events dead-lettered",
                properties={"bytes": str(len(message.body)), "kind": kind},
            )
            records.append(OperationLog.to_record(entry))
            records += map(_letter_record, letters)
            self._deadletters.add(letters)
        [(partition, offset), *_] = await self._log.append(records)
        if not issues:
            self._tally.add(origin.tally_key, len(message.body))
        return Outcome(partition, offset, events, issues)

    def take_telemetry(self, key: TelemetryKey | None = None) -> list[OperationLogEntry]:
        """The ``d2c`` entries counting the messages accepted since the last take, and reset.

        ``key`` takes one identity's count (an MQTT connection ending), else everyone's.
        """
        return self._tally.take(self._clock(), key)

    async def flush_telemetry(self) -> None:
        """Append the counts of accepted messages to the operation log."""
        entries = self.take_telemetry()
        if entries:
            await self._log.append([OperationLog.to_record(entry) for entry in entries])

    async def flush_telemetry_every(self, seconds: float = TELEMETRY_FLUSH_SECONDS) -> None:
        """Flush the counts every ``seconds``, until cancelled."""
        while True:
            await asyncio.sleep(seconds)
            try:
                await self.flush_telemetry()
            except StreamError:  # logged, not swallowed: one period's counts are lost
                log.exception("could not append the device-to-cloud message counts")

    def _letter(
        self,
        origin: Origin,
        now: float,
        reason: str,
        body: bytes,
        *,
        event_index: int | None = None,
    ) -> DeadLetter:
        return DeadLetter(
            now,
            origin.device_id,
            origin.module_id,
            origin.protocol,
            reason,
            body[:KEEP_BYTES],
            len(body) > KEEP_BYTES,
            event_index,
        )

    async def _refuse(self, origin: Origin, now: float, reason: str, body: bytes) -> None:
        letter = self._letter(origin, now, reason, body)
        self._deadletters.add([letter])
        log.info("refused a message from %s over %s: %s", origin.device_id, origin.protocol, reason)
        await self._log.append(
            [
                _letter_record(letter),
                OperationLog.to_record(
                    OperationLogEntry(
                        time=now,
                        category="DeviceTelemetry",
                        operation="d2c",
                        result="Failure",
                        protocol=origin.protocol,
                        device_id=origin.device_id,
                        module_id=origin.module_id,
                        source_ip=origin.source_ip,
                        reason=reason[:1000],
                        properties={"bytes": str(len(body))},
                    )
                ),
            ]
        )


def _headers(origin: Origin, message: Message, now: float) -> dict[str, str]:
    headers = origin.headers.copy()
    headers["enqueued_time"] = repr(now)
    if message.message_id is not None:
        headers["message_id"] = message.message_id
    if message.correlation_id is not None:
        headers["correlation_id"] = message.correlation_id
    if message.content_type is not None:
        headers["content_type"] = message.content_type
    if message.content_encoding is not None:
        headers["content_encoding"] = message.content_encoding
    if message.interface_id is not None:
        headers["interface_id"] = message.interface_id
    for name, value in message.properties.items():
        headers[f"app.{name}"] = value
    return headers


def _letter_record(letter: DeadLetter) -> Record:
    headers = {
        "device_id": letter.device_id,
        "protocol": letter.protocol,
        "reason": letter.reason[:4000],
    }
    if letter.module_id is not None:
        headers["module_id"] = letter.module_id
    if letter.event_index is not None:
        headers["event_index"] = str(letter.event_index)
    return Record(
        key=letter.device_id,
        kind=DEADLETTER_KIND,
        body=letter.body,
        headers=headers,
        timestamp=letter.time,
    )
