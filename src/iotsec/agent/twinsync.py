"""The module twin's desired document, and the configuration the agent derives from it.

I/O-free: the runner feeds it what the hub says (the whole twin on connect, each desired patch
as it is pushed) and acts on the :class:`~iotsec.agent.config.ConfigOutcome` it returns. It
keeps the full desired document (patches are JSON merge patches, RFC 7386, so a patch that
touches one property says nothing about the others) and the last good configuration: a bad
property keeps its previous value (``config.apply_twin``), so a bad patch never loses a good one.

The configuration object is re-applied only when it changed, so a twin read again after a
reconnect does not repeat the same ConfigurationError events.

>>> from iotsec.agent.config import OBJECT_NAME, AgentConfiguration
>>> twin = TwinState(AgentConfiguration.default())
>>> outcome = twin.replace({"$version": 4, OBJECT_NAME: {"snapshotFrequency": {"value": "PT1H"}}})
>>> outcome.config.snapshot_frequency.total_seconds(), twin.version
(3600.0, 4)
>>> twin.replace({"$version": 4, OBJECT_NAME: {"snapshotFrequency": {"value": "PT1H"}}}) is None
True
>>> bad = twin.patch({"$version": 5, OBJECT_NAME: {"snapshotFrequency": {"value": "soon"}}})
>>> [(e.error_type, e.used_configuration) for e in bad.errors], twin.config.snapshot_frequency
([('TypeMismatch', 'PT1H')], datetime.timedelta(seconds=3600))
>>> twin.patch({"$version": 6, "someOtherApp": 1}) is None
True
"""

from __future__ import annotations

import copy
from typing import Any

from iotsec.agent.config import OBJECT_NAME, AgentConfiguration, ConfigOutcome, apply_twin
from iotsec.sdk import merge_patch

__all__ = ["TwinState"]

_VERSION = "$version"
_UNSET = object()


class TwinState:
    """The desired document as the agent last saw it, and the configuration in force.

    Args:
        base: the configuration properties fall back to when the twin does not set them
            (the defaults, or the local file's values).
        config: the configuration in force now (default: ``base``).
    """

    def __init__(self, base: AgentConfiguration, config: AgentConfiguration | None = None):
        self.base = base
        self._config = config if config is not None else base
        self._desired: dict[str, Any] = {}
        self._version: int | None = None
        self._applied: Any = _UNSET  # the configuration object last applied

    @property
    def config(self) -> AgentConfiguration:
        """The configuration in force: the last good value of every property."""
        return self._config

    @property
    def version(self) -> int | None:
        """The ``$version`` of the desired document last seen, if the hub gave one."""
        return self._version

    @property
    def section(self) -> Any:
        """The desired configuration object (under ``OBJECT_NAME``), or None when unset."""
        return copy.deepcopy(self._desired.get(OBJECT_NAME))

    def restore(self, section: Any, version: int | None) -> ConfigOutcome | None:
        """Start from a configuration object saved by an earlier run (the hub is unreachable)."""
        return self.replace({OBJECT_NAME: section, _VERSION: version})

    def replace(self, desired: dict[str, Any]) -> ConfigOutcome | None:
        """Take the whole desired document (a twin GET); the outcome, or None when the
        configuration object is the one applied last (nothing is re-applied)."""
        self._desired = {k: copy.deepcopy(v) for k, v in desired.items() if k != _VERSION}
        version = desired.get(_VERSION)
        self._version = version if isinstance(version, int) else self._version
        return self._apply()

    def patch(self, patch: dict[str, Any]) -> ConfigOutcome | None:
        """Merge a pushed desired patch; the outcome, or None if it is stale or leaves the
        configuration object as it was."""
        version = patch.get(_VERSION)
        if isinstance(version, int) and self._version is not None and version <= self._version:
            return None
        self._desired = merge_patch(
            self._desired, {k: v for k, v in patch.items() if k != _VERSION}
        )
        if isinstance(version, int):
            self._version = version
        return self._apply()

    def _apply(self) -> ConfigOutcome | None:
        section = self._desired.get(OBJECT_NAME)
        if self._applied is not _UNSET and section == self._applied:
            return None
        self._applied = copy.deepcopy(section)
        outcome = apply_twin(self._config, section, base=self.base)
        self._config = outcome.config
        return outcome
