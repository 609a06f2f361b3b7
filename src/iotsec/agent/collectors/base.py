"""What a collector is: a declared spec plus one method that returns events.

Each collector declares what it emits as data (:class:`CollectorSpec`), in the way osquery
table specs do; the registry in :mod:`iotsec.agent.collectors` lists them all.

A collector's :meth:`Collector.collect` returns the events seen since the previous call
(triggered collectors: ProcessCreate, ConnectionCreate, Login) or one snapshot (periodic
collectors: ListeningPorts, FirewallConfiguration, LocalUsers, SystemInformation, OSBaseline).
Time is passed in, so tests are exact.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

from iotsec.agent.hostroot import HostRoot
from iotsec.schema import Event

__all__ = ["Collector", "CollectorFactory", "CollectorSpec", "Priority"]

Priority = Literal["High", "Low", "Off"]


@dataclass(frozen=True, slots=True)
class CollectorSpec:
    """What a collector emits: the event name, its EventType, its Category and default priority."""

    name: str
    event_type: Literal["Security", "Operational", "Diagnostic"]
    category: Literal["Periodic", "Triggered"]
    default_priority: Priority
    description: str


class Collector(Protocol):
    """Reads the host through a HostRoot and returns security events."""

    # Read-only, so that a class attribute (``ClassVar``) satisfies it as well as an instance's.
    @property
    def spec(self) -> CollectorSpec:
        """What this collector emits."""
        ...

    def collect(self, now: datetime) -> Sequence[Event]:
        """Events seen since the last call (triggered) or a snapshot (periodic), stamped ``now``.

        Raises only HostReadError or ParseError; a collector that can read part of the host
        returns what it read.
        """
        ...

    def close(self) -> None:
        """Release sockets, threads and file handles."""
        ...


#: Builds a collector for a host. Registry values have this type.
CollectorFactory = Callable[[HostRoot], Collector]
