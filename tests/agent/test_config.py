"""Agent configuration: the azureiotsecurity twin object, ConfigurationError rows, local file."""

from __future__ import annotations

import doctest
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iotsec.agent import config as config_module
from iotsec.agent.config import (
    OBJECT_NAME,
    PRIORITY_EVENTS,
    SETTINGS,
    AgentConfiguration,
    LocalConfig,
    apply_twin,
    format_duration,
    parse_duration,
    reported_properties,
)
from iotsec.agent.errors import AgentConfigError
from iotsec.schema import ConfigurationErrorEvent, decode_event, encode_message
from iotsec.schema import SecurityMessage as _Message
from tests.conftest import SHARED

TWIN_DIR = SHARED / "reference" / "azure-iot-security" / "security_module_twin"
DEFAULT_TWIN = json.loads((TWIN_DIR / "azureiotsecurity_default.json").read_text("utf-8"))
TWIN_SCHEMA = json.loads((TWIN_DIR / "azureiotsecurity_schema.json").read_text("utf-8"))
SCHEMA_PROPERTIES = TWIN_SCHEMA["properties"]["desired"]["properties"][OBJECT_NAME]["properties"]
CONNECTION_STRING = "HostName=hub.example.net;DeviceId=dev1;SharedAccessKey=c2VjcmV0LWtleQ=="
DEFAULT = AgentConfiguration.default()


def wrap(**values: Any) -> dict[str, Any]:
    return {name: {"value": value} for name, value in values.items()}


def rows(outcome: Any) -> list[tuple[str, str, str]]:
    return [(e.configuration_name, e.error_type, e.used_configuration) for e in outcome.errors]


def test_doctests() -> None:
    assert doctest.testmod(config_module).failed == 0


# --- the reference files ------------------------------------------------------------------


def test_the_default_twin_parses_to_exactly_the_defaults() -> None:
    section = DEFAULT_TWIN["properties"]["desired"][OBJECT_NAME]
    outcome = apply_twin(DEFAULT, section)
    assert outcome.config == DEFAULT
    assert outcome.errors == ()
    assert outcome.changed == frozenset()
    # Also from a configuration that differs everywhere it can.
    other = AgentConfiguration(
        high_priority_message_frequency=timedelta(minutes=1),
        max_message_size_in_bytes=8192,
        event_priority_login="Off",
        aggregation_enabled_process_create=False,
    )
    assert apply_twin(other, section).config == DEFAULT


def test_every_schema_property_is_known_with_the_schema_default() -> None:
    reported = reported_properties(DEFAULT)[OBJECT_NAME]
    for name, spec in SCHEMA_PROPERTIES.items():
        assert reported[name] == {"value": spec["default"]}, name
    # What we add beyond the schema file is exactly the documented extras (reference §3.2).
    assert set(reported) - set(SCHEMA_PROPERTIES) == {
        "baselineCustomChecksEnabled",
        "baselineCustomChecksFilePath",
        "baselineCustomChecksFileHash",
        "hubResourceId",
    }


def test_reported_properties_of_the_defaults_match_the_default_twin() -> None:
    reported = reported_properties(DEFAULT)[OBJECT_NAME]
    desired = DEFAULT_TWIN["properties"]["desired"][OBJECT_NAME]
    assert {k: v for k, v in reported.items() if k in desired} == desired


def test_priority_and_aggregation_lookups() -> None:
    assert PRIORITY_EVENTS[:3] == ("ConnectedHardware", "ListeningPorts", "ProcessCreate")
    assert len(PRIORITY_EVENTS) == 14
    assert DEFAULT.priority("Login") == "High"
    assert DEFAULT.priority("OSBaseline") == "Low"
    with pytest.raises(KeyError, match="Heartbeat"):
        DEFAULT.priority("Heartbeat")
    agg = DEFAULT.aggregation("ConnectionCreate")
    assert agg is not None
    assert (agg.enabled, agg.interval) == (True, timedelta(hours=1))
    assert DEFAULT.aggregation("Login") is None
    assert DEFAULT.value_of("maxMessageSizeInBytes") == 204_800


