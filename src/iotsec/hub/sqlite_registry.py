"""The embedded ``RegistryStore``: devices, modules, twins, policies and hub settings in SQLite.

One connection (``check_same_thread=False``) behind a lock, in WAL mode with
``synchronous=FULL``. Every call is one short transaction of a few primary-key statements
(well under a millisecond, plus an fsync for writes), so it may be called from any thread,
from asyncio directly, or through ``asyncio.to_thread`` where a write's fsync matters.

Keys are stored in the clear in the database file, because SAS signatures need them. The
file is created readable by its owner only (0600); keep the data directory private too.
Nothing here logs, and errors never quote a key. The table layout is in ``sqlite_schema``.
"""

from __future__ import annotations

import dataclasses
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from iotsec.hub import sqlite_schema as schema
from iotsec.hub.errors import (
    IdentityExists,
    IdentityNotFound,
    InvalidIdentity,
    PreconditionFailed,
    RegistryError,
)
from iotsec.hub.hubconfig import HubConfiguration
from iotsec.hub.identity import (
    SECURITY_MODULE_ID,
    AccessPolicy,
    Identity,
    Status,
    SymmetricKeys,
    Thumbprints,
    new_key,
)
from iotsec.hub.registry import (
    KeyChoice,
    RegistryStore,
    check_credentials,
    check_id,
    check_status,
    parse_if_match,
)
from iotsec.hub.twins import (
    DEFAULT_LIMITS,
    SECURITY_GROUP_TAG,
    Section,
    Twin,
    TwinLimits,
    apply_patch,
    new_twin,
    security_group_of,
)

__all__ = ["SqliteRegistry"]


#: ``settings`` rows of custom alerts: this prefix and the case-folded group name.
_CUSTOM_ALERTS = "customAlerts/"
_CUSTOM_ALERTS_END = "customAlerts0"  # "0" sorts right after "/": the end of the prefix range


def _utc_now() -> datetime:
    return datetime.now(UTC)


