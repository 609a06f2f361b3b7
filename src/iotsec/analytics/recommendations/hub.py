"""Hub-side recommendations, over a ``HubState``: the registry and configuration as values.

The composition root builds a ``HubState`` from the hub's registry and configuration (the
analytics package never imports the hub): devices with fingerprints of their credentials (never
the secrets: ``credential_fingerprint`` hashes a key), the IP filter and the minimum TLS version.

- ``IoT_SharedCredentials`` (High): one credential used by several devices; one finding per
  device, naming the others.
- ``IoT_IPFilter_DenyAll``: the IP filter's default action is not Reject.
- ``IoT_IPFilter_PermissiveRule``: an Accept rule's range is larger than the configured prefix
  (/16 for IPv4, /48 for IPv6); one finding per rule.
- ``IoT_VulnerableTLSCipherSuite``: the minimum TLS version is below 1.2.

Hub-level findings are about the device ``$hub``.

>>> from datetime import UTC, datetime
>>> from iotsec.analytics import DeviceContext
>>> key = credential_fingerprint("c2hhcmVkLWtleQ==")
>>> state = HubState(hub="hub-1", devices=(
...     HubDevice(DeviceContext("dev-1"), credentials=(key,)),
...     HubDevice(DeviceContext("dev-2"), credentials=(key,)),
... ), ip_filter_default="Reject")
>>> found = hub_findings(state, datetime(2025, 1, 1, tzinfo=UTC))
>>> sorted((f.kind, f.device.device_id) for f in found)
[('IoT_SharedCredentials', 'dev-1'), ('IoT_SharedCredentials', 'dev-2')]
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from iotsec.analytics.detection import Finding
from iotsec.analytics.observation import DeviceContext
from iotsec.analytics.recommendations.kinds import RecommendationConfig, make_finding

__all__ = [
    "FilterAction",
    "HubDevice",
    "HubState",
    "IpFilterRule",
    "credential_fingerprint",
    "hub_findings",
    "tls_version",
]

FilterAction = Literal["Accept", "Reject"]


def credential_fingerprint(secret: str | bytes) -> str:
    """A fingerprint of a key or certificate (SHA-256), safe to keep and compare.

    >>> credential_fingerprint("abc")[:20]
    'sha256:ba7816bf8f01c'
    """
    data = secret.encode() if isinstance(secret, str) else secret
    return "sha256:" + hashlib.sha256(data).hexdigest()


def tls_version(text: str) -> tuple[int, int]:
    """``"1.2"``, ``"TLSv1.2"`` or ``"TLS1_2"`` as ``(1, 2)``; ValueError otherwise.

    >>> tls_version("TLSv1.1"), tls_version("1.3")
    ((1, 1), (1, 3))
    """
    found = re.fullmatch(r"(?i)\s*(?:tls\s*v?)?(\d+)[._](\d+)\s*", text)
    if found is None:
        raise ValueError(f"not a TLS version: {text!r}")
    return int(found[1]), int(found[2])


@dataclass(frozen=True, slots=True)
class HubDevice:
    """A registered device: its context, credential fingerprints, status and creation time."""

    device: DeviceContext
    credentials: tuple[str, ...] = ()
    enabled: bool = True
    created: datetime | None = None

    def __post_init__(self) -> None:
        if self.created is not None and self.created.utcoffset() is None:
            raise ValueError(f"HubDevice.created must be timezone-aware: {self.created!r}")


@dataclass(frozen=True, slots=True)
class IpFilterRule:
    """One IP filter rule: a name, Accept or Reject, and an address or CIDR."""

    name: str
    action: FilterAction
    cidr: str

    def __post_init__(self) -> None:
        if self.action not in ("Accept", "Reject"):
            raise ValueError(f"IP filter rule {self.name!r}: action must be Accept or Reject")
        try:
            ipaddress.ip_network(self.cidr, strict=False)
        except ValueError:
            raise ValueError(f"IP filter rule {self.name!r}: {self.cidr!r} is not a CIDR") from None

    @property
    def network(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        """The rule's range."""
        return ipaddress.ip_network(self.cidr, strict=False)


