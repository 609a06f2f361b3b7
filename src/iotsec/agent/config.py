"""The agent's configuration: the ``azureiotsecurity`` module twin object, and the local file.

The twin object ``ms_iotn:urn_azureiot_Security_SecurityAgentConfiguration`` holds every
property PnP-style, ``{"name": {"value": ...}}`` (reference §3.1-§3.2). ``apply_twin`` merges
a desired section into an :class:`AgentConfiguration` and never raises: what it cannot use
becomes a ``ConfigurationError`` payload row (reference §3.6), and the agent goes on with the
rest.

How each problem is handled (deliberately finer-grained than the C agent, which rejects a whole
update on one bad key):

- a wrong JSON type, a bare value without ``{"value": ...}``, an unparsable duration or an
  unknown priority word: ``TypeMismatch``; that property keeps its last good value;
- a value outside its range (a message size outside 8192..262144, a cache under 8192, a
  duration under one second): the value is **clamped** to the nearest bound and reported
  ``NotOptimal`` with the clamped value as ``UsedConfiguration``, because a message over
  256 KB would be refused by the hub and a zero interval would spin; a message size that is
  not a multiple of 4096 is **kept** and reported ``NotOptimal``, as both ASC agents do;
- a property name the agent does not know: ``NotOptimal`` (the schema allows extra properties;
  the value is ignored), with "did you mean ...?";
- a cache smaller than the message size, or a high-priority frequency slower than the
  low-priority one: ``Conflict``; both values are kept, as both ASC agents do.

>>> outcome = apply_twin(AgentConfiguration.default(), {
...     "highPriorityMessageFrequency": {"value": "PT1M"},
...     "eventPriorityLogin": {"value": "off"},
...     "maxMessageSizeInBytes": {"value": "big"},
... })
>>> outcome.config.high_priority_message_frequency, outcome.config.priority("Login")
(datetime.timedelta(seconds=60), 'Off')
>>> [(e.configuration_name, e.error_type, e.used_configuration) for e in outcome.errors]
[('maxMessageSizeInBytes', 'TypeMismatch', '204800')]
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, cast

from iotsec.agent.collectors.base import Priority
from iotsec.agent.errors import AgentConfigError
from iotsec.schema import ConfigurationError
from iotsec.sdk import ConnectionString, ConnectionStringError

__all__ = [
    "DEFAULT_STATE_DIR",
    "OBJECT_NAME",
    "PRIORITY_EVENTS",
    "SETTINGS",
    "AgentConfiguration",
    "AggregationSetting",
    "ConfigOutcome",
    "LocalConfig",
    "Setting",
    "apply_twin",
    "format_duration",
    "parse_duration",
    "reported_properties",
]

#: The twin object that holds the agent's configuration, desired and reported.
OBJECT_NAME = "ms_iotn:urn_azureiot_Security_SecurityAgentConfiguration"
#: Where the agent keeps its queue and identity unless the local file says otherwise.
DEFAULT_STATE_DIR = Path("/var/lib/iotsec-agent")

# IoT Hub meters device-to-cloud messages in 4 KB blocks (reference §2.3).
_BILLING_BLOCK = 4096
_MIN_MESSAGE = 8192
_MAX_MESSAGE = 262_144
_MIN_INTERVAL = timedelta(seconds=1)
# The schema sets no maximum; SQLite's largest integer keeps the queue's arithmetic exact.
_MAX_CACHE = 2**63 - 1

Json = Any  # a value json.loads can return


# --- ISO 8601 durations ---------------------------------------------------------------------

_NUMBER = r"[0-9]{1,18}(?:\.[0-9]{1,9})?"
_DURATION = re.compile(
    rf"P(?:(?P<Y>{_NUMBER})Y)?(?:(?P<Mo>{_NUMBER})M)?(?:(?P<W>{_NUMBER})W)?(?:(?P<D>{_NUMBER})D)?"
    rf"(?:T(?:(?P<H>{_NUMBER})H)?(?:(?P<Mi>{_NUMBER})M)?(?:(?P<S>{_NUMBER})S)?)?"
)
# Years and months have no fixed length; like .NET's XmlConvert (the C# agent) we take
# a year as 365 days and a month as 30 days.
_UNIT_SECONDS = {
    "Y": 365 * 86400,
    "Mo": 30 * 86400,
    "W": 7 * 86400,
    "D": 86400,
    "H": 3600,
    "Mi": 60,
    "S": 1,
}


def parse_duration(text: str) -> timedelta:
    """Parse an ISO 8601 duration as the twin schema allows it (``PT7M``, ``PT5H``, ``P1D``).

    Only the last component given may have a fraction (``PT1.5H``); ``P``, ``PT`` and
    lower-case letters are refused.

    >>> parse_duration("PT7M"), parse_duration("P1DT0.5H")
    (datetime.timedelta(seconds=420), datetime.timedelta(days=1, seconds=1800))

    Raises:
        ValueError: ``text`` is not such a duration, or is too long for a timedelta.
    """
    match = _DURATION.fullmatch(text)
    if match is None or text in ("P", "PT") or text.endswith("T"):
        raise ValueError(f"{text!r} is not an ISO 8601 duration such as 'PT7M' or 'P1D'")
    given = [(unit, value) for unit, value in match.groupdict().items() if value is not None]
    if any("." in value for _, value in given[:-1]):
        raise ValueError(f"{text!r}: only the smallest component of a duration may have a fraction")
    micros = sum(Decimal(value) * _UNIT_SECONDS[unit] * 1_000_000 for unit, value in given)
    try:
        return timedelta(microseconds=int(micros))
    except OverflowError:
        raise ValueError(f"{text!r} is too long a duration") from None


def format_duration(value: timedelta) -> str:
    """The ISO 8601 form of ``value``: days, then hours, minutes and seconds.

    >>> format_duration(timedelta(minutes=7)), format_duration(timedelta(days=1, seconds=1.5))
    ('PT7M', 'P1DT1.5S')
    """
    if value < timedelta(0):
        raise ValueError(f"a duration is never negative, got {value}")
    hours, rest = divmod(value.seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    date = f"{value.days}D" if value.days else ""
    time = "".join(f"{amount}{unit}" for amount, unit in ((hours, "H"), (minutes, "M")) if amount)
    if seconds or value.microseconds:
        time += f"{seconds}.{value.microseconds:06d}".rstrip("0").rstrip(".") + "S"
    if not date and not time:
        return "PT0S"
    return f"P{date}" + (f"T{time}" if time else "")


# --- the kinds of value a property holds ----------------------------------------------------


class _Mismatch(Exception):
    """A JSON value of the wrong type or form; becomes a TypeMismatch row, never escapes."""


def _parse_duration_value(raw: Json) -> timedelta:
    if not isinstance(raw, str):
        raise _Mismatch(f"expected an ISO 8601 duration string such as 'PT7M', got {_show(raw)}")
    try:
        return parse_duration(raw)
    except ValueError as exc:
        raise _Mismatch(str(exc)) from None


def _parse_integer(raw: Json) -> int:
    # JSON Schema counts 2.0 as an integer; a boolean is not one, though Python says it is.
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise _Mismatch(f"expected an integer, got {_show(raw)}")
    if isinstance(raw, float):
        if not raw.is_integer():
            raise _Mismatch(f"expected an integer, got {_show(raw)}")
        return int(raw)
    return raw


_PRIORITIES: dict[str, Priority] = {"high": "High", "low": "Low", "off": "Off"}


def _parse_priority(raw: Json) -> Priority:
    if isinstance(raw, str) and (canonical := _PRIORITIES.get(raw.lower())):
        return canonical
    raise _Mismatch(f"expected 'High', 'Low' or 'Off', got {_show(raw)}")


def _parse_boolean(raw: Json) -> bool:
    if not isinstance(raw, bool):
        raise _Mismatch(f"expected true or false, got {_show(raw)}")
    return raw


def _parse_string(raw: Json) -> str:
    if not isinstance(raw, str):
        raise _Mismatch(f"expected a string, got {_show(raw)}")
    return raw


def _show(raw: Json) -> str:
    try:
        text = json.dumps(raw, ensure_ascii=False, default=repr)
    except ValueError:  # an integer past Python's 4300-digit str() limit
        return "a value too long to show"
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass(frozen=True, slots=True)
class _Kind:
    name: str
    parse: Callable[[Json], Any]  # JSON value -> typed value, or _Mismatch
    render: Callable[[Any], Json]  # typed value -> JSON value
    holds: Callable[[Any], bool]  # is this a typed value of the kind?


_DURATION_KIND = _Kind(
    "duration",
    _parse_duration_value,
    format_duration,
    lambda v: isinstance(v, timedelta) and v >= timedelta(0),
)
_INTEGER_KIND = _Kind(
    "integer", _parse_integer, int, lambda v: isinstance(v, int) and not isinstance(v, bool)
)
_PRIORITY_KIND = _Kind("priority", _parse_priority, str, lambda v: v in ("High", "Low", "Off"))
_BOOLEAN_KIND = _Kind("boolean", _parse_boolean, bool, lambda v: isinstance(v, bool))
_STRING_KIND = _Kind("string", _parse_string, str, lambda v: isinstance(v, str))


@dataclass(frozen=True, slots=True)
class Setting:
    """One twin property: its ASC name, the attribute holding it, its kind, default and range."""

    name: str
    attribute: str
    kind: str
    default: object
    minimum: object = None
    maximum: object = None
    nullable: bool = False

    def render(self, value: object) -> Json:
        """``value`` as it appears in the twin (``"PT7M"``, ``204800``, ``"High"``)."""
        if value is None:
            return None
        return _KINDS[self.kind].render(value)

    def text(self, value: object) -> str:
        """``value`` as a ConfigurationError's ``UsedConfiguration`` names it."""
        shown = self.render(value)
        return shown if isinstance(shown, str) else json.dumps(shown)


