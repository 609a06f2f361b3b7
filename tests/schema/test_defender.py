"""AWS IoT Device Defender metrics reports: decode, map to events, reject with exact paths."""

from __future__ import annotations

import contextlib
import doctest
import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iotsec.schema import (
    ConnectionCreate,
    ConnectionCreateEvent,
    ListeningPortsEvent,
    SystemInformationEvent,
    decode_message,
    encode_message,
)
from iotsec.schema import defender as defender_module
from iotsec.schema.codec import MAX_MESSAGE_BYTES
from iotsec.schema.defender import (
    DEFENDER_NAMESPACE,
    SHORT_NAMES,
    CustomMetricValue,
    DefenderConnection,
    DefenderReport,
    agent_id_for_thing,
    decode_defender_report,
    split_remote_addr,
)
from iotsec.schema.errors import DefenderReportInvalid, FieldIssue, MessageInvalid, MessageTooLarge

FIXTURES = Path(__file__).with_name("fixtures") / "defender"
AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
AGENT = agent_id_for_thing("gateway-12")


def _report(*, short: bool = False, **metrics: Any) -> bytes:
    """A report with the given metrics blocks (written in long names), in either form."""
    doc: dict[str, Any] = {"header": {"report_id": 7, "version": "1.0"}, "metrics": metrics}
    return json.dumps(_shorten(doc) if short else doc).encode()


def _shorten(value: Any, *, names: bool = True) -> Any:
    """``value`` with every key in its short form (custom metric names and kinds kept)."""
    if isinstance(value, list):
        return [_shorten(item, names=names) for item in value]
    if not isinstance(value, dict):
        return value
    return {
        (SHORT_NAMES[k] if names and k in SHORT_NAMES else k): _shorten(
            v, names=names and k != "custom_metrics"
        )
        for k, v in value.items()
    }


def _decode(data: bytes, **kwargs: Any) -> DefenderReport:
    return decode_defender_report(data, agent_id=AGENT, received_at=AT, **kwargs)


def _issues(data: bytes | str) -> tuple[FieldIssue, ...]:
    with pytest.raises(DefenderReportInvalid) as caught:
        decode_defender_report(data, received_at=AT)
    return caught.value.issues


# --- the two forms, and the mapping ------------------------------------------------------------


def test_long_name_report_decodes_to_typed_metrics() -> None:
    report = _decode((FIXTURES / "long.json").read_bytes())
    assert (report.report_id, report.version, report.agent_id) == (1767323045, "1.0", AGENT)
    assert report.received_at == AT
    metrics = report.metrics
    assert metrics is not None
    assert metrics.listening_tcp_ports is not None
    assert [(p.port, p.interface) for p in metrics.listening_tcp_ports.ports] == [
        (22, "eth0"),
        (8883, "0.0.0.0"),
        (9100, None),
    ]
    assert metrics.listening_tcp_ports.total == 3
    assert metrics.tcp_connections is not None
    established = metrics.tcp_connections.established_connections
    assert established is not None
    assert established.connections[2] == DefenderConnection(
        remote_addr="203.0.113.9:443", local_port=40230
    )  # "local_interface": null reads as absent
    assert report.custom_metrics == {
        "cpu_usage": CustomMetricValue(number=37.5),
        "allowed_peers": CustomMetricValue(ip_list=("10.20.0.7", "2001:db8:4::17")),
    }
    assert report.custom_metrics["allowed_peers"].kind == "ip_list"


def test_short_name_report_gives_the_same_report_and_message() -> None:
    long = _decode((FIXTURES / "long.json").read_bytes())
    short = _decode((FIXTURES / "short.json").read_bytes())
    assert short == long
    assert short.to_security_message() == long.to_security_message()


def test_message_matches_the_golden_file() -> None:
    message = _decode((FIXTURES / "long.json").read_bytes()).to_security_message()
    golden = (FIXTURES / "long.message.json").read_bytes()
    assert json.loads(encode_message(message)) == json.loads(golden)
    assert decode_message(golden).message == message


