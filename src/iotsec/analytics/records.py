"""Stored forms of shared values: what detectors keep about a device, as plain data.

Detectors that fire on a tick (windows closing, silences) or that are restored from the state
file need the device's context without an observation at hand; they keep a ``ContextRecord``.

>>> from iotsec.analytics import DeviceContext
>>> record = ContextRecord.of(DeviceContext("dev-7", group="cameras", tags={"site": "north"}))
>>> stored = msgspec.json.encode(record)
>>> msgspec.json.decode(stored, type=ContextRecord).context().tags["site"]
'north'
"""

from __future__ import annotations

from types import MappingProxyType

import msgspec

from iotsec.analytics.observation import DeviceContext

__all__ = ["ContextRecord"]


class ContextRecord(msgspec.Struct, frozen=True):
    """A ``DeviceContext`` as stored data (detectors that fire on a tick keep the last one)."""

    device_id: str
    module_id: str | None = None
    group: str = "default"
    tags: dict[str, str] = msgspec.field(default_factory=dict)
    hub: str = ""
    known: bool = True

    @classmethod
    def of(cls, device: DeviceContext) -> ContextRecord:
        """The record of ``device``."""
        # Every row of an entry shares one DeviceContext, and several detectors ask for its
        # record: the last one made is kept (contexts and records are both frozen).
        last = _LAST[0]
        if last[0] is device and type(last[1]) is cls:
            return last[1]
        record = cls(
            device_id=device.device_id,
            module_id=device.module_id,
            group=device.group,
            tags={str(k): str(v) for k, v in device.tags.items()},
            hub=device.hub,
            known=device.known,
        )
        _LAST[0] = (device, record)
        return record

    def context(self) -> DeviceContext:
        """The ``DeviceContext`` back."""
        return DeviceContext(
            device_id=self.device_id,
            module_id=self.module_id,
            group=self.group,
            tags=MappingProxyType(dict(self.tags)),
            hub=self.hub,
            known=self.known,
        )


# The last (context, record) made by ``ContextRecord.of``; one tuple is swapped at a time.
_LAST: list[tuple[DeviceContext | None, ContextRecord | None]] = [(None, None)]
