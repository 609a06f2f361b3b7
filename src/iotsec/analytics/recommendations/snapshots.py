"""The latest snapshot of each kind per device, rebuilt from its observations.

A periodic event (ListeningPorts, FirewallConfiguration, OSBaseline...) reaches the pipeline as
one observation per payload row, sharing the event id (an empty event as one observation with
no fields). ``SnapshotBook`` gathers the rows of the newest event per device and name: a row
of the current event joins it (a replayed row replaces itself), a newer event replaces it, and
an older event is ignored, so late or replayed snapshots never roll the state back.

>>> from datetime import UTC, datetime
>>> from iotsec.analytics import DeviceContext, Observation
>>> def row(event, index, port):
...     return Observation(source="agent", name="ListeningPorts",
...         time=datetime(2025, 1, 1, tzinfo=UTC), device=DeviceContext("dev-7"),
...         fields={"LocalPort": port, "Protocol": "tcp"}, event_id=event, row_index=index)
>>> book = SnapshotBook({"ListeningPorts"})
>>> for obs in (row("e1", 0, "22"), row("e1", 1, "80"), row("e1", 1, "80")):
...     _ = book.add(obs)
>>> [r["LocalPort"] for r in book.get("dev-7", "ListeningPorts").rows]
['22', '80']
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec

from iotsec.analytics.observation import DeviceContext, Observation
from iotsec.analytics.records import ContextRecord

__all__ = ["Snapshot", "SnapshotBook"]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The newest event of one kind from one device: its rows, in payload order."""

    device: DeviceContext
    name: str
    event_id: str
    time: datetime
    rows: tuple[Mapping[str, Any], ...]
    #: Rows past the book's cap, not kept.
    dropped: int = 0


class _Stored(msgspec.Struct):
    context: ContextRecord
    event_id: str
    time: datetime
    rows: dict[int, dict[str, Any]] = msgspec.field(default_factory=dict)
    dropped: int = 0


_SCALARS = frozenset({str, float, bool, type(None)})
_INT_RANGE = range(-(2**63), 2**63)


def _plain(value: object) -> Any:  # noqa: PLR0911 - one return per type, fastest first
    """``value`` as JSON-able data (fields are strings, numbers, booleans and string maps)."""
    # Every snapshot row goes through here: the plain types of a decoded row first.
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind is int:
        return value if value in _INT_RANGE else str(value)
    if isinstance(value, dict):  # a row: its text, float, boolean and null values as they are
        return {
            (k if type(k) is str else str(k)): (v if type(v) in _SCALARS else _plain(v))
            for k, v in value.items()
        }
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**63:
        return str(value)  # past what JSON numbers carry safely
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return str(value)


class SnapshotBook:
    """Keeps the newest event of each of ``names`` per device."""

    def __init__(self, names: Collection[str], *, max_rows: int = 4096) -> None:
        self.names = frozenset(names)
        self.max_rows = max_rows
        self._books: dict[str, dict[str, _Stored]] = {}

    def add(self, observation: Observation) -> bool:
        """Take ``observation`` into its device's snapshot; False if ignored (other or old)."""
        if observation.source != "agent" or observation.name not in self.names:
            return False
        device = self._books.setdefault(observation.device.device_id, {})
        stored = device.get(observation.name)
        if stored is None or stored.event_id != observation.event_id:
            if stored is not None and observation.time < stored.time:
                return False
            stored = device[observation.name] = _Stored(
                ContextRecord.of(observation.device), observation.event_id, observation.time
            )
        if observation.fields:
            if observation.row_index in stored.rows or len(stored.rows) < self.max_rows:
                stored.rows[observation.row_index] = _plain(observation.fields)
            else:
                stored.dropped += 1
        return True

    def get(self, device_id: str, name: str) -> Snapshot | None:
        """The newest ``name`` snapshot of ``device_id``, if any."""
        stored = self._books.get(device_id, {}).get(name)
        return None if stored is None else _view(name, stored)

    def latest(self, name: str) -> Iterator[Snapshot]:
        """The newest ``name`` snapshot of every device that sent one, by device id."""
        for device_id in sorted(self._books):
            stored = self._books[device_id].get(name)
            if stored is not None:
                yield _view(name, stored)

    def dump_state(self) -> dict[str, bytes]:
        """The snapshots, as JSON entries keyed by device id."""
        return {device_id: msgspec.json.encode(book) for device_id, book in self._books.items()}

    def load_state(self, entries: Mapping[str, bytes]) -> None:
        """Replace the snapshots with ``entries``."""
        self._books = {
            device_id: msgspec.json.decode(data, type=dict[str, _Stored])
            for device_id, data in entries.items()
        }


def _view(name: str, stored: _Stored) -> Snapshot:
    return Snapshot(
        device=stored.context.context(),
        name=name,
        event_id=stored.event_id,
        time=stored.time,
        rows=tuple(stored.rows[i] for i in sorted(stored.rows)),
        dropped=stored.dropped,
    )
