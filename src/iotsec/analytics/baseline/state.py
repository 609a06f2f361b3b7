"""The state file: what baselines, fleet detectors and recommendations learned, across restarts.

One SQLite file holds one row per entry: ``(component, key, data)``, where ``data`` is JSON
made by the component (``dump_state``) and read back by it (``load_state``). Nothing is
pickled: a model is stored as its training rows and retrained on load. ``save`` replaces every
named component's entries in one transaction, so a crash mid-save leaves the previous state.

>>> import tempfile, pathlib
>>> from iotsec.analytics.baseline.novelty import NoveltyDetector
>>> path = pathlib.Path(tempfile.mkdtemp()) / "state.db"
>>> store = StateStore(path)
>>> store.save({"novelty": NoveltyDetector()})
>>> store.load({"novelty": NoveltyDetector()})
{'novelty': 0}
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from contextlib import closing
from pathlib import Path
from typing import Protocol

import msgspec

from iotsec.analytics.errors import StateError

__all__ = ["FORMAT", "StateStore", "Stateful"]

#: The state file's format; a file of another format is refused, not misread.
FORMAT = "1"

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS entries (component TEXT NOT NULL, key TEXT NOT NULL,"
    " data BLOB NOT NULL, PRIMARY KEY (component, key))",
)


class Stateful(Protocol):
    """A component whose state can be written as JSON entries and read back."""

    def dump_state(self) -> Mapping[str, bytes]:
        """The state as ``key -> JSON`` entries."""
        ...

    def load_state(self, entries: Mapping[str, bytes]) -> None:
        """Replace the state with ``entries``; raise ValueError or msgspec errors on bad data."""
        ...


class StateStore:
    """Saves and loads ``Stateful`` components in an SQLite file at ``path``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def save(self, components: Mapping[str, Stateful]) -> None:
        """Replace the stored entries of each named component with its current state.

        Raises:
            StateError: the file cannot be opened or written, or is not a state file.
        """
        dumps = {name: component.dump_state() for name, component in components.items()}
        try:
            with closing(sqlite3.connect(self.path)) as db, db:
                self._prepare(db)
                for name, entries in dumps.items():
                    db.execute("DELETE FROM entries WHERE component = ?", (name,))
                    db.executemany(
                        "INSERT INTO entries (component, key, data) VALUES (?, ?, ?)",
                        [(name, key, data) for key, data in entries.items()],
                    )
        except (sqlite3.Error, OSError) as exc:
            raise StateError(str(self.path), f"cannot save: {exc}") from exc

    def load(self, components: Mapping[str, Stateful]) -> dict[str, int]:
        """Load each named component's stored entries into it; returns entries per component.

        A missing file is a fresh start (nothing loaded). A component with no stored entries
        is left as it is.

        Raises:
            StateError: the file cannot be read, has another format, or an entry is invalid
                (the component and entry are named).
        """
        if not self.path.exists():
            return {}
        loaded: dict[str, int] = {}
        try:
            uri = f"{self.path.resolve().as_uri()}?mode=ro"
            with closing(sqlite3.connect(uri, uri=True)) as db:
                self._check_format(db)
                for name, component in components.items():
                    rows = db.execute(
                        "SELECT key, data FROM entries WHERE component = ? ORDER BY key", (name,)
                    ).fetchall()
                    entries = {str(key): bytes(data) for key, data in rows}
                    if entries:
                        self._load_one(name, component, entries)
                    loaded[name] = len(entries)
        except (sqlite3.Error, OSError) as exc:
            raise StateError(str(self.path), f"cannot load: {exc}") from exc
        return loaded

    def _load_one(self, name: str, component: Stateful, entries: Mapping[str, bytes]) -> None:
        try:
            component.load_state(entries)
        except (msgspec.MsgspecError, ValueError, KeyError, TypeError) as exc:
            raise StateError(str(self.path), f"component {name}: {exc}") from exc

    def _prepare(self, db: sqlite3.Connection) -> None:
        for statement in _SCHEMA:
            db.execute(statement)
        found = db.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
        if found is None:
            db.execute("INSERT INTO meta (key, value) VALUES ('format', ?)", (FORMAT,))
        elif found[0] != FORMAT:
            raise sqlite3.DatabaseError(f"state format {found[0]}, expected {FORMAT}")

    def _check_format(self, db: sqlite3.Connection) -> None:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
        if not {"meta", "entries"} <= tables:
            raise sqlite3.DatabaseError("not an iotsec state file (no meta/entries tables)")
        found = db.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
        if found is None or found[0] != FORMAT:
            raise sqlite3.DatabaseError(
                f"state format {found[0] if found else 'missing'}, expected {FORMAT}"
            )
