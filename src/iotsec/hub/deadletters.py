"""Dead letters: messages (or events) the hub refused, kept with their reasons for the operator.

Each dead letter is also appended to the durable log (kind ``deadletter``) so the workspace's
``DeadLetter`` table gets it; this store is the hub's own copy, which the service API and the CLI
list without reading the log.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DEADLETTER_KIND", "DeadLetter", "DeadLetterStore"]

DEADLETTER_KIND = "deadletter"
#: Refused bodies are kept up to this size; larger ones are cut, and say so.
KEEP_BYTES = 262_144


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A refused message or event: who sent it, how, why, and its raw bytes."""

    time: float
    device_id: str
    module_id: str | None
    protocol: str
    reason: str
    body: bytes
    truncated: bool = False
    event_index: int | None = None


class DeadLetterStore:
    """Dead letters in a SQLite file (short, thread-safe calls)."""

    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS deadletters (id INTEGER PRIMARY KEY, time REAL NOT NULL,"
            " device_id TEXT NOT NULL, module_id TEXT, protocol TEXT NOT NULL,"
            " reason TEXT NOT NULL, event_index INTEGER, truncated INTEGER NOT NULL,"
            " body BLOB NOT NULL)"
        )
        self._db.execute("CREATE INDEX IF NOT EXISTS deadletters_device ON deadletters(device_id)")

    def add(self, letters: list[DeadLetter]) -> None:
        """Keep ``letters``."""
        rows = [
            (
                d.time,
                d.device_id,
                d.module_id,
                d.protocol,
                d.reason,
                d.event_index,
                int(d.truncated),
                d.body,
            )
            for d in letters
        ]
        with self._lock:
            self._db.executemany(
                "INSERT INTO deadletters (time, device_id, module_id, protocol, reason,"
                " event_index, truncated, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

    def list(self, *, device_id: str | None = None, limit: int = 100) -> list[DeadLetter]:
        """The newest dead letters first, optionally for one device."""
        query = (
            "SELECT time, device_id, module_id, protocol, reason, body, truncated,"
            " event_index FROM deadletters"
        )
        params: tuple[object, ...] = ()
        if device_id is not None:
            query += " WHERE device_id = ?"
            params = (device_id,)
        query += " ORDER BY id DESC LIMIT ?"
        with self._lock:
            rows = self._db.execute(query, (*params, limit)).fetchall()
        return [
            DeadLetter(t, d, m, p, r, bytes(b), bool(tr), ei) for t, d, m, p, r, b, tr, ei in rows
        ]

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._db.close()
