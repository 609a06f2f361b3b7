"""The recommendation kinds (ASC's ``recommendationType`` ids), and the knobs of their checks.

``KINDS`` is the registry: each kind's display name, severity, side (device, agent or hub) and
remediation. ``RecommendationConfig`` holds the thresholds the evaluators apply, and which
kinds an operator turned off.

>>> KINDS["IoT_OpenPorts"].display_name, KINDS["IoT_OpenPorts"].severity
('Open Ports on device', 'Medium')
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Literal

from iotsec.analytics.detection import Finding, Severity
from iotsec.analytics.observation import DeviceContext

__all__ = ["KINDS", "RecommendationConfig", "RecommendationKind", "Side", "make_finding"]

Side = Literal["device", "agent", "hub"]


@dataclass(frozen=True, slots=True)
class RecommendationKind:
    """One kind of recommendation: what it is called, how severe, what to do."""

    kind: str
    display_name: str
    severity: Severity
    side: Side
    remediation: tuple[str, ...]


def _kind(
    kind: str, name: str, severity: Severity, side: Side, *remediation: str
) -> tuple[str, RecommendationKind]:
    return kind, RecommendationKind(kind, name, severity, side, remediation)


KINDS: Mapping[str, RecommendationKind] = dict(
    [
        _kind(
            "IoT_OpenPorts", "Open Ports on device", "Medium", "device",
            "Close the services the device does not need, or bind them to the loopback address.",
            "Allow the remaining ports only from the addresses that need them.",
        ),
        _kind(
            "IoT_PermissiveFirewallPolicy",
            "Permissive firewall policy found in one of the chains", "Medium", "device",
            "Set the chain's default policy to drop, and allow only the traffic the device needs.",
        ),
        _kind(
            "IoT_PermissiveInputFirewallRules",
            "Permissive firewall rule in the input chain was found", "Medium", "device",
            "Restrict the rule to the source addresses and ports the device needs.",
        ),
        _kind(
            "IoT_PermissiveOutputFirewallRules",
            "Permissive firewall rule in the output chain was found", "Medium", "device",
            "Restrict the rule to the destinations and ports the device needs.",
        ),
        _kind(
            "IoT_Baseline", "Operation system baseline validation has failed", "Medium", "device",
            "Fix the failed checks listed in the recommendation's additional data.",
        ),
        _kind(
            "IoT_AgentSendsUnutilizedMessages", "Agent sends unutilized messages", "Low", "agent",
            "Lengthen the agent's message frequencies (highPriorityMessageFrequency, "
            "lowPriorityMessageFrequency) so that each message carries closer to 4 KB.",
        ),
        _kind(
            "IoT_SecurityTwinConfigurationNotOptimal",
            "Security twin configuration not optimal", "Low", "agent",
            "Correct the setting named in the recommendation in the security module twin.",
        ),
        _kind(
            "IoT_SecurityTwinConfigurationConflict",
            "Security twin configuration conflict", "Low", "agent",
            "Make the conflicting settings of the security module twin agree.",
        ),
        _kind(
            "IoT_InstallAgent", "Install the security agent on the device", "Medium", "agent",
            "Install and start the iotsec agent on the device (iotsec agent run), with the "
            "device's security module credentials.",
        ),
        _kind(
            "IoT_SharedCredentials",
            "Identical authentication credentials used by multiple devices", "High", "hub",
            "Give every device its own key or certificate, and roll the shared one.",
        ),
        _kind(
            "IoT_IPFilter_DenyAll", "Default IP filter policy should be deny", "Medium", "hub",
            "Set the IP filter's default action to Reject and accept only the ranges your "
            "devices connect from.",
        ),
        _kind(
            "IoT_IPFilter_PermissiveRule", "IP filter rule includes large IP range", "Medium",
            "hub", "Narrow the rule's range to the addresses your devices connect from.",
        ),
        _kind(
            "IoT_VulnerableTLSCipherSuite", "TLS cipher suite upgrade needed", "Medium", "hub",
            "Set the hub's minimum TLS version to 1.2 or later.",
        ),
    ]
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class RecommendationConfig:
    """Thresholds of the recommendation checks, and the kinds turned off."""

    #: Kinds not evaluated (ASC lets each type be disabled per solution).
    disabled: frozenset[str] = frozenset()
    #: An address range shorter than these prefixes is "large" (firewall rules, IP filter).
    max_prefix_v4: int = 16
    max_prefix_v6: int = 48
    #: A port range wider than this is "all ports" for the firewall checks.
    max_port_range: int = 1024
    #: Chains whose default policy must not be accept.
    policy_chains: tuple[str, ...] = ("INPUT", "OUTPUT", "FORWARD")
    #: MessageStatistics window and share of messages under 4 KB that is wasteful.
    unutilized_window: timedelta = timedelta(hours=24)
    unutilized_ratio: float = 0.1
    unutilized_min_messages: int = 10
    #: A configuration problem not reported again within this is taken as fixed (None: never).
    config_error_ttl: timedelta | None = timedelta(days=7)
    #: How long a registered device may go without telemetry before IoT_InstallAgent.
    install_agent_grace: timedelta = timedelta(hours=1)
    min_tls_version: str = "1.2"

    def __post_init__(self) -> None:
        unknown = sorted(set(self.disabled) - set(KINDS))
        if unknown:
            raise ValueError(f"unknown recommendation kind {unknown[0]!r}")
        if not (0 <= self.max_prefix_v4 <= 32 and 0 <= self.max_prefix_v6 <= 128):
            raise ValueError("max_prefix_v4 must be in [0, 32] and max_prefix_v6 in [0, 128]")
        if not 0.0 < self.unutilized_ratio <= 1.0 or self.unutilized_min_messages < 1:
            raise ValueError("unutilized_ratio must be in (0, 1] and min_messages at least 1")
        if self.unutilized_window <= timedelta(0) or self.max_port_range < 1:
            raise ValueError("unutilized_window and max_port_range must be positive")

    def enabled(self, kind: str) -> bool:
        """True unless ``kind`` is turned off."""
        return kind not in self.disabled


def make_finding(
    kind: str,
    device: DeviceContext,
    time: datetime,
    description: str,
    *,
    key: str = "",
    data: Mapping[str, object] | None = None,
) -> Finding:
    """A ``Finding`` of ``kind`` with the kind's name, severity and remediation."""
    spec = KINDS[kind]
    return Finding(
        kind=kind,
        display_name=spec.display_name,
        severity=spec.severity,
        device=device,
        time=time,
        description=description,
        key=key,
        additional_data=MappingProxyType(dict(data or {})),
        remediation=spec.remediation,
    )
