"""Reading ``cases.yaml``: each rule's firing cases and near misses, as observations.

The file is written for people: a bare string is a ProcessCreate run by root, and each kind
of observation gets plausible defaults (a Login through sshd, a hub ``authenticate`` failure
over MQTT), so a case only spells out what it is about.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import yaml

from iotsec.analytics import DeviceContext, Observation
from iotsec.analytics.indicators import IndicatorKind, IntelMatch

CASES_FILE = Path(__file__).with_name("cases.yaml")
#: When every case starts; observations are offset from it by their ``at`` seconds.
START = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
HUB_DEVICE = "$hub"

_CASE_KEYS = {"cmd", "exe", "user", "obs", "also", "note"}
_OBS_KEYS = {"event", "at", "device", "hits", "repeat", "every", "cmd", "exe", "user"}

_DEFAULTS: dict[str, dict[str, object]] = {
    "ProcessCreate": {"ProcessId": 4242, "ParentProcessId": 1, "UserId": "0", "UserName": "root"},
    "Login": {
        "ProcessId": 1200,
        "UserName": "pi",
        "Operation": "sshd:password",
        "Executable": "/usr/sbin/sshd",
    },
    "ConnectionCreate": {"ProcessId": 0, "Protocol": "tcp", "Direction": "Out"},
    "ListeningPorts": {"Protocol": "TCP"},
}
_HUB_DEFAULTS: dict[str, object] = {
    "Category": "Connections",
    "Protocol": "mqtt",
    "SourceIp": "198.51.100.7",
    "Result": "Failure",
}


@dataclass(frozen=True)
class Case:
    """One case: the rule it is about, whether that rule must fire, and what to feed."""

    rule: str
    fires: bool
    index: int
    observations: tuple[Observation, ...]
    #: The exact set of rule ids the whole catalogue must fire on the observations.
    expected: frozenset[str]
    note: str = ""

    @property
    def id(self) -> str:
        return f"{self.rule}-{'fire' if self.fires else 'quiet'}-{self.index}"

    @property
    def command_lines(self) -> list[str]:
        return [str(o.fields.get("CommandLine", "")) for o in self.observations]


def load_cases(path: Path = CASES_FILE) -> dict[str, list[Case]]:
    """Every case in the file, by rule id (file order)."""
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    out: dict[str, list[Case]] = {}
    serial = 0
    for rule, kinds in raw.items():
        if set(kinds) - {"fire", "quiet"}:
            raise ValueError(f"{rule}: unknown keys {sorted(set(kinds) - {'fire', 'quiet'})}")
        cases = out.setdefault(rule, [])
        for kind in ("fire", "quiet"):
            for index, item in enumerate(kinds.get(kind) or []):
                serial += 1
                cases.append(_case(rule, kind == "fire", index, item, serial))
    return out


def _case(rule: str, fires: bool, index: int, item: object, serial: int) -> Case:
    spec: Mapping[str, Any] = (
        {"cmd": item} if isinstance(item, str) else cast(Mapping[str, Any], item)
    )
    unknown = set(spec) - _CASE_KEYS
    if unknown:
        raise ValueError(f"{rule} case {index}: unknown keys {sorted(unknown)}")
    if "obs" in spec:
        specs = list(spec["obs"])
    else:
        specs = [{k: spec[k] for k in ("cmd", "exe", "user") if k in spec}]
    observations: list[Observation] = []
    for position, obs_spec in enumerate(specs):
        observations.extend(_observations(obs_spec, position, f"case{serial}"))
    observations.sort(key=lambda o: o.time)
    also = frozenset(spec.get("also") or ())
    expected = also | {rule} if fires else also
    return Case(rule, fires, index, tuple(observations), expected, spec.get("note", ""))


def _observations(spec: Mapping[str, Any], position: int, prefix: str) -> Iterator[Observation]:
    name = str(spec.get("event", "ProcessCreate"))
    hub = name[:1].islower()
    fields: dict[str, object] = dict(_HUB_DEFAULTS if hub else _DEFAULTS.get(name, {}))
    fields.update({k: v for k, v in spec.items() if k not in _OBS_KEYS})
    if "cmd" in spec:
        fields["CommandLine"] = spec["cmd"]
        fields.setdefault("Executable", spec.get("exe") or _executable(spec["cmd"]))
    if "exe" in spec:
        fields["Executable"] = spec["exe"]
    if "user" in spec:
        fields["UserName"] = spec["user"]
        fields["UserId"] = "33" if spec["user"] != "root" else "0"
    device_id = str(spec.get("device", "dev-1"))
    device = DeviceContext(device_id, group="default", known=device_id != HUB_DEVICE)
    start = float(spec.get("at", position))
    for repeat in range(int(spec.get("repeat", 1))):
        yield Observation(
            source="hub" if hub else "agent",
            name=name,
            time=START + timedelta(seconds=start + repeat * float(spec.get("every", 1))),
            device=device,
            fields=fields,
            event_id=f"{prefix}-{position}-{repeat}",
            hit_count=int(spec.get("hits", 1)),
            category=str(fields.get("Category", "")) if hub else "Triggered",
            event_type="Hub" if hub else "Security",
        )


def _executable(command_line: str) -> str:
    """The path of the command line's first word (``/usr/bin/<word>`` for a bare name)."""
    words = command_line.split(maxsplit=1)
    first = words[0] if words else ""
    return first if first.startswith("/") else "/usr/bin/" + first.lstrip("./")


class CaseIntel:
    """The threat-intelligence feed the cases assume: one address and one domain."""

    ADDRESS = "203.0.113.66"
    DOMAIN = "malware-drop.example"

    def match(self, kind: IndicatorKind, value: str) -> IntelMatch | None:
        hit = False
        if kind == "ip":
            hit = value == self.ADDRESS
        elif kind == "domain":
            hit = self._listed(value)
        elif kind == "url":
            hit = self._listed(urlsplit(value).hostname or "")
        if not hit:
            return None
        return IntelMatch(kind, value, value, feed="cases", indicator_id="cases.yaml")

    def _listed(self, host: str) -> bool:
        host = host.lower().rstrip(".")
        return host == self.DOMAIN or host.endswith("." + self.DOMAIN)