def test_listening_ports_map_to_one_periodic_event() -> None:
    report = _decode(
        _report(
            listening_tcp_ports={
                "ports": [{"port": 22, "interface": "eth0"}, {"port": 443, "interface": "::"}]
            },
            listening_udp_ports={"ports": [{"port": 68}]},
        )
    )
    (event,) = report.events()
    assert isinstance(event, ListeningPortsEvent)
    assert (event.category, event.is_empty) == ("Periodic", False)
    rows = [(r.protocol, r.local_port, r.local_address, r.extra_details) for r in event.payload]
    assert rows == [
        ("TCP", "22", None, {"Source": "aws-device-defender", "Interface": "eth0"}),
        ("TCP", "443", "::", {"Source": "aws-device-defender"}),
        ("UDP", "68", None, {"Source": "aws-device-defender"}),
    ]


@pytest.mark.parametrize(
    "metrics",
    [
        {"listening_tcp_ports": {"ports": []}},
        {"listening_tcp_ports": {"total": 0}, "listening_udp_ports": {"ports": [], "total": 0}},
    ],
)
def test_empty_port_lists_give_an_empty_snapshot(metrics: dict[str, Any]) -> None:
    (event,) = _decode(_report(**metrics)).events()
    assert isinstance(event, ListeningPortsEvent)
    assert (event.is_empty, event.payload) == (True, ())
    assert decode_message(encode_message(_decode(_report(**metrics)).to_security_message()))


def test_absent_port_blocks_give_no_snapshot() -> None:
    events = _decode(_report(network_stats={"bytes_in": 1})).events()
    assert [e.name for e in events] == ["SystemInformation"]


def test_connections_map_to_connection_create_rows() -> None:
    report = _decode(
        _report(
            tcp_connections={
                "established_connections": {
                    "connections": [
                        {
                            "remote_addr": "192.0.2.10:51000",
                            "local_port": 22,
                            "local_interface": "eth0",
                        },
                        {
                            "remote_addr": "[2001:db8::1]:443",
                            "local_port": 40000,
                            "local_interface": "10.0.0.5",
                        },
                    ],
                    "total": 2,
                }
            }
        )
    )
    (event,) = report.events()
    assert isinstance(event, ConnectionCreateEvent)
    assert event.category == "Triggered"
    first, second = event.payload
    assert (first.remote_address, first.remote_port, first.local_port, first.protocol) == (
        "192.0.2.10",
        "51000",
        "22",
        "TCP",
    )
    assert (first.process_id, first.executable, first.local_address) == (0, "", None)
    assert first.extra_details == {"Source": "aws-device-defender", "Interface": "eth0"}
    assert (second.remote_address, second.remote_port) == ("2001:db8::1", "443")
    assert (second.local_address, second.extra_details) == (
        "10.0.0.5",
        {"Source": "aws-device-defender"},
    )


def test_no_connections_give_no_connection_event() -> None:
    blocks: list[dict[str, Any]] = [
        {},
        {"established_connections": {}},
        {"established_connections": {"connections": [], "total": 0}},
    ]
    for tcp in blocks:
        assert _decode(_report(tcp_connections=tcp)).events() == ()


@pytest.mark.parametrize(
    ("local_port", "direction"),
    [
        (22, "In"),  # a listening TCP port: the peer connected to us
        (5353, "Out"),  # listening, but only on UDP
        (40000, "Out"),  # an ephemeral port: we connected out
        (None, "Out"),  # unknown local port: cannot be inbound as far as we know
    ],
)
def test_direction_is_in_only_for_a_listening_tcp_port(
    local_port: int | None,
    direction: str,
) -> None:
    conn: dict[str, Any] = {"remote_addr": "192.0.2.1:1234"}
    if local_port is not None:
        conn["local_port"] = local_port
    report = _decode(
        _report(
            listening_tcp_ports={"ports": [{"port": 22}]},
            listening_udp_ports={"ports": [{"port": 5353}]},
            tcp_connections={"established_connections": {"connections": [conn]}},
        )
    )
    row = report.events()[1].payload[0]
    assert isinstance(row, ConnectionCreate)
    assert (row.direction, row.local_port) == (
        direction,
        None if local_port is None else str(local_port),
    )


