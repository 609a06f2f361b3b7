"""Fleet-level detectors: a device gone silent, and a device heard from for the first time.

Both count only the agent's security telemetry (observations with ``source="agent"``): a device
whose agent died but whose connection lives on is silent. The directory of devices (from the
registry, with when each was last seen, or restored from the state file) can be given at
construction; devices are also learned from observations.

*Device silent* (``IoT_DeviceSilent``, Low) fires in ``tick(now)`` when a device has sent
nothing for ``silent_after`` (72 hours by default) since its last observation: once per
silence, at the exact time the silence reached the limit; it re-arms when the device speaks
again. A device never heard from is not silent: it has no agent (the ``IoT_InstallAgent``
recommendation).

*Device onboarded* (``IoT_DeviceOnboarded``, Informational) fires on the first security
telemetry ever seen from a device.

>>> from datetime import UTC, datetime, timedelta
>>> from iotsec.analytics import DeviceContext, Observation
>>> t0 = datetime(2025, 1, 1, tzinfo=UTC)
>>> beat = Observation(source="agent", name="MessageStatistics", time=t0,
...                    device=DeviceContext("dev-7"), fields={}, event_id="e1")
>>> silent, onboarded = DeviceSilentDetector(), DeviceOnboardedDetector()
>>> silent.observe(beat), [d.rule_id for d in onboarded.observe(beat)]
([], ['IoT_DeviceOnboarded'])
>>> silent.tick(t0 + timedelta(hours=71))
[]
>>> [alert] = silent.tick(t0 + timedelta(hours=80))
>>> alert.time - t0
datetime.timedelta(days=3)
>>> print(alert.description)
dev-7 has sent no security telemetry for 72 hours (last seen 2025-01-01 00:00 UTC)
>>> silent.tick(t0 + timedelta(hours=90))
[]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import msgspec

from iotsec.analytics.detection import Detection
from iotsec.analytics.observation import DeviceContext, Observation
from iotsec.analytics.records import ContextRecord

__all__ = ["DeviceOnboardedDetector", "DeviceSilentDetector", "KnownDevice"]


@dataclass(frozen=True, slots=True)
class KnownDevice:
    """A device from the directory, and when it was last heard from (None: never)."""

    device: DeviceContext
    last_seen: datetime | None = None
    #: The evidence id of its last observation, cited by a silence alert.
    last_evidence: str = ""

    def __post_init__(self) -> None:
        if self.last_seen is not None and self.last_seen.utcoffset() is None:
            raise ValueError(f"KnownDevice.last_seen must be timezone-aware: {self.last_seen!r}")


class _Seen(msgspec.Struct):
    context: ContextRecord
    last_seen: datetime | None = None
    last_evidence: str = ""
    alerted: bool = False


def _is_telemetry(observation: Observation) -> bool:
    return observation.source == "agent" and observation.device.device_id != "$hub"


def _hours(span: timedelta) -> str:
    hours = span.total_seconds() / 3600
    return f"{hours:g} hour{'' if hours == 1 else 's'}"


class DeviceSilentDetector:
    """Fires once when a device's security telemetry stops for ``silent_after``."""

    rule_id = "IoT_DeviceSilent"

    def __init__(
        self, devices: Iterable[KnownDevice] = (), *, silent_after: timedelta = timedelta(hours=72)
    ) -> None:
        if silent_after <= timedelta(0):
            raise ValueError("silent_after must be positive")
        self.silent_after = silent_after
        self._seen: dict[str, _Seen] = {
            d.device.device_id: _Seen(ContextRecord.of(d.device), d.last_seen, d.last_evidence)
            for d in devices
        }
        #: No silence can be due before this (a cheap tick when nothing is due).
        self._next_due: datetime | None = None
        self._reschedule()

    def observe(self, observation: Observation) -> Sequence[Detection]:
        """Note that the device spoke (a newer observation re-arms its silence alert)."""
        device_id = observation.device.device_id
        if observation.source != "agent" or device_id == "$hub":  # not telemetry
            return []
        seen = self._seen.get(device_id)
        if seen is None:
            seen = self._seen[device_id] = _Seen(ContextRecord.of(observation.device))
        elif seen.last_seen is not None and observation.time <= seen.last_seen:
            return []  # the common case: another row of the event already noted
        seen.context = ContextRecord.of(observation.device)
        seen.last_seen = observation.time
        seen.last_evidence = observation.evidence_id
        seen.alerted = False
        due = self._due(seen.last_seen)
        if due is not None and (self._next_due is None or due < self._next_due):
            self._next_due = due
        return []

    def tick(self, now: datetime) -> Sequence[Detection]:
        """One alert per device whose silence reached ``silent_after`` at or before ``now``."""
        if self._next_due is None or now < self._next_due:
            return []
        found = []
        for seen in self._seen.values():
            if seen.alerted or seen.last_seen is None:
                continue
            due = self._due(seen.last_seen)
            if due is not None and due <= now:
                seen.alerted = True
                found.append(self._detection(seen, due))
        self._reschedule()
        return found

    def last_seen(self, device_id: str) -> datetime | None:
        """When ``device_id`` last sent security telemetry (None: never, or unknown)."""
        seen = self._seen.get(device_id)
        return None if seen is None else seen.last_seen

    def dump_state(self) -> dict[str, bytes]:
        """Last-seen times and alert flags, as JSON entries keyed by device id."""
        return {device_id: msgspec.json.encode(seen) for device_id, seen in self._seen.items()}

    def load_state(self, entries: Mapping[str, bytes]) -> None:
        """Replace the state with ``entries`` (from ``dump_state``)."""
        self._seen = {k: msgspec.json.decode(v, type=_Seen) for k, v in entries.items()}
        self._reschedule()

    def _due(self, last_seen: datetime) -> datetime | None:
        try:
            return last_seen + self.silent_after  # on every observation: kept cheap
        except OverflowError:  # past the calendar's end
            return None

    def _reschedule(self) -> None:
        dues = [
            due
            for seen in self._seen.values()
            if not seen.alerted
            and seen.last_seen is not None
            and (due := self._due(seen.last_seen)) is not None
        ]
        self._next_due = min(dues, default=None)

    def _detection(self, seen: _Seen, due: datetime) -> Detection:
        assert seen.last_seen is not None
        device_id = seen.context.device_id
        last = f"{seen.last_seen.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
        return Detection(
            rule_id=self.rule_id,
            display_name="Device silent",
            severity="Low",
            device=seen.context.context(),
            time=due,
            first_time=seen.last_seen,
            description=(
                f"{device_id} has sent no security telemetry for {_hours(self.silent_after)} "
                f"(last seen {last})"
            ),
            evidence=(seen.last_evidence,) if seen.last_evidence else (),
            dedup_key=f"{self.rule_id}|{device_id}|{seen.last_seen.isoformat()}",
            origin="baseline",
            remediation=(
                f"Check that {device_id} is powered, connected, and that its security agent "
                "runs and can reach the hub.",
            ),
            properties={"LastSeen": seen.last_seen.isoformat()},
        )


