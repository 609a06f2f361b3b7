"""Reading a FirewallConfiguration snapshot: permissive chain policies and permissive rules.

The agent's collector (``iotsec.agent.collectors.firewall``) sends one row per rule and, after
a base chain's rules, one policy row (``ExtraDetails.Policy``); a hook with no filter chain at
all shows as an implicit accept policy (``ExtraDetails.Implicit``). ``ExtraDetails`` also
carries ``Family``, ``Table`` and, for nftables, ``Hook``. ASC's C agent marks no policy row:
it ends each built-in chain (INPUT, OUTPUT, FORWARD) with a row that has no match and whose
``Priority`` is the chain's rule count, and sends three such rows (Allow, ``Priority`` 0) when
there are no rules; in a snapshot without ``ExtraDetails.Policy`` anywhere, those rows are the
policies. A rule that only accepts established or related traffic is told by
``ExtraDetails.State``, or by a ``--ctstate``/``--state`` in ``ExtraDetails.Match``.

**Permissive policy.** A chain is permissive when its policy is accept and no rule of it drops
everything that is left (an unconditional deny at the end is a policy in all but name). A hook
(input, output, forward) is permissive for an address family when *every* base chain on it for
that family is permissive: a packet must pass all of them. Families: ``ip`` is IPv4, ``ip6``
IPv6, ``inet`` and rows without a family (implicit, or other agents) both.

**Permissive rule.** An accept rule of the input (output) chain is permissive when its source
(destination) is any or a range larger than the configured prefix, or its destination ports
are all ports or a range wider than ``max_port_range``; rules that only accept established or
related traffic, only on the loopback interface, or only ICMP, are not; nor are rules with
matches the collector could not translate (we cannot tell how wide they are).

>>> rows = [
...     {"ChainName": "INPUT", "Action": "Allow", "Direction": "In", "Priority": 0,
...      "DestinationPort": "22", "Protocol": "tcp", "ExtraDetails": {"Family": "ip"}},
...     {"ChainName": "INPUT", "Action": "Allow", "Direction": "In", "Priority": 1,
...      "ExtraDetails": {"Family": "ip", "Policy": "ACCEPT"}},
... ]
>>> rules = read_rules(rows)
>>> [(p.hook, p.families) for p in permissive_policies(rules, ("INPUT",))]
[('input', ('ipv4',))]
>>> [r.destination_port for r in permissive_rules(rules, "input", 16, 48, 1024)]
['22']
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

__all__ = [
    "FirewallRule",
    "PermissivePolicy",
    "permissive_policies",
    "permissive_rules",
    "read_rules",
    "wide_address",
    "wide_ports",
]

Hook = Literal["input", "output", "forward"]
_HOOKS: tuple[Hook, ...] = ("input", "output", "forward")
_BY_NAME: Mapping[str, Hook] = {hook: hook for hook in _HOOKS}
_BY_DIRECTION: Mapping[str, Hook] = {"In": "input", "Out": "output"}
_ANY = {"", "*", "any", "0.0.0.0/0", "::/0", "0/0"}
# ExtraDetails that narrow what a rule matches (so a deny with them is not a catch-all).
_NARROWING = ("Match", "State", "InInterface", "OutInterface", "Options", "Untranslated")
_ICMP = {"icmp", "icmpv6", "ipv6-icmp", "icmp6"}
_FAMILIES = {"ip": ("ipv4",), "ip6": ("ipv6",), "inet": ("ipv4", "ipv6"), "": ("ipv4", "ipv6")}
_BUILT_IN_CHAINS = ("INPUT", "OUTPUT", "FORWARD")
_STATE_MATCH = re.compile(r"--(?:ct)?state\s+(\S+)")


@dataclass(frozen=True, slots=True)
class FirewallRule:
    """One row of the snapshot, read: a rule, or a chain's policy (``is_policy``)."""

    chain: str
    family: str
    table: str
    hook: Hook | None
    action: str
    enabled: bool
    priority: int
    is_policy: bool
    source_address: str
    destination_address: str
    source_port: str
    destination_port: str
    protocol: str
    details: Mapping[str, str]

    @property
    def chain_key(self) -> tuple[str, str, str]:
        """The chain this row belongs to: (family, table, chain)."""
        return self.family, self.table, self.chain

    def as_data(self) -> dict[str, str]:
        """The rule as a recommendation's additional data shows it."""
        return {
            "ChainName": self.chain,
            "Priority": str(self.priority),
            "SourceAddress": self.source_address,
            "SourcePort": self.source_port,
            "DestinationAddress": self.destination_address,
            "DestinationPort": self.destination_port,
            "Protocol": self.protocol,
        }


