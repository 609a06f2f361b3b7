"""Cloud-to-device queues: per device, durable, with IoT Hub's lock-and-complete semantics.

MQTT delivers a queued message at QoS 1 and completes it on PUBACK. HTTPS devices receive a
message with a lock token (its ETag), and then complete (delete), abandon (requeue) or reject it;
a lock that is not settled in time expires and the message is delivered again.
"""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import orjson

from iotsec.hub.errors import HubError
from iotsec.protocol import Message

__all__ = ["MAX_QUEUE_DEPTH", "C2dQueue", "C2dQueueFull", "Delivery"]

#: IoT Hub keeps at most 50 undelivered cloud-to-device messages per device.
MAX_QUEUE_DEPTH = 50
#: IoT Hub's default time to live for cloud-to-device messages.
DEFAULT_TTL = 3600.0


class C2dQueueFull(HubError):
    """The device already has ``MAX_QUEUE_DEPTH`` undelivered messages."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """A message handed to a device, with the token that settles it."""

    lock_token: str
    message: Message
    delivery_count: int


class C2dQueue:
    """Per-device queues in a SQLite file (short, thread-safe calls)."""

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS c2d (id INTEGER PRIMARY KEY, device_id TEXT NOT NULL,"
            " message_id TEXT NOT NULL, body BLOB NOT NULL, meta BLOB NOT NULL,"
            " expires REAL NOT NULL, locked_until REAL NOT NULL DEFAULT 0,"
            " lock_token TEXT, delivery_count INTEGER NOT NULL DEFAULT 0)"
        )
        self._db.execute("CREATE INDEX IF NOT EXISTS c2d_device ON c2d(device_id, id)")

    def enqueue(self, device_id: str, message: Message, *, ttl: float = DEFAULT_TTL) -> str:
        """Queue ``message`` for ``device_id``; returns its message id.

        Raises:
            C2dQueueFull: the device's queue is full.
        """
        message_id = message.message_id or str(uuid.uuid4())
        meta = orjson.dumps(
            {
                "properties": message.properties,
                "correlation_id": message.correlation_id,
                "content_type": message.content_type,
                "content_encoding": message.content_encoding,
            }
        )
        now = self._clock()
        with self._lock:
            self._expire(now)
            (depth,) = self._db.execute(
                "SELECT COUNT(*) FROM c2d WHERE device_id = ?", (device_id,)
            ).fetchone()
            if depth >= MAX_QUEUE_DEPTH:
                raise C2dQueueFull(
                    f"device {device_id} has {depth} undelivered messages, the most IoT Hub keeps"
                )
            self._db.execute(
                "INSERT INTO c2d (device_id, message_id, body, meta, expires) VALUES (?,?,?,?,?)",
                (device_id, message_id, message.body, meta, now + ttl),
            )
        return message_id

    def receive(self, device_id: str, *, lock_seconds: float = 60.0) -> Delivery | None:
        """The oldest deliverable message, now locked for ``lock_seconds``; None when empty."""
        now = self._clock()
        token = str(uuid.uuid4())
        with self._lock:
            self._expire(now)
            row = self._db.execute(
                "SELECT id, message_id, body, meta, delivery_count FROM c2d"
                " WHERE device_id = ? AND locked_until <= ? ORDER BY id LIMIT 1",
                (device_id, now),
            ).fetchone()
            if row is None:
                return None
            row_id, message_id, body, meta, count = row
            self._db.execute(
                "UPDATE c2d SET locked_until = ?, lock_token = ?, delivery_count = ? WHERE id = ?",
                (now + lock_seconds, token, count + 1, row_id),
            )
        fields = orjson.loads(meta)
        message = Message(
            bytes(body),
            properties=fields["properties"],
            message_id=message_id,
            correlation_id=fields["correlation_id"],
            content_type=fields["content_type"],
            content_encoding=fields["content_encoding"],
        )
        return Delivery(token, message, count + 1)

    def complete(self, device_id: str, lock_token: str) -> bool:
        """Delete a delivered message; False when the token is unknown or its lock expired."""
        return self._settle(device_id, lock_token, "DELETE FROM c2d")

    def reject(self, device_id: str, lock_token: str) -> bool:
        """Drop a delivered message the device refuses (dead-lettered by IoT Hub; deleted here)."""
        return self._settle(device_id, lock_token, "DELETE FROM c2d")

    def abandon(self, device_id: str, lock_token: str) -> bool:
        """Put a delivered message back in the queue at once."""
        return self._settle(
            device_id, lock_token, "UPDATE c2d SET locked_until = 0, lock_token = NULL"
        )

    def depth(self, device_id: str) -> int:
        """Undelivered or unsettled messages for ``device_id``."""
        with self._lock:
            self._expire(self._clock())
            (count,) = self._db.execute(
                "SELECT COUNT(*) FROM c2d WHERE device_id = ?", (device_id,)
            ).fetchone()
        return int(count)

    def purge(self, device_id: str) -> int:
        """Drop every message of ``device_id`` (the device was deleted); returns how many."""
        with self._lock:
            cursor = self._db.execute("DELETE FROM c2d WHERE device_id = ?", (device_id,))
        return cursor.rowcount

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._db.close()

    def _settle(self, device_id: str, lock_token: str, statement: str) -> bool:
        now = self._clock()
        with self._lock:
            cursor = self._db.execute(
                # ``statement`` is one of the constants above, never input.
                f"{statement} WHERE device_id = ? AND lock_token = ? AND locked_until > ?",
                (device_id, lock_token, now),
            )
        return cursor.rowcount == 1

    def _expire(self, now: float) -> None:
        self._db.execute("DELETE FROM c2d WHERE expires <= ?", (now,))
