"""Configured feeds, loaded into one index in the background and swapped in whole.

:class:`FeedManager` is what the stream holds: its ``match`` reads the current
:class:`IntelIndex` (one attribute read; readers never wait). A reload loads the due feeds, builds
a new index from every feed's latest good load and replaces the reference. A feed whose reload
fails keeps its previous indicators; the error and its time go to :meth:`FeedManager.status`.

>>> import tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> _ = (folder / "block.txt").write_text("203.0.113.0/24\\n")
>>> manager = FeedManager([FeedConfig("blocklist", "list-file", path=folder / "block.txt")])
>>> manager.reload().counts["ip"], manager.match("ip", "203.0.113.9").feed
(1, 'blocklist')
"""

from __future__ import annotations

import difflib
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from pathlib import Path
from typing import Literal, NoReturn, Protocol, cast
from urllib.parse import urlsplit

from iotsec.analytics.errors import FeedError
from iotsec.analytics.indicators import IndicatorKind, IntelMatch
from iotsec.analytics.intel.index import IntelIndex
from iotsec.analytics.intel.indicator import Clock, FeedLoad, Skipped, utc_now
from iotsec.analytics.intel.lists import LIST_KINDS, ListKind, read_list
from iotsec.analytics.intel.stix import read_bundle

__all__ = [
    "FEED_KINDS",
    "SOURCES",
    "FeedConfig",
    "FeedKind",
    "FeedManager",
    "FeedSource",
    "FeedStatus",
    "load_feed_configs",
    "parse_feed_config",
]

log = logging.getLogger(__name__)

FeedKind = Literal["stix-file", "list-file", "taxii"]
FEED_KINDS: tuple[FeedKind, ...] = ("stix-file", "list-file", "taxii")
_SAMPLE = 20  # skipped entries kept in a feed's status


@dataclass(frozen=True, slots=True)
class FeedConfig:
    """One feed: a STIX bundle file, a plain list file, or a TAXII 2.1 collection.

    Raises:
        FeedError: a field is missing or does not fit the kind.
    """

    name: str
    kind: FeedKind
    #: The file (``stix-file``, ``list-file``).
    path: Path | None = None
    #: The TAXII server's discovery URL (https only).
    url: str | None = None
    #: The TAXII collection's id (or alias).
    collection: str | None = None
    #: A TAXII API root URL (or a path relative to ``url``), which skips discovery.
    api_root: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    #: A CA bundle (PEM) to verify the TAXII server with, instead of the system's.
    ca_file: Path | None = None
    #: What every line of a list holds; ``auto`` detects each line.
    list_kind: ListKind = "auto"
    #: Seconds between reloads.
    refresh: float = 3600.0

    def __post_init__(self) -> None:
        def fail(field: str, reason: str) -> NoReturn:
            raise FeedError(self.name or "<unnamed>", reason, field=field)

        if not self.name or not self.name.strip():
            fail("name", "a feed needs a name")
        if self.kind not in FEED_KINDS:
            fail("kind", f"unknown kind {self.kind!r}{_did_you_mean(self.kind, FEED_KINDS)}")
        if self.list_kind not in LIST_KINDS:
            hint = _did_you_mean(self.list_kind, LIST_KINDS)
            fail("list_kind", f"unknown list_kind {self.list_kind!r}{hint}")
        if not (math.isfinite(self.refresh) and self.refresh > 0):
            fail("refresh", f"refresh must be a positive number of seconds, not {self.refresh!r}")
        if self.password is not None and self.username is None:
            fail("username", "a password needs a username")
        if self.kind != "taxii":
            if self.path is None:
                fail("path", f"a {self.kind} feed needs a path")
            return
        if not self.url or not self.collection:
            missing = "url" if not self.url else "collection"
            fail(missing, "a taxii feed needs a url (the discovery URL) and a collection id")
        parts = urlsplit(self.url or "")
        # Credentials first: the other message quotes the url, which must not carry a password.
        if parts.username is not None or parts.password is not None:
            fail("url", "put TAXII credentials in username and password, not in the url")
        if parts.scheme != "https" or not parts.hostname:
            fail("url", f"the TAXII url must be https://host/..., not {self.url!r}")


