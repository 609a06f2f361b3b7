"""Periodic snapshots: what a device's agent reports about its state every snapshot period.

SystemInformation, LocalUsers, ListeningPorts, FirewallConfiguration and OSBaseline, built from
the device's profile and fleet facts, so they are the same every time except for free memory.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

from iotsec.schema import (
    Event,
    FirewallConfiguration,
    FirewallConfigurationEvent,
    ListeningPorts,
    ListeningPortsEvent,
    LocalUsers,
    LocalUsersEvent,
    OSBaseline,
    OSBaselineEvent,
    SystemInformation,
    SystemInformationEvent,
)
from iotsec.schema.payloads import Action, Direction
from iotsec.simulate.events import make_event
from iotsec.simulate.fleet import SimDevice
from iotsec.simulate.kinds import ANY

__all__ = ["SNAPSHOT_EVENTS", "firewall_rows", "snapshot_events"]

#: The events of one snapshot, in the order they are sent.
SNAPSHOT_EVENTS = (
    "SystemInformation",
    "LocalUsers",
    "ListeningPorts",
    "FirewallConfiguration",
    "OSBaseline",
)
_DIRECTIONS: dict[str, Direction] = {"INPUT": "In", "OUTPUT": "Out"}


def snapshot_events(device: SimDevice, at: datetime, rng: random.Random) -> list[Event]:
    """One snapshot of ``device`` at ``at``: five periodic events, a second apart."""
    profile = device.profile
    os = profile.os
    free = int(os.memory_kb * rng.uniform(0.35, 0.6))
    info = SystemInformation(
        os_name=os.name,
        os_version=os.version,
        os_vendor=os.vendor,
        os_architecture=os.architecture,
        host_name=device.host_name,
        bios_version=os.bios_version,
        boot_device=os.boot_device,
        total_physical_memory_kb=os.memory_kb,
        free_physical_memory_kb=free,
        total_virtual_memory_kb=os.memory_kb + os.swap_kb,
        free_virtual_memory_kb=free + int(os.swap_kb * rng.uniform(0.8, 1.0)),
    )
    users = [
        LocalUsers(
            user_name=a.name,
            user_id=str(a.uid),
            group_names=";".join(name for name, _ in a.groups),
            group_ids=";".join(str(gid) for _, gid in a.groups),
        )
        for a in profile.accounts
    ]
    ports = [
        ListeningPorts(
            protocol=listener.protocol,
            local_address=listener.address,
            local_port=str(listener.port),
            remote_address="::" if ":" in listener.address else ANY,
            remote_port="*",
            extra_details={"Pid": str(device.daemon_pid(service.name))},
        )
        for service in profile.services
        for listener in service.listens
    ]
    baseline = [
        OSBaseline(
            description=check.description,
            cce_id=check.cce_id,
            result="Fail",
            error="",
            severity=check.severity,
        )
        for check in device.baseline_failures
    ]
    second = timedelta(seconds=1)
    return [
        make_event(SystemInformationEvent, [info], at, device, rng),
        make_event(LocalUsersEvent, users, at + second, device, rng),
        make_event(ListeningPortsEvent, ports, at + 2 * second, device, rng),
        make_event(FirewallConfigurationEvent, firewall_rows(device), at + 3 * second, device, rng),
        make_event(OSBaselineEvent, baseline, at + 4 * second, device, rng),
    ]


def firewall_rows(device: SimDevice) -> list[FirewallConfiguration]:
    """The filter table as the C agent reports it: rules in order, then each chain's policy.

    Deny by default in INPUT and OUTPUT, with the rules the device's services need; a
    permissive device has Allow policies and no rules (a fresh install).
    """
    if device.permissive_firewall:
        return [_policy(chain, "Allow", 0) for chain in ("INPUT", "FORWARD", "OUTPUT")]
    profile = device.profile
    inbound: list[dict[str, Any]] = [
        {
            "protocol": rule.protocol,
            "source_address": rule.source,
            "destination_port": str(rule.port),
        }
        for rule in profile.firewall
    ]
    outbound: list[dict[str, Any]] = [
        {"protocol": protocol, "destination_address": address, "destination_port": port}
        for address, port, protocol in _outbound(device)
    ]
    rows: list[FirewallConfiguration] = []
    for chain, interface, matches in (
        ("INPUT", "InInterface", inbound),
        ("OUTPUT", "OutInterface", outbound),
    ):
        chain_rules = [
            {"extra_details": {interface: "lo"}},
            {"extra_details": {"Match": "conntrack --ctstate RELATED,ESTABLISHED"}},
            *matches,
        ]
        rows.extend(
            FirewallConfiguration(
                enabled=True,
                action="Allow",
                priority=priority,
                chain_name=chain,
                direction=_DIRECTIONS[chain],
                **match,
            )
            for priority, match in enumerate(chain_rules)
        )
        rows.append(_policy(chain, "Deny", len(chain_rules)))
        if chain == "INPUT":
            rows.append(_policy("FORWARD", "Deny", 0))
    return rows


def _policy(chain: str, action: Action, priority: int) -> FirewallConfiguration:
    """The policy row of a built-in chain (the C agent's last row, ``Priority`` = rule count)."""
    return FirewallConfiguration(
        enabled=True,
        action=action,
        priority=priority,
        chain_name=chain,
        direction=_DIRECTIONS.get(chain),
    )


def _outbound(device: SimDevice) -> list[tuple[str | None, str | None, str]]:
    """OUTPUT allow rules for what the device's jobs and daemons reach: site /24s, public hosts."""
    found: dict[tuple[str | None, str | None, str], None] = {}
    profile = device.profile
    wanted = [c for job in profile.jobs for c in job.connects] + [
        (c.address, c.port, c.protocol) for c in profile.chatter if c.direction == "Out"
    ]
    for address, port, protocol in wanted:
        if address.startswith("10."):
            found[(".".join(address.split(".")[:3]) + ".0/24", None, "TCP")] = None
            if protocol == "UDP":
                found[(".".join(address.split(".")[:3]) + ".0/24", None, "UDP")] = None
        else:
            found[(address, str(port), protocol)] = None
    return list(found)