@dataclass(frozen=True, slots=True)
class PermissivePolicy:
    """A hook whose chains all accept by default, for the address families listed."""

    hook: Hook
    families: tuple[str, ...]
    chains: tuple[str, ...]


def _str(value: object) -> str:
    if isinstance(value, bool):
        return ""
    if isinstance(value, int | str):
        return str(value).strip()
    return ""


def _hook(chain: str, direction: str, details: Mapping[str, str]) -> Hook | None:
    for name in (details.get("Hook", ""), chain.lower()):
        if name in _BY_NAME:
            return _BY_NAME[name]
    if "Hook" in details:  # an nft chain on another hook (prerouting, ingress)
        return None
    return _BY_DIRECTION.get(direction)


def read_rules(rows: Sequence[Mapping[str, Any]]) -> list[FirewallRule]:
    """The rows of a FirewallConfiguration snapshot, read (rows of other shapes skipped)."""
    rules = []
    for row in rows:
        raw = row.get("ExtraDetails")
        details = {str(k): _str(v) for k, v in raw.items()} if isinstance(raw, Mapping) else {}
        chain = _str(row.get("ChainName"))
        priority = row.get("Priority")
        rules.append(
            FirewallRule(
                chain=chain,
                family=details.get("Family", "").lower(),
                table=details.get("Table", ""),
                hook=_hook(chain, _str(row.get("Direction")), details),
                action=_str(row.get("Action")),
                enabled=row.get("Enabled", True) is not False,
                priority=priority if isinstance(priority, int) else 0,
                is_policy="Policy" in details,
                source_address=_str(row.get("SourceAddress")),
                destination_address=_str(row.get("DestinationAddress")),
                source_port=_str(row.get("SourcePort")),
                destination_port=_str(row.get("DestinationPort")),
                protocol=_str(row.get("Protocol")),
                details=details,
            )
        )
    if not any(rule.is_policy for rule in rules):
        rules = _c_agent_policies(rules)
    return rules


def _c_agent_policies(rules: list[FirewallRule]) -> list[FirewallRule]:
    # The last row of a built-in chain, with no match and Priority = the rows before it.
    last: dict[str, tuple[int, int]] = {}  # chain -> (index of its last row, rows in it)
    for index, rule in enumerate(rules):
        if rule.chain in _BUILT_IN_CHAINS:
            count = last.get(rule.chain, (0, 0))[1]
            last[rule.chain] = (index, count + 1)
    out = list(rules)
    for index, count in last.values():
        rule = rules[index]
        bare = not (
            rule.details
            or rule.source_address
            or rule.destination_address
            or rule.source_port
            or rule.destination_port
            or rule.protocol
        )
        if bare and rule.priority == count - 1:
            out[index] = replace(rule, is_policy=True)
    return out


def _catch_all_deny(rule: FirewallRule) -> bool:
    narrowed = any(rule.details.get(name) for name in _NARROWING)
    matches = rule.details.get("Matches", "")
    return (
        rule.action == "Deny"
        and rule.enabled
        and not rule.is_policy
        and not narrowed
        and matches in ("", "comment")
        and not (rule.source_address or rule.destination_address)
        and not (rule.source_port or rule.destination_port or rule.protocol)
    )


