"""The fleet: deterministic from its seed, varied, and well-formed."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime

import pytest

from iotsec.simulate import PROFILES, build_fleet


def test_the_same_seed_builds_the_same_fleet() -> None:
    assert build_fleet(12, seed=5) == build_fleet(12, seed=5)
    assert build_fleet(12, seed=5) != build_fleet(12, seed=6)


def test_a_small_fleet_covers_every_kind_and_a_large_one_mixes_them() -> None:
    assert {d.kind for d in build_fleet(len(PROFILES), seed=1)} == set(PROFILES)
    big = build_fleet(60, seed=1)
    counts = {kind: sum(1 for d in big if d.kind == kind) for kind in PROFILES}
    assert counts["camera"] > counts["edge-controller"]
    assert all(count > 0 for count in counts.values())


def test_devices_have_unique_names_addresses_agents_and_pids() -> None:
    fleet = build_fleet(40, seed=2)
    assert len({d.device_id for d in fleet}) == 40
    assert len({d.address for d in fleet}) == 40
    assert len({d.agent_id for d in fleet}) == 40
    for device in fleet:
        assert device.device_id == f"sim-{device.kind}-{device.index:03d}"
        assert ipaddress.ip_address(device.address) in ipaddress.ip_network("10.30.0.0/16")
        assert len(device.agent_id) == 36
        assert device.tag("kind") == device.kind and device.tag("simulated") == "true"
        assert device.group == device.profile.group
        assert device.baseline_failures and set(device.baseline_failures) <= set(
            device.profile.baseline
        )
    when = datetime(2024, 5, 6, tzinfo=UTC)
    assert len({d.pid_at(when) for d in fleet}) > 30  # devices do not share a pid counter


def test_every_fifth_device_has_a_permissive_firewall() -> None:
    fleet = build_fleet(10, seed=3)
    assert [d.index for d in fleet if d.permissive_firewall] == [3, 8]


def test_group_prefix_and_aggregation_options() -> None:
    fleet = build_fleet(3, seed=1, group="lab", prefix="demo", aggregation=False)
    assert {d.group for d in fleet} == {"lab"}
    assert all(d.device_id.startswith("demo-") and not d.aggregation for d in fleet)
    assert fleet.device(fleet.devices[1].device_id) is fleet.devices[1]
    with pytest.raises(KeyError):
        fleet.device("nope")


@pytest.mark.parametrize("count", [0, -1])
def test_a_fleet_needs_devices(count: int) -> None:
    with pytest.raises(ValueError, match="at least one"):
        build_fleet(count)


def test_a_prefix_must_start_a_device_id() -> None:
    with pytest.raises(ValueError, match="prefix"):
        build_fleet(1, prefix="-x")
