"""Custom alerts per device security group (ASC section 5.5): the detector.

Each observation is evaluated against the custom alerts of its device's security group (group
names compare case-insensitively, as ASC's do). What each rule type watches:

- ``ActiveConnectionsNotInAllowedRange``: agent ``ConnectionCreate`` (both directions; an
  aggregated event counts its hits);
- ``FailedLocalLoginsNotInAllowedRange``: agent ``Login`` with ``Result`` ``Fail``;
- ``ConnectionToIpNotAllowed``: ``RemoteAddress`` of agent ``ConnectionCreate`` going ``Out``;
- ``LocalUserNotAllowed``: ``UserName`` (else ``UserId``) of a successful agent ``Login``;
- ``ProcessNotAllowed``: ``Executable`` of agent ``ProcessCreate``;
- ``Mqtt/HttpD2CMessagesNotInAllowedRange``: the hub's ``d2c`` tallies over mqtt or https
  (their ``count``);
- ``MqttC2DMessagesNotInAllowedRange``: hub ``deliver`` (a C2D message pushed over MQTT);
- ``HttpC2DMessagesNotInAllowedRange``: hub ``receive`` over https that returned a message;
- ``HttpC2DRejectedMessagesNotInAllowedRange``: hub ``settle`` with outcome ``reject``;
- ``TwinUpdatesNotInAllowedRange``: twin writes, by the service (``updateTwin``,
  ``replaceTwin`` and their module forms) or by the device (``patch-reported``);
- ``UnauthorizedOperationsNotInAllowedRange``: hub failures of ``authenticate`` or
  ``authorize``, or any failure with an authentication reason (``expired-token``, ...).

AMQP rule types, ``MqttC2DRejectedMessages`` (MQTT cannot reject), direct methods, file
uploads and queue purges are accepted and never fire: this hub has no such operations
(``RULE_TYPES[...].never_fires`` says why).

Time windows are tumbling, over observation time, per device and rule, aligned to multiples of
the window size since the Unix epoch. A count above the maximum fires as soon as it happens (once
per window); a count below the minimum fires when the window closes: when an observation of the
same kind arrives for a later window, or on ``tick`` once the window ended more than ``grace``
ago (agents send their events minutes late). Below-minimum checks cover devices seen in the
group since the detector started, until ``forget_after`` without any observation. Repeats in
later windows fold into one alert per hour (the lifecycle's dedup window).

Every detection: severity Low, origin ``custom``, rule id ``IoT_CA_<ruleType>``, ASC's display
name, the evidence event ids, and properties naming the group, the rule and the count or value.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any, Protocol

from iotsec.analytics.customrules import (
    CustomAlertInvalid,
    CustomAlertSet,
    ListRule,
    ListRuleType,
    TimeWindowRule,
    WindowRuleType,
    format_duration,
)
from iotsec.analytics.detection import Detection, Detector
from iotsec.analytics.observation import DeviceContext, Observation

__all__ = [
    "CustomAlertDetector",
    "CustomAlertSource",
    "DocumentSource",
    "StaticCustomAlerts",
    "alert_type",
    "watch_custom_alerts",
]

log = logging.getLogger("iotsec.analytics.custom")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: Observation times windows are kept for (windows align to the epoch; far-future times would
#: overflow ``datetime`` once a window and the grace are added).
_TIME_MAX = datetime(9990, 1, 1, tzinfo=UTC)
#: Evidence ids remembered per window, and list detections remembered, to ignore replays.
_REPLAY_MEMORY = 10_000
_HUB_DEVICE = "$hub"
_EVIDENCE_CAP = 50
_AUTH_REASONS = frozenset(
    {
        "expired-token",
        "bad-signature",
        "malformed-token",
        "wrong-identity",
        "unknown-device",
        "disabled-identity",
        "ip-filtered",
        "bad-certificate",
        "no-credentials",
        "insufficient-permission",
        "topic-not-allowed",
    }
)
_TWIN_WRITES = frozenset(
    {"updateTwin", "replaceTwin", "updateModuleTwin", "replaceModuleTwin", "patch-reported"}
)
#: Successful hub operations counted, by (operation, protocol).
_HUB_COUNTS: Mapping[tuple[str, object], WindowRuleType] = {
    ("d2c", "mqtt"): "MqttD2CMessagesNotInAllowedRange",
    ("d2c", "https"): "HttpD2CMessagesNotInAllowedRange",
    ("deliver", "mqtt"): "MqttC2DMessagesNotInAllowedRange",
    ("receive", "https"): "HttpC2DMessagesNotInAllowedRange",
    ("settle", "https"): "HttpC2DRejectedMessagesNotInAllowedRange",
}


def alert_type(rule_type: str) -> str:
    """The AlertType (and rule id) of a custom alert: ``IoT_CA_<ruleType>``."""
    return f"IoT_CA_{rule_type}"


class CustomAlertSource(Protocol):
    """Where the detector reads each security group's custom alerts from."""

    def custom_alerts(self) -> Mapping[str, CustomAlertSet]:
        """The custom alerts of every group that has some, by group name."""
        ...


