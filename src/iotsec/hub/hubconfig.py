"""Hub configuration that operators change at run time: IP filter, minimum TLS, limits."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any, Literal

from iotsec.hub.errors import HubConfigError

__all__ = ["FilterAction", "HubConfiguration", "IpFilterRule", "TlsVersion"]

FilterAction = Literal["Accept", "Reject"]
TlsVersion = Literal["1.2", "1.3"]


@dataclass(frozen=True, slots=True)
class IpFilterRule:
    """One IP filter rule, as IoT Hub spells them: a name, an action and a CIDR."""

    name: str
    action: FilterAction
    ip_mask: str

    def __post_init__(self) -> None:
        if self.action not in ("Accept", "Reject"):
            raise HubConfigError(f"IP filter rule {self.name!r}: action must be Accept or Reject")
        try:
            ipaddress.ip_network(self.ip_mask, strict=False)
        except ValueError:
            raise HubConfigError(
                f"IP filter rule {self.name!r}: {self.ip_mask!r} is not an address or CIDR"
            ) from None

    def matches(self, address: str) -> bool:
        """True when ``address`` falls inside this rule's range."""
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        network = ipaddress.ip_network(self.ip_mask, strict=False)
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return ip.version == network.version and ip in network


@dataclass(frozen=True, slots=True)
class HubConfiguration:
    """What the operator can change while the hub runs; stored with the registry."""

    ip_filter_rules: tuple[IpFilterRule, ...] = ()
    ip_filter_default_action: FilterAction = "Accept"
    min_tls_version: TlsVersion = "1.2"
    #: Device-to-cloud messages per second per identity, with a burst of ``rate_burst``.
    rate_per_device: float = 100.0
    rate_burst: int = 200

    def __post_init__(self) -> None:
        if self.ip_filter_default_action not in ("Accept", "Reject"):
            raise HubConfigError("ip_filter_default_action must be Accept or Reject")
        if self.min_tls_version not in ("1.2", "1.3"):
            raise HubConfigError("min_tls_version must be 1.2 or 1.3")
        if self.rate_per_device <= 0 or self.rate_burst < 1:
            raise HubConfigError("rate_per_device must be > 0 and rate_burst >= 1")

    def ip_allowed(self, address: str) -> bool:
        """First matching rule wins; with no match, the default action decides."""
        for rule in self.ip_filter_rules:
            if rule.matches(address):
                return rule.action == "Accept"
        return self.ip_filter_default_action == "Accept"

    def to_json(self) -> dict[str, Any]:
        """The JSON form the service API and the store use."""
        return {
            "ipFilterRules": [
                {"filterName": r.name, "action": r.action, "ipMask": r.ip_mask}
                for r in self.ip_filter_rules
            ],
            "ipFilterDefaultAction": self.ip_filter_default_action,
            "minTlsVersion": self.min_tls_version,
            "ratePerDevice": self.rate_per_device,
            "rateBurst": self.rate_burst,
        }

    @classmethod
    def from_json(cls, data: Any) -> HubConfiguration:
        """Parse the JSON form, naming the setting that is wrong.

        Raises:
            HubConfigError: not an object, an unknown key, or a bad value.
        """
        if not isinstance(data, dict):
            raise HubConfigError("hub configuration must be a JSON object")
        known = {
            "ipFilterRules",
            "ipFilterDefaultAction",
            "minTlsVersion",
            "ratePerDevice",
            "rateBurst",
        }
        unknown = sorted(set(data) - known)
        if unknown:
            raise HubConfigError(
                f"unknown hub configuration key {unknown[0]!r}; "
                f"known keys: {', '.join(sorted(known))}"
            )
        rules_data = data.get("ipFilterRules", [])
        if not isinstance(rules_data, list):
            raise HubConfigError("ipFilterRules must be a list")
        rules = []
        for i, rule in enumerate(rules_data):
            if not isinstance(rule, dict) or not {"filterName", "action", "ipMask"} <= set(rule):
                raise HubConfigError(f"ipFilterRules[{i}] needs filterName, action and ipMask")
            rules.append(IpFilterRule(str(rule["filterName"]), rule["action"], str(rule["ipMask"])))
        default = cls()
        try:
            rate = float(data.get("ratePerDevice", default.rate_per_device))
            burst = int(data.get("rateBurst", default.rate_burst))
        except (TypeError, ValueError):
            raise HubConfigError("ratePerDevice and rateBurst must be numbers") from None
        return cls(
            ip_filter_rules=tuple(rules),
            ip_filter_default_action=data.get(
                "ipFilterDefaultAction", default.ip_filter_default_action
            ),
            min_tls_version=data.get("minTlsVersion", default.min_tls_version),
            rate_per_device=rate,
            rate_burst=burst,
        )