_KINDS = {
    kind.name: kind
    for kind in (_DURATION_KIND, _INTEGER_KIND, _PRIORITY_KIND, _BOOLEAN_KIND, _STRING_KIND)
}


@dataclass(frozen=True, slots=True)
class AggregationSetting:
    """Whether one event type is aggregated, and over which interval."""

    enabled: bool
    interval: timedelta


_SEVEN_MINUTES = timedelta(minutes=7)
_FIVE_HOURS = timedelta(hours=5)
_THIRTEEN_HOURS = timedelta(hours=13)
_ONE_HOUR = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class AgentConfiguration:
    """The agent's effective configuration: every ``azureiotsecurity`` twin property, typed.

    Attributes are the twin names in snake case (``maxMessageSizeInBytes`` is
    ``max_message_size_in_bytes``); ``SETTINGS`` maps one to the other and holds each kind
    and range. A value that exists is in range: the constructor raises AgentConfigError
    otherwise (``apply_twin`` clamps before it constructs).
    """

    high_priority_message_frequency: timedelta = _SEVEN_MINUTES
    low_priority_message_frequency: timedelta = _FIVE_HOURS
    snapshot_frequency: timedelta = _THIRTEEN_HOURS
    # The C agent defaults to 10 MB; the schema and the C# agent to 2560000 (Appendix B.6).
    max_local_cache_size_in_bytes: int = 2_560_000
    max_message_size_in_bytes: int = 204_800
    event_priority_connected_hardware: Priority = "Low"
    event_priority_listening_ports: Priority = "High"
    event_priority_process_create: Priority = "Low"
    event_priority_process_terminate: Priority = "Low"
    event_priority_system_information: Priority = "Low"
    event_priority_local_users: Priority = "High"
    event_priority_login: Priority = "High"
    event_priority_connection_create: Priority = "Low"
    event_priority_firewall_configuration: Priority = "Low"
    event_priority_os_baseline: Priority = "Low"
    # The schema's default; the docs' table says Off (Appendix B.6).
    event_priority_diagnostic: Priority = "Low"
    event_priority_configuration_error: Priority = "Low"
    event_priority_dropped_events_statistics: Priority = "Low"
    event_priority_message_statistics: Priority = "Low"
    aggregation_enabled_process_create: bool = True
    aggregation_interval_process_create: timedelta = _ONE_HOUR
    aggregation_enabled_connection_create: bool = True
    aggregation_interval_connection_create: timedelta = _ONE_HOUR
    aggregation_enabled_process_terminate: bool = True
    aggregation_interval_process_terminate: timedelta = _ONE_HOUR
    # Outside Microsoft's schema file, but documented and read by both agents (reference §3.2).
    baseline_custom_checks_enabled: bool = False
    baseline_custom_checks_file_path: str | None = None
    baseline_custom_checks_file_hash: str | None = None
    hub_resource_id: str = ""

    def __post_init__(self) -> None:
        for setting in SETTINGS:
            value = getattr(self, setting.attribute)
            if value is None and setting.nullable:
                continue
            if not _KINDS[setting.kind].holds(value):
                raise AgentConfigError(setting.name, f"expected a {setting.kind}, got {value!r}")
            if _clamp(setting, value) != value:
                raise AgentConfigError(setting.name, f"{value!r} is out of range")

    @classmethod
    def default(cls) -> AgentConfiguration:
        """The configuration in force when the twin sets nothing."""
        return cls()

    def priority(self, event_name: str) -> Priority:
        """The priority of the event ``event_name`` (``"ProcessCreate"``).

        Raises:
            KeyError: no event of that name has a priority property.
        """
        setting = _BY_NAME.get(f"eventPriority{event_name}")
        if setting is None:
            raise KeyError(f"no eventPriority property for event {event_name!r}")
        return cast(Priority, getattr(self, setting.attribute))

    def aggregation(self, event_name: str) -> AggregationSetting | None:
        """Aggregation of ``event_name``, or None for events that are never aggregated."""
        enabled = _BY_NAME.get(f"aggregationEnabled{event_name}")
        interval = _BY_NAME.get(f"aggregationInterval{event_name}")
        if enabled is None or interval is None:
            return None
        return AggregationSetting(
            enabled=getattr(self, enabled.attribute),
            interval=getattr(self, interval.attribute),
        )

    def value_of(self, name: str) -> object:
        """The value of the twin property ``name`` (``"maxMessageSizeInBytes"``).

        Raises:
            KeyError: no property of that name.
        """
        return getattr(self, _BY_NAME[name].attribute)