class DeviceOnboardedDetector:
    """Fires once per device, on the first security telemetry ever seen from it."""

    rule_id = "IoT_DeviceOnboarded"

    def __init__(self, devices: Iterable[KnownDevice] = ()) -> None:
        self._onboarded: set[str] = {d.device.device_id for d in devices if d.last_seen}

    def observe(self, observation: Observation) -> Sequence[Detection]:
        """An alert if ``observation`` is the device's first security telemetry."""
        device_id = observation.device.device_id
        if device_id in self._onboarded or not _is_telemetry(observation):
            return []
        self._onboarded.add(device_id)
        return [
            Detection(
                rule_id=self.rule_id,
                display_name="Device onboarded",
                severity="Informational",
                device=observation.device,
                time=observation.time,
                description=(
                    f"{device_id} sent its first security telemetry ({observation.name}) "
                    f"at {observation.time.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"
                ),
                evidence=(observation.evidence_id,),
                dedup_key=f"{self.rule_id}|{device_id}",
                origin="baseline",
                properties={"FirstEvent": observation.name},
            )
        ]

    def tick(self, now: datetime) -> Sequence[Detection]:
        """Nothing is due without an observation."""
        return []

    def dump_state(self) -> dict[str, bytes]:
        """The onboarded devices, as one JSON entry."""
        return {"onboarded": msgspec.json.encode(sorted(self._onboarded))}

    def load_state(self, entries: Mapping[str, bytes]) -> None:
        """Replace the onboarded devices with ``entries``."""
        data = entries.get("onboarded")
        self._onboarded = set() if data is None else set(msgspec.json.decode(data, type=list[str]))