# --- durations ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("PT7M", timedelta(minutes=7)),
        ("PT5H", timedelta(hours=5)),
        ("P1D", timedelta(days=1)),
        ("PT13H", timedelta(hours=13)),
        ("PT0.5S", timedelta(milliseconds=500)),
        ("PT1.5H", timedelta(minutes=90)),
        ("P1W", timedelta(days=7)),
        ("P1Y2M", timedelta(days=365 + 60)),
        ("P1DT2H3M4S", timedelta(days=1, hours=2, minutes=3, seconds=4)),
        ("PT0S", timedelta(0)),
    ],
)
def test_durations_parse(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "P",
        "PT",
        "P1DT",
        "pt7m",
        "PT7m",
        "7M",
        "PT7M ",
        " PT7M",
        "PT-1M",
        "PT1.5H30M",  # a fraction only on the smallest component
        "P1.5DT1H",
        "PT1H1H",
        "PT\u0661M",  # an Arabic-Indic digit: \d would take it, the schema would not
        "P9999999999999D",  # past what a timedelta holds
        "P" + "9" * 30 + "D",
        "00:07:00",
    ],
)
def test_bad_durations_raise_value_error(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@given(st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=10**6)))
def test_durations_round_trip(value: timedelta) -> None:
    assert parse_duration(format_duration(value)) == value


def test_durations_format_canonically() -> None:
    assert format_duration(timedelta(minutes=7)) == "PT7M"
    assert format_duration(timedelta(hours=13)) == "PT13H"
    assert format_duration(timedelta(days=1)) == "P1D"
    assert format_duration(timedelta(0)) == "PT0S"
    assert format_duration(timedelta(hours=1, seconds=0.25)) == "PT1H0.25S"
    with pytest.raises(ValueError, match="negative"):
        format_duration(timedelta(seconds=-1))


# --- TypeMismatch: the property keeps its last good value -----------------------------------

CURRENT = AgentConfiguration(
    high_priority_message_frequency=timedelta(minutes=3),
    max_message_size_in_bytes=65_536,
    event_priority_login="Low",
    aggregation_enabled_connection_create=False,
    hub_resource_id="/subscriptions/x",
)


@pytest.mark.parametrize(
    ("name", "wrapped", "used"),
    [
        ("highPriorityMessageFrequency", "PT7M", "PT3M"),  # a bare value
        ("highPriorityMessageFrequency", {"val": "PT7M"}, "PT3M"),
        ("highPriorityMessageFrequency", {"value": 420}, "PT3M"),
        ("highPriorityMessageFrequency", {"value": "7 minutes"}, "PT3M"),
        ("highPriorityMessageFrequency", {"value": "PT"}, "PT3M"),
        ("maxMessageSizeInBytes", {"value": "65536"}, "65536"),
        ("maxMessageSizeInBytes", {"value": True}, "65536"),
        ("maxMessageSizeInBytes", {"value": 8192.5}, "65536"),
        ("maxMessageSizeInBytes", {"value": [8192]}, "65536"),
        ("eventPriorityLogin", {"value": "Medium"}, "Low"),
        ("eventPriorityLogin", {"value": 1}, "Low"),
        ("eventPriorityLogin", {"value": " High"}, "Low"),
        ("aggregationEnabledConnectionCreate", {"value": "true"}, "false"),
        ("aggregationEnabledConnectionCreate", {"value": 1}, "false"),
        ("hubResourceId", {"value": 42}, "/subscriptions/x"),
    ],
)
def test_type_mismatch_keeps_the_last_good_value(name: str, wrapped: Any, used: str) -> None:
    outcome = apply_twin(CURRENT, {name: wrapped})
    assert rows(outcome) == [(name, "TypeMismatch", used)]
    assert outcome.config.value_of(name) == CURRENT.value_of(name)
    assert "keeping" in outcome.errors[0].message