_Kinds = Literal["duration", "integer", "priority", "boolean", "string"]
# (twin name, kind, minimum, maximum), in the default twin's order; defaults are the
# dataclass's. The hub allows 8192..262144 bytes per message (reference §2.3, §3.2).
_TABLE: tuple[tuple[str, _Kinds, object, object], ...] = (
    ("highPriorityMessageFrequency", "duration", _MIN_INTERVAL, None),
    ("lowPriorityMessageFrequency", "duration", _MIN_INTERVAL, None),
    ("snapshotFrequency", "duration", _MIN_INTERVAL, None),
    ("maxLocalCacheSizeInBytes", "integer", _MIN_MESSAGE, _MAX_CACHE),
    ("maxMessageSizeInBytes", "integer", _MIN_MESSAGE, _MAX_MESSAGE),
    *(
        (f"eventPriority{event}", "priority", None, None)
        for event in (
            "ConnectedHardware",
            "ListeningPorts",
            "ProcessCreate",
            "ProcessTerminate",
            "SystemInformation",
            "LocalUsers",
            "Login",
            "ConnectionCreate",
            "FirewallConfiguration",
            "OSBaseline",
            "Diagnostic",
            "ConfigurationError",
            "DroppedEventsStatistics",
            "MessageStatistics",
        )
    ),
    *(
        row
        for event in ("ProcessCreate", "ConnectionCreate", "ProcessTerminate")
        for row in (
            (f"aggregationEnabled{event}", "boolean", None, None),
            (f"aggregationInterval{event}", "duration", _MIN_INTERVAL, None),
        )
    ),
    ("baselineCustomChecksEnabled", "boolean", None, None),
    ("baselineCustomChecksFilePath", "string", None, None),
    ("baselineCustomChecksFileHash", "string", None, None),
    ("hubResourceId", "string", None, None),
)
_WORD = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")


