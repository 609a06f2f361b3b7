"""Fixed time windows per device: what the rate bands and the outlier model count.

Windows are aligned to the Unix epoch (a 1-hour window is 10:00-11:00 UTC), and an
observation falls in the window of its own time. ``WindowBook.close(now)`` closes, for every
device at once, the windows whose end plus ``grace`` is at or before ``now``, oldest first;
an observation for a window already closed is late: it is counted (``late``) and dropped, so a
window is judged once and a replay cannot fire it twice.

A ``Tally`` is one device's window: counts, distinct values (capped), and a few evidence ids
per count. Aggregated agent events count their ``hit_count``; a snapshot event counts once in
``events`` (its first row).

>>> from datetime import UTC, datetime, timedelta
>>> from iotsec.analytics import DeviceContext, Observation
>>> book = WindowBook(width=timedelta(hours=1), grace=timedelta(0))
>>> obs = Observation(source="agent", name="ProcessCreate",
...     time=datetime(2025, 1, 1, 10, 20, tzinfo=UTC), device=DeviceContext("dev-7"),
...     fields={"Executable": "/bin/sh"}, event_id="e1", hit_count=4)
>>> book.add(obs)
True
>>> book.close(datetime(2025, 1, 1, 10, 59, tzinfo=UTC))
[]
>>> [closed] = book.close(datetime(2025, 1, 1, 11, 0, tzinfo=UTC))
>>> closed.device.device_id, closed.tally.value("processes"), closed.tally.value("executables")
('dev-7', 4, 1)
>>> book.add(obs), book.late("dev-7")
(False, 1)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import msgspec

from iotsec.analytics.observation import DeviceContext, Observation
from iotsec.analytics.records import ContextRecord

__all__ = ["COUNTS", "DISTINCT", "Closed", "Tally", "WindowBook", "tally_observation"]

#: What a window counts.
COUNTS = (
    "events",
    "processes",
    "connections_out",
    "connections_in",
    "logins_failed",
    "logins_succeeded",
    "diagnostics",
    "d2c_messages",
    "d2c_bytes",
    "hub_failures",
)
#: What a window counts distinct values of.
DISTINCT = ("executables", "destinations", "destination_ports", "login_sources")
_DISTINCT_CAP = 1000
_EVIDENCE_CAP = 10
_BIG = 10**12  # a hit count or a tally past this is not a count
_CAP = 2**53  # a window's total stays an exact float and fits the state file's JSON


class Tally(msgspec.Struct):
    """One device's window: counts, distinct values, evidence ids per count."""

    counts: dict[str, int] = msgspec.field(default_factory=dict)
    distinct: dict[str, set[str]] = msgspec.field(default_factory=dict)
    evidence: dict[str, list[str]] = msgspec.field(default_factory=dict)
    observations: int = 0

    def value(self, name: str) -> int:
        """A count (``COUNTS``) or a number of distinct values (``DISTINCT``)."""
        if name in self.distinct:
            return len(self.distinct[name])
        return self.counts.get(name, 0)

    def evidence_for(self, *names: str) -> tuple[str, ...]:
        """Evidence ids of the first of ``names`` that has some, else of any observation."""
        for name in (*names, "any"):
            if self.evidence.get(name):
                return tuple(self.evidence[name])
        return ()

    def _count(self, name: str, amount: int, evidence: str | Observation) -> None:
        counts = self.counts
        total = counts.get(name, 0) + amount
        counts[name] = total if total < _CAP else _CAP
        cited = self.evidence.get(name)
        # The id is only made when it is kept (most counts are past the cap).
        if cited is None:
            self.evidence[name] = [_evidence(evidence)]
        elif len(cited) < _EVIDENCE_CAP:
            cited.append(_evidence(evidence))

    def _distinct(self, name: str, value: object) -> None:
        if not isinstance(value, str) or not value:
            return
        values = self.distinct.setdefault(name, set())
        if len(values) < _DISTINCT_CAP:
            values.add(value)


def _evidence(evidence: str | Observation) -> str:
    return evidence if isinstance(evidence, str) else evidence.evidence_id


def _number(value: object) -> int:
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return value if 0 <= value < _BIG else 0
    if isinstance(value, str) and value.isdigit() and len(value) < 16:
        return int(value)
    return 0


def tally_observation(tally: Tally, observation: Observation) -> None:
    """Count ``observation`` into ``tally``."""
    tally.observations += 1
    # The evidence id is made at most once, and only when something keeps it.
    evidence: str | Observation = observation
    any_cited = tally.evidence.get("any")
    if any_cited is None:
        tally.evidence["any"] = [evidence := observation.evidence_id]
    elif len(any_cited) < _EVIDENCE_CAP:
        any_cited.append(evidence := observation.evidence_id)
    if observation.source == "hub":
        _tally_hub(tally, observation, evidence)
    else:
        _tally_agent(tally, observation, evidence)


def _tally_hub(tally: Tally, observation: Observation, evidence: str | Observation) -> None:
    get = observation.get
    if observation.name == "d2c":  # the hub's tally of accepted messages: count and bytes
        tally._count("d2c_messages", _number(get("Properties.count")), evidence)
        tally._count("d2c_bytes", _number(get("Properties.bytes")), evidence)
    if get("Result") == "Failure":
        tally._count("hub_failures", 1, evidence)


#: Agent events whose every row counts (the rows of other events count once, as an event).
_PER_ROW = frozenset({"ProcessCreate", "ConnectionCreate", "Login", "Diagnostic"})