def test_type_mismatch_leaves_the_other_properties_applied() -> None:
    outcome = apply_twin(
        DEFAULT,
        {
            "maxMessageSizeInBytes": {"value": "big"},
            **wrap(snapshotFrequency="PT1H", eventPriorityProcessCreate="Off"),
        },
    )
    assert rows(outcome) == [("maxMessageSizeInBytes", "TypeMismatch", "204800")]
    assert outcome.config.snapshot_frequency == timedelta(hours=1)
    assert outcome.config.priority("ProcessCreate") == "Off"
    assert outcome.changed == {"snapshotFrequency", "eventPriorityProcessCreate"}


def test_a_section_that_is_not_an_object_keeps_everything() -> None:
    outcome = apply_twin(CURRENT, ["not", "an", "object"])
    assert outcome.config == CURRENT
    [error] = outcome.errors
    assert (error.configuration_name, error.error_type) == (OBJECT_NAME, "TypeMismatch")
    # UsedConfiguration is the whole configuration in use, as the C agent reports it.
    assert json.loads(error.used_configuration)["maxMessageSizeInBytes"] == {"value": 65_536}


# --- NotOptimal -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "used", "expected"),
    [
        ("maxMessageSizeInBytes", 300_000, "262144", 262_144),
        ("maxMessageSizeInBytes", 4096, "8192", 8192),
        ("maxMessageSizeInBytes", -1, "8192", 8192),
        ("maxLocalCacheSizeInBytes", 10**12, "", 10**12),  # no practical upper bound
        ("maxLocalCacheSizeInBytes", 10**30, str(2**63 - 1), 2**63 - 1),
        ("highPriorityMessageFrequency", "PT0S", "PT1S", timedelta(seconds=1)),
        ("aggregationIntervalProcessCreate", "PT0.1S", "PT1S", timedelta(seconds=1)),
    ],
)
def test_values_out_of_range_are_clamped(name: str, value: Any, used: str, expected: Any) -> None:
    outcome = apply_twin(DEFAULT, wrap(**{name: value}))
    assert outcome.config.value_of(name) == expected
    clamped = [r for r in rows(outcome) if r[1] == "NotOptimal"]
    if value == expected:
        assert clamped == []
    else:
        assert clamped == [(name, "NotOptimal", used)]


def test_a_cache_below_the_minimum_is_clamped_and_then_conflicts() -> None:
    outcome = apply_twin(DEFAULT, wrap(maxLocalCacheSizeInBytes=100))
    assert outcome.config.max_local_cache_size_in_bytes == 8192
    assert rows(outcome) == [
        ("maxLocalCacheSizeInBytes", "NotOptimal", "8192"),
        ("maxLocalCacheSizeInBytes", "Conflict", "8192"),
    ]


def test_a_message_size_off_the_4k_grid_is_kept_and_reported() -> None:
    outcome = apply_twin(DEFAULT, wrap(maxMessageSizeInBytes=204_801))
    assert outcome.config.max_message_size_in_bytes == 204_801
    assert rows(outcome) == [("maxMessageSizeInBytes", "NotOptimal", "204801")]
    assert "4096" in outcome.errors[0].message


def test_an_integral_float_is_an_integer() -> None:
    # JSON Schema counts 65536.0 as an integer, and some JSON writers produce it.
    outcome = apply_twin(DEFAULT, wrap(maxMessageSizeInBytes=65536.0))
    assert outcome.config.max_message_size_in_bytes == 65536
    assert outcome.errors == ()


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [
        ("eventPriorityProcesCreate", "eventPriorityProcessCreate"),
        ("HighPriorityMessageFrequency", "highPriorityMessageFrequency"),
        ("maxMessageSize", "maxMessageSizeInBytes"),
    ],
)
def test_unknown_properties_are_reported_with_a_suggestion(name: str, suggestion: str) -> None:
    outcome = apply_twin(DEFAULT, wrap(**{name: "Off"}))
    assert outcome.config == DEFAULT
    [error] = outcome.errors
    assert (error.configuration_name, error.error_type) == (name, "NotOptimal")
    assert f"did you mean {suggestion!r}?" in error.message


def test_unknown_properties_without_a_close_name_are_still_reported() -> None:
    [error] = apply_twin(DEFAULT, wrap(somethingElse=1)).errors
    assert error.message == 'unknown property "somethingElse"; ignored'