def _settings() -> tuple[Setting, ...]:
    fields = {f.name: f for f in dataclasses.fields(AgentConfiguration)}
    found = []
    for name, kind, minimum, maximum in _TABLE:
        attribute = "_".join(word.lower() for word in _WORD.findall(name))
        default = fields.pop(attribute).default
        found.append(
            Setting(name, attribute, kind, default, minimum, maximum, nullable=default is None)
        )
    assert not fields, f"twin properties missing from the table: {sorted(fields)}"
    return tuple(found)


#: Every twin property the agent knows, in the order of the default twin.
SETTINGS: tuple[Setting, ...] = _settings()
_BY_NAME = {setting.name: setting for setting in SETTINGS}
_BY_LOWER = {setting.name.lower(): setting.name for setting in SETTINGS}
#: Events that have an eventPriority property.
PRIORITY_EVENTS = tuple(
    s.name.removeprefix("eventPriority") for s in SETTINGS if s.name.startswith("eventPriority")
)


def _clamp(setting: Setting, value: Any) -> Any:
    if setting.minimum is not None and value < setting.minimum:
        return setting.minimum
    if setting.maximum is not None and value > setting.maximum:
        return setting.maximum
    return value


# --- applying a desired section -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConfigOutcome:
    """The configuration in force after a twin update, what it could not use, what changed."""

    config: AgentConfiguration
    errors: tuple[ConfigurationError, ...] = ()
    changed: frozenset[str] = frozenset()