class SqliteRegistry:
    """The ``RegistryStore`` on one SQLite file (or ``":memory:"`` for tests and tools).

    >>> with SqliteRegistry(":memory:") as registry:
    ...     device = registry.create_device("sensor-1")
    ...     [m.module_id for m in registry.list_modules("sensor-1")], device.auth
    (['azureiotsecurity'], 'sas')
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        clock: Callable[[], datetime] = _utc_now,
        limits: TwinLimits = DEFAULT_LIMITS,
    ) -> None:
        self._path = os.fspath(path)
        self._clock = clock
        self._limits = limits
        self._lock = threading.Lock()
        self._closed = False
        if self._path != ":memory:":
            schema.create_private(Path(self._path))
        try:
            self._db = sqlite3.connect(
                self._path, check_same_thread=False, isolation_level=None, timeout=10.0
            )
        except sqlite3.Error as exc:
            raise RegistryError(f"registry {self._path}: cannot open: {exc}") from exc
        try:
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = FULL")
            self._db.execute("PRAGMA foreign_keys = ON")
            schema.migrate(self._db, self._path)
        except sqlite3.Error as exc:
            self._db.close()
            raise RegistryError(f"registry {self._path}: {exc}") from exc
        except RegistryError:
            self._db.close()
            raise

    def __repr__(self) -> str:
        return f"SqliteRegistry({self._path!r})"

    def __enter__(self) -> SqliteRegistry:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- devices -------------------------------------------------------------------------------

    def identity(self, device_id: str, module_id: str | None) -> Identity | None:
        """The identity a device or module connects as, or None: one primary-key lookup."""
        with self._read() as db:
            return schema.find_identity(db, device_id, module_id)

    def create_device(
        self,
        device_id: str,
        *,
        keys: SymmetricKeys | None = None,
        thumbprints: Thumbprints | None = None,
        ca_signed: bool = False,
        status: Status = "enabled",
        tags: dict[str, Any] | None = None,
        security_group: str | None = None,
    ) -> Identity:
        """A new device and its security module; SAS keys are generated if no credential given.

        Raises:
            InvalidIdentity: a bad id, status, credential or security group (``field`` says).
            IdentityExists: the id is taken.
            InvalidTwinPatch, TwinTooLarge: ``tags`` break the twin rules.
        """
        check_id(device_id)
        status = check_status(status)
        auth, keys, thumbprints = check_credentials(keys, thumbprints, ca_signed)
        tags = _with_security_group(tags or {}, security_group)
        device_twin = new_twin(
            device_id, None, etag=schema.new_etag(), tags=tags, limits=self._limits
        )
        module_twin = new_twin(device_id, SECURITY_MODULE_ID, etag=schema.new_etag())
        created = self._clock()
        with self._write() as db:
            if schema.exists(db, device_id, None):
                raise IdentityExists(device_id)
            device = schema.insert_identity(
                db, device_id, None, auth=auth, status=status, keys=keys,
                thumbprints=thumbprints, created=created,
            )  # fmt: skip
            schema.insert_identity(
                db, device_id, SECURITY_MODULE_ID, auth="sas", status=status,
                keys=SymmetricKeys.generate(), thumbprints=None, created=created,
            )  # fmt: skip
            schema.insert_twin(db, device_twin)
            schema.insert_twin(db, module_twin)
        return device

    def get_device(self, device_id: str) -> Identity:
        """The device, or ``IdentityNotFound``."""
        found = self.identity(device_id, None)
        if found is None:
            raise IdentityNotFound(device_id)
        return found

    def list_devices(self, *, limit: int = 1000, offset: int = 0) -> list[Identity]:
        """Devices ordered by id (byte order), a page at a time."""
        if limit < 0 or offset < 0:
            raise ValueError("limit and offset must not be negative")
        with self._read() as db:
            return schema.select_identities(db, limit=limit, offset=offset)

    def update_device(
        self,
        device_id: str,
        *,
        status: Status | None = None,
        keys: SymmetricKeys | None = None,
        thumbprints: Thumbprints | None = None,
        if_match: str | None = None,
    ) -> Identity:
        """Change status or credentials (keys switch to SAS, thumbprints to self-signed).

        Raises:
            IdentityNotFound, PreconditionFailed, InvalidIdentity.
        """
        new_status = None if status is None else check_status(status)
        return self._update(
            device_id, None, status=new_status, keys=keys, thumbprints=thumbprints,
            if_match=if_match,
        )  # fmt: skip

    def delete_device(self, device_id: str, *, if_match: str | None = None) -> None:
        """Delete the device, its modules and all their twins."""
        with self._write() as db:
            current = schema.load_identity(db, device_id, None)
            _check_etag(if_match, current.etag, device_id, None)
            # modules share the device_id; twins follow their identities (ON DELETE CASCADE)
            db.execute("DELETE FROM identities WHERE device_id = ?", (device_id,))

    def device_count(self) -> int:
        """How many devices the hub has (modules not counted)."""
        with self._read() as db:
            row = db.execute("SELECT count(*) FROM identities WHERE module_id = ''").fetchone()
        return int(row[0])

    # -- modules -------------------------------------------------------------------------------

    def create_module(
        self,
        device_id: str,
        module_id: str,
        *,
        keys: SymmetricKeys | None = None,
        thumbprints: Thumbprints | None = None,
        ca_signed: bool = False,
    ) -> Identity:
        """A new module of an existing device, with its module twin.

        Raises:
            IdentityNotFound: no such device.
            IdentityExists: the module id is taken on this device.
            InvalidIdentity: a bad id or credential.
        """
        check_id(module_id, "module_id")
        auth, keys, thumbprints = check_credentials(keys, thumbprints, ca_signed)
        twin = new_twin(device_id, module_id, etag=schema.new_etag())
        created = self._clock()
        with self._write() as db:
            device = schema.load_identity(db, device_id, None)
            if schema.exists(db, device_id, module_id):
                raise IdentityExists(device_id, module_id)
            module = schema.insert_identity(
                db, device_id, module_id, auth=auth, status=device.status, keys=keys,
                thumbprints=thumbprints, created=created,
            )  # fmt: skip
            schema.insert_twin(db, twin)
        return module

    def get_module(self, device_id: str, module_id: str) -> Identity:
        """The module, or ``IdentityNotFound``."""
        found = self.identity(device_id, module_id) if module_id else None
        if found is None:
            raise IdentityNotFound(device_id, module_id or "''")
        return found

    def list_modules(self, device_id: str) -> list[Identity]:
        """The device's modules, ordered by id."""
        with self._read() as db:
            identities = schema.select_identities(db, device_id)
        if not identities:
            raise IdentityNotFound(device_id)
        return [identity for identity in identities if identity.module_id is not None]

    def update_module(
        self,
        device_id: str,
        module_id: str,
        *,
        keys: SymmetricKeys | None = None,
        thumbprints: Thumbprints | None = None,
        if_match: str | None = None,
    ) -> Identity:
        """Change a module's credentials."""
        if not module_id:
            raise IdentityNotFound(device_id, "''")
        return self._update(
            device_id, module_id, status=None, keys=keys, thumbprints=thumbprints,
            if_match=if_match,
        )  # fmt: skip

    def delete_module(self, device_id: str, module_id: str, *, if_match: str | None = None) -> None:
        """Delete the module and its twin."""
        if not module_id:
            raise IdentityNotFound(device_id, "''")
        with self._write() as db:
            current = schema.load_identity(db, device_id, module_id)
            _check_etag(if_match, current.etag, device_id, module_id)
            db.execute(
                "DELETE FROM identities WHERE device_id = ? AND module_id = ?",
                (device_id, module_id),
            )

    # -- twins ---------------------------------------------------------------------------------

    def get_twin(self, device_id: str, module_id: str | None = None) -> Twin:
        """The device twin (``module_id`` None) or a module twin."""
        with self._read() as db:
            return schema.load_twin(db, device_id, module_id)

    def patch_desired(
        self,
        device_id: str,
        module_id: str | None,
        patch: dict[str, Any],
        *,
        if_match: str | None = None,
    ) -> Twin:
        """Merge a patch into the desired properties; returns the twin with the new ``$version``.

        Raises:
            IdentityNotFound, PreconditionFailed, InvalidTwinPatch, TwinTooLarge.
        """
        return self._patch(device_id, module_id, "desired", patch, if_match=if_match)

    def replace_desired(
        self,
        device_id: str,
        module_id: str | None,
        desired: dict[str, Any],
        *,
        if_match: str | None = None,
    ) -> Twin:
        """Replace all desired properties."""
        return self._patch(device_id, module_id, "desired", desired, if_match, replace=True)

    def patch_reported(self, device_id: str, module_id: str | None, patch: dict[str, Any]) -> Twin:
        """Merge a device's patch into its reported properties."""
        return self._patch(device_id, module_id, "reported", patch, None)

    def patch_tags(
        self,
        device_id: str,
        patch: dict[str, Any],
        *,
        module_id: str | None = None,
        if_match: str | None = None,
    ) -> Twin:
        """Merge a patch into the twin's tags."""
        return self._patch(device_id, module_id, "tags", patch, if_match)

    def replace_tags(
        self,
        device_id: str,
        tags: dict[str, Any],
        *,
        module_id: str | None = None,
        if_match: str | None = None,
    ) -> Twin:
        """Replace all of the twin's tags."""
        return self._patch(device_id, module_id, "tags", tags, if_match, replace=True)

    def security_group(self, device_id: str) -> str:
        """The device's security group: its ``SecurityGroup`` tag, else "default"."""
        with self._read() as db:
            row = db.execute(
                "SELECT tags FROM twins WHERE device_id = ? AND module_id = ''", (device_id,)
            ).fetchone()
        if row is None:
            raise IdentityNotFound(device_id)
        return security_group_of(orjson.loads(row[0]))

    # -- policies and settings -----------------------------------------------------------------

    def policy(self, name: str) -> AccessPolicy | None:
        """A shared access policy by name, or None."""
        with self._read() as db:
            row = db.execute("SELECT * FROM policies WHERE name = ?", (name,)).fetchone()
        return None if row is None else schema.policy_from_row(row)

    def policies(self) -> list[AccessPolicy]:
        """All shared access policies, ordered by name."""
        with self._read() as db:
            rows = db.execute("SELECT * FROM policies ORDER BY name").fetchall()
        return [schema.policy_from_row(row) for row in rows]

    def regenerate_policy_keys(self, name: str, *, which: KeyChoice = "both") -> AccessPolicy:
        """New keys for a policy (one at a time lets clients roll over)."""
        if which not in ("primary", "secondary", "both"):
            raise ValueError(f"which must be primary, secondary or both, not {which!r}")
        with self._write() as db:
            row = db.execute("SELECT * FROM policies WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise IdentityNotFound(name, kind="access policy")
            primary = new_key() if which != "secondary" else row[2]
            secondary = new_key() if which != "primary" else row[3]
            db.execute(
                "UPDATE policies SET primary_key = ?, secondary_key = ? WHERE name = ?",
                (primary, secondary, name),
            )
        return schema.policy_from_row((row[0], row[1], primary, secondary))

    def hub_configuration(self) -> HubConfiguration:
        """The stored hub configuration, or the default one when never set."""
        with self._read() as db:
            row = db.execute(
                "SELECT value FROM settings WHERE name = 'hub_configuration'"
            ).fetchone()
        if row is None:
            return HubConfiguration()
        return HubConfiguration.from_json(orjson.loads(row[0]))

    def set_hub_configuration(self, config: HubConfiguration) -> None:
        """Store the hub configuration."""
        with self._write() as db:
            db.execute(
                "INSERT INTO settings VALUES ('hub_configuration', ?) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                (schema.dumps(config.to_json()),),
            )

    # -- custom alerts (per security group, next to the hub configuration) -----------------

    def custom_alerts(self, group: str) -> dict[str, Any] | None:
        """The custom-alerts document of a security group (case-insensitive), or None."""
        with self._read() as db:
            row = db.execute(
                "SELECT value FROM settings WHERE name = ?", (_CUSTOM_ALERTS + group.casefold(),)
            ).fetchone()
        if row is None:
            return None
        document: dict[str, Any] = orjson.loads(row[0])["document"]
        return document

    def custom_alert_groups(self) -> dict[str, dict[str, Any]]:
        """Every group's custom-alerts document, by group name (as last written)."""
        with self._read() as db:
            rows = db.execute(
                "SELECT value FROM settings WHERE name >= ? AND name < ? ORDER BY name",
                (_CUSTOM_ALERTS, _CUSTOM_ALERTS_END),
            ).fetchall()
        stored = [orjson.loads(row[0]) for row in rows]
        return {item["group"]: item["document"] for item in stored}

    def set_custom_alerts(self, group: str, document: dict[str, Any]) -> None:
        """Store a group's custom-alerts document (already validated), replacing any."""
        value = schema.dumps({"group": group, "document": document})
        with self._write() as db:
            db.execute(
                "INSERT INTO settings VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                (_CUSTOM_ALERTS + group.casefold(), value),
            )

    def delete_custom_alerts(self, group: str) -> bool:
        """Remove a group's custom alerts; False when it had none."""
        with self._write() as db:
            cursor = db.execute(
                "DELETE FROM settings WHERE name = ?", (_CUSTOM_ALERTS + group.casefold(),)
            )
        return cursor.rowcount > 0

    def close(self) -> None:
        """Close the database; later calls raise ``RegistryError``."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._db.close()

    # -- internals -----------------------------------------------------------------------------

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._check_open()
            try:
                yield self._db
            except sqlite3.Error as exc:
                raise RegistryError(f"registry {self._path}: {exc}") from exc

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        # BEGIN IMMEDIATE takes SQLite's write lock up front, so another process sharing the
        # file cannot interleave between our read and our write.
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
                raise RegistryError(f"registry {self._path}: {exc}") from exc

    def _check_open(self) -> None:
        if self._closed:
            raise RegistryError(f"registry {self._path} is closed")

    def _update(
        self,
        device_id: str,
        module_id: str | None,
        *,
        status: Status | None,
        keys: SymmetricKeys | None,
        thumbprints: Thumbprints | None,
        if_match: str | None,
    ) -> Identity:
        changes: dict[str, Any] = {"etag": schema.new_etag()}
        if status is not None:
            changes["status"] = status
        if keys is not None or thumbprints is not None:
            auth, keys, thumbprints = check_credentials(keys, thumbprints, False, generate=False)
            changes.update(auth=auth, keys=keys, thumbprints=thumbprints)
        with self._write() as db:
            current = schema.load_identity(db, device_id, module_id)
            _check_etag(if_match, current.etag, device_id, module_id)
            updated = dataclasses.replace(current, **changes)
            schema.update_identity(db, updated)
        return updated

    def _patch(
        self,
        device_id: str,
        module_id: str | None,
        section: Section,
        patch: dict[str, Any],
        if_match: str | None,
        *,
        replace: bool = False,
    ) -> Twin:
        with self._write() as db:
            twin = schema.load_twin(db, device_id, module_id)
            _check_etag(if_match, twin.etag, device_id, module_id)
            twin = apply_patch(
                twin, section, patch, etag=schema.new_etag(), replace=replace, limits=self._limits
            )
            schema.update_section(db, twin, section)
        return twin


def _with_security_group(tags: dict[str, Any], group: str | None) -> dict[str, Any]:
    # One canonical "SecurityGroup" tag, whatever the case of the one passed in.
    if group is None:
        group = security_group_of(tags)
    elif not isinstance(group, str) or not group:
        raise InvalidIdentity("security_group must be a non-empty string", field="security_group")
    wanted = SECURITY_GROUP_TAG.lower()
    kept = {key: value for key, value in tags.items() if key.lower() != wanted}
    return {**kept, SECURITY_GROUP_TAG: group}


def _check_etag(if_match: str | None, etag: str, device_id: str, module_id: str | None) -> None:
    wanted = parse_if_match(if_match)
    if wanted is not None and wanted != etag:
        what = f"{device_id}/{module_id}" if module_id else device_id
        raise PreconditionFailed(
            f"{what}: etag {wanted!r} does not match the current one; read it and retry"
        )


if TYPE_CHECKING:

    def _conforms(store: SqliteRegistry) -> RegistryStore:
        return store  # mypy checks here that SqliteRegistry implements the protocol