def test_twin_metadata_keys_are_not_properties() -> None:
    outcome = apply_twin(DEFAULT, {"$version": 4, "$metadata": {"$lastUpdated": "x"}})
    assert outcome.errors == ()


# --- Conflict: both values kept ---------------------------------------------------------------


def test_high_frequency_slower_than_low_frequency_conflicts() -> None:
    outcome = apply_twin(
        DEFAULT, wrap(highPriorityMessageFrequency="PT6H", lowPriorityMessageFrequency="PT5H")
    )
    assert rows(outcome) == [("highPriorityMessageFrequency", "Conflict", "PT6H")]
    assert outcome.config.high_priority_message_frequency == timedelta(hours=6)
    assert outcome.config.low_priority_message_frequency == timedelta(hours=5)


def test_cache_smaller_than_message_conflicts() -> None:
    outcome = apply_twin(
        DEFAULT, wrap(maxLocalCacheSizeInBytes=16_384, maxMessageSizeInBytes=32_768)
    )
    assert rows(outcome) == [("maxLocalCacheSizeInBytes", "Conflict", "16384")]
    assert outcome.config.max_local_cache_size_in_bytes == 16_384
    assert outcome.config.max_message_size_in_bytes == 32_768


def test_equal_frequencies_and_equal_sizes_do_not_conflict() -> None:
    outcome = apply_twin(
        DEFAULT,
        wrap(
            highPriorityMessageFrequency="PT1H",
            lowPriorityMessageFrequency="PT60M",
            maxLocalCacheSizeInBytes=65_536,
            maxMessageSizeInBytes=65_536,
        ),
    )
    assert outcome.errors == ()


# --- merging ----------------------------------------------------------------------------------


def test_missing_and_null_properties_take_the_base_value() -> None:
    base = AgentConfiguration(snapshot_frequency=timedelta(hours=2))
    for section in ({}, None, {"snapshotFrequency": None}, wrap(snapshotFrequency=None)):
        outcome = apply_twin(CURRENT, section, base=base)
        assert outcome.config == base
        assert outcome.errors == ()


def test_priorities_are_case_insensitive_in_and_canonical_out() -> None:
    outcome = apply_twin(DEFAULT, wrap(eventPriorityLogin="oFF", eventPriorityOSBaseline="HIGH"))
    assert outcome.config.priority("Login") == "Off"
    reported = reported_properties(outcome.config)[OBJECT_NAME]
    assert reported["eventPriorityLogin"] == {"value": "Off"}
    assert reported["eventPriorityOSBaseline"] == {"value": "High"}


def test_the_constructor_refuses_values_apply_twin_would_not_produce() -> None:
    with pytest.raises(AgentConfigError, match="maxMessageSizeInBytes"):
        AgentConfiguration(max_message_size_in_bytes=100)
    with pytest.raises(AgentConfigError, match="eventPriorityLogin"):
        AgentConfiguration(event_priority_login="high")  # type: ignore[arg-type]
    with pytest.raises(AgentConfigError, match="snapshotFrequency"):
        AgentConfiguration(snapshot_frequency=3600)  # type: ignore[arg-type]
    with pytest.raises(AgentConfigError, match="aggregationEnabledProcessCreate"):
        AgentConfiguration(aggregation_enabled_process_create=1)  # type: ignore[arg-type]


# --- reported properties round-trip ---------------------------------------------------------

_durations = st.timedeltas(min_value=timedelta(seconds=1), max_value=timedelta(days=400))
_priorities = st.sampled_from(["High", "Low", "Off"])
_STRATEGIES: dict[str, st.SearchStrategy[Any]] = {
    "duration": _durations,
    "priority": _priorities,
    "boolean": st.booleans(),
    "string": st.text(max_size=20),
}