def test_network_stats_map_to_system_information_details() -> None:
    report = _decode(
        _report(
            network_stats={
                "bytes_in": 29358693495,
                "bytes_out": 0,
                "packets_in": 10,
                "packets_out": 11,
            }
        )
    )
    (event,) = report.events()
    assert isinstance(event, SystemInformationEvent)
    assert event.payload[0].extra_details == {
        "Source": "aws-device-defender",
        "BytesIn": "29358693495",
        "BytesOut": "0",
        "PacketsIn": "10",
        "PacketsOut": "11",
    }
    partial = _decode(_report(network_stats={"bytes_out": 5})).events()[0]
    assert partial.payload[0].extra_details == {"Source": "aws-device-defender", "BytesOut": "5"}


def test_timestamps_are_the_receive_time_in_utc() -> None:
    local = AT.astimezone(timezone(timedelta(hours=5, minutes=30)))
    report = decode_defender_report(_report(network_stats={}), agent_id=AGENT, received_at=local)
    (event,) = report.events()
    assert event.timestamp_utc == event.timestamp_local == AT
    assert event.timestamp_utc.tzinfo is UTC and event.timestamp_local.tzinfo is UTC
    with pytest.raises(ValueError, match="timezone-aware"):
        decode_defender_report(_report(), received_at=datetime(2026, 1, 1))


def test_received_at_defaults_to_now() -> None:
    before = datetime.now(UTC)
    report = decode_defender_report(_report(network_stats={}))
    assert before <= report.received_at <= datetime.now(UTC)


# --- ids and agents ----------------------------------------------------------------------------


def test_event_ids_are_derived_from_agent_report_and_event_name() -> None:
    data = (FIXTURES / "long.json").read_bytes()
    first = _decode(data).to_security_message()
    resent = decode_defender_report(data, agent_id=AGENT, received_at=AT + timedelta(hours=1))
    assert [e.id for e in resent.events()] == [e.id for e in first.events]
    expected = uuid.uuid5(DEFENDER_NAMESPACE, f"{AGENT}/1767323045/ListeningPorts")
    assert first.events[0].id == str(expected)
    assert len({e.id for e in first.events}) == 3
    other_report = _decode(data.replace(b"1767323045", b"1767323346")).events()
    other_agent = _decode(data).events(agent_id=agent_id_for_thing("gateway-13"))
    assert not {e.id for e in first.events} & {e.id for e in other_report + other_agent}


def test_namespace_and_thing_ids_never_change() -> None:
    # Changing either would stop re-sent reports from deduplicating against stored ones.
    assert str(DEFENDER_NAMESPACE) == str(
        uuid.uuid5(uuid.NAMESPACE_URL, "https://iotsec.dev/ns/aws-device-defender")
    )
    expected = uuid.uuid5(DEFENDER_NAMESPACE, "thing/gateway-12")
    assert agent_id_for_thing("gateway-12") == str(expected)
    assert agent_id_for_thing("gateway-12") != agent_id_for_thing("gateway-13")


def test_agent_id_is_required_and_must_be_a_guid() -> None:
    report = decode_defender_report(_report(network_stats={}), received_at=AT)
    with pytest.raises(ValueError, match="agent_id_for_thing"):
        report.to_security_message()
    assert report.to_security_message(agent_id=AGENT).agent_id == AGENT
    assert report.to_security_message(agent_id=AGENT.upper()).agent_id == AGENT  # canonical
    with pytest.raises(ValueError, match="must be a GUID"):
        decode_defender_report(_report(), agent_id="gateway-12")
    for bad in ("", "a/b", "x" * 129):
        with pytest.raises(ValueError, match="thing name"):
            agent_id_for_thing(bad)


