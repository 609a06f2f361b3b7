"""What the analytics pipeline reasons about: one ``Observation`` per thing seen.

An agent's security event gives one observation per payload row (an empty event gives one
with no fields); a hub operation-log entry gives one observation. Each carries the device's
context (identity, security group, tags, the hub), so rules, custom alerts, baselines and
recommendations all read the same typed value.

Field names are the wire names of the payload row (``Executable``, ``CommandLine``,
``RemoteAddress``, ``ExtraDetails``, ...) for agent observations, and ``Category``,
``Operation``, ``Result``, ``Reason``, ``Detail``, ``Protocol``, ``SourceIp`` and the entry's
properties for hub observations. ``Observation.get`` also reads ``Name``, ``DeviceId``,
``ModuleId``, ``Group``, ``Tags.<name>`` and dotted paths into maps (``ExtraDetails.HitCount``).

>>> from datetime import UTC, datetime
>>> obs = Observation(
...     source="agent", name="ProcessCreate", time=datetime(2025, 1, 1, tzinfo=UTC),
...     device=DeviceContext("dev-1", group="cameras", tags={"site": "north"}),
...     fields={"Executable": "/bin/nc", "ExtraDetails": {"HitCount": "3"}},
...     event_id="0d9c2f63-5b8e-4a43-9d2e-8a1f0f6c1e21",
... )
>>> obs.get("Executable"), obs.get("Group"), obs.get("Tags.site"), obs.get("ExtraDetails.HitCount")
('/bin/nc', 'cameras', 'north', '3')
>>> obs.get("CommandLine") is None
True
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, ClassVar, Literal

import msgspec

__all__ = ["DeviceContext", "Observation", "Source"]

Source = Literal["agent", "hub"]

_EMPTY: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class DeviceContext:
    """Who an observation is about: the device (or ``$hub``), its group, tags and hub."""

    device_id: str
    module_id: str | None = None
    group: str = "default"
    tags: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    hub: str = ""
    #: False when the registry does not know the device (deleted, or a hub-level entry).
    known: bool = True


class Observation(msgspec.Struct, frozen=True, gc=False):
    """One thing seen, with its device context; the input of every detector.

    A frozen ``msgspec.Struct``: the pipeline makes one per payload row, and a struct is built
    in a tenth of a frozen dataclass's time. It stays out of the garbage collector's passes
    (``gc=False``: nothing it holds leads back to it). It still answers ``dataclasses.fields``
    and ``dataclasses.replace``, as when it was a dataclass.
    """

    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]

    source: Source
    #: The event Name (``ProcessCreate``, ``Login``, ...) or the hub operation (``authenticate``).
    name: str
    #: When it happened (aware, UTC): the event's TimestampUTC or the operation's time.
    time: datetime
    device: DeviceContext
    fields: Mapping[str, object]
    #: The agent event's Id, or ``oplog:<partition>:<offset>`` for hub observations.
    event_id: str
    row_index: int = 0
    #: Identical events an aggregated agent event stands for (1 otherwise).
    hit_count: int = 1
    category: str = ""
    event_type: str = ""
    #: Where the observation came from in the durable log: (partition, offset).
    position: tuple[int, int] = (0, 0)

    def get(self, path: str) -> object:
        """The value at ``path`` (a field name, a context name, or a dotted path), or None."""
        head, _, rest = path.partition(".")
        if head == "Name":
            value: object = self.name
        elif head == "DeviceId":
            value = self.device.device_id
        elif head == "ModuleId":
            value = self.device.module_id
        elif head == "Group":
            value = self.device.group
        elif head == "Tags":
            value = self.device.tags
        elif head == "Source":
            value = self.source
        else:
            value = self.fields.get(head)
        while rest:
            if not isinstance(value, Mapping):
                return None
            head, _, rest = rest.partition(".")
            value = value.get(head)
        return value

    @property
    def evidence_id(self) -> str:
        """The id an alert cites for this observation: ``<event id>:<row index>``."""
        return f"{self.event_id}:{self.row_index}"


def _dataclass_fields(cls: type[msgspec.Struct]) -> dict[str, dataclasses.Field[Any]]:
    """The ``dataclasses`` description of a struct's fields (what ``replace`` reads)."""
    spec: list[tuple[str, Any] | tuple[str, Any, Any]] = [
        (f.name, f.type) if f.required else (f.name, f.type, dataclasses.field(default=f.default))
        for f in msgspec.structs.fields(cls)
    ]
    made = dataclasses.make_dataclass(cls.__name__, spec, frozen=True)
    return dict(vars(made)["__dataclass_fields__"])


Observation.__dataclass_fields__ = _dataclass_fields(Observation)