# Why a row was raised; the local file treats some causes as fatal and others as advice.
_Cause = Literal["type", "range", "unknown", "grid", "conflict"]


@dataclass(frozen=True, slots=True)
class _Issue:
    cause: _Cause
    row: ConfigurationError


def apply_twin(
    current: AgentConfiguration,
    desired_section: Json,
    *,
    base: AgentConfiguration | None = None,
) -> ConfigOutcome:
    """Merge the twin's desired section (the dict under ``OBJECT_NAME``) into a configuration.

    Properties the section does not set, or sets to null, take their value from ``base``
    (the defaults, or the local file's values); properties it sets badly keep their value
    in ``current``. Never raises: problems come back as ConfigurationError rows.
    """
    config, issues = _merge(current, desired_section, base or AgentConfiguration.default())
    changed = frozenset(
        s.name for s in SETTINGS if getattr(config, s.attribute) != getattr(current, s.attribute)
    )
    return ConfigOutcome(config, tuple(issue.row for issue in issues), changed)


def _merge(
    current: AgentConfiguration, desired_section: Json, base: AgentConfiguration
) -> tuple[AgentConfiguration, list[_Issue]]:
    if desired_section is None:
        desired_section = {}
    if not isinstance(desired_section, Mapping):
        used = json.dumps(reported_properties(current)[OBJECT_NAME], separators=(",", ":"))
        reason = f"expected an object of properties, got {_show(desired_section)}"
        row = _row(OBJECT_NAME, "TypeMismatch", used, reason + "; keeping the configuration")
        return current, [_Issue("type", row)]
    issues: list[_Issue] = []
    values = {
        setting.attribute: _resolve(setting, desired_section, current, base, issues)
        for setting in SETTINGS
    }
    for name in desired_section:
        # "$version" and "$metadata" are the twin's own bookkeeping, not properties.
        if isinstance(name, str) and name not in _BY_NAME and not name.startswith("$"):
            message = f"unknown property {_show(name)}{_did_you_mean(name)}; ignored"
            issues.append(_Issue("unknown", _row(name, "NotOptimal", "", message)))
    config = AgentConfiguration(**values)
    issues.extend(_semantic_checks(config))
    return config, issues


def _resolve(
    setting: Setting,
    section: Mapping[str, Json],
    current: AgentConfiguration,
    base: AgentConfiguration,
    issues: list[_Issue],
) -> Any:
    kept = getattr(current, setting.attribute)
    wrapped = section.get(setting.name)
    if wrapped is None:
        return getattr(base, setting.attribute)
    if isinstance(wrapped, Mapping) and "value" in wrapped:
        raw = wrapped["value"]
        if raw is None:
            return getattr(base, setting.attribute)
        try:
            value = _KINDS[setting.kind].parse(raw)
        except _Mismatch as exc:
            reason = str(exc)
        else:
            clamped = _clamp(setting, value)
            if clamped != value:
                bound = "below the minimum" if clamped == setting.minimum else "above the maximum"
                used = setting.text(clamped)
                message = f"{_show(raw)} is {bound} {used}; using {used}"
                issues.append(_Issue("range", _row(setting.name, "NotOptimal", used, message)))
            return clamped
    else:
        reason = f'expected {{"value": ...}}, got {_show(wrapped)}'
    used = setting.text(kept)
    message = f"{reason}; keeping {used}"
    issues.append(_Issue("type", _row(setting.name, "TypeMismatch", used, message)))
    return kept