@dataclass(frozen=True)
class StaticCustomAlerts:
    """Custom alerts held in memory (tests, tools, a file loaded once)."""

    sets: Mapping[str, CustomAlertSet] = field(default_factory=dict)

    def custom_alerts(self) -> Mapping[str, CustomAlertSet]:
        return self.sets


class DocumentSource:
    """Custom alerts from raw JSON documents by group (the hub's store, through the CLI).

    ``load`` returns ``{group: document}``; unchanged documents are not parsed again. A document
    that does not parse (stored by an older version, edited by hand) is logged, kept in
    ``errors`` and left out; the other groups still load.
    """

    def __init__(self, load: Callable[[], Mapping[str, Any]]) -> None:
        self._load = load
        self._parsed: dict[str, tuple[Any, CustomAlertSet]] = {}
        self.errors: dict[str, CustomAlertInvalid] = {}

    def custom_alerts(self) -> Mapping[str, CustomAlertSet]:
        documents = self._load()
        parsed: dict[str, tuple[Any, CustomAlertSet]] = {}
        errors: dict[str, CustomAlertInvalid] = {}
        for group, document in documents.items():
            known = self._parsed.get(group)
            if known is not None and known[0] == document:
                parsed[group] = known
                continue
            try:
                parsed[group] = (document, CustomAlertSet.from_json(document))
            except CustomAlertInvalid as exc:
                errors[group] = exc
                if self.errors.get(group) is None:
                    log.error("custom alerts of security group %s are left out: %s", group, exc)
        self._parsed, self.errors = parsed, errors
        return {group: rules for group, (_, rules) in parsed.items()}


# -- what observations count -------------------------------------------------------------------


def _count(value: object) -> int:
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    return 1


def _window_activity(obs: Observation) -> tuple[WindowRuleType, int] | None:
    """The time-window rule type ``obs`` counts toward, and by how much."""
    if obs.source == "agent":
        if obs.name == "ConnectionCreate":
            return "ActiveConnectionsNotInAllowedRange", max(1, obs.hit_count)
        if obs.name == "Login" and obs.get("Result") == "Fail":
            return "FailedLocalLoginsNotInAllowedRange", max(1, obs.hit_count)
        return None
    return _hub_activity(obs)


def _hub_activity(obs: Observation) -> tuple[WindowRuleType, int] | None:
    if obs.get("Result") == "Failure":
        auth = obs.name in ("authenticate", "authorize") or obs.get("Reason") in _AUTH_REASONS
        return ("UnauthorizedOperationsNotInAllowedRange", 1) if auth else None
    if obs.name in _TWIN_WRITES:
        return "TwinUpdatesNotInAllowedRange", 1
    protocol = obs.get("Protocol")  # a string from the hub; anything else counts nowhere
    rule_type = _HUB_COUNTS.get((obs.name, protocol if isinstance(protocol, str) else None))
    counted = rule_type is not None and not (
        # a receive that found nothing waiting; a settle that completed rather than rejected
        (obs.name == "receive" and obs.get("Properties.messageId") is None)
        or (obs.name == "settle" and obs.get("Properties.outcome") != "reject")
    )
    if rule_type is None or not counted:
        return None
    return rule_type, _count(obs.get("Properties.count")) if obs.name == "d2c" else 1


def _list_value(obs: Observation) -> tuple[ListRuleType, str] | None:
    """The list rule type ``obs`` is checked against, and the value checked."""
    if obs.source != "agent":
        return None
    value: object
    rule_type: ListRuleType
    if obs.name == "ConnectionCreate" and obs.get("Direction") == "Out":
        rule_type, value = "ConnectionToIpNotAllowed", obs.get("RemoteAddress")
    elif obs.name == "Login" and obs.get("Result") == "Success":
        rule_type, value = "LocalUserNotAllowed", obs.get("UserName") or obs.get("UserId")
    elif obs.name == "ProcessCreate":
        rule_type, value = "ProcessNotAllowed", obs.get("Executable")
    else:
        return None
    return (rule_type, value) if isinstance(value, str) and value else None


