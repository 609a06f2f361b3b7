"""The FirewallConfiguration collector: every rule and chain policy of the host's firewall.

The ruleset comes from ``nft -j list ruleset`` (nftables, including iptables-nft rules) or,
where nft is missing or fails, from ``iptables-save`` (its ``*filter`` table). Each rule is one
row: ``Priority`` is its position in the chain, ``Direction`` follows the chain's hook (input
is In, output is Out, forward has none), ``Action`` is Allow for accept, Deny for drop and
reject, Other for anything else (the verdict then sits in ``ExtraDetails["Action"]``). After
the rules of a base filter chain comes its policy row: ``ExtraDetails["Policy"]`` holds the
policy and ``Priority`` the rule count, so "permissive firewall policy" can be computed later.
With no filter chain on a hook, the kernel accepts everything: that shows as an implicit policy
row (``ExtraDetails["Implicit"] = "true"``), as the C agent reports an empty firewall.

When neither command can be run (not installed, not permitted, failed), :meth:`collect`
returns no rows and raises HostReadError naming the commands and why: the agent turns it
into a Diagnostic instead of reporting a host without a firewall. A ruleset that does not
parse raises ParseError the same way.

>>> dump = "*filter\\n:INPUT DROP [0:0]\\n-A INPUT -p tcp --dport 22 -j ACCEPT\\nCOMMIT\\n"
>>> rows = parse_iptables_save(dump)
>>> [(r.chain_name, r.action, r.protocol, r.destination_port, r.priority) for r in rows][:2]
[('INPUT', 'Allow', 'tcp', '22', 0), ('INPUT', 'Deny', None, None, 1)]
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import msgspec

from iotsec.agent.collectors.base import CollectorSpec
from iotsec.agent.errors import AgentError, HostReadError, ParseError
from iotsec.agent.hostroot import HostRoot
from iotsec.schema import Event, FirewallConfiguration, FirewallConfigurationEvent
from iotsec.schema.payloads import Action, Direction

__all__ = [
    "FIREWALL_SPEC",
    "IPTABLES_SAVE",
    "NFT_LIST_RULESET",
    "FirewallCollector",
    "parse_iptables_save",
    "parse_nft_ruleset",
]

FIREWALL_SPEC = CollectorSpec(
    name="FirewallConfiguration",
    event_type="Security",
    category="Periodic",
    default_priority="Low",
    description="Firewall rules and chain policies from nftables or iptables-save",
)
NFT_LIST_RULESET = ("nft", "-j", "list", "ruleset")
IPTABLES_SAVE = ("iptables-save",)

_VERDICTS: Mapping[str, Action] = {"accept": "Allow", "drop": "Deny", "reject": "Deny"}
_DIRECTIONS: Mapping[str, Direction] = {"input": "In", "output": "Out"}
_HOOK_CHAINS = {"input": "INPUT", "output": "OUTPUT", "forward": "FORWARD"}


@dataclass
class _Rule:
    """A rule being assembled from its expressions or options."""

    action: Action = "Other"
    verdict: str = "continue"
    fields: dict[str, str] = field(default_factory=dict)
    details: dict[str, str] = field(default_factory=dict)

    def put(self, name: str, value: str) -> None:
        # Two matches on one field (nft "ip saddr x ip saddr y") both hold; keep them both.
        known = self.fields.get(name)
        if known is None:
            self.fields[name] = value
        elif value not in known.split(";"):
            self.fields[name] = f"{known};{value}"

    def note(self, name: str, value: str) -> None:
        self.details[name] = f"{self.details[name]} {value}" if name in self.details else value

    def row(
        self, chain: str, priority: int, direction: Direction | None, details: Mapping[str, str]
    ) -> FirewallConfiguration:
        extra = {**details, **self.details}
        if self.action == "Other":
            extra["Action"] = self.verdict
        return FirewallConfiguration(
            enabled=True,
            action=self.action,
            priority=priority,
            direction=direction,
            chain_name=chain,
            source_address=self.fields.get("src"),
            destination_address=self.fields.get("dst"),
            source_port=self.fields.get("sport"),
            destination_port=self.fields.get("dport"),
            protocol=self.fields.get("proto"),
            extra_details=extra,
        )


def _policy_row(
    chain: str,
    policy: str,
    rule_count: int,
    direction: Direction | None,
    details: Mapping[str, str],
) -> FirewallConfiguration:
    action = _VERDICTS.get(policy.lower(), "Other")
    return FirewallConfiguration(
        enabled=True,
        action=action,
        priority=rule_count,
        direction=direction,
        chain_name=chain,
        extra_details={**details, "Policy": policy},
    )


def _implicit_rows(hooks_with_filter: set[str]) -> list[FirewallConfiguration]:
    return [
        _policy_row(name, "accept", 0, _DIRECTIONS.get(hook), {"Implicit": "true"})
        for hook, name in _HOOK_CHAINS.items()
        if hook not in hooks_with_filter
    ]


# --- nftables JSON -------------------------------------------------------------------------


class _NftError(Exception):
    """An nft JSON value of an unexpected shape (becomes ParseError with the rule named)."""


def _nft_value(value: Any, sets: Mapping[str, str]) -> str:
    if isinstance(value, str):
        return sets.get(value, value) if value.startswith("@") else value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, list):
        return ",".join(_nft_value(v, sets) for v in value)
    if isinstance(value, dict) and len(value) == 1:
        (kind, inner), *_ = value.items()
        return _nft_compound(kind, inner, sets)
    raise _NftError(f"unexpected value {value!r}")


def _nft_compound(kind: str, inner: Any, sets: Mapping[str, str]) -> str:
    if kind == "prefix" and isinstance(inner, dict):
        return f"{_nft_value(inner.get('addr'), sets)}/{_nft_value(inner.get('len'), sets)}"
    if kind == "range" and isinstance(inner, list) and len(inner) == 2:
        return f"{_nft_value(inner[0], sets)}-{_nft_value(inner[1], sets)}"
    if kind == "set":
        return _nft_value(inner if isinstance(inner, list) else [inner], sets)
    if kind == "elem" and isinstance(inner, dict):
        return _nft_value(inner.get("val"), sets)
    return f"{kind}({_nft_value(inner, sets) if inner is not None else ''})"


def _nft_payload(rule: _Rule, spec: Mapping[str, Any], value: str) -> None:
    protocol, name = str(spec.get("protocol", "")), str(spec.get("field", ""))
    if name in ("saddr", "daddr") and protocol in ("ip", "ip6"):
        rule.put("src" if name == "saddr" else "dst", value)
    elif name in ("sport", "dport"):
        rule.put(name, value)
        if protocol != "th" and "proto" not in rule.fields:
            rule.put("proto", protocol)
    elif (protocol, name) in (("ip", "protocol"), ("ip6", "nexthdr")):
        rule.put("proto", value)
    else:
        rule.note("Match", f"{protocol} {name} {value}")


def _nft_match(rule: _Rule, match: Any, sets: Mapping[str, str]) -> None:
    if not isinstance(match, dict):
        raise _NftError("a match is an object")
    left, op = match.get("left"), match.get("op", "==")
    value = _nft_value(match.get("right"), sets)
    if op == "!=":
        value = f"!{value}"
    elif op not in ("==", "in"):
        value = f"{op}{value}"
    if not isinstance(left, dict) or len(left) != 1:
        rule.note("Match", value)
        return
    (kind, spec), *_ = left.items()
    spec = spec if isinstance(spec, dict) else {}
    key = spec.get("key")
    if kind == "payload":
        _nft_payload(rule, spec, value)
    elif kind == "meta" and key in ("l4proto", "protocol"):
        rule.put("proto", value)
    elif kind == "meta" and key in ("iifname", "iif", "oifname", "oif"):
        rule.note("InInterface" if str(key).startswith("i") else "OutInterface", value)
    elif kind == "ct" and key == "state":
        rule.note("State", value)
    else:
        rule.note("Match", f"{kind} {_nft_value(key or '', sets)} {value}".strip())


def _nft_rule(expressions: Any, sets: Mapping[str, str]) -> _Rule:
    rule = _Rule()
    if not isinstance(expressions, list):
        raise _NftError("expr is a list")
    for expression in expressions:
        if not isinstance(expression, dict) or len(expression) != 1:
            raise _NftError("an expression is an object with one key")
        (kind, body), *_ = expression.items()
        if kind == "match":
            _nft_match(rule, body, sets)
        elif kind in _VERDICTS:
            rule.action, rule.verdict = _VERDICTS[kind], kind
        elif kind in ("jump", "goto") and isinstance(body, dict):
            rule.verdict = f"{kind} {body.get('target')}"
        elif kind in ("return", "continue", "masquerade", "snat", "dnat", "redirect", "queue"):
            rule.verdict = kind
        elif kind in ("counter", "comment"):
            continue
        elif kind == "xt" and isinstance(body, dict):
            # iptables-nft matches nft cannot show (multiport, iprange): the rule is partial.
            rule.note("Untranslated", f"{body.get('type')}:{body.get('name')}")
        else:
            rule.note("Statement", kind)
    return rule


def _nft_sets(objects: Sequence[Any]) -> dict[str, str]:
    sets: dict[str, str] = {}
    for item in objects:
        body = item.get("set") if isinstance(item, dict) else None
        if isinstance(body, dict) and isinstance(body.get("name"), str):
            elements = body.get("elem", [])
            try:
                sets[f"@{body['name']}"] = _nft_value(elements, {}) if elements else "@empty"
            except _NftError:
                continue
    return sets


_ChainKey = tuple[str, str, str]


def _nft_objects(
    objects: list[Any], sets: Mapping[str, str], source: str
) -> tuple[dict[_ChainKey, dict[str, Any]], dict[_ChainKey, list[_Rule]]]:
    chains: dict[_ChainKey, dict[str, Any]] = {}
    rules: dict[_ChainKey, list[_Rule]] = {}
    for index, item in enumerate(objects):
        if not isinstance(item, dict):
            raise ParseError(source, f"nftables[{index}] is not an object")
        for kind in ("chain", "rule"):
            body = item.get(kind)
            if body is None:
                continue
            if not isinstance(body, dict):
                raise ParseError(source, f"nftables[{index}].{kind} is not an object")
            chain_name = body.get("name") if kind == "chain" else body.get("chain")
            key = (str(body.get("family")), str(body.get("table")), str(chain_name))
            chain_rules = rules.setdefault(key, [])
            if kind == "chain":
                chains[key] = body
                continue
            try:
                rule = _nft_rule(body.get("expr"), sets)
            except _NftError as exc:
                where = f"nftables[{index}] (rule {body.get('handle')})"
                raise ParseError(source, f"{where}: {exc}") from None
            if isinstance(body.get("comment"), str):
                rule.note("Comment", body["comment"])
            rule.note("Handle", str(body.get("handle")))
            chain_rules.append(rule)
    return chains, rules


def parse_nft_ruleset(
    text: str, source: str = "nft -j list ruleset"
) -> list[FirewallConfiguration]:
    """Rows for every rule and base filter chain policy of ``nft -j list ruleset`` output."""
    try:
        document = msgspec.json.decode(text)
    except msgspec.DecodeError as exc:
        raise ParseError(source, f"not JSON: {exc}") from None
    objects = document.get("nftables") if isinstance(document, dict) else None
    if not isinstance(objects, list):
        raise ParseError(source, 'expected an object with an "nftables" list')
    chains, rules = _nft_objects(objects, _nft_sets(objects), source)
    rows: list[FirewallConfiguration] = []
    filtered_hooks: set[str] = set()
    for key, chain_rules in rules.items():
        family, table, name = key
        chain = chains.get(key, {})
        hook = chain.get("hook")
        details = {"Family": family, "Table": table}
        if isinstance(hook, str):
            details["Hook"] = hook
        direction = _DIRECTIONS.get(hook) if isinstance(hook, str) else None
        rows += [r.row(name, i, direction, details) for i, r in enumerate(chain_rules)]
        policy = chain.get("policy")
        if isinstance(hook, str) and chain.get("type") == "filter" and isinstance(policy, str):
            rows.append(_policy_row(name, policy, len(chain_rules), direction, details))
            if family in ("ip", "ip6", "inet"):
                filtered_hooks.add(hook)
    return rows + _implicit_rows(filtered_hooks)


# --- iptables-save --------------------------------------------------------------------------

_IPT_FIELDS = {
    "-p": "proto",
    "--protocol": "proto",
    "-s": "src",
    "--source": "src",
    "--src-range": "src",
    "-d": "dst",
    "--destination": "dst",
    "--dst-range": "dst",
    "--sport": "sport",
    "--source-port": "sport",
    "--sports": "sport",
    "--source-ports": "sport",
    "--dport": "dport",
    "--destination-port": "dport",
    "--dports": "dport",
    "--destination-ports": "dport",
}
_IPT_DETAILS = {
    "-i": "InInterface",
    "--in-interface": "InInterface",
    "-o": "OutInterface",
    "--out-interface": "OutInterface",
    "--state": "State",
    "--ctstate": "State",
    "--comment": "Comment",
    "-m": "Matches",
    "--match": "Matches",
}
_IPT_BUILTIN_DIRECTIONS: Mapping[str, Direction] = {"INPUT": "In", "OUTPUT": "Out"}


def _ipt_rule(args: list[str], source: str, line: int) -> _Rule:
    rule = _Rule()
    negate = False
    index = 0
    target_seen = False
    while index < len(args):
        option = args[index]
        index += 1
        if option == "!":
            negate = True
            continue
        values = []
        while index < len(args) and not args[index].startswith("-") and args[index] != "!":
            values.append(args[index])
            index += 1
        value = ("!" if negate else "") + " ".join(values)
        negate = False
        if option in ("-j", "--jump", "-g", "--goto"):
            if not values:
                raise ParseError(source, f"{option} without a target", line=line)
            rule.action = _VERDICTS.get(values[0].lower(), "Other")
            rule.verdict = values[0] if option in ("-j", "--jump") else f"goto {values[0]}"
            target_seen = True
        elif target_seen:
            # Options after the target belong to it (--reject-with, --log-prefix).
            rule.note("TargetOptions", f"{option} {value}".strip())
        elif option in _IPT_FIELDS:
            name = _IPT_FIELDS[option]
            rule.put(name, value.replace(":", "-") if name in ("sport", "dport") else value)
        elif option in _IPT_DETAILS:
            rule.note(_IPT_DETAILS[option], value)
        else:
            rule.note("Options", f"{option} {value}".strip())
    return rule


@dataclass
class _IptFilter:
    """The ``*filter`` table of an iptables-save dump, as read."""

    policies: dict[str, str] = field(default_factory=dict)
    rules: dict[str, list[_Rule]] = field(default_factory=dict)
    present: bool = False

    def read(self, line: str, source: str, number: int) -> None:
        if line.startswith(":"):
            parts = line[1:].split()
            if len(parts) < 2:
                raise ParseError(source, "a chain is ':NAME POLICY [packets:bytes]'", line=number)
            self.rules.setdefault(parts[0], [])
            if parts[1] != "-":
                self.policies[parts[0]] = parts[1]
            return
        try:
            args = shlex.split(line)
        except ValueError as exc:
            raise ParseError(source, f"cannot split the rule: {exc}", line=number) from None
        if len(args) < 2 or args[0] not in ("-A", "--append"):
            raise ParseError(source, f"expected '-A CHAIN ...', got {line[:40]!r}", line=number)
        self.rules.setdefault(args[1], []).append(_ipt_rule(args[2:], source, number))


def parse_iptables_save(text: str, source: str = "iptables-save") -> list[FirewallConfiguration]:
    """Rows for every rule and built-in chain policy of the ``*filter`` table."""
    table: str | None = None
    found = _IptFilter()
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("*"):
            table = line[1:]
            found.present = found.present or table == "filter"
        elif line == "COMMIT":
            table = None
        elif table is None:
            raise ParseError(source, "a rule outside a *table section", line=number)
        elif table == "filter":
            found.read(line, source, number)
    rows: list[FirewallConfiguration] = []
    details = {"Family": "ip", "Table": "filter"}
    for chain, rules in found.rules.items():
        direction = _IPT_BUILTIN_DIRECTIONS.get(chain)
        rows += [r.row(chain, i, direction, details) for i, r in enumerate(rules)]
        if chain in found.policies:
            rows.append(_policy_row(chain, found.policies[chain], len(rules), direction, details))
    return rows if found.present else rows + _implicit_rows(set())


# --- the collector --------------------------------------------------------------------------


class FirewallCollector:
    """Snapshots the firewall (Periodic/Security, default priority Low).

    ``errors`` holds what went wrong on the way to a snapshot (nft failed, iptables-save
    answered), for the agent to send as Diagnostics.
    """

    spec = FIREWALL_SPEC

    def __init__(self, host: HostRoot) -> None:
        self.host = host
        self.errors: list[AgentError] = []

    def collect(self, now: datetime) -> Sequence[Event]:
        """One FirewallConfiguration event; HostReadError when no firewall tool could be read."""
        self.errors = []
        failures: list[str] = []
        for argv, parse in (
            (NFT_LIST_RULESET, parse_nft_ruleset),
            (IPTABLES_SAVE, parse_iptables_save),
        ):
            output = self._run(argv, failures)
            if output is None:
                continue
            rows = parse(output, " ".join(argv))
            return [FirewallConfigurationEvent.create(rows, at=now)]
        # The raised error names every failure; ``errors`` keeps only those that did not stop us.
        self.errors = []
        raise HostReadError("the firewall (nft, iptables-save)", "; ".join(failures))

    def close(self) -> None:
        """Nothing to release."""

    def _run(self, argv: Sequence[str], failures: list[str]) -> str | None:
        command = " ".join(argv)
        if not self.host.commands.available(argv[0]):
            failures.append(f"{argv[0]} is not installed")
            return None
        try:
            done = self.host.run(argv)
        except HostReadError as exc:
            failures.append(str(exc))
            self.errors.append(exc)
            return None
        if done.returncode != 0:
            reason = done.stderr.strip() or f"exit status {done.returncode}"
            failures.append(f"{command}: {reason}")
            self.errors.append(HostReadError(command, reason))
            return None
        return done.stdout