def _semantic_checks(config: AgentConfiguration) -> list[_Issue]:
    found = []
    size = config.max_message_size_in_bytes
    cache = config.max_local_cache_size_in_bytes
    if size % _BILLING_BLOCK:
        message = (
            f"maxMessageSizeInBytes {size} is not a multiple of {_BILLING_BLOCK}: "
            "IoT Hub bills messages in 4 KB blocks"
        )
        found.append(
            _Issue("grid", _row("maxMessageSizeInBytes", "NotOptimal", str(size), message))
        )
    if cache < size:
        message = f"maxLocalCacheSizeInBytes {cache} is smaller than maxMessageSizeInBytes {size}"
        row = _row("maxLocalCacheSizeInBytes", "Conflict", str(cache), message)
        found.append(_Issue("conflict", row))
    high = config.high_priority_message_frequency
    low = config.low_priority_message_frequency
    if high > low:
        message = (
            f"highPriorityMessageFrequency {format_duration(high)} is longer than "
            f"lowPriorityMessageFrequency {format_duration(low)}"
        )
        row = _row("highPriorityMessageFrequency", "Conflict", format_duration(high), message)
        found.append(_Issue("conflict", row))
    return found


def _did_you_mean(name: str) -> str:
    close = _BY_LOWER.get(name.lower())
    if close is None:
        matches = difflib.get_close_matches(name, list(_BY_NAME), n=1, cutoff=0.75)
        close = matches[0] if matches else None
    return f" (did you mean {close!r}?)" if close else ""


def _row(
    name: str,
    error_type: Literal["TypeMismatch", "NotOptimal", "Conflict"],
    used: str,
    message: str,
) -> ConfigurationError:
    return ConfigurationError(
        configuration_name=name, error_type=error_type, used_configuration=used, message=message
    )


def reported_properties(config: AgentConfiguration) -> dict[str, Json]:
    """The configuration in the twin's form, to write back as reported properties.

    >>> reported = reported_properties(AgentConfiguration.default())[OBJECT_NAME]
    >>> reported["highPriorityMessageFrequency"], reported["eventPriorityLogin"]
    ({'value': 'PT7M'}, {'value': 'High'})
    """
    return {
        OBJECT_NAME: {s.name: {"value": s.render(getattr(config, s.attribute))} for s in SETTINGS}
    }


# --- the local file -------------------------------------------------------------------------

_FILE_KEYS = (
    "connectionString",
    "connectionStringFile",
    "caFile",
    "stateDir",
    "transport",
    "agentId",
    OBJECT_NAME,
)


