"""Threat-intelligence feeds on the service API: list them, and add, replace or remove one.

``GET /security/intelFeeds`` lists every feed (``RegistryRead``); ``GET``, ``PUT`` and
``DELETE /security/intelFeeds/{name}`` read, create or replace, and remove one; changes need
``RegistryWrite``, as the hub configuration and custom alerts do. A PUT body is one entry of
``feeds:`` in ``analytics.yaml`` (``kind``, ``path``, ``url``, ``refresh``, ...), checked by the
same parser as the file: a refused one is answered 400 naming the ``field`` at fault. A change
is written into ``analytics.yaml`` (atomically; the other sections kept) and applied to the
running :class:`FeedManager` at once, so the rules see the new feed without a restart.

Secrets: a TAXII password is never answered, logged or written into ``analytics.yaml`` (it is
kept in ``intel-secrets/`` with mode 0600). A PUT without ``password`` keeps the feed's current
one; ``"password": ""`` removes it.

Files: ``path`` and ``ca_file`` are relative to the data dir, or absolute anywhere on the
server. A feed ``path`` may not be the hub's own state or secrets (its databases, credentials,
``tls/``, ``agent/``, ``intel-secrets/``, ``analytics.yaml``, the served TLS key): a feed's
status quotes the lines it could not read, which must not be a way to read those. A missing or
unreadable file is not refused: the feed's status shows why it does not load, as it would for a
feed in the file.
"""

from __future__ import annotations

import asyncio
import difflib
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from iotsec.analytics.errors import FeedError
from iotsec.analytics.intel import FeedConfig, FeedManager, FeedStatus, parse_feed_config
from iotsec.cli.feed_file import SECRETS_DIR, FeedFile
from iotsec.cli.service_client import CliError
from iotsec.hub.errors import HubError
from iotsec.hub.http.responses import hub_error_response, json_object
from iotsec.hub.oplog import OperationLogEntry
from iotsec.hub.server import HubServer

__all__ = ["MAX_FEED_BYTES", "IntelFeedApi", "feed_json", "private_path"]

log = logging.getLogger("iotsec.analytics")

#: A feed entry is a handful of short strings.
MAX_FEED_BYTES = 16_384
_MAX_NAME = 128
_PRIVATE_DIRS = frozenset({"tls", "agent", SECRETS_DIR})
_PRIVATE_FILES = frozenset({"owner.credential", "console.secret", "server.json", "analytics.yaml"})
_DATABASE = re.compile(r"\.(db|duckdb)([.-](wal|shm|journal))?$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def private_path(path: Path, data_dir: Path, *, also: Iterable[Path] = ()) -> bool:
    """Whether ``path`` is the hub's own state or a secret of it (after following links).

    >>> data = Path("/var/lib/iotsec")
    >>> [private_path(data / p, data) for p in ("bad-ips.txt", "tls/server.key", "registry.db")]
    [False, True, True]
    >>> private_path(Path("/srv/intel/block.txt"), data)
    False
    """
    resolved = path.resolve()
    if any(resolved == other.resolve() for other in also):
        return True
    try:
        inside = resolved.relative_to(data_dir.resolve())
    except ValueError:
        return False
    parts = inside.parts
    if not parts:
        return True  # the data dir itself
    return (
        parts[0] in _PRIVATE_DIRS
        or (len(parts) == 1 and parts[0] in _PRIVATE_FILES)
        or bool(_DATABASE.search(parts[-1]))
    )


def _shown(path: Path, data_dir: Path) -> str:
    """A path as an operator would write it: relative to the data dir when inside it."""
    try:
        return str(path.relative_to(data_dir))
    except ValueError:
        return str(path)


def _config_json(config: FeedConfig, data_dir: Path) -> dict[str, Any]:
    """The feed's settings in ``analytics.yaml``'s keys, as a PUT takes them; no password."""
    out: dict[str, Any] = {"name": config.name, "kind": config.kind}
    if config.path is not None:
        out["path"] = _shown(config.path, data_dir)
    if config.kind == "list-file":
        out["list_kind"] = config.list_kind
    for key in ("url", "collection", "api_root", "username"):
        value = getattr(config, key)
        if value is not None:
            out[key] = value
    if config.ca_file is not None:
        out["ca_file"] = _shown(config.ca_file, data_dir)
    out["refresh"] = config.refresh
    return out


def feed_json(config: FeedConfig, status: FeedStatus, data_dir: Path) -> dict[str, Any]:
    """One feed as the API answers it: its settings (never its password) and its status."""

    def when(value: datetime | None) -> str | None:
        return value.isoformat() if value is not None else None

    settings = _config_json(config, data_dir)
    return {
        "name": status.name,
        "kind": status.kind,
        "source": settings.get("path") or settings.get("url") or "",
        "config": settings,
        "hasPassword": config.password is not None,
        "indicators": status.indicators,
        "byKind": dict(status.by_kind),
        "skipped": status.skipped,
        "skippedSample": [str(s) for s in status.skipped_sample],
        "lastLoaded": when(status.last_load),
        "lastAttempt": when(status.last_attempt),
        "lastError": status.last_error,
        "lastErrorAt": when(status.last_error_at),
        "ok": status.ok,
    }


def _error(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"ErrorCode": code, "Message": message, **extra}, status_code=status)


