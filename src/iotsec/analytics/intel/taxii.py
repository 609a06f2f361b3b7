"""TAXII 2.1 collections, polled through taxii2-client: discovery, API root, collection, objects.

Each poll asks only for what was added since the last one (``added_after`` = the server's
``X-TAXII-Date-Added-Last`` from the previous poll) and follows pagination: ``more`` with
``next``, or, from a server that gives no ``next``, ``more`` with a newer ``added_after``. The
poller keeps the latest version of every indicator it has seen, so each load is the whole
collection as far as we know it; a poll that fails part-way changes nothing.

TLS is verified against the system's CAs, or against ``ca_file``. The password goes to the
server only: never into a log line, an error or a ``repr``. Requests time out (``timeout``), so a
stalled server fails the poll instead of stalling the feed's reloads.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import requests
import taxii2client.v21 as taxii  # type: ignore[import-untyped]  # taxii2-client has no type hints
from requests import PreparedRequest, Response
from requests.adapters import HTTPAdapter
from taxii2client.common import (  # type: ignore[import-untyped]  # as above
    _HTTPConnection,  # the documented type of taxii2-client's ``conn`` argument
)
from taxii2client.exceptions import (  # type: ignore[import-untyped]  # as above
    TAXIIServiceException,
)

from iotsec.analytics.errors import FeedError
from iotsec.analytics.intel.indicator import FeedLoad, utc_now
from iotsec.analytics.intel.stix import parse_timestamp, read_objects

__all__ = ["TaxiiPoller"]

log = logging.getLogger(__name__)

_DATE_ADDED_LAST = "X-TAXII-Date-Added-Last"
#: What a broken server or network can raise through taxii2-client (it indexes and unpacks the
#: server's JSON without checking it, hence KeyError/TypeError/AttributeError).
_FOREIGN = (
    requests.RequestException,
    TAXIIServiceException,
    KeyError,
    TypeError,
    ValueError,
    AttributeError,
)


class _Adapter(HTTPAdapter):
    """Gives every request a timeout (taxii2-client sets none) and our CA file (requests lets
    REQUESTS_CA_BUNDLE in the environment override a session's own ``verify``); closes its
    connections when closed."""

    def __init__(self, timeout: float, ca_file: str | None) -> None:
        super().__init__()
        self._timeout = timeout
        self._ca_file = ca_file

    def send(  # noqa: PLR0917 - the signature requests calls
        self,
        request: PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: Any = True,
        cert: Any = None,
        proxies: dict[str, str] | None = None,
    ) -> Response:
        timeout = self._timeout if timeout is None else timeout
        if self._ca_file is not None and verify is not False:
            verify = self._ca_file
        return super().send(request, stream, timeout, verify, cert, proxies)

    def close(self) -> None:
        # Close the pooled connections now: urllib3 only drops its pools here, so a connection
        # lives on while anything (a chained HTTPError's response) still holds its pool.
        pools = self.poolmanager.pools
        for key in pools.keys():  # noqa: SIM118 - the container cannot be iterated itself
            pool = pools.get(key)
            if pool is not None:
                pool.close()
        super().close()


class TaxiiPoller:
    """One TAXII 2.1 collection as a feed source: ``load()`` polls, then returns every indicator.

    ``url`` is the server's discovery URL; ``api_root`` (a URL, or a path relative to ``url``)
    skips discovery. ``collection`` is the collection's id (or alias).
    """

    def __init__(
        self,
        *,
        feed: str,
        url: str,
        collection: str,
        api_root: str | None = None,
        username: str | None = None,
        password: str | None = None,
        ca_file: Path | None = None,
        page_size: int = 1000,
        timeout: float = 30.0,
        max_pages: int = 10_000,
    ) -> None:
        self._feed = feed
        self._url = url
        self._collection = collection
        self._api_root = api_root
        self._username = username
        self._password = password
        self._ca_file = str(ca_file) if ca_file is not None else None
        self._page_size = page_size
        self._timeout = timeout
        self._max_pages = max_pages
        self._cursor: str | None = None
        self._objects: dict[str, dict[str, object]] = {}
        #: What the last poll received that is not an indicator object (reported as skipped).
        self._rejected: list[object] = []
        self._date_added_last: str | None = None

    def __repr__(self) -> str:
        return (
            f"TaxiiPoller(feed={self._feed!r}, url={self._url!r}, "
            f"collection={self._collection!r}, cursor={self._cursor!r})"
        )

    @property
    def cursor(self) -> str | None:
        """The ``added_after`` of the next poll (None: from the beginning)."""
        return self._cursor

    def load(self, now: datetime | None = None) -> FeedLoad:
        """Poll, then read every indicator seen so far (``now`` decides what has expired).

        Raises:
            FeedError: the server could not be reached or answered something unusable.
        """
        self.poll()
        objects = [*self._objects.values(), *self._rejected]
        path = f"{self._collection}/objects"
        return read_objects(objects, feed=self._feed, now=now or utc_now(), path=path)

    def poll(self) -> int:
        """Fetch what was added since the last poll; returns how many objects arrived.

        Raises:
            FeedError: as :meth:`load`.
        """
        conn = _HTTPConnection(
            user=self._username,
            password=self._password,
            verify=self._ca_file or True,
            version="2.1",
        )
        adapter = _Adapter(self._timeout, self._ca_file)
        conn.session.mount("https://", adapter)
        conn.session.mount("http://", adapter)
        conn.session.hooks["response"].append(self._on_response)
        try:
            collection = self._find_collection(conn)
            fetched, rejected, newest = self._fetch(collection)
        except _FOREIGN as exc:
            raise FeedError(self._feed, _explain(exc)) from exc
        finally:
            conn.close()
        for ident, obj in fetched.items():
            previous = self._objects.get(ident)
            if previous is None or not _older(obj, previous):
                self._objects[ident] = obj
        self._rejected = rejected
        count = len(fetched) + len(rejected)
        if newest is not None:
            self._cursor = newest
        elif count:  # the server did not say how far we got: ask again from the same point
            log.info("feed %s: no %s header; cursor stays", self._feed, _DATE_ADDED_LAST)
        log.info("feed %s: %d new objects from %s", self._feed, count, self._url)
        return count

    def _on_response(self, response: Any, *args: Any, **kwargs: Any) -> None:
        self._date_added_last = response.headers.get(_DATE_ADDED_LAST)

    def _find_collection(self, conn: Any) -> Any:
        if self._api_root is not None:
            roots = [urljoin(self._url, self._api_root)]
        else:
            server = taxii.Server(self._url, conn=conn)
            default = server.default.url if server.default is not None else None
            roots = [root.url for root in server.api_roots]
            for root in server.api_roots:
                root.close()  # discovery made them with their own (unused) sessions
            if default is not None:
                roots = [default, *(url for url in roots if url != default)]
            if not roots:
                raise FeedError(self._feed, f"discovery at {self._url} lists no API roots")
        available: list[str] = []
        for url in roots:
            for collection in taxii.ApiRoot(url, conn=conn).collections:
                if self._collection in (collection.id, collection.alias):
                    if not collection.can_read:
                        reason = f"collection {self._collection} is not readable"
                        raise FeedError(self._feed, reason)
                    return collection
                available.append(str(collection.id))
        listed = ", ".join(available) or "none"
        raise FeedError(
            self._feed,
            f"no collection {self._collection!r} at {', '.join(roots)} (collections: {listed})",
        )

    def _fetch(  # noqa: PLR0912 - one branch per paging rule of TAXII 2.1
        self, collection: Any
    ) -> tuple[dict[str, dict[str, object]], list[object], str | None]:
        """Every page after the cursor: (indicators by id, other entries, newest date added)."""
        added_after = self._cursor
        token: str | None = None
        newest: str | None = None
        fetched: dict[str, dict[str, object]] = {}
        rejected: list[object] = []
        for _ in range(self._max_pages):
            query: dict[str, object] = {}
            if added_after is not None:
                query["added_after"] = added_after
            if self._page_size:
                query["limit"] = self._page_size
            if token is not None:
                query["next"] = token
            self._date_added_last = None
            envelope = collection.get_objects(**query)
            last = self._date_added_last
            if last is not None and (newest is None or _later(last, newest)):
                newest = last
            objects = _objects_of(envelope, self._feed)
            for obj in objects:
                if isinstance(obj, dict) and obj.get("type") != "indicator":
                    continue  # not ours to keep; read_objects would only count it
                ident = obj.get("id") if isinstance(obj, dict) else None
                if not isinstance(ident, str) or not isinstance(obj, dict):
                    rejected.append(obj)
                elif ident not in fetched or not _older(obj, fetched[ident]):
                    fetched[ident] = obj
            if envelope.get("more") is not True:
                return fetched, rejected, newest
            following = envelope.get("next")
            if isinstance(following, str) and following:
                token = following
            elif last is not None and last != added_after:
                added_after, token = last, None  # TAXII 2.1: page on by date when no next
            else:
                raise FeedError(
                    self._feed,
                    f"more objects announced without a next token or a newer {_DATE_ADDED_LAST}",
                )
        raise FeedError(self._feed, f"more than {self._max_pages} pages in one poll")


def _objects_of(envelope: object, feed: str) -> list[object]:
    if not isinstance(envelope, Mapping):
        raise FeedError(feed, "objects: expected a TAXII envelope (a JSON object)")
    objects = envelope.get("objects", [])
    if not isinstance(objects, list):
        raise FeedError(feed, "objects: the envelope's objects is not a list")
    return objects


def _older(obj: Mapping[str, object], than: Mapping[str, object]) -> bool:
    new, old = parse_timestamp(obj.get("modified")), parse_timestamp(than.get("modified"))
    return new is not None and old is not None and new < old


def _later(timestamp: str, than: str) -> bool:
    new, old = parse_timestamp(timestamp), parse_timestamp(than)
    return new is not None and (old is None or new > old)


def _explain(exc: BaseException) -> str:
    """A reason for operators: what failed and where, never a credential."""
    if isinstance(exc, requests.exceptions.SSLError):
        return f"TLS verification failed ({exc}); set ca_file to the server's CA"
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        status = exc.response.status_code
        hint = " (credentials rejected)" if status in (401, 403) else ""
        return f"HTTP {status} from {exc.response.url}{hint}"
    if isinstance(exc, requests.ConnectionError | requests.Timeout):
        return f"cannot reach the server: {exc}"
    if isinstance(exc, TAXIIServiceException):
        return f"TAXII: {exc}"
    return f"unexpected response ({type(exc).__name__}: {exc})"
