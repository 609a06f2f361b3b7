"""The registry's SQLite tables, and the mapping between their rows and the hub's values.

Tables (``PRAGMA user_version`` 1), all ``WITHOUT ROWID`` on their natural keys::

    identities  (device_id, module_id)  module_id '' is the device itself; auth, status
                                        (devices only: a module follows its device), keys,
                                        thumbprints, generation_id, etag, created (ISO 8601)
    twins       (device_id, module_id)  tags, desired, reported as compact JSON, their
                                        $versions, version, etag; deleted with the identity
    policies    (name)                  permissions (comma separated), keys
    settings    (name)                  "hub_configuration": HubConfiguration.to_json();
                                        "customAlerts/<group, case-folded>": {"group",
                                        "document"}, a security group's custom alerts
"""

from __future__ import annotations

import base64
import os
import secrets
import sqlite3
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import orjson

from iotsec.hub.errors import IdentityNotFound, RegistryError
from iotsec.hub.identity import (
    DEFAULT_POLICIES,
    AccessPolicy,
    AuthKind,
    Identity,
    Permission,
    Status,
    SymmetricKeys,
    Thumbprints,
    new_key,
)
from iotsec.hub.twins import Section, Twin

__all__ = [
    "SCHEMA_VERSION",
    "create_private",
    "dumps",
    "exists",
    "find_identity",
    "insert_identity",
    "insert_twin",
    "load_identity",
    "load_twin",
    "migrate",
    "new_etag",
    "policy_from_row",
    "select_identities",
    "update_identity",
    "update_section",
]

SCHEMA_VERSION = 1

_TABLES = (
    """CREATE TABLE identities (
        device_id TEXT NOT NULL,
        module_id TEXT NOT NULL,
        auth TEXT NOT NULL,
        status TEXT,
        primary_key TEXT,
        secondary_key TEXT,
        primary_thumbprint TEXT,
        secondary_thumbprint TEXT,
        generation_id TEXT NOT NULL,
        etag TEXT NOT NULL,
        created TEXT NOT NULL,
        PRIMARY KEY (device_id, module_id)
    ) WITHOUT ROWID""",
    """CREATE TABLE twins (
        device_id TEXT NOT NULL,
        module_id TEXT NOT NULL,
        tags TEXT NOT NULL,
        desired TEXT NOT NULL,
        reported TEXT NOT NULL,
        desired_version INTEGER NOT NULL,
        reported_version INTEGER NOT NULL,
        version INTEGER NOT NULL,
        etag TEXT NOT NULL,
        PRIMARY KEY (device_id, module_id),
        FOREIGN KEY (device_id, module_id) REFERENCES identities (device_id, module_id)
            ON DELETE CASCADE
    ) WITHOUT ROWID""",
    """CREATE TABLE policies (
        name TEXT PRIMARY KEY,
        permissions TEXT NOT NULL,
        primary_key TEXT NOT NULL,
        secondary_key TEXT NOT NULL
    ) WITHOUT ROWID""",
    "CREATE TABLE settings (name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
)

# A module's status is its device's, so every identity read joins the device's row (``d``):
# still one statement, two primary-key lookups.
_IDENTITY = """SELECT i.device_id, i.module_id, i.auth, d.status, i.primary_key,
    i.secondary_key, i.primary_thumbprint, i.secondary_thumbprint, i.generation_id, i.etag,
    i.created
    FROM identities AS i JOIN identities AS d ON d.device_id = i.device_id AND d.module_id = ''"""
_TWIN = """SELECT t.device_id, t.module_id, t.tags, t.desired, t.reported, t.desired_version,
    t.reported_version, t.version, t.etag, d.status
    FROM twins AS t JOIN identities AS d ON d.device_id = t.device_id AND d.module_id = ''
    WHERE t.device_id = ? AND t.module_id = ?"""

