"""Device-side recommendations, from each device's latest snapshots.

- ``IoT_OpenPorts``: the device listens on addresses other than loopback (ListeningPorts); one
  finding per device, its endpoints in ``Endpoints``.
- ``IoT_PermissiveFirewallPolicy``: a chain's default policy accepts (FirewallConfiguration);
  one finding per hook (key ``INPUT``, ``OUTPUT``, ``FORWARD``).
- ``IoT_PermissiveInputFirewallRules`` / ``IoT_PermissiveOutputFirewallRules``: accept rules
  with any or wide addresses or ports; the rules in ``Rules``.
- ``IoT_Baseline``: OSBaseline rows that failed (``Fail`` or ``Err``); their CCE ids in
  ``FailedChecks``.

>>> from datetime import UTC, datetime
>>> from iotsec.analytics import DeviceContext, Observation
>>> device = DeviceRecommendations()
>>> device.observe(Observation(source="agent", name="ListeningPorts",
...     time=datetime(2025, 1, 1, tzinfo=UTC), device=DeviceContext("dev-7"), event_id="e1",
...     fields={"LocalAddress": "0.0.0.0", "LocalPort": "22", "Protocol": "tcp"}))
>>> [(f.kind, f.description) for f in device.evaluate(datetime(2025, 1, 2, tzinfo=UTC))]
[('IoT_OpenPorts', 'dev-7 listens on 1 non-loopback endpoint: 0.0.0.0:22/tcp')]
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from datetime import datetime
from typing import Literal

from iotsec.analytics.detection import Finding
from iotsec.analytics.observation import Observation
from iotsec.analytics.recommendations.firewall import (
    permissive_policies,
    permissive_rules,
    read_rules,
)
from iotsec.analytics.recommendations.kinds import RecommendationConfig, make_finding
from iotsec.analytics.recommendations.snapshots import Snapshot, SnapshotBook

__all__ = ["DeviceRecommendations", "is_loopback"]

_NAMES = ("ListeningPorts", "FirewallConfiguration", "OSBaseline")
_CHECKS_SHOWN = 50
_RULE_KINDS: tuple[tuple[str, Literal["input", "output"]], ...] = (
    ("IoT_PermissiveInputFirewallRules", "input"),
    ("IoT_PermissiveOutputFirewallRules", "output"),
)


def is_loopback(address: str) -> bool:
    """True for loopback addresses (127.0.0.0/8, ::1, IPv4-mapped loopback, ``localhost``).

    >>> is_loopback("127.0.0.53"), is_loopback("::ffff:127.0.0.1"), is_loopback("0.0.0.0")
    (True, True, False)
    """
    text = address.strip().strip("[]").split("%", 1)[0]
    if text.lower() == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def _text(value: object) -> str:
    return str(value).strip() if isinstance(value, str | int) and value is not True else ""


def _endpoint(row: Mapping[str, object]) -> str | None:
    address, port = _text(row.get("LocalAddress")), _text(row.get("LocalPort"))
    if not port or (address and is_loopback(address)):
        return None
    protocol = _text(row.get("Protocol")).lower().removesuffix("6") or "?"
    host = f"[{address}]" if ":" in address else (address or "*")
    return f"{host}:{port}/{protocol}"


class DeviceRecommendations:
    """Open ports, permissive firewall policies and rules, OS baseline failures."""

    def __init__(self, config: RecommendationConfig | None = None) -> None:
        self.config = config or RecommendationConfig()
        self.snapshots = SnapshotBook(_NAMES)

    def observe(self, observation: Observation) -> None:
        """Keep ``observation`` if it belongs to a device's latest snapshot."""
        if observation.name in self.snapshots.names:  # most observations are of other kinds
            self.snapshots.add(observation)

    def evaluate(self, now: datetime) -> list[Finding]:
        """The device-side findings that hold, given the latest snapshots."""
        enabled = self.config.enabled
        found: list[Finding] = []
        if enabled("IoT_OpenPorts"):
            found += filter(None, map(self._open_ports, self.snapshots.latest("ListeningPorts")))
        for snapshot in self.snapshots.latest("FirewallConfiguration"):
            found += self._firewall(snapshot)
        if enabled("IoT_Baseline"):
            found += filter(None, map(self._baseline, self.snapshots.latest("OSBaseline")))
        return found

    def _open_ports(self, snapshot: Snapshot) -> Finding | None:
        endpoints = sorted({e for row in snapshot.rows if (e := _endpoint(row)) is not None})
        if not endpoints:
            return None
        count = len(endpoints)
        shown = ", ".join(endpoints[:10]) + (", ..." if count > 10 else "")
        return make_finding(
            "IoT_OpenPorts",
            snapshot.device,
            snapshot.time,
            f"{snapshot.device.device_id} listens on {count} non-loopback "
            f"endpoint{'' if count == 1 else 's'}: {shown}",
            data={"Endpoints": endpoints},
        )

    def _firewall(self, snapshot: Snapshot) -> list[Finding]:
        config, device_id = self.config, snapshot.device.device_id
        rules = read_rules(snapshot.rows)
        found = []
        if config.enabled("IoT_PermissiveFirewallPolicy"):
            for policy in permissive_policies(rules, config.policy_chains):
                chain = policy.hook.upper()
                found.append(
                    make_finding(
                        "IoT_PermissiveFirewallPolicy",
                        snapshot.device,
                        snapshot.time,
                        f"{device_id}'s {chain} chain accepts by default "
                        f"({', '.join(policy.families)}; chains {', '.join(policy.chains)})",
                        key=chain,
                        data={
                            "Chain": chain,
                            "Chains": list(policy.chains),
                            "AddressFamilies": list(policy.families),
                        },
                    )
                )
        for kind, hook in _RULE_KINDS:
            if not config.enabled(kind):
                continue
            wide = permissive_rules(
                rules, hook, config.max_prefix_v4, config.max_prefix_v6, config.max_port_range
            )
            if wide:
                shown = "; ".join(_rule_text(r.as_data()) for r in wide[:5])
                found.append(
                    make_finding(
                        kind,
                        snapshot.device,
                        snapshot.time,
                        f"{device_id} has {len(wide)} permissive {hook} rule"
                        f"{'' if len(wide) == 1 else 's'}: {shown}",
                        data={"Rules": [r.as_data() for r in wide]},
                    )
                )
        return found

    def _baseline(self, snapshot: Snapshot) -> Finding | None:
        failed = [row for row in snapshot.rows if row.get("Result") in ("Fail", "Err")]
        if not failed:
            return None
        ids = sorted({_text(row.get("CceId")) or "?" for row in failed})
        checks = [
            {
                "CceId": _text(row.get("CceId")),
                "Description": _text(row.get("Description")),
                "Result": _text(row.get("Result")),
                "Severity": _text(row.get("Severity")),
                "Error": _text(row.get("Error")),
            }
            for row in failed[:_CHECKS_SHOWN]
        ]
        shown = ", ".join(ids[:10]) + (", ..." if len(ids) > 10 else "")
        return make_finding(
            "IoT_Baseline",
            snapshot.device,
            snapshot.time,
            f"{snapshot.device.device_id} failed {len(failed)} OS baseline "
            f"check{'' if len(failed) == 1 else 's'}: {shown}",
            data={"FailedChecks": ids, "Checks": checks},
        )


def _rule_text(rule: Mapping[str, str]) -> str:
    source = rule["SourceAddress"] or "any"
    destination = rule["DestinationAddress"] or "any"
    port = rule["DestinationPort"] or "any port"
    protocol = rule["Protocol"] or "any protocol"
    return f"{rule['ChainName']}#{rule['Priority']} {protocol} {source} -> {destination} {port}"