# -- compiled rules and window state -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _GroupRules:
    name: str
    windows: Mapping[str, TimeWindowRule]
    #: Rules with a minimum above 0: every device seen in the group needs a window for them.
    minimums: tuple[TimeWindowRule, ...]
    lists: Mapping[str, tuple[ListRule, ...]]


def _compile(sets: Mapping[str, CustomAlertSet]) -> dict[str, _GroupRules]:
    compiled: dict[str, _GroupRules] = {}
    for group, rules in sets.items():
        windows: dict[str, TimeWindowRule] = {
            r.rule_type: r
            for r in rules.time_window_rules
            if r.is_enabled and r.info.never_fires is None
        }
        lists: dict[str, list[ListRule]] = {}
        for rule in (*rules.allowlist_rules, *rules.denylist_rules):
            if rule.is_enabled:
                lists.setdefault(rule.rule_type, []).append(rule)
        compiled[group.casefold()] = _GroupRules(
            name=group,
            windows=MappingProxyType(windows),
            minimums=tuple(r for r in windows.values() if r.min_threshold > 0),
            lists=MappingProxyType({k: tuple(v) for k, v in lists.items()}),
        )
    return compiled


@dataclass(slots=True)
class _Window:
    rule: TimeWindowRule
    device: DeviceContext
    group: str
    start: datetime
    count: int = 0
    evidence: list[str] = field(default_factory=list)
    #: Evidence ids counted in this window: an observation delivered again is not recounted.
    seen: set[str] = field(default_factory=set)
    fired_max: bool = False

    @property
    def end(self) -> datetime:
        return self.start + self.rule.time_window_size