_UPDATE_IDENTITY = """UPDATE identities SET auth = ?, status = ?, primary_key = ?,
    secondary_key = ?, primary_thumbprint = ?, secondary_thumbprint = ?, etag = ?
    WHERE device_id = ? AND module_id = ?"""
#: One statement per section, so a reported patch rewrites only the reported JSON.
_UPDATE_SECTION: dict[Section, str] = {
    "tags": """UPDATE twins SET tags = ?, desired_version = ?, reported_version = ?,
        version = ?, etag = ? WHERE device_id = ? AND module_id = ?""",
    "desired": """UPDATE twins SET desired = ?, desired_version = ?, reported_version = ?,
        version = ?, etag = ? WHERE device_id = ? AND module_id = ?""",
    "reported": """UPDATE twins SET reported = ?, desired_version = ?, reported_version = ?,
        version = ?, etag = ? WHERE device_id = ? AND module_id = ?""",
}


def migrate(db: sqlite3.Connection, path: str) -> None:
    """Create the tables and the default access policies (fresh keys) in a new database."""
    db.execute("BEGIN IMMEDIATE")
    try:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise RegistryError(
                f"registry {path} has schema {version}; this iotsec knows up to "
                f"{SCHEMA_VERSION}: upgrade iotsec"
            )
        if version == 0:
            for statement in _TABLES:
                db.execute(statement)
            for name, permissions in DEFAULT_POLICIES.items():
                db.execute(
                    "INSERT INTO policies VALUES (?, ?, ?, ?)",
                    (name, ",".join(sorted(permissions)), new_key(), new_key()),
                )
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def create_private(path: Path) -> None:
    """Create the database file readable by its owner only, unless it exists."""
    # SQLite gives the -wal and -shm files the mode of the database file.
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return
    except OSError as exc:
        raise RegistryError(f"registry {path}: cannot create: {exc.strerror}") from exc
    os.close(fd)


def new_etag() -> str:
    """A fresh etag: IoT Hub's shape (base64 of 8 bytes), random so none is ever reused."""
    return base64.b64encode(secrets.token_bytes(8)).decode("ascii")


def dumps(value: Any) -> str:
    """Compact JSON text."""
    return orjson.dumps(value).decode("utf-8")


# -- identities --------------------------------------------------------------------------------


def exists(db: sqlite3.Connection, device_id: str, module_id: str | None) -> bool:
    """True when the device (``module_id`` None) or module is registered."""
    row = db.execute(
        "SELECT 1 FROM identities WHERE device_id = ? AND module_id = ?",
        (device_id, module_id or ""),
    ).fetchone()
    return row is not None


def select_identities(
    db: sqlite3.Connection, device_id: str | None = None, *, limit: int = -1, offset: int = 0
) -> list[Identity]:
    """One device's identities (device first, then modules by id), or a page of devices."""
    if device_id is None:
        sql = _IDENTITY + " WHERE i.module_id = '' ORDER BY i.device_id LIMIT ? OFFSET ?"
        rows = db.execute(sql, (limit, offset)).fetchall()
    else:
        sql = _IDENTITY + " WHERE i.device_id = ? ORDER BY i.module_id"
        rows = db.execute(sql, (device_id,)).fetchall()
    return [_identity(row) for row in rows]


def find_identity(db: sqlite3.Connection, device_id: str, module_id: str | None) -> Identity | None:
    """The device (``module_id`` None) or module, or None."""
    row = db.execute(
        _IDENTITY + " WHERE i.device_id = ? AND i.module_id = ?", (device_id, module_id or "")
    ).fetchone()
    return None if row is None else _identity(row)


def load_identity(db: sqlite3.Connection, device_id: str, module_id: str | None) -> Identity:
    """The device (``module_id`` None) or module, or ``IdentityNotFound``."""
    found = find_identity(db, device_id, module_id)
    if found is None:
        raise IdentityNotFound(device_id, module_id)
    return found