def test_a_report_with_nothing_to_map_has_no_message() -> None:
    report = _decode(
        b'{"header":{"report_id":1,"version":"1.0"},"custom_metrics":{"battery":[{"number":87}]}}'
    )
    assert report.metrics is None
    assert report.custom_metrics["battery"].number == 87
    assert report.events() == ()
    with pytest.raises(ValueError, match="maps to no event"):
        report.to_security_message()


# --- round trip --------------------------------------------------------------------------------


def test_message_round_trips_through_the_codec() -> None:
    message = _decode((FIXTURES / "short.json").read_bytes()).to_security_message()
    assert decode_message(encode_message(message)).message == message


# --- errors ------------------------------------------------------------------------------------

_CONN = "metrics.tcp_connections.established_connections.connections"
_HEADER = {"report_id": 1, "version": "1.0"}


def _doc(**top: Any) -> bytes:
    return json.dumps({"header": _HEADER, **top}).encode()


def _conns(*remote: str) -> bytes:
    return _report(
        tcp_connections={
            "established_connections": {
                "connections": [{"remote_addr": r, "local_port": 1} for r in remote]
            }
        }
    )


@pytest.mark.parametrize(
    ("data", "path", "reason"),
    [
        # malformed JSON, not UTF-8, not an object
        (b'{"header": {', "$", "malformed JSON: input data was truncated"),
        (b"<report/>", "$", "malformed JSON: invalid character (byte 0)"),
        (b'{"header": 5, ', "$", "malformed JSON: input data was truncated"),
        (
            b"\xa2chedrid",
            "$",
            "malformed JSON: invalid character (byte 0) "
            "(this looks like CBOR, a map; iotsec reads JSON reports only)",
        ),
        (
            b'{"header":{"report_id":1,"version":"\xff"}}',
            "$",
            "not UTF-8 (byte 0: invalid start byte)",
        ),
        (b"[]", "$", "expected an object, got an array"),
        (_doc(metrics=[]), "metrics", "expected an object, got an array"),
        # wrong types
        (
            _doc(header={"report_id": "1", "version": "1.0"}),
            "header.report_id",
            "expected an integer, got a string",
        ),
        (
            _doc(header={"report_id": 1, "version": 1.0}),
            "header.version",
            "expected a string, got a number",
        ),
        (
            _report(listening_tcp_ports={"ports": {"port": 22}}),
            "metrics.listening_tcp_ports.ports",
            "expected an array, got an object",
        ),
        (
            _report(listening_tcp_ports={"ports": [{"port": None}]}),
            "metrics.listening_tcp_ports.ports[0].port",
            "expected an integer, got null",
        ),
        (
            _report(listening_tcp_ports={"ports": [{"port": 22.0}]}),
            "metrics.listening_tcp_ports.ports[0].port",
            "expected an integer, got a number",
        ),
        (
            _report(network_stats={"bytes_in": True}),
            "metrics.network_stats.bytes_in",
            "expected an integer, got a boolean",
        ),
        (
            _report(network_stats={"bytes_in": -1}),
            "metrics.network_stats.bytes_in",
            "expected an integer >= 0",
        ),
        (_conns(""), f"{_CONN}[0].remote_addr", "expected \"ip:port\", got ''"),
        (
            _doc(header={"report_id": -1, "version": "1.0"}),
            "header.report_id",
            "expected an integer >= 0",
        ),
        (
            _doc(header={"report_id": 1, "version": "2.0"}),
            "header.version",
            "invalid value '2.0' (only \"1.0\" is defined)",
        ),
        # missing required fields
        (b"{}", "header", "required field is missing"),
        (_doc(header={"version": "1.0"}), "header.report_id", "required field is missing"),
        (_doc(), "$", 'expected a "metrics" or a "custom_metrics" block, or both'),
        (
            _report(listening_udp_ports={"ports": [{"interface": "eth0"}]}),
            "metrics.listening_udp_ports.ports[0].port",
            "required field is missing",
        ),
        (
            _report(
                tcp_connections={"established_connections": {"connections": [{"local_port": 1}]}}
            ),
            f"{_CONN}[0].remote_addr",
            "required field is missing",
        ),
        # unknown keys
        (
            _report(listening_tcp_ports={"prots": []}),
            "metrics.listening_tcp_ports.prots",
            "unknown field (did you mean 'ports'?)",
        ),
        (
            _report(
                tcp_connections={
                    "established_connections": {
                        "connections": [{"remote_addr": "1.2.3.4:5", "remote_port": 5}]
                    }
                }
            ),
            f"{_CONN}[0].remote_port",
            "unknown field (did you mean 'remote_addr'?)",
        ),
        (_doc(metrics={}, timestamp=1), "timestamp", "unknown field"),
        # bad remote_addr
        (_conns("10.0.0.1"), f"{_CONN}[0].remote_addr", "expected \"ip:port\", got '10.0.0.1'"),
        (
            _conns("10.0.0.1:80", "::1:443"),
            f"{_CONN}[1].remote_addr",
            'expected "ip:port" with the IPv6 address in brackets, as in "[2001:db8::1]:443", '
            "got '::1:443'",
        ),
        (_conns("[::1:443"), f"{_CONN}[0].remote_addr", "expected \"ip:port\", got '[::1:443'"),
        (
            _conns("host.example:443"),
            f"{_CONN}[0].remote_addr",
            "expected \"ip:port\" with an IPv4 or IPv6 address, got 'host.example:443'",
        ),
        (
            _conns("[fe80::1%eth0]:22"),
            f"{_CONN}[0].remote_addr",
            "expected \"ip:port\" with an IPv4 or IPv6 address, got '[fe80::1%eth0]:22'",
        ),
        (
            _conns("10.0.0.1:http"),
            f"{_CONN}[0].remote_addr",
            "expected \"ip:port\" with a port in 0..65535, got '10.0.0.1:http'",
        ),
        (
            _conns("10.0.0.1:65536"),
            f"{_CONN}[0].remote_addr",
            "expected \"ip:port\" with a port in 0..65535, got '10.0.0.1:65536'",
        ),
        # ports out of range (AWS: listening ports > 0, local ports >= 0)
        (
            _report(listening_tcp_ports={"ports": [{"port": 0}]}),
            "metrics.listening_tcp_ports.ports[0].port",
            "expected a port number in 1..65535",
        ),
        (
            _report(listening_udp_ports={"ports": [{"port": 22}, {"port": 65536}]}),
            "metrics.listening_udp_ports.ports[1].port",
            "expected a port number in 1..65535",
        ),
        (
            _report(
                tcp_connections={
                    "established_connections": {
                        "connections": [{"remote_addr": "1.2.3.4:5", "local_port": -1}]
                    }
                }
            ),
            f"{_CONN}[0].local_port",
            "expected a port number in 0..65535",
        ),
        (
            _report(
                tcp_connections={
                    "established_connections": {
                        "connections": [{"remote_addr": "1.2.3.4:5", "local_port": 88888}]
                    }
                }
            ),
            f"{_CONN}[0].local_port",
            "expected a port number in 0..65535",
        ),
        # mixed forms
        (
            b'{"header":{"report_id":1,"version":"1.0"},"met":{}}',
            "$",
            "mixes long names (header) and short names (met); a report uses one form throughout",
        ),
        (
            _report(listening_tcp_ports={"pts": []}),
            "metrics.listening_tcp_ports.pts",
            'unknown field ("pts" is the short name of "ports"; this report uses long names, '
            "and a report uses one form throughout)",
        ),
        (
            b'{"hed":{"rid":1,"version":"1.0"},"met":{}}',
            "hed.version",
            'unknown field ("version" is the long name of "v"; this report uses short names, '
            "and a report uses one form throughout)",
        ),
        # custom metrics
        (
            _doc(custom_metrics={"cpu": {"number": 1}}),
            "custom_metrics.cpu",
            "expected an array, got an object",
        ),
        (
            _doc(custom_metrics={"cpu": [{"number": 1}, {"number": 2}]}),
            "custom_metrics.cpu",
            "expected an array of exactly 1 item",
        ),
        (
            _doc(custom_metrics={"cpu": [{"number": "1"}]}),
            "custom_metrics.cpu[0].number",
            "expected a number, got a string",
        ),
        (
            _doc(custom_metrics={"cpu": [{}]}),
            "custom_metrics.cpu[0]",
            "expected exactly one of number, number_list, string_list, ip_list",
        ),
        (
            _doc(custom_metrics={"cpu": [{"nubmer": 1}]}),
            "custom_metrics.cpu[0].nubmer",
            "unknown field (did you mean 'number'?)",
        ),
        (
            _doc(custom_metrics={"peers": [{"ip_list": ["10.0.0.1", "10.0.0"]}]}),
            "custom_metrics.peers[0].ip_list[1]",
            "expected an IPv4 or IPv6 address, got '10.0.0'",
        ),
        (
            _doc(custom_metrics={"aws:cpu": [{"number": 1}]}),
            "custom_metrics",
            "invalid custom metric name 'aws:cpu' (1-128 of a-z A-Z 0-9 : _ -, "
            'not starting with "aws:")',
        ),
    ],
)
def test_invalid_reports_name_the_path_and_reason(data: bytes, path: str, reason: str) -> None:
    assert _issues(data) == (FieldIssue(path, reason),)