class FeedSource(Protocol):
    """Where one feed's indicators come from."""

    def load(self, now: datetime) -> FeedLoad:
        """Everything the feed holds now; ``now`` decides what has expired.

        Raises:
            FeedError: the feed cannot be read or parsed.
        """
        ...


def _read(config: FeedConfig) -> bytes:
    path = cast(Path, config.path)
    try:
        return path.read_bytes()
    except OSError as exc:
        raise FeedError(config.name, f"cannot read {path}: {exc.strerror or exc}") from exc


@dataclass(frozen=True, slots=True)
class _StixFile:
    config: FeedConfig

    def load(self, now: datetime) -> FeedLoad:
        return read_bundle(_read(self.config), feed=self.config.name, now=now)


@dataclass(frozen=True, slots=True)
class _ListFile:
    config: FeedConfig

    def load(self, now: datetime) -> FeedLoad:
        data = _read(self.config)
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = data[: exc.start].count(b"\n") + 1
            reason = f"{self.config.path}:{line}: not UTF-8 (byte {exc.start})"
            raise FeedError(self.config.name, reason) from exc
        name = cast(Path, self.config.path).name
        return read_list(text, feed=self.config.name, source=name, kind=self.config.list_kind)


def _taxii(config: FeedConfig) -> FeedSource:
    # Loads requests and taxii2-client only when a TAXII feed is configured.
    from iotsec.analytics.intel.taxii import TaxiiPoller  # noqa: PLC0415

    return TaxiiPoller(
        feed=config.name,
        url=cast(str, config.url),
        collection=cast(str, config.collection),
        api_root=config.api_root,
        username=config.username,
        password=config.password,
        ca_file=config.ca_file,
    )


#: How each kind of feed is read.
SOURCES: Mapping[FeedKind, Callable[[FeedConfig], FeedSource]] = {
    "stix-file": _StixFile,
    "list-file": _ListFile,
    "taxii": _taxii,
}


@dataclass(frozen=True, slots=True)
class FeedStatus:
    """One feed, as operators see it."""

    name: str
    kind: FeedKind
    #: Indicators from the last good load, in the index now (a STIX pattern may give several).
    indicators: int = 0
    by_kind: Mapping[IndicatorKind, int] = field(default_factory=dict)
    skipped: int = 0
    #: The first skipped entries of the last good load, with their reasons.
    skipped_sample: tuple[Skipped, ...] = ()
    last_load: datetime | None = None
    last_attempt: datetime | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None
    #: Whether the last attempt succeeded (True before the first).
    ok: bool = True


@dataclass(slots=True)
class _Feed:
    config: FeedConfig
    source: FeedSource
    load: FeedLoad | None = None