def permissive_policies(
    rules: Sequence[FirewallRule], chains: Sequence[str] = ("INPUT", "OUTPUT", "FORWARD")
) -> list[PermissivePolicy]:
    """The hooks among ``chains`` whose default policy lets everything through."""
    denying = {rule.chain_key for rule in rules if _catch_all_deny(rule)}
    found = []
    for hook in _HOOKS:
        if hook.upper() not in {c.upper() for c in chains}:
            continue
        policies = [r for r in rules if r.is_policy and r.hook == hook and r.family in _FAMILIES]
        families = []
        for family in ("ipv4", "ipv6"):
            relevant = [p for p in policies if family in _FAMILIES[p.family]]
            if relevant and all(
                p.action == "Allow" and p.enabled and p.chain_key not in denying for p in relevant
            ):
                families.append(family)
        if families:
            names = sorted({p.chain for p in policies})
            found.append(PermissivePolicy(hook, tuple(families), tuple(names)))
    return found


def wide_address(text: str, max_prefix_v4: int, max_prefix_v6: int) -> bool:
    """True when ``text`` (an address, CIDR, range or list) covers any or a large range."""
    text = text.strip()
    if text.lower() in _ANY or text.startswith("!"):
        return True
    for part in re.split(r"[;,\s]+", text.strip("{} ")):
        try:
            if "-" in part and "/" not in part:
                low, high = (ipaddress.ip_address(p) for p in part.split("-", 1))
                prefix = max_prefix_v4 if low.version == 4 else max_prefix_v6
                if int(high) - int(low) + 1 > 2 ** (low.max_prefixlen - prefix):
                    return True
            elif part:
                network = ipaddress.ip_network(part, strict=False)
                prefix = max_prefix_v4 if network.version == 4 else max_prefix_v6
                if network.prefixlen < prefix:
                    return True
        except ValueError:
            continue  # a named set or tag we cannot size: not known to be wide
    return False


def wide_ports(text: str, max_range: int) -> bool:
    """True when ``text`` (a port, range or list) is all ports or a range wider than allowed."""
    text = text.strip()
    if text.lower() in _ANY or text.startswith("!"):
        return True
    for part in re.split(r"[;,\s]+", text.strip("{} ")):
        bounds = re.fullmatch(r"(\d+)\s*[-:]\s*(\d+)", part)
        if bounds and int(bounds[2]) - int(bounds[1]) + 1 > max_range:
            return True
    return False


def _partly_unknown(rule: FirewallRule) -> bool:
    # iptables-nft matches nft cannot show (conntrack, iprange): we cannot size the rule.
    untranslated = rule.details.get("Untranslated", "").split()
    return any(match != "match:comment" for match in untranslated)


def _stateful_only(rule: FirewallRule) -> bool:
    state = rule.details.get("State", "")
    if not state and (found := _STATE_MATCH.search(rule.details.get("Match", ""))):
        state = found[1]
    tokens = re.findall(r"[a-z]+", state.lower())
    return bool(tokens) and set(tokens) <= {"established", "related"}


def permissive_rules(
    rules: Sequence[FirewallRule],
    hook: Literal["input", "output"],
    max_prefix_v4: int,
    max_prefix_v6: int,
    max_port_range: int,
) -> list[FirewallRule]:
    """The accept rules of ``hook`` that let in (out) any address or any port."""
    interface = "InInterface" if hook == "input" else "OutInterface"
    found = []
    for rule in rules:
        if (
            rule.is_policy
            or rule.hook != hook
            or rule.action != "Allow"
            or not rule.enabled
            or _stateful_only(rule)
            or rule.details.get(interface) == "lo"
            or rule.protocol.lower() in _ICMP
            or _partly_unknown(rule)
        ):
            continue
        address = rule.source_address if hook == "input" else rule.destination_address
        if wide_address(address, max_prefix_v4, max_prefix_v6) or wide_ports(
            rule.destination_port, max_port_range
        ):
            found.append(rule)
    return found