@pytest.mark.parametrize(
    ("data", "path", "reason"),
    [
        (b'{"hed":{"rid":"1","v":"1.0"},"met":{}}', "hed.rid", "expected an integer, got a string"),
        (b'{"hed":{"rid":1,"v":"1.0"}}', "$", 'expected a "met" or a "cmet" block, or both'),
        (
            _report(
                short=True,
                tcp_connections={
                    "established_connections": {
                        "connections": [{"remote_addr": "1.2.3.4:5"}, {"remote_addr": "1.2.3.4"}]
                    }
                },
            ),
            "met.tc.ec.cs[1].rad",
            "expected \"ip:port\", got '1.2.3.4'",
        ),
        (
            _report(short=True, listening_tcp_ports={"ports": [{"port": 0}]}),
            "met.tp.pts[0].pt",
            "expected a port number in 1..65535",
        ),
        (
            _report(
                short=True,
                tcp_connections={
                    "established_connections": {
                        "connections": [{"remote_addr": "1.2.3.4:5", "local_port": 70000}]
                    }
                },
            ),
            "met.tc.ec.cs[0].lp",
            "expected a port number in 0..65535",
        ),
        (
            _report(short=True, listening_tcp_ports={"ports": [{"port": 1, "interface": 5}]}),
            "met.tp.pts[0].if",
            "expected a string, got an integer",
        ),
        (
            b'{"hed":{"rid":1,"v":"1.0"},"met":{"tp":{"ports":[]}}}',
            "met.tp.ports",
            'unknown field ("ports" is the long name of "pts"; this report uses short names, '
            "and a report uses one form throughout)",
        ),
        (
            b'{"hed":{"rid":1,"v":"1.0"},"cmet":{"c":[{"number":1,"string_list":[]}]}}',
            "cmet.c[0]",
            "expected exactly one of number, number_list, string_list, ip_list",
        ),
    ],
)
def test_short_form_issues_use_short_names(data: bytes, path: str, reason: str) -> None:
    assert _issues(data) == (FieldIssue(path, reason),)


