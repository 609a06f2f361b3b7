"""A fleet of simulated devices: names, kinds, groups, tags, sites and addresses, from a seed.

>>> fleet = build_fleet(3, seed=7)
>>> [d.device_id for d in fleet] == [d.device_id for d in build_fleet(3, seed=7)]
True
>>> len({d.kind for d in fleet})  # the first devices cover different kinds
3
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone, tzinfo

from iotsec.simulate._random import new_uuid, rng_for, stable_int
from iotsec.simulate.kinds import ADMIN_WORKSTATIONS, PROFILES
from iotsec.simulate.profile import BaselineCheck, DeviceProfile

__all__ = ["SITES", "Fleet", "SimDevice", "Site", "build_fleet"]

#: Linux's default pid_max on 32-bit and small systems; pids wrap below it.
_PID_MAX = 32768
_FIRST_DYNAMIC_PID = 1200
# How many pids a device uses per hour on average (forks of daemons, jobs, sessions).
_PIDS_PER_HOUR = 240
_KIND_WEIGHTS = {"camera": 35, "sensor-hub": 30, "gateway": 20, "edge-controller": 15}


@dataclass(frozen=True, slots=True)
class Site:
    """Where devices are installed: a fixed UTC offset, a /24 for the devices, and the
    management-network workstation its administrators log in from."""

    name: str
    utc_offset: timedelta
    subnet: str
    admin_workstation: str

    @property
    def tz(self) -> tzinfo:
        """The site's time zone (fixed offset, so simulated days are reproducible)."""
        return UTC if not self.utc_offset else timezone(self.utc_offset)


SITES = (
    Site("plant-a", timedelta(hours=1), "10.30.1", ADMIN_WORKSTATIONS[0]),
    Site("plant-b", timedelta(hours=-5), "10.30.2", ADMIN_WORKSTATIONS[1]),
    Site("depot-c", timedelta(0), "10.30.3", ADMIN_WORKSTATIONS[2]),
)


@dataclass(frozen=True, slots=True)
class SimDevice:
    """One simulated device and the fixed facts of its life."""

    device_id: str
    index: int
    profile: DeviceProfile
    group: str
    tags: tuple[tuple[str, str], ...]
    site: Site
    host_name: str
    address: str
    agent_id: str
    #: INPUT policy Allow with no rules (a fresh install), instead of deny by default.
    permissive_firewall: bool
    baseline_failures: tuple[BaselineCheck, ...]
    #: Whether the agent aggregates process and connection events (ASC's default: yes).
    aggregation: bool = True
    #: Where this device's pid counter stood at 2000-01-01 (devices do not share pids).
    pid_offset: int = 0

    @property
    def kind(self) -> str:
        """The profile's kind: camera, gateway, sensor-hub, edge-controller."""
        return self.profile.kind

    @property
    def tz(self) -> tzinfo:
        """The device's local time zone."""
        return self.site.tz

    def daemon_pid(self, service: str) -> int:
        """The pid of the long-running ``service`` (stable for the device's life)."""
        return 280 + stable_int(self.device_id, service) % 700

    def pid_at(self, when: datetime) -> int:
        """The next free pid at ``when``: pids climb with time and wrap, as on a real host."""
        hours = (when - datetime(2000, 1, 1, tzinfo=UTC)).total_seconds() / 3600
        span = _PID_MAX - _FIRST_DYNAMIC_PID
        return _FIRST_DYNAMIC_PID + (self.pid_offset + int(hours * _PIDS_PER_HOUR)) % span

    def tag(self, name: str) -> str | None:
        """The value of tag ``name``, or None."""
        return dict(self.tags).get(name)


@dataclass(frozen=True, slots=True)
class Fleet:
    """The devices of a simulated fleet, built from ``seed``."""

    seed: int
    devices: tuple[SimDevice, ...]

    def __iter__(self) -> Iterator[SimDevice]:
        return iter(self.devices)

    def __len__(self) -> int:
        return len(self.devices)

    def device(self, device_id: str) -> SimDevice:
        """The device called ``device_id``.

        Raises:
            KeyError: no such device in the fleet.
        """
        for device in self.devices:
            if device.device_id == device_id:
                return device
        raise KeyError(f"no device {device_id!r} in the fleet")


def build_fleet(
    count: int,
    *,
    seed: int = 0,
    prefix: str = "sim",
    group: str | None = None,
    aggregation: bool = True,
) -> Fleet:
    """``count`` devices named ``<prefix>-<kind>-<nnn>``, the same ones for the same seed.

    The first devices cover every kind; the rest follow a realistic mix (more cameras and
    sensors than gateways). Each device's security group is its kind's (``cameras``,
    ``gateways``, ...) unless ``group`` names one for all. Every fifth device, starting with the
    third, has a permissive firewall (INPUT policy Allow), so recommendations appear.

    Raises:
        ValueError: ``count`` below 1, or a ``prefix`` that cannot start a device id.
    """
    if count < 1:
        raise ValueError(f"a fleet has at least one device, not {count}")
    if not prefix or not prefix[0].isalnum():
        raise ValueError(f"device id prefix {prefix!r} must start with a letter or digit")
    rng = rng_for(seed, "fleet")
    kinds = sorted(PROFILES)
    rng.shuffle(kinds)
    weights = [_KIND_WEIGHTS[k] for k in kinds]
    while len(kinds) < count:
        kinds.append(rng.choices(kinds[: len(PROFILES)], weights)[0])
    devices: list[SimDevice] = []
    per_site = dict.fromkeys(SITES, 0)
    for index, kind in enumerate(kinds[:count], start=1):
        profile = PROFILES[kind]
        site = SITES[rng.randrange(len(SITES))]
        per_site[site] += 1
        device_id = f"{prefix}-{kind}-{index:03d}"
        failures = rng.sample(profile.baseline, rng.randint(1, min(3, len(profile.baseline))))
        devices.append(
            SimDevice(
                device_id=device_id,
                index=index,
                profile=profile,
                group=group or profile.group,
                tags=(
                    ("kind", kind),
                    ("site", site.name),
                    ("firmware", f"{rng.randint(1, 4)}.{rng.randint(0, 9)}.{rng.randint(0, 20)}"),
                    ("simulated", "true"),
                ),
                site=site,
                host_name=f"{kind}-{index:03d}",
                address=f"{site.subnet}.{10 + per_site[site] % 240}",
                agent_id=new_uuid(rng),
                permissive_firewall=index % 5 == 3,
                baseline_failures=tuple(sorted(failures, key=lambda c: c.cce_id)),
                aggregation=aggregation,
                pid_offset=rng.randrange(_PID_MAX),
            )
        )
    return Fleet(seed=seed, devices=tuple(devices))
