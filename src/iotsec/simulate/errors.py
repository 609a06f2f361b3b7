"""Errors of the simulated fleet.

::

    IotsecError
    +-- SimulationError          iotsec.simulate: the simulated fleet
        +-- UnknownScenario      a scenario name that does not exist (with "did you mean")
        +-- NoDeviceConnected    not one simulated device could connect to the hub
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from iotsec.errors import IotsecError

__all__ = ["NoDeviceConnected", "SimulationError", "UnknownScenario"]


class SimulationError(IotsecError):
    """The simulated fleet could not do what was asked."""


class UnknownScenario(SimulationError):
    """A scenario name that does not exist; the message suggests the closest one."""

    def __init__(self, name: str, known: Iterable[str]) -> None:
        self.name = name
        self.known = tuple(sorted(known))
        close = difflib.get_close_matches(name, self.known, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        super().__init__(f"no scenario {name!r}: {hint}known: {', '.join(self.known)}")


class NoDeviceConnected(SimulationError):
    """Every simulated device failed to connect; the message carries the first reason."""