@dataclass(frozen=True, slots=True)
class HubState:
    """What the hub-side recommendations look at: registry and configuration, as values."""

    hub: str = ""
    devices: tuple[HubDevice, ...] = ()
    ip_filter_rules: tuple[IpFilterRule, ...] = ()
    ip_filter_default: FilterAction = "Accept"
    min_tls_version: str = "1.2"

    def __post_init__(self) -> None:
        if self.ip_filter_default not in ("Accept", "Reject"):
            raise ValueError("ip_filter_default must be Accept or Reject")
        tls_version(self.min_tls_version)
        ids = [d.device.device_id for d in self.devices]
        if len(set(ids)) != len(ids):
            twice = sorted({i for i in ids if ids.count(i) > 1})
            raise ValueError(f"HubState lists device {twice[0]!r} more than once")

    @property
    def context(self) -> DeviceContext:
        """The context of hub-level findings (device ``$hub``)."""
        return DeviceContext("$hub", group="", hub=self.hub, known=False)


def _shared_credentials(state: HubState, now: datetime) -> list[Finding]:
    users: dict[str, list[HubDevice]] = {}
    for device in state.devices:
        for credential in set(device.credentials):
            if credential:
                users.setdefault(credential, []).append(device)
    found = []
    for credential, devices in sorted(users.items()):
        if len(devices) < 2:
            continue
        short = credential[:19]
        for device in devices:
            others = sorted(d.device.device_id for d in devices if d is not device)
            shown = ", ".join(others[:10]) + (", ..." if len(others) > 10 else "")
            found.append(
                make_finding(
                    "IoT_SharedCredentials",
                    device.device,
                    now,
                    f"{device.device.device_id} uses the same credential ({short}...) as "
                    f"{len(others)} other device{'' if len(others) == 1 else 's'}: {shown}",
                    key=short,
                    data={"Credential": short, "SharedWith": others},
                )
            )
    return found


def hub_findings(
    state: HubState, now: datetime, config: RecommendationConfig | None = None
) -> list[Finding]:
    """The hub-side findings that hold for ``state``."""
    config = config or RecommendationConfig()
    found: list[Finding] = []
    if config.enabled("IoT_SharedCredentials"):
        found += _shared_credentials(state, now)
    hub = state.context
    if config.enabled("IoT_IPFilter_DenyAll") and state.ip_filter_default != "Reject":
        found.append(
            make_finding(
                "IoT_IPFilter_DenyAll",
                hub,
                now,
                f"the IP filter of hub {state.hub or '(default)'} accepts connections from "
                f"addresses no rule names (default action {state.ip_filter_default})",
                data={"DefaultAction": state.ip_filter_default},
            )
        )
    if config.enabled("IoT_IPFilter_PermissiveRule"):
        for rule in state.ip_filter_rules:
            network = rule.network
            limit = config.max_prefix_v4 if network.version == 4 else config.max_prefix_v6
            if rule.action == "Accept" and network.prefixlen < limit:
                found.append(
                    make_finding(
                        "IoT_IPFilter_PermissiveRule",
                        hub,
                        now,
                        f"IP filter rule {rule.name} accepts {network} ({network.num_addresses:,} "
                        f"addresses), a range larger than /{limit}",
                        key=rule.name,
                        data={
                            "RuleName": rule.name,
                            "IpMask": rule.cidr,
                            "Prefix": network.prefixlen,
                        },
                    )
                )
    if config.enabled("IoT_VulnerableTLSCipherSuite") and tls_version(
        state.min_tls_version
    ) < tls_version(config.min_tls_version):
        found.append(
            make_finding(
                "IoT_VulnerableTLSCipherSuite",
                hub,
                now,
                f"hub {state.hub or '(default)'} accepts TLS {state.min_tls_version}; "
                f"TLS below {config.min_tls_version} has known weaknesses",
                data={
                    "MinTlsVersion": state.min_tls_version,
                    "Recommended": config.min_tls_version,
                },
            )
        )
    return found