class FeedManager:
    """Threat-intelligence feeds behind one :class:`IntelLookup` that never blocks its readers.

    ``reload()`` loads now, in the caller's thread; ``start()`` loads in a background thread,
    then reloads each feed every ``refresh`` seconds (a failed feed again after ``retry``).
    ``put()`` and ``remove()`` change the feeds while it runs: a replaced or removed feed's
    indicators leave the index at once and its refresh stops; a new feed is loaded at once.
    """

    def __init__(
        self,
        feeds: Sequence[FeedConfig],
        *,
        clock: Clock = utc_now,
        sources: Mapping[FeedKind, Callable[[FeedConfig], FeedSource]] = SOURCES,
        retry: float = 60.0,
    ) -> None:
        self._sources = sources
        self._feeds: dict[str, _Feed] = {}
        for config in feeds:
            if config.name in self._feeds:
                raise FeedError(config.name, "two feeds have this name", field="name")
            self._feeds[config.name] = _Feed(config, sources[config.kind](config))
        self._clock = clock
        self._retry = retry
        self._index = IntelIndex(clock=clock)
        self._status = {c.name: FeedStatus(c.name, c.kind) for c in feeds}
        # _lock guards the feeds, their status, the schedule and the index swap, and is held
        # only briefly; _reloading makes loads take turns (a TAXII poll may take minutes), so a
        # change never waits for a load: a load whose feed was replaced meanwhile is dropped.
        self._lock = threading.Lock()
        self._attempted = threading.Condition(self._lock)
        self._reloading = threading.Lock()
        self._due: dict[str, float] = {}  # monotonic seconds at which the thread loads a feed
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._loaded = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def index(self) -> IntelIndex:
        """The index readers see now."""
        return self._index

    def match(self, kind: IndicatorKind, value: str) -> IntelMatch | None:
        """As :meth:`IntelIndex.match`, on the current index."""
        return self._index.match(kind, value)

    def status(self) -> tuple[FeedStatus, ...]:
        """Every feed's counts, last load and last error, in configuration order."""
        with self._lock:
            return tuple(self._status[name] for name in self._feeds)

    def configs(self) -> tuple[FeedConfig, ...]:
        """Every feed's configuration, in configuration order."""
        with self._lock:
            return tuple(feed.config for feed in self._feeds.values())

    def put(self, config: FeedConfig) -> bool:
        """Add ``config``'s feed, or replace the feed of that name; True when it is new.

        A replaced feed starts afresh: its indicators leave the index now and its status is
        reset. The background thread loads the new feed at once (without the thread, call
        ``reload([name])``).
        """
        source = self._sources[config.kind](config)
        with self._lock:
            old = self._feeds.get(config.name)
            self._feeds[config.name] = _Feed(config, source)
            self._status[config.name] = FeedStatus(config.name, config.kind)
            self._due[config.name] = 0.0
            if old is not None and old.load is not None:
                self._swap()
        self._wake.set()
        log.info("feed %s: %s (%s)", config.name, "replaced" if old else "added", config.kind)
        return old is None

    def remove(self, name: str) -> None:
        """Remove the feed ``name``: its indicators leave the index now and it is not reloaded.

        Raises:
            FeedError: there is no such feed.
        """
        with self._lock:
            feed = self._feeds.pop(name, None)
            if feed is None:
                raise FeedError(name, f"no such feed{_did_you_mean(name, self._feeds)}")
            del self._status[name]
            self._due.pop(name, None)
            if feed.load is not None:
                self._swap()
            self._attempted.notify_all()
        self._wake.set()
        log.info("feed %s: removed", name)

    def wait_attempted(self, name: str, timeout: float | None = None) -> bool:
        """Wait until feed ``name`` has had a load attempt (loaded or failed) since it was put.

        False when ``timeout`` passed first, or the feed is gone.
        """
        with self._attempted:
            self._attempted.wait_for(
                lambda: name not in self._status or self._status[name].last_attempt is not None,
                timeout,
            )
            return name in self._status and self._status[name].last_attempt is not None

    def reload(self, names: Iterable[str] | None = None) -> IntelIndex:
        """Load the named feeds (default: all) now, and swap in the index built from them.

        A feed that fails keeps its previous load; its error is in :meth:`status`.
        """
        with self._lock:
            chosen = list(self._feeds) if names is None else list(names)
            for name in chosen:
                if name not in self._feeds:
                    raise FeedError(name, f"no such feed{_did_you_mean(name, self._feeds)}")
            batch = [self._feeds[name] for name in chosen]
        self._reload(batch)
        return self._index

    def _reload(self, batch: Sequence[_Feed]) -> None:
        with self._reloading:
            changed = False
            for feed in batch:
                changed = self._load(feed) or changed
            if changed:
                with self._lock:
                    self._swap()

    def _swap(self) -> None:
        """Build the index from every feed's latest good load and swap it in (lock held)."""
        loads = [feed.load for feed in self._feeds.values() if feed.load is not None]
        indicators = (i for load in loads for i in load.indicators)
        self._index = IntelIndex(indicators, clock=self._clock)

    def _load(self, feed: _Feed) -> bool:
        name = feed.config.name
        attempt = self._clock()
        load: FeedLoad | None = None
        try:
            load = feed.source.load(attempt)
        except FeedError as exc:
            reason = exc.reason
        except Exception as exc:  # a bug in a source: keep the old data, and say so loudly
            log.exception("feed %s: failed unexpectedly", name)
            reason = f"internal error: {type(exc).__name__}: {exc}"
        with self._lock:
            if self._feeds.get(name) is not feed:
                return False  # replaced or removed while it loaded: this load is stale
            before = self._status[name]
            if load is not None:
                feed.load = load
                by_kind: dict[IndicatorKind, int] = {}
                for indicator in load.indicators:
                    by_kind[indicator.kind] = by_kind.get(indicator.kind, 0) + 1
                self._status[name] = replace(
                    before,
                    indicators=len(load.indicators),
                    by_kind=by_kind,
                    skipped=len(load.skipped),
                    skipped_sample=load.skipped[:_SAMPLE],
                    last_load=attempt,
                    last_attempt=attempt,
                    ok=True,
                )
            else:
                self._status[name] = replace(
                    before, last_attempt=attempt, last_error=reason, last_error_at=attempt, ok=False
                )
            kept = len(feed.load.indicators) if feed.load is not None else 0
            self._attempted.notify_all()
        if load is not None:
            log.info(
                "feed %s: %d indicators, %d skipped", name, len(load.indicators), len(load.skipped)
            )
            return True
        log.warning("feed %s: %s (keeping its previous %d indicators)", name, reason, kept)
        return False

    def start(self) -> None:
        """Load every feed in a background thread, then keep them fresh."""
        if self._thread is not None:
            return
        self._stopping.clear()
        with self._lock:
            self._due = dict.fromkeys(self._feeds, 0.0)  # everything at once, first
        self._thread = threading.Thread(target=self._run, name="iotsec-intel-feeds", daemon=True)
        self._thread.start()

    def wait_loaded(self, timeout: float | None = None) -> bool:
        """Wait until the background thread's first load is done (loaded or failed)."""
        return self._loaded.wait(timeout)

    def stop(self, timeout: float | None = None) -> None:
        """Stop the background thread (a load in progress finishes first)."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stopping.set()
            self._wake.set()
            thread.join(timeout)

    def __enter__(self) -> FeedManager:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()  # a change after this wakes the wait below
            now = time.monotonic()
            with self._lock:
                batch = [self._feeds[name] for name, at in self._due.items() if at <= now]
            try:
                if batch:
                    self._reload(batch)
            except Exception:  # keep the thread: the index in use stays, the log says why
                log.exception("intel feeds: reload failed")
            finally:
                self._loaded.set()
                after = time.monotonic()
                with self._lock:
                    for feed in batch:
                        name = feed.config.name
                        if self._feeds.get(name) is not feed:
                            continue  # removed, or replaced (and due at once) meanwhile
                        refresh = feed.config.refresh
                        failed = not self._status[name].ok
                        self._due[name] = after + (min(refresh, self._retry) if failed else refresh)
                    wait = min(self._due.values()) - time.monotonic() if self._due else None
            if self._stopping.is_set():  # stop() may have come before the clear() above
                return
            self._wake.wait(max(wait, 0.0) if wait is not None else None)


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


# --- configuration files ------------------------------------------------------------------------

_KEYS = frozenset(f.name for f in fields(FeedConfig)) | {"password_file"}
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def load_feed_configs(data: object, *, base: Path | None = None) -> tuple[FeedConfig, ...]:
    """Feeds from parsed YAML or JSON: a list of feed mappings, or ``{"feeds": [...]}``.

    Relative ``path``, ``ca_file`` and ``password_file`` resolve against ``base`` (the config
    file's directory); ``password_file`` holds the TAXII password; ``refresh`` is seconds, or a
    string such as ``"15m"``, ``"6h"``, ``"1d"``.

    Raises:
        FeedError: naming the feed (or ``feeds[i]``) and the key at fault.
    """
    if isinstance(data, Mapping) and "feeds" in data:
        data = data["feeds"]
    if not isinstance(data, list):
        raise FeedError("<config>", "feeds: expected a list of feeds")
    return tuple(
        parse_feed_config(entry, base=base, where=f"feeds[{i}]") for i, entry in enumerate(data)
    )


def parse_feed_config(entry: object, *, base: Path | None = None, where: str = "") -> FeedConfig:
    """One feed mapping, as an entry of ``feeds:`` in a config file holds it.

    ``where`` prefixes the key in error reasons (``feeds[2]`` gives ``feeds[2].refresh: ...``).

    >>> lab = parse_feed_config({"name": "lab", "kind": "list-file", "path": "lab.txt"})
    >>> lab.path.name, lab.refresh
    ('lab.txt', 3600.0)
    >>> parse_feed_config({"name": "lab", "kind": "list-file", "pth": "lab.txt"})
    Traceback (most recent call last):
    ...
    iotsec.analytics.errors.FeedError: feed lab: pth: unknown key (did you mean 'path'?)

    Raises:
        FeedError: naming the feed and, in ``field``, the key at fault.
    """

    def at(key: str) -> str:
        return f"{where}.{key}" if where else key

    if not isinstance(entry, Mapping):
        raise FeedError(where or "<feed>", f"{where or 'a feed'}: expected a mapping")
    name = entry.get("name")
    feed = name if isinstance(name, str) and name else where or "<feed>"
    for key in entry:
        if key not in _KEYS:
            hint = _did_you_mean(str(key), _KEYS)
            raise FeedError(feed, f"{at(str(key))}: unknown key{hint}", field=str(key))
    values: dict[str, object] = {}
    for key, value in entry.items():
        if key == "refresh":
            values[key] = _seconds(value, feed, at("refresh"))
        elif not isinstance(value, str):
            raise FeedError(feed, f"{at(key)}: expected a string", field=key)
        elif key in ("path", "ca_file", "password_file"):
            path = Path(value).expanduser()
            values[key] = path if base is None or path.is_absolute() else base / path
        else:
            values[key] = value
    secret = values.pop("password_file", None)
    if isinstance(secret, Path):
        if "password" in values:
            reason = f"{where or 'a feed'}: give password or password_file, not both"
            raise FeedError(feed, reason, field="password_file")
        values["password"] = _read_secret(secret, feed, at("password_file"))
    for key in ("name", "kind"):
        if key not in values:
            reason = f"{where or 'a feed'}: a feed needs a name and a kind"
            raise FeedError(feed, reason, field=key)
    return FeedConfig(**values)  # type: ignore[arg-type]  # keys and types checked above; FeedConfig validates the rest


def _read_secret(path: Path, feed: str, where: str) -> str:
    try:
        return path.read_text("utf-8").strip()
    except OSError as exc:
        reason = f"{where}: cannot read {path}: {exc.strerror or exc}"
        raise FeedError(feed, reason, field="password_file") from exc
    except UnicodeDecodeError as exc:  # its message would quote none of the secret, but be sure
        reason = f"{where}: cannot read {path}: not UTF-8"
        raise FeedError(feed, reason, field="password_file") from exc


def _seconds(value: object, feed: str, where: str) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and value[:-1].replace(".", "", 1).isdigit():
        unit = _UNITS.get(value[-1])
        if unit is not None:
            return float(value[:-1]) * unit
    reason = f"{where}: expected seconds or a duration like '15m', '6h', '1d'"
    raise FeedError(feed, reason, field="refresh")