def insert_identity(
    db: sqlite3.Connection,
    device_id: str,
    module_id: str | None,
    *,
    auth: AuthKind,
    status: Status,
    keys: SymmetricKeys | None,
    thumbprints: Thumbprints | None,
    created: datetime,
) -> Identity:
    """Insert a device or module; ``status`` is stored for devices only."""
    identity = Identity(
        device_id=device_id,
        module_id=module_id,
        auth=auth,
        status=status,
        keys=keys,
        thumbprints=thumbprints,
        generation_id=secrets.token_hex(9),
        etag=new_etag(),
        created=created,
    )
    db.execute(
        "INSERT INTO identities VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (device_id, module_id or "", auth, status if module_id is None else None,
         *_credentials(identity), identity.generation_id, identity.etag, created.isoformat()),
    )  # fmt: skip
    return identity


def update_identity(db: sqlite3.Connection, identity: Identity) -> None:
    """Write an identity's auth, status (devices only), credentials and etag."""
    status = identity.status if identity.module_id is None else None
    db.execute(
        _UPDATE_IDENTITY,
        (identity.auth, status, *_credentials(identity), identity.etag,
         identity.device_id, identity.module_id or ""),
    )  # fmt: skip


def _credentials(identity: Identity) -> tuple[str | None, str | None, str | None, str | None]:
    keys, thumbprints = identity.keys, identity.thumbprints
    return (
        keys.primary if keys else None,
        keys.secondary if keys else None,
        thumbprints.primary if thumbprints else None,
        thumbprints.secondary if thumbprints else None,
    )


def _identity(row: sqlite3.Row | tuple[Any, ...]) -> Identity:
    return Identity(
        device_id=row[0],
        module_id=row[1] or None,
        auth=row[2],
        status=row[3],
        keys=SymmetricKeys(row[4], row[5]) if row[4] is not None else None,
        thumbprints=Thumbprints(row[6], row[7]) if row[6] is not None else None,
        generation_id=row[8],
        etag=row[9],
        created=datetime.fromisoformat(row[10]),
    )


# -- twins and policies ------------------------------------------------------------------------


def insert_twin(db: sqlite3.Connection, twin: Twin) -> None:
    """Insert a new twin (its identity must exist)."""
    db.execute(
        "INSERT INTO twins VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (twin.device_id, twin.module_id or "", dumps(twin.tags), dumps(twin.desired),
         dumps(twin.reported), twin.desired_version, twin.reported_version, twin.version,
         twin.etag),
    )  # fmt: skip


def update_section(db: sqlite3.Connection, twin: Twin, section: Section) -> None:
    """Write one section of a twin, with its versions and etag."""
    db.execute(
        _UPDATE_SECTION[section],
        (dumps(twin.section(section)), twin.desired_version, twin.reported_version,
         twin.version, twin.etag, twin.device_id, twin.module_id or ""),
    )  # fmt: skip


def load_twin(db: sqlite3.Connection, device_id: str, module_id: str | None) -> Twin:
    """The twin, with its identity's status; ``IdentityNotFound`` when missing."""
    row = db.execute(_TWIN, (device_id, module_id or "")).fetchone()
    if row is None:
        raise IdentityNotFound(device_id, module_id)
    return Twin(
        device_id=row[0],
        module_id=row[1] or None,
        tags=orjson.loads(row[2]),
        desired=orjson.loads(row[3]),
        reported=orjson.loads(row[4]),
        desired_version=row[5],
        reported_version=row[6],
        version=row[7],
        etag=row[8],
        status=row[9],
    )


def policy_from_row(row: sqlite3.Row | tuple[Any, ...]) -> AccessPolicy:
    """An access policy from its ``policies`` row."""
    permissions = cast(frozenset[Permission], frozenset(row[1].split(",")))
    return AccessPolicy(row[0], permissions, SymmetricKeys(row[2], row[3]))