def test_all_custom_metric_problems_are_reported_together() -> None:
    issues = _issues(
        _doc(
            custom_metrics={
                "aws:x": [{"number": 1}],
                "a": [{"number": 1, "ip_list": []}],
                "b": [{"ip_list": ["x"]}],
            }
        )
    )
    assert [i.path for i in issues] == [
        "custom_metrics",
        "custom_metrics.a[0]",
        "custom_metrics.b[0].ip_list[0]",
    ]


def test_error_is_a_message_invalid_and_reads_well() -> None:
    with pytest.raises(MessageInvalid, match=r"^header: required field is missing$"):
        decode_defender_report(b"{}")


def test_str_input_is_accepted() -> None:
    report = decode_defender_report((FIXTURES / "short.json").read_text(), received_at=AT)
    assert report.report_id == 1767323045


# --- size limit --------------------------------------------------------------------------------


def test_reports_over_the_limit_are_refused_before_parsing() -> None:
    with pytest.raises(MessageTooLarge) as caught:
        decode_defender_report(b"x" * (MAX_MESSAGE_BYTES + 1))  # not JSON: never parsed
    assert (caught.value.size, caught.value.limit) == (MAX_MESSAGE_BYTES + 1, MAX_MESSAGE_BYTES)
    with pytest.raises(MessageTooLarge):
        decode_defender_report("é" * (MAX_MESSAGE_BYTES // 2 + 1))  # counted in UTF-8 bytes
    with pytest.raises(MessageTooLarge):
        decode_defender_report(_report(), max_bytes=10)


def test_a_report_at_the_limit_decodes() -> None:
    data = _report(network_stats={"bytes_in": 1})
    padded = data + b" " * (MAX_MESSAGE_BYTES - len(data))
    assert len(padded) == MAX_MESSAGE_BYTES
    assert _decode(padded).report_id == 7


# --- helpers and the module's own promises -----------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("192.0.2.1:0", ("192.0.2.1", 0)),
        ("192.0.2.1:65535", ("192.0.2.1", 65535)),
        ("[::1]:443", ("::1", 443)),
        ("[::ffff:192.0.2.1]:80", ("::ffff:192.0.2.1", 80)),
        (
            "[2001:0db8:85a3:0000:0000:8a2e:0370:7334]:80",
            ("2001:0db8:85a3:0000:0000:8a2e:0370:7334", 80),
        ),
    ],
)
def test_split_remote_addr(text: str, expected: tuple[str, int]) -> None:
    assert split_remote_addr(text) == expected