def _floor(time: datetime, size: timedelta) -> datetime:
    return _EPOCH + ((time - _EPOCH) // size) * size


def _utc(time: datetime) -> str:
    return time.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


#: (device id, group key, rule type)
_Key = tuple[str, str, str]


class CustomAlertDetector:
    """Evaluates each group's custom alerts over observations (the ``Detector`` protocol).

    Args:
        sets: The custom alerts by group to start with (``update`` replaces them).
        grace: How long after a window ends ``tick`` waits for late observations.
        forget_after: A device with no observation for this long is no longer checked for
            counts below the minimum.
    """

    def __init__(
        self,
        sets: Mapping[str, CustomAlertSet] | None = None,
        *,
        grace: timedelta = timedelta(minutes=15),
        forget_after: timedelta = timedelta(days=7),
    ) -> None:
        self._rules = _compile(sets or {})
        self.grace = grace
        self.forget_after = forget_after
        self._windows: dict[_Key, _Window] = {}
        #: (device id, group key) -> when it was last seen, and that observation's evidence id
        #: (what a detection of too little activity cites: the device's last sign of life).
        # Per (device, group): when it was last seen, and the observation (its evidence id is
        # made only when a window cites it).
        self._last_seen: dict[tuple[str, str], tuple[datetime, Observation]] = {}
        self._fired: OrderedDict[str, None] = OrderedDict()
        #: Observations that came for a window already closed (not counted).
        self.late = 0

    def update(self, sets: Mapping[str, CustomAlertSet]) -> None:
        """Use ``sets`` from now on; safe to call from another thread while the stream runs.

        Windows of rules that changed start over; those of removed rules are dropped.
        """
        self._rules = _compile(sets)  # one reference swap: observe sees the old or the new

    def reload(self, source: CustomAlertSource) -> None:
        """Read ``source`` and ``update`` (blocking: run it off the stream's thread)."""
        self.update(source.custom_alerts())

    # -- the Detector protocol ---------------------------------------------------------------

    def observe(self, observation: Observation) -> list[Detection]:
        device = observation.device
        if device.device_id == _HUB_DEVICE:
            return []
        group_key = device.group.casefold()
        rules = self._rules.get(group_key)
        if rules is None:
            return []
        time = observation.time
        out: list[Detection] = []
        windowed = _EPOCH <= time <= _TIME_MAX
        if windowed:
            self._last_seen[(device.device_id, group_key)] = (time, observation)
        for rule in rules.minimums if windowed else ():  # watched for too little activity
            key = (device.device_id, group_key, rule.rule_type)
            window = self._windows.get(key)
            # Rules compare field by field; the same rule object is the common case.
            if window is None or (window.rule is not rule and window.rule != rule):
                start = _floor(time, rule.time_window_size)
                self._windows[key] = _Window(rule, device, rules.name, start)
        activity = _window_activity(observation) if windowed else None
        if activity is not None:
            rule_type, count = activity
            counted = rules.windows.get(rule_type)
            if counted is not None:
                out += self._count(rules.name, group_key, counted, observation, count)
        listed = _list_value(observation)
        if listed is not None:
            list_type, value = listed
            for list_rule in rules.lists.get(list_type, ()):
                if list_rule.fires_on(value) and self._first_time(list_rule, observation):
                    out.append(self._list_detection(rules.name, list_rule, observation, value))
        return out

    def _first_time(self, rule: ListRule, observation: Observation) -> bool:
        """False for an observation this list rule already fired on (delivered again)."""
        key = f"{rule.family}/{rule.rule_type}/{observation.device.device_id}/"
        key += observation.evidence_id
        if key in self._fired:
            return False
        self._fired[key] = None
        if len(self._fired) > _REPLAY_MEMORY:
            self._fired.popitem(last=False)
        return True

    def tick(self, now: datetime) -> list[Detection]:
        now = min(max(now, _EPOCH + self.forget_after + self.grace), _TIME_MAX)
        cutoff = now - self.grace
        forget = now - self.forget_after
        out: list[Detection] = []
        for key, window in list(self._windows.items()):
            device_id, group_key, rule_type = key
            rules = self._rules.get(group_key)
            if rules is None or rules.windows.get(rule_type) != window.rule:
                del self._windows[key]
                continue
            seen = self._last_seen.get((device_id, group_key))
            if seen is None or seen[0] < forget:
                del self._windows[key]
                continue
            out += self._close(window, _floor(cutoff, window.rule.time_window_size))
        for seen_key, (when, _) in list(self._last_seen.items()):
            if when < forget:
                del self._last_seen[seen_key]
        return out

    # -- windows -----------------------------------------------------------------------------

    def _count(
        self, group: str, group_key: str, rule: TimeWindowRule, obs: Observation, count: int
    ) -> list[Detection]:
        key = (obs.device.device_id, group_key, rule.rule_type)
        start = _floor(obs.time, rule.time_window_size)
        window = self._windows.get(key)
        out: list[Detection] = []
        if window is None or (window.rule is not rule and window.rule != rule):
            window = self._windows[key] = _Window(rule, obs.device, group, start)
        elif start > window.start:
            out += self._close(window, start)
        elif start < window.start:
            self.late += 1
            return out
        if obs.evidence_id in window.seen:
            return out  # the same observation again (a replay after a crash)
        if len(window.seen) < _REPLAY_MEMORY:
            window.seen.add(obs.evidence_id)
        window.device = obs.device
        window.count += count
        if len(window.evidence) < _EVIDENCE_CAP:
            window.evidence.append(obs.evidence_id)
        if window.count > rule.max_threshold and not window.fired_max:
            window.fired_max = True
            out.append(self._window_detection(window, obs.time, above=True))
        return out

    def _close(self, window: _Window, until: datetime) -> list[Detection]:
        """Close the window (and any empty ones after it) before ``until``; start over there."""
        if until <= window.start:
            return []
        out: list[Detection] = []
        rule = window.rule
        below = window.count < rule.min_threshold
        # Whole windows after it without a single observation of this kind.
        gap = until > window.end and rule.min_threshold > 0
        if below:
            end = until if gap else None  # one detection for a low window and the silence after
            out.append(self._window_detection(window, until, above=False, gap_end=end))
        elif gap:
            silent = _Window(rule, window.device, window.group, window.end)
            out.append(self._window_detection(silent, until, above=False, gap_end=until))
        window.start, window.count, window.fired_max = until, 0, False
        window.evidence, window.seen = [], set()
        return out

    def _window_detection(
        self, window: _Window, time: datetime, *, above: bool, gap_end: datetime | None = None
    ) -> Detection:
        rule = window.rule
        info = rule.info
        device = window.device
        end = gap_end or window.end
        size = format_duration(rule.time_window_size)
        if above:
            bound = f"above the maximum of {rule.max_threshold}"
            span = f"in the {size} window from {_utc(window.start)}"
        else:
            bound = f"below the minimum of {rule.min_threshold}"
            span = f"from {_utc(window.start)} to {_utc(end)}"
            if gap_end is not None:
                span += f" ({size} windows)"
        evidence = tuple(window.evidence)
        if not evidence:
            # Nothing was counted: cite the device's last observation in the group (its last
            # sign of life), from which on it was watched.
            seen = self._last_seen.get((device.device_id, window.group.casefold()))
            evidence = (seen[1].evidence_id,) if seen is not None else ()
        description = (
            f"{window.count} {info.activity} on device {device.device_id} {span}: {bound} "
            f"(custom alert of security group {window.group})"
        )
        direction = "above" if above else "below"
        return Detection(
            rule_id=alert_type(rule.rule_type),
            display_name=info.display_name,
            severity="Low",
            device=device,
            time=time,
            first_time=window.start,
            description=description,
            evidence=evidence,
            dedup_key=(
                f"custom/{window.group.casefold()}/{rule.rule_type}/{direction}/{device.device_id}"
            ),
            origin="custom",
            remediation=(
                f"Check the {info.activity} of device {device.device_id}. If this is expected, "
                f"change the {rule.rule_type} custom alert of security group {window.group}.",
            ),
            properties=MappingProxyType(
                {
                    "DeviceId": device.device_id,
                    "Security Group": window.group,
                    "Rule Type": rule.rule_type,
                    "Count": str(window.count),
                    "Minimum Threshold": str(rule.min_threshold),
                    "Maximum Threshold": str(rule.max_threshold),
                    "Time Window": size,
                    "Window Start": window.start.isoformat(),
                    "Window End": end.isoformat(),
                }
            ),
            dedup_seconds=max(3600.0, rule.time_window_size.total_seconds()),
        )

    # -- lists -------------------------------------------------------------------------------

    def _list_detection(
        self, group: str, rule: ListRule, obs: Observation, value: str
    ) -> Detection:
        info = rule.info
        device = obs.device
        allow = rule.family == "allowlistRules"
        verdict = (
            f"which the allow list of security group {group} does not allow"
            if allow
            else f"which the deny list of security group {group} names"
        )
        what = {
            "ConnectionToIpNotAllowed": f"made an outbound connection to {value}",
            "LocalUserNotAllowed": f"had a login by user {value}",
            "ProcessNotAllowed": f"ran {value}",
        }[rule.rule_type]
        properties = {
            "DeviceId": device.device_id,
            "Security Group": group,
            "Rule Type": rule.rule_type,
            "List": "allow" if allow else "deny",
            "Value": value,
        }
        for name, path in (
            ("Remote Port", "RemotePort"),
            ("Command Line", "CommandLine"),
            ("User Name", "UserName"),
        ):
            found = obs.get(path)
            if isinstance(found, str | int) and found != "":
                properties[name] = str(found)[:1000]
        return Detection(
            rule_id=alert_type(rule.rule_type),
            display_name=info.display_name,
            severity="Low",
            device=device,
            time=obs.time,
            description=f"Device {device.device_id} {what}, {verdict}",
            evidence=(obs.evidence_id,),
            dedup_key=(
                f"custom/{group.casefold()}/{rule.rule_type}/{rule.family}/"
                f"{device.device_id}/{value}"
            ),
            origin="custom",
            remediation=(
                f"Check why device {device.device_id} {what}. If it is expected, change the "
                f"{rule.rule_type} custom alert of security group {group}.",
            ),
            properties=MappingProxyType(properties),
        )


async def watch_custom_alerts(
    source: CustomAlertSource,
    detector: CustomAlertDetector,
    stop: asyncio.Event,
    *,
    every: float = 10.0,
) -> None:
    """Reload ``detector`` from ``source`` every ``every`` seconds until ``stop`` is set.

    The read runs in a worker thread, so the stream never waits for it. A read that fails is
    logged and the rules in use stay; the next period tries again.
    """
    current: Mapping[str, CustomAlertSet] | None = None
    while not stop.is_set():
        try:
            sets = await asyncio.to_thread(source.custom_alerts)
        except Exception:  # logged, and the last good rules stay in use
            log.exception("could not read the custom alerts; keeping the rules in use")
        else:
            if sets != current:
                detector.update(sets)
                current = sets
                log.info("custom alerts loaded for %d security groups", len(sets))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)


def _conforms(detector: CustomAlertDetector) -> Detector:
    return detector  # mypy checks CustomAlertDetector against the Detector protocol here
