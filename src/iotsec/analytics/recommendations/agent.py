"""Agent-side recommendations: how the security agent is configured, and where it is missing.

- ``IoT_AgentSendsUnutilizedMessages``: over the last ``unutilized_window`` (24 h), at least
  ``unutilized_ratio`` (10%) of the messages the agent reported sending (MessageStatistics,
  ``MessagesSent`` and ``MessagesUnder4KB`` per reporting period, summed) were under 4 KB, out
  of at least ``unutilized_min_messages``.
- ``IoT_SecurityTwinConfigurationNotOptimal`` / ``...Conflict``: the rows of the device's
  latest ConfigurationError event with ErrorType NotOptimal or Conflict, one finding per
  ``ConfigurationName``. An agent reports every problem of a configuration each time it adopts
  one, so the latest event is the current set; since a fixed configuration sends nothing, a
  problem not reported again within ``config_error_ttl`` is taken as fixed.
- ``IoT_InstallAgent``: a registered, enabled device that never sent security telemetry, once
  it has been registered (or listed) for ``install_agent_grace``.

>>> from datetime import UTC, datetime
>>> from iotsec.analytics import DeviceContext, Observation
>>> agent = AgentRecommendations()
>>> agent.observe(Observation(source="agent", name="MessageStatistics",
...     time=datetime(2025, 1, 1, 12, tzinfo=UTC), device=DeviceContext("dev-7"),
...     event_id="e1", fields={"MessagesSent": 40, "MessagesUnder4KB": 30, "TotalFailed": 0}))
>>> [f.description for f in agent.evaluate(datetime(2025, 1, 1, 13, tzinfo=UTC), ())]
['dev-7 sent 30 of 40 messages (75%) under 4 KB in the last 24 hours']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

import msgspec

from iotsec.analytics.detection import Finding
from iotsec.analytics.observation import Observation
from iotsec.analytics.recommendations.hub import HubDevice
from iotsec.analytics.recommendations.kinds import RecommendationConfig, make_finding
from iotsec.analytics.recommendations.snapshots import SnapshotBook
from iotsec.analytics.records import ContextRecord

__all__ = ["AgentRecommendations"]

_ERROR_KINDS = {
    "NotOptimal": "IoT_SecurityTwinConfigurationNotOptimal",
    "Conflict": "IoT_SecurityTwinConfigurationConflict",
}
_MAX_PERIODS = 10_000  # MessageStatistics rows kept per device (a day is ~300)


class _Period(msgspec.Struct, array_like=True):
    time: datetime
    sent: int
    under: int


class _Agent(msgspec.Struct):
    context: ContextRecord
    first_seen: datetime
    periods: dict[str, _Period] = msgspec.field(default_factory=dict)


class _State(msgspec.Struct):
    agents: dict[str, _Agent] = msgspec.field(default_factory=dict)
    #: When each registered device without telemetry was first listed.
    listed: dict[str, datetime] = msgspec.field(default_factory=dict)


def _count(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and 0 <= value < 2**53:
        return value
    if isinstance(value, str) and value.isdigit() and len(value) < 16:
        return int(value)
    return None


class AgentRecommendations:
    """Unutilized messages, twin configuration problems, devices without an agent."""

    def __init__(self, config: RecommendationConfig | None = None) -> None:
        self.config = config or RecommendationConfig()
        self.errors = SnapshotBook({"ConfigurationError"})
        self._state = _State()

    def observe(self, observation: Observation) -> None:
        """Note the device's agent, its message statistics and configuration errors."""
        if observation.source != "agent" or observation.device.device_id == "$hub":
            return
        device_id = observation.device.device_id
        agent = self._state.agents.get(device_id)
        if agent is None:
            agent = self._state.agents[device_id] = _Agent(
                ContextRecord.of(observation.device), observation.time
            )
            self._state.listed.pop(device_id, None)
        elif observation.time < agent.first_seen:
            agent.first_seen = observation.time
        if observation.name in self.errors.names:
            self.errors.add(observation)
        elif observation.name == "MessageStatistics":
            sent = _count(observation.fields.get("MessagesSent"))
            under = _count(observation.fields.get("MessagesUnder4KB"))
            if sent is not None and under is not None:
                agent.context = ContextRecord.of(observation.device)
                agent.periods[observation.evidence_id] = _Period(observation.time, sent, under)
                self._prune(agent, observation.time)

    def evaluate(self, now: datetime, registered: Sequence[HubDevice]) -> list[Finding]:
        """The agent-side findings that hold at ``now``; ``registered`` is the registry."""
        found = self._unutilized(now) + self._config_errors(now)
        if self.config.enabled("IoT_InstallAgent"):
            found += self._install_agent(now, registered)
        return found

    def has_agent(self, device_id: str) -> bool:
        """True once ``device_id`` sent any security telemetry."""
        return device_id in self._state.agents

    def dump_state(self) -> dict[str, bytes]:
        """Agents, message statistics, listings and ConfigurationError events, as JSON."""
        entries = {f"errors:{k}": v for k, v in self.errors.dump_state().items()}
        entries["agents"] = msgspec.json.encode(self._state)
        return entries

    def load_state(self, entries: Mapping[str, bytes]) -> None:
        """Replace the state with ``entries`` (from ``dump_state``)."""
        state = _State()
        if "agents" in entries:
            state = msgspec.json.decode(entries["agents"], type=_State)
        self.errors.load_state(
            {k.removeprefix("errors:"): v for k, v in entries.items() if k.startswith("errors:")}
        )
        self._state = state

    def _prune(self, agent: _Agent, newest: datetime) -> None:
        window = self.config.unutilized_window
        stale = [k for k, p in agent.periods.items() if newest - p.time > window]
        for key in stale:
            del agent.periods[key]
        while len(agent.periods) > _MAX_PERIODS:
            oldest = min(agent.periods, key=lambda k: agent.periods[k].time)
            del agent.periods[oldest]

    def _unutilized(self, now: datetime) -> list[Finding]:
        config = self.config
        if not config.enabled("IoT_AgentSendsUnutilizedMessages"):
            return []
        found = []
        hours = config.unutilized_window.total_seconds() / 3600
        for device_id in sorted(self._state.agents):
            agent = self._state.agents[device_id]
            periods = [
                p for p in agent.periods.values() if now - config.unutilized_window < p.time <= now
            ]
            sent = sum(p.sent for p in periods)
            under = min(sent, sum(p.under for p in periods))
            if sent < config.unutilized_min_messages or under < config.unutilized_ratio * sent:
                continue
            found.append(
                make_finding(
                    "IoT_AgentSendsUnutilizedMessages",
                    agent.context.context(),
                    max(p.time for p in periods),
                    f"{device_id} sent {under} of {sent} messages ({under / sent:.0%}) under "
                    f"4 KB in the last {hours:g} hours",
                    data={"MessagesSent": sent, "MessagesUnder4KB": under, "Ratio": under / sent},
                )
            )
        return found

    def _config_errors(self, now: datetime) -> list[Finding]:
        ttl = self.config.config_error_ttl
        found = []
        for snapshot in self.errors.latest("ConfigurationError"):
            if ttl is not None and now - snapshot.time > ttl:
                continue
            device_id = snapshot.device.device_id
            for row in snapshot.rows:
                kind = _ERROR_KINDS.get(str(row.get("ErrorType")))
                name = str(row.get("ConfigurationName") or "")
                if kind is None or not self.config.enabled(kind) or not name:
                    continue
                used, message = str(row.get("UsedConfiguration", "")), str(row.get("Message", ""))
                found.append(
                    make_finding(
                        kind,
                        snapshot.device,
                        snapshot.time,
                        f"{device_id}'s security agent reports {name}: {message} "
                        f"(using {used[:80]})",
                        key=name,
                        data={
                            "ConfigurationName": name,
                            "UsedConfiguration": used,
                            "Message": message,
                        },
                    )
                )
        return found

    def _install_agent(self, now: datetime, registered: Sequence[HubDevice]) -> list[Finding]:
        listed = self._state.listed
        current = {d.device.device_id for d in registered}
        for device_id in [k for k in listed if k not in current]:
            del listed[device_id]  # deleted from the registry: forget it
        found = []
        for device in registered:
            device_id = device.device.device_id
            if device_id in self._state.agents or not device.enabled:
                continue
            since = device.created or listed.setdefault(device_id, now)
            if now - since < self.config.install_agent_grace:
                continue
            found.append(
                make_finding(
                    "IoT_InstallAgent",
                    device.device,
                    now,
                    f"{device_id} is registered (since {since.astimezone(UTC):%Y-%m-%d %H:%M} UTC) "
                    "but has sent "
                    "no security telemetry: no security agent runs on it",
                    data={"RegisteredSince": since.isoformat()},
                )
            )
        return found