def test_short_twins_mirror_the_public_blocks() -> None:
    twins = {
        defender_module.DefenderPort: defender_module._ShortPort,
        defender_module.DefenderListeningPorts: defender_module._ShortListeningPorts,
        defender_module.DefenderConnection: defender_module._ShortConnection,
        defender_module.DefenderEstablishedConnections: (
            defender_module._ShortEstablishedConnections
        ),
        defender_module.DefenderTcpConnections: defender_module._ShortTcpConnections,
        defender_module.DefenderNetworkStats: defender_module._ShortNetworkStats,
        defender_module.DefenderMetrics: defender_module._ShortMetrics,
        defender_module._Header: defender_module._ShortHeader,
        defender_module._LongReport: defender_module._ShortReport,
    }
    used: set[str] = set()
    for public, twin in twins.items():
        assert public.__struct_fields__ == twin.__struct_fields__, public.__name__
        assert twin.__struct_encode_fields__ == tuple(
            SHORT_NAMES[f] for f in public.__struct_fields__
        ), twin.__name__
        used.update(public.__struct_fields__)
    assert used == set(SHORT_NAMES)


def test_short_names_are_the_ones_aws_documents() -> None:
    # The "Device metrics document specification" of the AWS IoT Device Defender guide.
    assert SHORT_NAMES == {
        "header": "hed",
        "metrics": "met",
        "custom_metrics": "cmet",
        "report_id": "rid",
        "version": "v",
        "tcp_connections": "tc",
        "established_connections": "ec",
        "connections": "cs",
        "remote_addr": "rad",
        "local_port": "lp",
        "local_interface": "li",
        "total": "t",
        "listening_tcp_ports": "tp",
        "listening_udp_ports": "up",
        "ports": "pts",
        "port": "pt",
        "interface": "if",
        "network_stats": "ns",
        "bytes_in": "bi",
        "bytes_out": "bo",
        "packets_in": "pi",
        "packets_out": "po",
    }


def test_docstring_examples_run() -> None:
    failed, attempted = doctest.testmod(defender_module)
    assert (failed, attempted > 0) == (0, True)


# --- properties --------------------------------------------------------------------------------

