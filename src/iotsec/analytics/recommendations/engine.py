"""All recommendation evaluators behind one object: observe, give the hub state, evaluate.

>>> from datetime import UTC, datetime
>>> from iotsec.analytics import DeviceContext
>>> engine = Recommendations()
>>> engine.update_hub(HubState(hub="hub-1", devices=(HubDevice(DeviceContext("dev-1")),)))
>>> sorted(f.kind for f in engine.evaluate(datetime(2025, 1, 1, tzinfo=UTC)))
['IoT_IPFilter_DenyAll']
>>> sorted(f.kind for f in engine.evaluate(datetime(2025, 1, 1, 2, tzinfo=UTC)))
['IoT_IPFilter_DenyAll', 'IoT_InstallAgent']
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from iotsec.analytics.detection import Finding
from iotsec.analytics.observation import Observation
from iotsec.analytics.recommendations.agent import AgentRecommendations
from iotsec.analytics.recommendations.device import DeviceRecommendations
from iotsec.analytics.recommendations.hub import HubDevice, HubState, hub_findings
from iotsec.analytics.recommendations.kinds import RecommendationConfig

__all__ = ["Recommendations"]


class Recommendations:
    """Device-, agent- and hub-side recommendations: the findings that hold now."""

    def __init__(
        self, config: RecommendationConfig | None = None, hub: HubState | None = None
    ) -> None:
        self.config = config or RecommendationConfig()
        self.device = DeviceRecommendations(self.config)
        self.agent = AgentRecommendations(self.config)
        self.hub = hub

    def observe(self, observation: Observation) -> None:
        """Take what the evaluators keep from ``observation`` (snapshots, statistics)."""
        self.device.observe(observation)
        self.agent.observe(observation)

    def update_hub(self, state: HubState) -> None:
        """Use ``state`` (registry and hub configuration) from now on."""
        self.hub = state

    def evaluate(self, now: datetime) -> tuple[Finding, ...]:
        """Every finding that holds at ``now``, by device, kind and key.

        Without a hub state, hub findings and IoT_InstallAgent are not evaluated.
        """
        registered: tuple[HubDevice, ...] = self.hub.devices if self.hub else ()
        found = self.device.evaluate(now) + self.agent.evaluate(now, registered)
        if self.hub is not None:
            found += hub_findings(self.hub, now, self.config)
        return tuple(sorted(found, key=lambda f: (f.device.device_id, f.kind, f.key)))

    def dump_state(self) -> dict[str, bytes]:
        """Snapshots, statistics and agents seen, as JSON entries (the hub state is not kept)."""
        entries = {f"device:{k}": v for k, v in self.device.snapshots.dump_state().items()}
        return entries | {f"agent:{k}": v for k, v in self.agent.dump_state().items()}

    def load_state(self, entries: Mapping[str, bytes]) -> None:
        """Replace the state with ``entries`` (from ``dump_state``)."""
        self.device.snapshots.load_state(_under("device:", entries))
        self.agent.load_state(_under("agent:", entries))


def _under(prefix: str, entries: Mapping[str, bytes]) -> dict[str, bytes]:
    return {k.removeprefix(prefix): v for k, v in entries.items() if k.startswith(prefix)}