@dataclass(frozen=True, slots=True)
class LocalConfig:
    """The agent's local JSON file (``--config``): connection settings and twin overrides.

    Relative paths are resolved against the file's directory. Twin properties in the file
    (under ``OBJECT_NAME``, in the twin's form) replace the defaults; the twin, when it sets
    the same property, wins over the file.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = Path(tmp, "agent.json")
    ...     _ = path.write_text('{"connectionStringFile": "cs.txt", "transport": "https",'
    ...         '"' + OBJECT_NAME + '": {"snapshotFrequency": {"value": "PT1H"}}}')
    ...     local = LocalConfig.load(path)
    >>> local.transport, local.configuration.snapshot_frequency, local.connection_string_file.name
    ('https', datetime.timedelta(seconds=3600), 'cs.txt')
    """

    path: Path
    connection_string: str | None = field(default=None, repr=False)
    connection_string_file: Path | None = None
    ca_file: Path | None = None
    state_dir: Path = DEFAULT_STATE_DIR
    transport: Literal["mqtt", "https"] = "mqtt"
    agent_id: str | None = None
    configuration: AgentConfiguration = field(default_factory=AgentConfiguration.default)

    @classmethod
    def load(cls, path: str | Path) -> LocalConfig:
        """Read and check the file at ``path``.

        Raises:
            AgentConfigError: the file cannot be read, is not JSON, or a key is wrong; the
                error names the file and the key.
        """
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise AgentConfigError(str(path), f"cannot read: {exc}") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise AgentConfigError(
                str(path), f"not JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
            ) from None
        return cls.from_mapping(data, path=path)

    @classmethod
    def from_mapping(cls, data: Json, *, path: Path) -> LocalConfig:
        """Check an already parsed file; ``path`` names it in errors and anchors relative paths.

        Raises:
            AgentConfigError: as for ``load``.
        """
        if not isinstance(data, dict):
            raise AgentConfigError(str(path), f"expected a JSON object, got {_show(data)}")
        for key in data:
            if key not in _FILE_KEYS:
                close = difflib.get_close_matches(key, _FILE_KEYS, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise AgentConfigError(f"{path}: {key}", f"unknown key{hint}")
        where = str(path)
        inline = _optional_str(data, "connectionString", where)
        cs_file = _optional_path(data, "connectionStringFile", where, path.parent)
        if inline is not None and cs_file is not None:
            raise AgentConfigError(
                f"{where}: connectionString",
                "give connectionString or connectionStringFile, not both",
            )
        if inline is not None:
            _check_connection_string(inline, f"{where}: connectionString")
        transport = data.get("transport", "mqtt")
        if transport not in ("mqtt", "https"):
            raise AgentConfigError(
                f"{where}: transport", f"expected 'mqtt' or 'https', got {_show(transport)}"
            )
        agent_id = _optional_str(data, "agentId", where)
        if agent_id is not None and not _is_guid(agent_id):
            raise AgentConfigError(f"{where}: agentId", f"expected a GUID, got {agent_id!r}")
        return cls(
            path=path,
            connection_string=inline,
            connection_string_file=cs_file,
            ca_file=_optional_path(data, "caFile", where, path.parent),
            state_dir=_optional_path(data, "stateDir", where, path.parent) or DEFAULT_STATE_DIR,
            transport=transport,
            agent_id=agent_id,
            configuration=_file_configuration(data.get(OBJECT_NAME), where),
        )

    def read_connection_string(self) -> str:
        """The connection string, inline or read from ``connectionStringFile``.

        Raises:
            AgentConfigError: neither is set, or the file cannot be read or does not parse.
        """
        if self.connection_string is not None:
            return self.connection_string
        if self.connection_string_file is None:
            raise AgentConfigError(str(self.path), "set connectionString or connectionStringFile")
        where = f"{self.path}: connectionStringFile"
        try:
            text = self.connection_string_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise AgentConfigError(
                where, f"cannot read {self.connection_string_file}: {exc}"
            ) from None
        _check_connection_string(text, where)
        return text


def _optional_str(data: Mapping[str, Json], key: str, where: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise AgentConfigError(
            f"{where}: {key}", f"expected a non-empty string, got {_show(value)}"
        )
    return value


def _optional_path(data: Mapping[str, Json], key: str, where: str, anchor: Path) -> Path | None:
    value = _optional_str(data, key, where)
    return None if value is None else anchor / value


def _check_connection_string(text: str, where: str) -> None:
    try:
        ConnectionString.parse(text)
    except ConnectionStringError as exc:
        raise AgentConfigError(where, str(exc)) from None


def _is_guid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return len(text) == 36


def _file_configuration(section: Json, where: str) -> AgentConfiguration:
    """Twin properties from the local file; unlike the twin's, a wrong or unknown one is fatal."""
    default = AgentConfiguration.default()
    if section is None:
        return default
    config, issues = _merge(default, section, default)
    # Conflicts and a size off the 4 KB grid are advice: reported at run time, like the twin's.
    for issue in issues:
        if issue.cause in ("type", "range", "unknown"):
            name = issue.row.configuration_name
            key = where if name == OBJECT_NAME else f"{where}: {OBJECT_NAME}.{name}"
            raise AgentConfigError(key, issue.row.message)
    return config
