"""The alert lifecycle on SQLite: detections in, alerts (new or updated) out; state survives.

One table, ``alerts``, keyed by the alert id, with the dedup key and first time indexed so the
alert a detection belongs to is one lookup. The file is in WAL mode with ``synchronous=NORMAL``:
a power cut may lose the last transactions, and reprocessing the durable log from the last
committed position rebuilds them with the same ids.

>>> from datetime import UTC, datetime
>>> from iotsec.analytics import Detection, DeviceContext
>>> t0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
>>> store = AlertStore(":memory:", clock=lambda: t0)
>>> d = Detection(
...     rule_id="IoT_CryptoMiner", display_name="Crypto coin miner", severity="Medium",
...     device=DeviceContext("dev-1"), time=t0, description="xmrig started",
...     evidence=("e1:0",), dedup_key="IoT_CryptoMiner/dev-1",
... )
>>> [alert] = store.process([d])
>>> store.dismiss(alert.alert_id, reason="lab device", by="ops@example.com").status
'Dismissed'
>>> store.close()
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

from iotsec.analytics.alerts import (
    EVIDENCE_CAP,
    STATUSES,
    Alert,
    AlertNotFound,
    AlertStatus,
    change_status,
    fold,
    is_replay,
    open_alert,
    within_window,
)
from iotsec.analytics.detection import Detection
from iotsec.analytics.errors import StateError

__all__ = ["SCHEMA_VERSION", "AlertStore"]

log = logging.getLogger("iotsec.analytics.alerts")

SCHEMA_VERSION = 1

_SCHEMA = (
    """CREATE TABLE alerts (
        alert_id TEXT PRIMARY KEY,
        dedup_key TEXT NOT NULL,
        start_us INTEGER NOT NULL,
        status TEXT NOT NULL,
        device_id TEXT NOT NULL,
        updated_us INTEGER NOT NULL,
        body TEXT NOT NULL,
        recent TEXT NOT NULL DEFAULT '[]'
    ) WITHOUT ROWID""",
    "CREATE INDEX alerts_by_key ON alerts (dedup_key, start_us)",
    "CREATE INDEX alerts_by_update ON alerts (updated_us)",
)
_COLUMNS = "body, recent"
_MICROSECOND = timedelta(microseconds=1)


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _micros(value: datetime) -> int:
    delta = value.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


class AlertStore:
    """Applies detections to alerts and keeps them in a SQLite file; safe across threads.

    Args:
        path: The database file (created if missing), or ``":memory:"``.
        clock: The processing time (the alert's ``updated``, the status time).
        evidence_cap: How many evidence ids an alert lists.

    Raises:
        StateError: the file cannot be opened or has a newer schema.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        clock: Callable[[], datetime] = _utc_now,
        evidence_cap: int = EVIDENCE_CAP,
    ) -> None:
        self.path = os.fspath(path)
        self._clock = clock
        self._cap = evidence_cap
        self._lock = threading.Lock()
        self._closed = False
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                self.path, check_same_thread=False, isolation_level=None, timeout=10.0
            )
        except (sqlite3.Error, OSError) as exc:
            raise StateError(self.path, f"cannot open: {exc}") from exc
        try:
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = NORMAL")
            self._migrate()
        except sqlite3.Error as exc:
            self._db.close()
            raise StateError(self.path, str(exc)) from exc
        except StateError:
            self._db.close()
            raise

    def __repr__(self) -> str:
        return f"AlertStore({self.path!r})"

    def __enter__(self) -> AlertStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the database; later calls raise ``StateError``."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._db.close()

    # -- the lifecycle -----------------------------------------------------------------------

    def process(self, detections: Sequence[Detection]) -> list[Alert]:
        """Apply ``detections`` in order, in one transaction; each one's alert as it is now.

        A detection opens a new Active alert, folds into the alert of its key whose window it
        falls in (Active or Dismissed), or, when that alert is Resolved or its window has
        passed, opens a new one. A replay (its evidence already folded in) changes nothing and
        returns the alert unchanged. Blocking (SQLite): call it off the event loop.

        Raises:
            StateError: the database failed; nothing of the batch was applied.
        """
        if not detections:
            return []
        now = self._clock()
        out: list[Alert] = []
        with self._write() as db:
            for detection in detections:
                out.append(self._apply(db, detection, now))
        return out

    def _apply(self, db: sqlite3.Connection, detection: Detection, now: datetime) -> Alert:
        current = self._current(db, detection)
        if current is not None:
            if is_replay(current, detection):
                return current
            if current.status != "Resolved" and within_window(current, detection):
                updated = fold(current, detection, now=now, evidence_cap=self._cap)
                self._save(db, updated)
                return updated
        alert = open_alert(detection, now=now, evidence_cap=self._cap)
        while (existing := self._load(db, alert.alert_id)) is not None:
            # A stored alert with the same key and first time that the lookup did not pick (a
            # late detection), or one that is Resolved: fold into the first when it may take
            # the repeat; never overwrite either. A new alert then starts a microsecond later.
            if is_replay(existing, detection):
                return existing
            if existing.status != "Resolved" and within_window(existing, detection):
                updated = fold(existing, detection, now=now, evidence_cap=self._cap)
                self._save(db, updated)
                return updated
            later = max(detection.time, existing.start_time + _MICROSECOND)
            alert = open_alert(
                replace(detection, first_time=later), now=now, evidence_cap=self._cap
            )
        self._save(db, alert)
        return alert

    def _current(self, db: sqlite3.Connection, detection: Detection) -> Alert | None:
        """The alert of the detection's key that started last, at or before the detection."""
        time = detection.time
        if time.utcoffset() is None:
            raise ValueError(f"Detection.time must be timezone-aware, got {time!r}")
        row = db.execute(
            f"SELECT {_COLUMNS} FROM alerts WHERE dedup_key = ? AND start_us <= ? "  # noqa: S608 - constant columns
            "ORDER BY start_us DESC LIMIT 1",
            (detection.dedup_key, _micros(time)),
        ).fetchone()
        return None if row is None else _alert(row)

    # -- operators -----------------------------------------------------------------------------

    def get(self, alert_id: str) -> Alert:
        """The alert with ``alert_id``.

        Raises:
            AlertNotFound: no such alert.
        """
        with self._read() as db:
            found = self._load(db, alert_id)
        if found is None:
            raise AlertNotFound(alert_id)
        return found

    def list(
        self,
        *,
        status: AlertStatus | None = None,
        device_id: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Alert]:
        """Alerts, most recently changed first, optionally of one status or device."""
        if status is not None and status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}, not {status!r}")
        if not 1 <= limit <= 10_000 or offset < 0:
            raise ValueError("limit must be 1..10000 and offset >= 0")
        where: list[str] = []
        params: list[str] = []
        if status is not None:
            where.append("status = ?")
            params.append(status)
        if device_id is not None:
            where.append("device_id = ?")
            params.append(device_id)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        sql = (
            f"SELECT {_COLUMNS} FROM alerts {clause} "  # noqa: S608 - constant clauses, bound values
            "ORDER BY updated_us DESC, alert_id LIMIT ? OFFSET ?"
        )
        with self._read() as db:
            rows = db.execute(sql, (*params, limit, offset)).fetchall()
        return [_alert(row) for row in rows]

    def dismiss(self, alert_id: str, *, reason: str, by: str) -> Alert:
        """Dismiss an alert: it stays quiet (repeats fold into it) until its window passes.

        Raises:
            AlertNotFound: no such alert.
            AlertError: no reason or actor given, or the alert is Resolved.
        """
        return self._change(alert_id, "Dismissed", reason=reason, by=by)

    def resolve(self, alert_id: str, *, reason: str, by: str) -> Alert:
        """Resolve an alert: a recurrence opens a new alert.

        Raises:
            AlertNotFound: no such alert.
            AlertError: no reason or actor given.
        """
        return self._change(alert_id, "Resolved", reason=reason, by=by)

    def _change(self, alert_id: str, status: AlertStatus, *, reason: str, by: str) -> Alert:
        now = self._clock()
        with self._write() as db:
            alert = self._load(db, alert_id)
            if alert is None:
                raise AlertNotFound(alert_id)
            changed = change_status(alert, status, reason=reason, by=by, now=now)
            if changed is not alert:
                self._save(db, changed)
        if changed is not alert:
            log.info("alert %s %s by %s: %s", alert_id, status.lower(), by, reason)
        return changed

    # -- storage -------------------------------------------------------------------------------

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StateError(
                self.path,
                f"schema {version} is newer than this iotsec knows ({SCHEMA_VERSION}): upgrade",
            )
        if version == 0:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for statement in _SCHEMA:
                    self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    @staticmethod
    def _load(db: sqlite3.Connection, alert_id: str) -> Alert | None:
        row = db.execute(
            f"SELECT {_COLUMNS} FROM alerts WHERE alert_id = ?",  # noqa: S608 - constant columns
            (alert_id,),
        ).fetchone()
        return None if row is None else _alert(row)

    @staticmethod
    def _save(db: sqlite3.Connection, alert: Alert) -> None:
        body = alert.to_json()
        db.execute(
            "INSERT INTO alerts VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (alert_id) DO UPDATE "
            "SET status = excluded.status, updated_us = excluded.updated_us, "
            "body = excluded.body, recent = excluded.recent",
            (
                alert.alert_id,
                alert.dedup_key,
                _micros(alert.start_time),
                alert.status,
                alert.device_id,
                _micros(alert.updated),
                orjson.dumps(body).decode("utf-8"),
                orjson.dumps(list(alert.recent_evidence)).decode("utf-8"),
            ),
        )

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._check_open()
            try:
                yield self._db
            except sqlite3.Error as exc:
                raise StateError(self.path, str(exc)) from exc

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._check_open()
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise StateError(self.path, str(exc)) from exc

    def _check_open(self) -> None:
        if self._closed:
            raise StateError(self.path, "the alert store is closed")


def _alert(row: tuple[str, str]) -> Alert:
    body, recent = row
    return Alert.from_json(orjson.loads(body), recent=orjson.loads(recent))