@st.composite
def configurations(draw: st.DrawFn) -> AgentConfiguration:
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        if setting.name == "maxMessageSizeInBytes":
            strategy: st.SearchStrategy[Any] = st.integers(8192, 262_144)
        elif setting.name == "maxLocalCacheSizeInBytes":
            strategy = st.integers(8192, 10**9)
        elif setting.nullable:
            strategy = st.none() | _STRATEGIES[setting.kind]
        else:
            strategy = _STRATEGIES[setting.kind]
        values[setting.attribute] = draw(strategy)
    return AgentConfiguration(**values)


@given(configurations())
def test_reported_properties_round_trip(config: AgentConfiguration) -> None:
    reported = reported_properties(config)
    # Through JSON, as the twin stores it.
    section = json.loads(json.dumps(reported))[OBJECT_NAME]
    outcome = apply_twin(DEFAULT, section)
    assert outcome.config == config
    assert {e.error_type for e in outcome.errors} <= {"NotOptimal", "Conflict"}


# --- arbitrary desired sections ---------------------------------------------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
_names = st.sampled_from([s.name for s in SETTINGS]) | st.text(max_size=30)
_wrapped = st.fixed_dictionaries({"value": _json}) | _json
_sections = st.dictionaries(_names, _wrapped, max_size=8) | _json


@settings(max_examples=300)
@given(current=configurations(), section=_sections)
def test_arbitrary_desired_sections_never_raise(current: AgentConfiguration, section: Any) -> None:
    outcome = apply_twin(current, section)
    assert isinstance(outcome.config, AgentConfiguration)
    # The rows always make a schema-valid ConfigurationError event.
    if outcome.errors:
        event = ConfigurationErrorEvent.create(outcome.errors)
        body = encode_message(_Message.create([event]))
        assert decode_event(json.dumps(json.loads(body)["Events"][0])).payload == outcome.errors
    # What the twin did not set comes from the base; what it set badly, from current.
    # A null section is an absent one: everything from the base.
    for setting in SETTINGS:
        value = outcome.config.value_of(setting.name)
        if section is None or (isinstance(section, dict) and section.get(setting.name) is None):
            assert value == DEFAULT.value_of(setting.name)
        elif not isinstance(section, dict):
            assert value == current.value_of(setting.name)


# --- the local file ---------------------------------------------------------------------------


def write(tmp_path: Path, data: Any) -> Path:
    path = tmp_path / "agent.json"
    path.write_text(json.dumps(data) if not isinstance(data, str) else data, "utf-8")
    return path


def test_a_local_file_loads(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "cs.txt").write_text(CONNECTION_STRING + "\n", "utf-8")
    path = write(
        tmp_path,
        {
            "connectionStringFile": "secrets/cs.txt",
            "caFile": "/etc/iotsec/ca.pem",
            "stateDir": "state",
            "transport": "https",
            "agentId": "b97faf0a-0f57-471f-9dab-46a8e1764946",
            OBJECT_NAME: wrap(snapshotFrequency="PT1H", eventPriorityLogin="low"),
        },
    )
    local = LocalConfig.load(path)
    assert local.connection_string is None
    assert local.connection_string_file == tmp_path / "secrets" / "cs.txt"
    assert local.read_connection_string() == CONNECTION_STRING
    assert local.ca_file == Path("/etc/iotsec/ca.pem")
    assert local.state_dir == tmp_path / "state"
    assert local.transport == "https"
    assert local.agent_id == "b97faf0a-0f57-471f-9dab-46a8e1764946"
    assert local.configuration == AgentConfiguration(
        snapshot_frequency=timedelta(hours=1), event_priority_login="Low"
    )


def test_a_minimal_local_file_takes_defaults(tmp_path: Path) -> None:
    local = LocalConfig.load(write(tmp_path, {"connectionString": CONNECTION_STRING}))
    assert local.read_connection_string() == CONNECTION_STRING
    assert (local.transport, local.agent_id, local.ca_file) == ("mqtt", None, None)
    assert local.configuration == DEFAULT
    assert CONNECTION_STRING not in repr(local)  # the key never reaches a log


