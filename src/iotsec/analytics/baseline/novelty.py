"""Novelty: the first time a device does something it never did while it was learned.

Six features are learned per device: the executables it runs (ProcessCreate ``Executable``),
the remote addresses and ports it connects out to (ConnectionCreate with ``Direction`` Out),
the ports it listens on (ListeningPorts rows), and the users and source addresses of its
successful logins (Login ``UserName``/``UserId`` and ``RemoteAddress``). During its learning
period (``LearningPolicy``) a device's values are only collected; afterwards, a value the
device never had yields a ``Detection`` (origin ``baseline``) that says what was learned, and
the value joins the device's known set, so it fires once.

In ``group`` scope, a new value fires only when it is also rare in the device's security group
(held by fewer than ``group_rare_fraction`` of the group's devices, once the group has
``group_min_devices``), so a software roll-out across a group is not an alert per device.

Memory is bounded: at most ``max_values`` values per device per feature. A feature that
overflows is *saturated*: it is too diverse to baseline on that device (a gateway's
destinations), so it stops firing; the values it dropped are counted (``status``).

>>> from datetime import UTC, datetime, timedelta
>>> from iotsec.analytics import DeviceContext, Observation
>>> t0 = datetime(2025, 1, 1, tzinfo=UTC)
>>> def ran(exe, at):
...     return Observation(source="agent", name="ProcessCreate", time=at,
...                        device=DeviceContext("dev-7"), fields={"Executable": exe},
...                        event_id=f"e-{exe}-{at:%d}")
>>> novelty = NoveltyDetector(NoveltyConfig(learning=LearningPolicy(min_observations=2)))
>>> novelty.observe(ran("/usr/bin/python3", t0)), novelty.observe(ran("/bin/sh", t0))
([], [])
>>> [hit] = novelty.observe(ran("/tmp/x", t0 + timedelta(days=8)))
>>> print(hit.description.replace("; ", ";\\n"))
dev-7 ran /tmp/x for the first time;
during its 7-day learning period it ran 2 executables, e.g. /bin/sh, /usr/bin/python3
>>> novelty.observe(ran("/tmp/x", t0 + timedelta(days=9)))
[]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

import msgspec

from iotsec.analytics.baseline.learning import (
    BaselineStatus,
    LearningPolicy,
    learned_at,
    span_text,
)
from iotsec.analytics.detection import Detection, Severity
from iotsec.analytics.observation import Observation
from iotsec.analytics.records import ContextRecord

__all__ = ["FEATURES", "Feature", "NoveltyConfig", "NoveltyDetector", "features_of"]

Feature = Literal[
    "executable",
    "destination",
    "destination_port",
    "listening_port",
    "login_user",
    "login_source",
]
FEATURES: tuple[Feature, ...] = (
    "executable",
    "destination",
    "destination_port",
    "listening_port",
    "login_user",
    "login_source",
)
_EXAMPLES = 3


@dataclass(frozen=True, slots=True)
class NoveltyConfig:
    """What novelty learns, for how long, and how much it may remember."""

    learning: LearningPolicy = field(default_factory=LearningPolicy)
    features: tuple[Feature, ...] = FEATURES
    #: ``device``: new to the device; ``group``: new to the device and rare in its group.
    scope: Literal["device", "group"] = "device"
    group_rare_fraction: float = 0.1
    group_min_devices: int = 5
    #: Values kept per device per feature (and, times 10, per group per feature).
    max_values: int = 500
    #: Login results whose user and source are learned (failed attempts are the rules' job).
    login_results: tuple[str, ...] = ("Success",)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.features) - set(FEATURES))
        if unknown:
            raise ValueError(f"unknown novelty feature {unknown[0]!r}; known: {FEATURES}")
        if self.scope not in ("device", "group"):
            raise ValueError("scope must be 'device' or 'group'")
        if not 0.0 < self.group_rare_fraction <= 1.0:
            raise ValueError("group_rare_fraction must be in (0, 1]")
        if self.max_values < 1 or self.group_min_devices < 1:
            raise ValueError("max_values and group_min_devices must be at least 1")


@dataclass(frozen=True, slots=True)
class _Wording:
    rule_id: str
    display_name: str
    severity: Severity
    did: str  # "ran {value}"
    learned: str  # "ran {n} executables"
    none: str  # "ran no executables"
    tactic: str


_WORDING: Mapping[Feature, _Wording] = {
    "executable": _Wording(
        "IoT_Baseline_NewExecutable", "New executable on device", "Medium",
        "ran {value}", "ran {n} executable{s}", "ran no executables", "Execution",
    ),
    "destination": _Wording(
        "IoT_Baseline_NewDestination", "New outbound destination", "Low",
        "connected out to {value}", "connected out to {n} destination{s}",
        "made no outbound connections", "Command and Control",
    ),
    "destination_port": _Wording(
        "IoT_Baseline_NewDestinationPort", "New outbound destination port", "Low",
        "connected out to port {value}", "connected out to {n} port{s}",
        "made no outbound connections", "Command and Control",
    ),
    "listening_port": _Wording(
        "IoT_Baseline_NewListeningPort", "New listening port", "Medium",
        "listened on port {value}", "listened on {n} port{s}", "listened on no ports",
        "Persistence",
    ),
    "login_user": _Wording(
        "IoT_Baseline_NewLoginUser", "Login by a new user", "Medium",
        "had a login by {value}", "had logins by {n} user{s}", "had no logins",
        "Initial Access",
    ),
    "login_source": _Wording(
        "IoT_Baseline_NewLoginSource", "Login from a new source", "Medium",
        "had a login from {value}", "had logins from {n} source{s}",
        "had no remote logins", "Lateral Movement",
    ),
}  # fmt: skip


def _text(value: object) -> str | None:
    if isinstance(value, str):
        value = value.strip()
        return value if value and value not in ("?", "-", "*") else None
    return None


def _port(port: object, protocol: object) -> str | None:
    if isinstance(port, int) and not isinstance(port, bool):
        port = str(port)
    text = _text(port)
    if text is None or text == "0":
        return None
    proto = _text(protocol)
    return f"{text}/{proto.lower().removesuffix('6')}" if proto else text


#: The events ``features_of`` finds features in.
_FEATURE_EVENTS = frozenset({"ProcessCreate", "ConnectionCreate", "ListeningPorts", "Login"})


def features_of(
    observation: Observation, login_results: Sequence[str] = ("Success",)
) -> list[tuple[Feature, str]]:
    """The (feature, value) pairs an observation holds.

    >>> from datetime import UTC, datetime
    >>> from iotsec.analytics import DeviceContext
    >>> obs = Observation(source="agent", name="ConnectionCreate",
    ...     time=datetime(2025, 1, 1, tzinfo=UTC), device=DeviceContext("d"), event_id="e",
    ...     fields={"RemoteAddress": "203.0.113.9", "RemotePort": "443", "Protocol": "tcp6",
    ...             "Direction": "Out"})
    >>> features_of(obs)
    [('destination', '203.0.113.9'), ('destination_port', '443/tcp')]
    """
    if observation.source != "agent":
        return []
    get = observation.fields.get
    found: list[tuple[Feature, str | None]] = []
    if observation.name == "ProcessCreate":
        found.append(("executable", _text(get("Executable"))))
    elif observation.name == "ConnectionCreate":
        direction = get("Direction")
        if isinstance(direction, str) and direction.lower() == "out":
            found.append(("destination", _text(get("RemoteAddress"))))
            found.append(("destination_port", _port(get("RemotePort"), get("Protocol"))))
    elif observation.name == "ListeningPorts":
        found.append(("listening_port", _port(get("LocalPort"), get("Protocol"))))
    elif observation.name == "Login" and get("Result") in login_results:
        found.append(("login_user", _text(get("UserName")) or _text(get("UserId"))))
        found.append(("login_source", _text(get("RemoteAddress"))))
    return [(feature, value) for feature, value in found if value is not None]


class _Values(msgspec.Struct):
    """One feature of one device: values learned, values accepted since, what overflowed."""

    learned: dict[str, int] = msgspec.field(default_factory=dict)
    accepted: dict[str, int] = msgspec.field(default_factory=dict)
    dropped: int = 0
    saturated: bool = False


class _Device(msgspec.Struct):
    context: ContextRecord
    first_time: datetime
    last_time: datetime
    observations: int = 0
    learned_at: datetime | None = None
    features: dict[str, _Values] = msgspec.field(default_factory=dict)


class _Group(msgspec.Struct):
    devices: list[str] = msgspec.field(default_factory=list)
    #: feature -> value -> how many of the group's devices have it.
    values: dict[str, dict[str, int]] = msgspec.field(default_factory=dict)
    dropped: int = 0


class NoveltyDetector:
    """Learns each device's executables, destinations, ports and logins, then flags new ones."""

    def __init__(self, config: NoveltyConfig | None = None) -> None:
        self.config = config or NoveltyConfig()
        self._devices: dict[str, _Device] = {}
        self._groups: dict[str, _Group] = {}

    # --- the Detector protocol ------------------------------------------------------------

    def observe(self, observation: Observation) -> Sequence[Detection]:
        """Learn from ``observation``, or flag the values in it the device never had."""
        if observation.source != "agent":
            return []
        device, learning = self._device(observation)
        if observation.name not in _FEATURE_EVENTS:
            return []  # most observations (snapshots) hold no feature: only counted
        features = self.config.features
        found: list[Detection] = []
        for feature, value in features_of(observation, self.config.login_results):
            if feature in features:
                detection = self._see(device, feature, value, observation, learning=learning)
                if detection is not None:
                    found.append(detection)
        return found

    def tick(self, now: datetime) -> Sequence[Detection]:
        """Novelty needs no clock: nothing is due without an observation."""
        return []

    # --- inspection and persistence -------------------------------------------------------

    def status(self, device_id: str) -> BaselineStatus | None:
        """Where ``device_id`` stands (None if never seen)."""
        device = self._devices.get(device_id)
        if device is None:
            return None
        return BaselineStatus(
            device_id=device_id,
            learning=device.learned_at is None,
            first_time=device.first_time,
            observations=device.observations,
            learned_at=device.learned_at,
        )

    def known_values(self, device_id: str, feature: Feature) -> dict[str, int]:
        """The values ``device_id`` has for ``feature`` (learned and accepted), with counts."""
        device = self._devices.get(device_id)
        values = device.features.get(feature) if device else None
        return {} if values is None else {**values.learned, **values.accepted}

    def dropped(self, device_id: str, feature: Feature) -> tuple[int, bool]:
        """Values of ``feature`` not kept for ``device_id`` past the cap, and if it is saturated."""
        device = self._devices.get(device_id)
        values = device.features.get(feature) if device else None
        return (0, False) if values is None else (values.dropped, values.saturated)

    def dump_state(self) -> dict[str, bytes]:
        """Everything learned, as JSON entries (``device:<id>``, ``group:<name>``)."""
        entries = {f"device:{k}": msgspec.json.encode(v) for k, v in self._devices.items()}
        entries |= {f"group:{k}": msgspec.json.encode(v) for k, v in self._groups.items()}
        return entries

    def load_state(self, entries: Mapping[str, bytes]) -> None:
        """Replace what is learned with ``entries`` (from ``dump_state``); raises on bad data."""
        devices: dict[str, _Device] = {}
        groups: dict[str, _Group] = {}
        for key, data in entries.items():
            kind, _, name = key.partition(":")
            if kind == "device":
                devices[name] = msgspec.json.decode(data, type=_Device)
            elif kind == "group":
                groups[name] = msgspec.json.decode(data, type=_Group)
            else:
                raise ValueError(f"unknown novelty entry {key!r}")
        self._devices, self._groups = devices, groups

    # --- internals ------------------------------------------------------------------------

    def _device(self, observation: Observation) -> tuple[_Device, bool]:
        """The observation's device, updated; and whether the observation is learning data."""
        device_id = observation.device.device_id
        device = self._devices.get(device_id)
        if device is None:
            device = self._devices[device_id] = _Device(
                context=ContextRecord.of(observation.device),
                first_time=observation.time,
                last_time=observation.time,
            )
            self._group(observation.device.group).devices.append(device_id)
        elif device.context.group != observation.device.group:
            # A device moved groups: it counts in the new one (prevalence stays where it was).
            old = self._groups.get(device.context.group)
            if old is not None and device_id in old.devices:
                old.devices.remove(device_id)
            self._group(observation.device.group).devices.append(device_id)
            device.context = ContextRecord.of(observation.device)
        device.observations += 1
        time = observation.time
        if time > device.last_time:
            device.last_time = time
        elif time < device.first_time:
            device.first_time = time
        if device.learned_at is not None:
            return device, observation.time < device.learned_at
        end = learned_at(device.first_time, self.config.learning)
        minimum = self.config.learning.min_observations
        if end is None or device.last_time < end or device.observations < minimum:
            return device, True
        # Learning ends when the period is over, or later with the observation that makes the
        # count: that one is still learned.
        device.learned_at = max(end, observation.time)
        return device, observation.time < end or device.observations == minimum

    def _group(self, name: str) -> _Group:
        group = self._groups.get(name)
        if group is None:
            group = self._groups[name] = _Group()
        return group

    def _see(
        self,
        device: _Device,
        feature: Feature,
        value: str,
        observation: Observation,
        *,
        learning: bool,
    ) -> Detection | None:
        values = device.features.get(feature)
        if values is None:
            values = device.features[feature] = _Values()
        if value in values.learned:
            values.learned[value] += 1
            return None
        if value in values.accepted:
            if learning:  # a late observation from the learning period: it was learned after all
                values.learned[value] = values.accepted.pop(value) + 1
            else:
                values.accepted[value] += 1
            return None
        if values.saturated or len(values.learned) + len(values.accepted) >= self.config.max_values:
            values.saturated = True
            values.dropped += 1
            return None
        group = self._group(device.context.group)
        prevalence = group.values.get(feature, {}).get(value, 0)
        self._count_in_group(group, feature, value)
        if learning:
            values.learned[value] = 1
            return None
        values.accepted[value] = 1
        group_size = len(group.devices)
        if (
            self.config.scope == "group"
            and group_size >= self.config.group_min_devices
            and prevalence >= self.config.group_rare_fraction * group_size
        ):
            return None
        return self._detection(
            device,
            feature=feature,
            value=value,
            values=values,
            observation=observation,
            prevalence=prevalence,
        )

    def _count_in_group(self, group: _Group, feature: Feature, value: str) -> None:
        counts = group.values.setdefault(feature, {})
        if value in counts:
            counts[value] += 1
        elif len(counts) < self.config.max_values * 10:
            counts[value] = 1
        else:
            group.dropped += 1

    def _detection(
        self,
        device: _Device,
        *,
        feature: Feature,
        value: str,
        values: _Values,
        observation: Observation,
        prevalence: int,
    ) -> Detection:
        wording = _WORDING[feature]
        span = span_text(self.config.learning.period)
        learned = len(values.learned)
        did = wording.did.format(value=value)
        if feature == "listening_port":
            address = _text(observation.fields.get("LocalAddress"))
            did += f" ({address})" if address else ""
        examples = sorted(values.learned, key=lambda v: (-values.learned[v], v))[:_EXAMPLES]
        if learned:
            seen = wording.learned.format(n=learned, s="" if learned == 1 else "s")
            seen += f", e.g. {', '.join(examples)}"
        else:
            seen = wording.none
        device_id = device.context.device_id
        description = (
            f"{device_id} {did} for the first time; during its {span} learning period it {seen}"
        )
        group = device.context.group
        properties = {
            "Feature": feature,
            "Value": value,
            "LearnedValues": str(learned),
            "LearningPeriod": span,
        }
        if self.config.scope == "group":
            size = len(self._group(group).devices)
            others = "no other device" if prevalence == 0 else f"{prevalence} of its devices"
            description += f"; in group {group} ({size} devices) {others} had it"
            properties["GroupPrevalence"] = f"{prevalence}/{size}"
        return Detection(
            rule_id=wording.rule_id,
            display_name=wording.display_name,
            severity=wording.severity,
            device=observation.device,
            time=observation.time,
            description=description,
            evidence=(observation.evidence_id,),
            dedup_key=f"{wording.rule_id}|{device_id}|{value}",
            origin="baseline",
            remediation=(
                f"Check whether {value} is expected on {device_id} (a software update, a new "
                "service, a maintenance task); if it is not, investigate how it got there.",
            ),
            tactics=(wording.tactic,),
            properties=properties,
        )