_IFACES = st.sampled_from(["eth0", "wlan0", "lo", "0.0.0.0", "::", "10.0.0.5"])
_ports = st.lists(
    st.fixed_dictionaries({"port": st.integers(1, 65535)}, optional={"interface": _IFACES}),
    max_size=5,
)


def _remote(ip: Any, port: int) -> str:
    return f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"


_connections = st.lists(
    st.fixed_dictionaries(
        {"remote_addr": st.builds(_remote, st.ip_addresses(), st.integers(0, 65535))},
        optional={"local_port": st.integers(0, 65535), "local_interface": _IFACES | st.none()},
    ),
    max_size=5,
)
_counts = st.integers(0, 2**64)
_metrics = st.fixed_dictionaries(
    {},
    optional={
        "listening_tcp_ports": st.fixed_dictionaries(
            {"ports": _ports}, optional={"total": _counts}
        ),
        "listening_udp_ports": st.fixed_dictionaries(
            {"ports": _ports}, optional={"total": _counts}
        ),
        "network_stats": st.fixed_dictionaries(
            {},
            optional={k: _counts for k in ("bytes_in", "bytes_out", "packets_in", "packets_out")},
        ),
        "tcp_connections": st.fixed_dictionaries(
            {},
            optional={
                "established_connections": st.fixed_dictionaries(
                    {"connections": _connections}, optional={"total": _counts}
                )
            },
        ),
    },
)
_custom_value = st.one_of(
    st.builds(lambda n: {"number": n}, st.floats(allow_nan=False, allow_infinity=False)),
    st.builds(lambda n: {"number_list": n}, st.lists(st.integers(-1000, 1000), max_size=3)),
    st.builds(lambda s: {"string_list": s}, st.lists(st.text(max_size=8), max_size=3)),
    st.builds(lambda s: {"ip_list": [str(i) for i in s]}, st.lists(st.ip_addresses(), max_size=3)),
)
_reports = st.fixed_dictionaries(
    {
        "header": st.fixed_dictionaries(
            {"report_id": st.integers(0, 2**63 - 1), "version": st.just("1.0")}
        ),
        "metrics": _metrics,
    },
    optional={
        "custom_metrics": st.dictionaries(
            st.from_regex(r"[a-z][a-zA-Z0-9:_-]{0,20}", fullmatch=True),
            _custom_value.map(lambda v: [v]),
            max_size=3,
        )
    },
)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(_reports)
def test_valid_reports_decode_alike_in_both_forms_and_round_trip(doc: dict[str, Any]) -> None:
    long = _decode(json.dumps(doc).encode())
    short = _decode(json.dumps(_shorten(doc)).encode())
    assert long == short
    events = long.events()
    if events:
        message = long.to_security_message()
        assert decode_message(encode_message(message)).message == message
    metrics = doc["metrics"]
    port_rows = sum(
        len(metrics.get(k, {}).get("ports", ()))
        for k in ("listening_tcp_ports", "listening_udp_ports")
    )
    listening = [e for e in events if e.name == "ListeningPorts"]
    assert sum(len(e.payload) for e in listening) == port_rows


_vocabulary = st.sampled_from([*SHORT_NAMES, *SHORT_NAMES.values(), "number", "ip_list", "x"])
_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=8)
    | st.builds(_remote, st.ip_addresses(), st.integers(-1, 70000)),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_vocabulary, inner, max_size=4),
    max_leaves=25,
)


@settings(max_examples=300)
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_raise_only_report_errors(data: bytes) -> None:
    with contextlib.suppress(DefenderReportInvalid, MessageTooLarge):
        decode_defender_report(data, received_at=AT)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(_json_values, st.booleans())
def test_report_shaped_json_raises_only_report_errors(value: Any, wrap: bool) -> None:
    doc = {"header": _HEADER, "metrics": value} if wrap else value
    try:
        report = _decode(json.dumps(doc).encode())
    except DefenderReportInvalid as exc:
        assert exc.issues
        return
    if report.events():
        message = report.to_security_message()
        assert decode_message(encode_message(message)).message == message