def test_the_twin_wins_over_the_local_file(tmp_path: Path) -> None:
    local = LocalConfig.load(
        write(
            tmp_path,
            {
                "connectionString": CONNECTION_STRING,
                OBJECT_NAME: wrap(snapshotFrequency="PT1H", maxMessageSizeInBytes=65_536),
            },
        )
    )
    base = local.configuration
    start = apply_twin(base, {}, base=base).config
    assert start == base
    # The twin sets one of the two: it wins there, the file's value holds for the other.
    outcome = apply_twin(start, wrap(snapshotFrequency="PT2H"), base=base)
    assert outcome.config.snapshot_frequency == timedelta(hours=2)
    assert outcome.config.max_message_size_in_bytes == 65_536
    # The twin drops the property again: back to the file's value, not the default.
    assert apply_twin(outcome.config, {}, base=base).config.snapshot_frequency == timedelta(hours=1)
    # A bad twin value keeps the value in force.
    bad = apply_twin(outcome.config, wrap(snapshotFrequency="soon"), base=base)
    assert bad.config.snapshot_frequency == timedelta(hours=2)


@pytest.mark.parametrize(
    ("data", "where", "reason"),
    [
        ("{not json", "agent.json", "not JSON (line 1, column 2"),
        ([1, 2], "agent.json", "expected a JSON object"),
        ({"conectionString": CONNECTION_STRING}, "conectionString", "did you mean"),
        (
            {"connectionString": CONNECTION_STRING, "connectionStringFile": "cs.txt"},
            "connectionString",
            "not both",
        ),
        ({"connectionString": "HostName=hub"}, "connectionString", "DeviceId"),
        ({"connectionString": 42}, "connectionString", "non-empty string"),
        ({"transport": "amqp"}, "transport", "'mqtt' or 'https'"),
        ({"agentId": "agent-1"}, "agentId", "GUID"),
        ({"stateDir": ""}, "stateDir", "non-empty string"),
        ({OBJECT_NAME: wrap(snapshotFrequency="soon")}, f"{OBJECT_NAME}.snapshotFrequency", ""),
        ({OBJECT_NAME: wrap(maxMessageSizeInBytes=1)}, f"{OBJECT_NAME}.maxMessageSizeInBytes", ""),
        ({OBJECT_NAME: wrap(snapshotFrequence="PT1H")}, f"{OBJECT_NAME}.snapshotFrequence", "mean"),
        ({OBJECT_NAME: "PT1H"}, "agent.json", "expected an object"),
    ],
)
def test_local_file_errors_name_the_file_and_key(
    tmp_path: Path, data: Any, where: str, reason: str
) -> None:
    path = write(tmp_path, data)
    with pytest.raises(AgentConfigError) as caught:
        LocalConfig.load(path)
    assert str(path) in caught.value.where
    assert caught.value.where.endswith(where)
    assert reason in caught.value.reason


def test_local_file_advice_is_not_fatal(tmp_path: Path) -> None:
    # A conflict or a size off the 4 KB grid is reported at run time, not refused at start.
    section = wrap(maxMessageSizeInBytes=10_000, highPriorityMessageFrequency="P1D")
    local = LocalConfig.load(write(tmp_path, {OBJECT_NAME: section}))
    outcome = apply_twin(local.configuration, None, base=local.configuration)
    assert [e.error_type for e in outcome.errors] == ["NotOptimal", "Conflict"]


def test_a_missing_file_or_connection_string_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(AgentConfigError, match="cannot read"):
        LocalConfig.load(tmp_path / "absent.json")
    local = LocalConfig.load(write(tmp_path, {}))
    with pytest.raises(AgentConfigError, match="set connectionString or connectionStringFile"):
        local.read_connection_string()
    local = LocalConfig.load(write(tmp_path, {"connectionStringFile": "absent.txt"}))
    with pytest.raises(AgentConfigError, match="connectionStringFile: cannot read"):
        local.read_connection_string()
    (tmp_path / "bad.txt").write_text("HostName=x;DeviceId=d", "utf-8")
    local = LocalConfig.load(write(tmp_path, {"connectionStringFile": "bad.txt"}))
    with pytest.raises(AgentConfigError, match="SharedAccessKey"):
        local.read_connection_string()