def _tally_agent(tally: Tally, observation: Observation, evidence: str | Observation) -> None:
    name = observation.name
    first = observation.row_index == 0
    if not first and name not in _PER_ROW:
        return  # a later row of a snapshot: counted with its first row
    hits = min(max(observation.hit_count, 1), _BIG)
    get = observation.fields.get
    if first:
        tally._count("events", hits, evidence)
    if name == "ProcessCreate":
        tally._count("processes", hits, evidence)
        tally._distinct("executables", get("Executable"))
    elif name == "ConnectionCreate":
        direction = get("Direction")
        if isinstance(direction, str) and direction.lower() == "out":
            tally._count("connections_out", hits, evidence)
            tally._distinct("destinations", get("RemoteAddress"))
            port = get("RemotePort")
            tally._distinct("destination_ports", str(port) if isinstance(port, int) else port)
        else:
            tally._count("connections_in", hits, evidence)
    elif name == "Login":
        result = get("Result")
        if result == "Fail":
            tally._count("logins_failed", hits, evidence)
        elif result == "Success":
            tally._count("logins_succeeded", hits, evidence)
        tally._distinct("login_sources", get("RemoteAddress"))
    elif name == "Diagnostic":
        tally._count("diagnostics", hits, evidence)


@dataclass(frozen=True, slots=True)
class Closed:
    """A device's window that just closed."""

    index: int
    start: datetime
    device: DeviceContext
    tally: Tally


class _Book(msgspec.Struct):
    context: ContextRecord
    open: dict[int, Tally] = msgspec.field(default_factory=dict)
    late: int = 0


class _Mark(msgspec.Struct):
    watermark: int | None = None


class WindowBook:
    """Tallies per device and window, closed for all devices at once by the clock."""

    def __init__(self, width: timedelta, grace: timedelta) -> None:
        if width <= timedelta(0) or grace < timedelta(0):
            raise ValueError("a window must be positive and its grace zero or more")
        self.width = width
        self.grace = grace
        self._width = width.total_seconds()
        self._books: dict[str, _Book] = {}
        self._open: dict[int, set[str]] = {}
        #: The last window index closed: anything at or before it is late.
        self._watermark: int | None = None
        # The rows of one event share its time and device context: the last observation's
        # (time, context, tally) is kept, and forgotten when windows close or state loads.
        self._last: tuple[datetime | None, DeviceContext | None, Tally] = (None, None, Tally())

    def index(self, time: datetime) -> int:
        """The index of the window ``time`` falls in."""
        return math.floor(time.timestamp() / self._width)

    def start(self, index: int) -> datetime:
        """When window ``index`` starts (UTC)."""
        return datetime.fromtimestamp(index * self._width, UTC)

    def add(self, observation: Observation) -> bool:
        """Count ``observation`` in its device's window; False when that window has closed."""
        time, context = observation.time, observation.device
        last = self._last
        if last[0] is time and last[1] is context:
            tally_observation(last[2], observation)
            return True
        index = self.index(time)
        device_id = context.device_id
        book = self._books.get(device_id)
        if book is None:
            book = self._books[device_id] = _Book(context=ContextRecord.of(context))
        elif book.context.group != context.group:
            book.context = ContextRecord.of(context)
        if self._watermark is not None and index <= self._watermark:
            book.late += 1
            return False
        tally = book.open.get(index)
        if tally is None:
            tally = book.open[index] = Tally()
            self._open.setdefault(index, set()).add(device_id)
        self._last = (time, context, tally)
        tally_observation(tally, observation)
        return True

    def close(self, now: datetime) -> list[Closed]:
        """The windows that ended at least ``grace`` before ``now``, by index then device."""
        limit = math.floor((now.timestamp() - self.grace.total_seconds()) / self._width) - 1
        self._last = (None, None, self._last[2])
        due = sorted(index for index in self._open if index <= limit)
        closed: list[Closed] = []
        for index in due:
            start = self.start(index)
            for device_id in sorted(self._open.pop(index)):
                book = self._books[device_id]
                closed.append(Closed(index, start, book.context.context(), book.open.pop(index)))
        if self._watermark is None or limit > self._watermark:
            self._watermark = limit
        return closed

    def late(self, device_id: str) -> int:
        """Observations of ``device_id`` that came after their window had closed."""
        book = self._books.get(device_id)
        return 0 if book is None else book.late

    def context(self, device_id: str) -> DeviceContext | None:
        """The device's latest context, if it was ever seen."""
        book = self._books.get(device_id)
        return None if book is None else book.context.context()

    def dump_state(self) -> dict[str, bytes]:
        """Open windows and the watermark, as JSON entries."""
        entries = {f"book:{k}": msgspec.json.encode(v) for k, v in self._books.items()}
        entries["watermark"] = msgspec.json.encode(_Mark(self._watermark))
        return entries

    def load_state(self, entries: Mapping[str, bytes]) -> None:
        """Replace the open windows with ``entries`` (book entries and the watermark)."""
        books: dict[str, _Book] = {}
        mark = _Mark()
        for key, data in entries.items():
            if key == "watermark":
                mark = msgspec.json.decode(data, type=_Mark)
            elif key.startswith("book:"):
                books[key.removeprefix("book:")] = msgspec.json.decode(data, type=_Book)
        self._books, self._watermark = books, mark.watermark
        self._last = (None, None, self._last[2])
        self._open = {}
        for device_id, book in books.items():
            for index in book.open:
                self._open.setdefault(index, set()).add(device_id)