def _invalid(exc: FeedError) -> JSONResponse:
    return _error(400, "ArgumentInvalid", str(exc), field=exc.field, reason=exc.reason)


def _entry(name: str, body: Mapping[str, Any]) -> tuple[dict[str, Any], str | None]:
    """The entry to store (without the password) and the password given, if any.

    Raises:
        FeedError: what the API refuses before the parser sees it (``field`` named).
    """
    if not name.strip() or len(name) > _MAX_NAME or _CONTROL.search(name):
        reason = f"a feed name is 1 to {_MAX_NAME} printable characters"
        raise FeedError(name[:_MAX_NAME] or "<unnamed>", reason, field="name")
    if "name" in body and body["name"] != name:
        raise FeedError(name, "name: the body names another feed than the path", field="name")
    if "password_file" in body:
        reason = "password_file: give the password itself; the server keeps it in a file"
        raise FeedError(name, reason, field="password_file")
    password = body.get("password")
    if password is not None and not isinstance(password, str):
        raise FeedError(name, "password: expected a string", field="password")
    entry: dict[str, Any] = {"name": name}
    entry.update((k, v) for k, v in body.items() if k not in ("name", "password") and v is not None)
    return entry, password


class IntelFeedApi:
    """The feed routes over ``analytics.yaml`` in ``data_dir`` and the running feed manager.

    ``hub`` and ``feeds`` are asked for at each request: the routes exist before the hub is
    built and before analytics has started (until then, changes answer 503).
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        config_file: Path,
        hub: Callable[[], HubServer],
        feeds: Callable[[], FeedManager | None],
        first_load_wait: float = 5.0,
    ) -> None:
        self.data_dir = data_dir
        self.file = FeedFile(config_file)
        self._hub = hub
        self._feeds = feeds
        self._first_load_wait = first_load_wait
        self._changing = asyncio.Lock()

    def routes(self) -> list[BaseRoute]:
        """``/security/intelFeeds`` and ``/security/intelFeeds/{name}``."""
        return [
            Route("/security/intelFeeds", self._list, methods=["GET"]),
            Route("/security/intelFeeds/{name}", self._get, methods=["GET"]),
            Route("/security/intelFeeds/{name}", self._put, methods=["PUT"]),
            Route("/security/intelFeeds/{name}", self._delete, methods=["DELETE"]),
        ]

    def _items(self, manager: FeedManager | None) -> list[dict[str, Any]]:
        if manager is None:
            return []
        configs = {c.name: c for c in manager.configs()}
        return [
            feed_json(configs[s.name], s, self.data_dir)
            for s in manager.status()
            if s.name in configs  # one changed between the two reads: it is in the next answer
        ]

    async def _list(self, request: Request) -> Response:
        await self._hub().authorize_service(request, "RegistryRead")
        return JSONResponse({"value": self._items(self._feeds())})

    async def _get(self, request: Request) -> Response:
        await self._hub().authorize_service(request, "RegistryRead")
        name = request.path_params["name"]
        for item in self._items(self._feeds()):
            if item["name"] == name:
                return JSONResponse(item)
        return _error(404, "FeedNotFound", f"no feed {name!r}")

    async def _put(self, request: Request) -> Response:
        hub = self._hub()
        await hub.authorize_service(request, "RegistryWrite")
        manager = self._feeds()
        if manager is None:
            return _error(503, "ServiceUnavailable", "analytics is starting")
        name = request.path_params["name"]
        try:
            body = await json_object(request, limit=MAX_FEED_BYTES)
        except HubError as exc:
            return hub_error_response(exc)
        try:
            entry, password = _entry(name, body)
            async with self._changing:
                config, created = await asyncio.to_thread(self._store, manager, entry, password)
        except FeedError as exc:
            return _invalid(exc)
        except CliError as exc:
            log.error("intel feed %s: not changed: %s", name, exc)
            return _error(409, "ConfigConflict", str(exc))
        self._record(hub, request, "setIntelFeed", {"feed": name, "kind": config.kind})
        change = "added" if created else "replaced"
        log.info("intel feed %s (%s) %s through the service API", name, config.kind, change)
        await asyncio.to_thread(manager.wait_attempted, name, self._first_load_wait)
        item = next((i for i in self._items(manager) if i["name"] == name), None)
        if item is None:  # removed by another call meanwhile
            return _error(409, "ConfigConflict", f"feed {name!r} was removed meanwhile")
        return JSONResponse(item, status_code=201 if created else 200)

    def _store(
        self, manager: FeedManager, entry: dict[str, Any], password: str | None
    ) -> tuple[FeedConfig, bool]:
        """Check the entry, write it into the file, then into the manager (in this order)."""
        name = entry["name"]
        old = self.file.entry(name)
        kept: dict[str, Any] = {}
        if password is None and old is not None and "username" in entry:
            kept = {k: old[k] for k in ("password", "password_file") if k in old}
        parsed = {**entry, **kept}
        if password:
            parsed["password"] = password
        config = parse_feed_config(parsed, base=self.data_dir)
        key_file = self._hub().settings.tls_key
        also = [key_file] if key_file is not None else []
        if config.path is not None and private_path(config.path, self.data_dir, also=also):
            reason = f"path: {config.path} is the hub's own state or a secret; name another file"
            raise FeedError(name, reason, field="path")
        stored = {**entry, **kept}
        if password:
            stored["password_file"] = self.file.write_secret(name, password)
        self.file.put(stored)
        if old is not None and old.get("password_file") != stored.get("password_file"):
            self.file.forget_secret(old)
        return config, manager.put(config)

    async def _delete(self, request: Request) -> Response:
        hub = self._hub()
        await hub.authorize_service(request, "RegistryWrite")
        manager = self._feeds()
        if manager is None:
            return _error(503, "ServiceUnavailable", "analytics is starting")
        name = request.path_params["name"]
        try:
            async with self._changing:
                found = await asyncio.to_thread(self._remove, manager, name)
        except CliError as exc:
            log.error("intel feed %s: not removed: %s", name, exc)
            return _error(409, "ConfigConflict", str(exc))
        if not found:
            names = [c.name for c in manager.configs()]
            return _error(404, "FeedNotFound", f"no feed {name!r}{_did_you_mean(name, names)}")
        self._record(hub, request, "deleteIntelFeed", {"feed": name})
        log.info("intel feed %s removed through the service API", name)
        return JSONResponse({"name": name, "deleted": True})

    def _remove(self, manager: FeedManager, name: str) -> bool:
        removed = self.file.delete(name)
        self.file.forget_secret(removed)
        try:
            manager.remove(name)
        except FeedError:
            return removed is not None  # only in the file (edited since the start)
        return True

    def _record(
        self, hub: HubServer, request: Request, operation: str, properties: dict[str, str]
    ) -> None:
        address = request.client.host if request.client is not None else None
        hub.oplog.record_soon(
            OperationLogEntry(
                time=hub.clock(),
                category="Configurations",
                operation=operation,
                protocol="service",
                source_ip=address,
                properties=properties,
            )
        )


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
