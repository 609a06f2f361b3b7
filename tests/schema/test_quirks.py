"""What real agents send (reference Appendix B), normalized on decode."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from iotsec.schema import (
    ConnectionCreateEvent,
    DroppedEventsStatisticsEvent,
    MessageInvalid,
    aggregation_of,
    decode_message,
    encode_message,
)
from tests.msschema import schema_errors

AGENT = "b97faf0a-0f57-471f-9dab-46a8e1764946"


def event(name: str, payload: list[dict[str, Any]], **envelope: Any) -> dict[str, Any]:
    base = {
        "Id": "0d9c2f63-5b8e-4a43-9d2e-8a1f0f6c1e21",
        "TimestampLocal": "2019-06-02T10:00:05+03:00",
        "TimestampUTC": "2019-06-02T07:00:05Z",
        "Category": "Triggered",
        "Name": name,
        "EventType": "Security",
        "IsEmpty": False,
        "PayloadSchemaVersion": "1.0",
        "Payload": payload,
    }
    return {**base, **envelope}


def message(*events: dict[str, Any]) -> bytes:
    return json.dumps(
        {
            "AgentVersion": "0.0.5",
            "AgentId": AGENT,
            "MessageSchemaVersion": "1.0",
            "Events": list(events),
        }
    ).encode()


CONNECTION = {
    "RemoteAddress": "10.0.0.5",
    "RemotePort": "443",
    "Direction": "Out",
    "Protocol": "TCP",
    "ProcessId": 77,
    "Executable": "/usr/bin/curl",
}
LOGIN = {
    "ProcessId": 2201,
    "UserName": "pi",
    "Operation": "PAM:authentication",
    "Executable": "/usr/sbin/sshd",
    "RemoteAddress": "10.0.0.7",
    "Result": "Fail",
}


def decode_one(ev: dict[str, Any]) -> Any:
    return decode_message(message(ev)).message.events[0]


def test_aggregated_category_becomes_triggered_with_the_window_in_extra_details() -> None:
    row = {
        **CONNECTION,
        "Direction": "In",
        "RemotePort": 0,
        "ProcessId": 0,
        "ExtraDetails": {
            "HitCount": "12",
            "StartTimeLocal": "06/02/2019 10:00:05",
            "StartTimeUtc": "06/02/2019 07:00:05",
            "EndTimeLocal": "06/02/2019 10:59:00",
            "EndTimeUtc": "06/02/2019 07:59:00",
        },
    }
    ev = decode_one(event("ConnectionCreate", [row], Category="Aggregated"))
    assert isinstance(ev, ConnectionCreateEvent)
    assert ev.category == "Triggered"
    assert ev.payload[0].remote_port == ""
    assert ev.payload[0].extra_details == {
        "HitCount": "12",
        "StartTimeLocal": "2019-06-02T10:00:05",
        "StartTimeUtc": "2019-06-02T07:00:05Z",
        "EndTimeLocal": "2019-06-02T10:59:00",
        "EndTimeUtc": "2019-06-02T07:59:00Z",
    }
    agg = aggregation_of(ev)
    assert agg is not None
    assert agg.hit_count == 12
    assert agg.start_utc == datetime(2019, 6, 2, 7, 0, 5, tzinfo=UTC)
    assert agg.end_utc == datetime(2019, 6, 2, 7, 59, tzinfo=UTC)


def test_aggregated_event_encodes_valid_for_microsoft_and_round_trips() -> None:
    row = {**CONNECTION, "ExtraDetails": {"HitCount": "3"}}
    decoded = decode_message(message(event("ConnectionCreate", [row], Category="Aggregated")))
    encoded = encode_message(decoded.message)
    assert schema_errors(json.loads(encoded)) == []
    again = decode_message(encoded).message
    assert again == decoded.message
    assert aggregation_of(again.events[0]) is not None


def test_aggregated_without_a_hit_count_counts_one() -> None:
    ev = decode_one(
        event(
            "ProcessCreate",
            [
                {
                    "Executable": "/bin/ls",
                    "ProcessId": 0,
                    "ParentProcessId": 0,
                    "UserId": "0",
                    "CommandLine": "ls",
                }
            ],
            Category="Aggregated",
        )
    )
    agg = aggregation_of(ev)
    assert agg is not None and agg.hit_count == 1


@pytest.mark.parametrize("count", ["0", "-1", "many", "1.5", "٣"])
def test_a_bad_hit_count_is_named(count: str) -> None:
    row = {**CONNECTION, "ExtraDetails": {"HitCount": count}}
    with pytest.raises(MessageInvalid) as caught:
        decode_one(event("ConnectionCreate", [row], Category="Aggregated"))
    assert caught.value.issues[0].path == "Events[0].Payload[0].ExtraDetails.HitCount"


def test_integer_remote_port_other_than_zero_is_refused() -> None:
    with pytest.raises(MessageInvalid) as caught:
        decode_one(event("ConnectionCreate", [{**CONNECTION, "RemotePort": 500}]))
    assert str(caught.value) == "Events[0].Payload[0].RemotePort: expected a string, got an integer"


@pytest.mark.parametrize(
    ("local", "utc", "expected_offset"),
    [
        ("2019-01-27 15:48:52Z", "2019-01-27 13:48:52Z", 120),  # docs: space separator
        ("2019-01-27T15:48:52Z", "2019-01-27T13:48:52Z", 120),  # C agent: local time marked Z
        ("2019-01-27T15:48:52", "2019-01-27T13:48:52", 120),  # C# agent: no zone at all
        ("2019-01-27T10:18:52", "2019-01-27T13:48:52", -210),  # half-hour zones survive
        ("2019-01-27T13:48:52Z", "2019-01-27T13:48:52Z", 0),  # a device on UTC
        ("2019-01-27T15:48:52.000+01:00", "2019-01-27T13:48:52.000Z", 60),  # explicit: trusted
    ],
)
def test_timestamps_are_normalized(local: str, utc: str, expected_offset: int) -> None:
    ev = decode_one(event("Login", [LOGIN], TimestampLocal=local, TimestampUTC=utc))
    assert ev.timestamp_utc == datetime(2019, 1, 27, 13, 48, 52, tzinfo=UTC)
    assert ev.timestamp_utc.tzinfo is UTC
    assert ev.timestamp_local.utcoffset() == timedelta(minutes=expected_offset)
    assert ev.timestamp_local.replace(tzinfo=None) == datetime.fromisoformat(
        local.replace("Z", "")
    ).replace(tzinfo=None)


def test_utc_timestamp_with_an_offset_is_converted() -> None:
    ev = decode_one(event("Login", [LOGIN], TimestampUTC="2019-01-27T15:48:52+02:00"))
    assert ev.timestamp_utc == datetime(2019, 1, 27, 13, 48, 52, tzinfo=UTC)
    assert ev.timestamp_utc.tzinfo is UTC


def test_local_time_more_than_14_hours_off_is_refused() -> None:
    with pytest.raises(MessageInvalid) as caught:
        decode_one(
            event(
                "Login",
                [LOGIN],
                TimestampLocal="2019-01-29T13:48:52",
                TimestampUTC="2019-01-27T13:48:52Z",
            )
        )
    assert caught.value.issues[0].path == "Events[0].TimestampLocal"


@pytest.mark.parametrize("raw", ["tcp", "Tcp", "TCP", "tcp6", " tcp "])
def test_protocol_names_in_any_casing(raw: str) -> None:
    ev = decode_one(
        event("ListeningPorts", [{"Protocol": raw, "LocalPort": "22"}], Category="Periodic")
    )
    assert ev.payload[0].protocol == "TCP"


def test_protocols_in_connections_and_firewall_rules() -> None:
    conn = decode_one(event("ConnectionCreate", [{**CONNECTION, "Protocol": "udp6"}]))
    assert conn.payload[0].protocol == "UDP"
    rule = decode_one(
        event(
            "FirewallConfiguration",
            [{"Enabled": True, "Action": "Allow", "Protocol": "icmp"}],
            Category="Periodic",
        )
    )
    assert rule.payload[0].protocol == "ICMP"


def test_operational_queue_is_accepted() -> None:
    ev = decode_one(
        event(
            "DroppedEventsStatistics",
            [{"Queue": "Operational", "CollectedEvents": 4, "DroppedEvents": 1}],
            Category="Periodic",
            EventType="Operational",
        )
    )
    assert isinstance(ev, DroppedEventsStatisticsEvent)
    assert ev.payload[0].queue == "Operational"


def test_periodic_empty_event_flagged_not_empty_is_fixed_and_empty_ones_accepted() -> None:
    ev = decode_one(event("OSBaseline", [], Category="Periodic", IsEmpty=True))
    assert ev.is_empty and ev.payload == ()
    rows = [
        {
            "Description": "d",
            "CceId": "CCE-4325-7",
            "Result": "Fail",
            "Error": "",
            "Severity": "Warning",
        }
    ]
    ev = decode_one(event("OSBaseline", rows, Category="Periodic", IsEmpty=True))
    assert not ev.is_empty


def test_triggered_events_are_never_empty() -> None:
    with pytest.raises(MessageInvalid) as caught:
        decode_one(event("Login", [], IsEmpty=True))
    assert str(caught.value) == "Events[0].IsEmpty: a Triggered event is never empty"
    with pytest.raises(MessageInvalid) as caught:
        decode_one(event("Login", []))
    assert caught.value.issues[0].path == "Events[0].Payload"


def test_category_is_pinned_per_event_name() -> None:
    with pytest.raises(MessageInvalid) as caught:
        decode_one(event("ConnectionCreate", [CONNECTION], Category="Periodic"))
    assert caught.value.issues[0].path == "Events[0].Category"


def test_login_needs_a_user_id_or_name() -> None:
    row = {k: v for k, v in LOGIN.items() if k != "UserName"}
    with pytest.raises(MessageInvalid) as caught:
        decode_one(event("Login", [row]))
    assert str(caught.value) == "Events[0].Payload[0]: needs UserId or UserName"


@pytest.mark.parametrize("address", ["10.0.0.256", "host.example", "", "::g"])
def test_ip_fields_must_hold_addresses(address: str) -> None:
    with pytest.raises(MessageInvalid) as caught:
        decode_one(event("ConnectionCreate", [{**CONNECTION, "RemoteAddress": address}]))
    assert caught.value.issues[0].path == "Events[0].Payload[0].RemoteAddress"


def test_ipv6_addresses_are_accepted() -> None:
    ev = decode_one(
        event(
            "ConnectionCreate",
            [{**CONNECTION, "RemoteAddress": "::ffff:c000:0280", "LocalAddress": "fe80::1"}],
        )
    )
    assert ev.payload[0].remote_address == "::ffff:c000:0280"


def test_unknown_fields_and_names_suggest_the_right_spelling() -> None:
    with pytest.raises(MessageInvalid) as caught:
        decode_one(event("ConnectionCreate", [{**CONNECTION, "RemotePrt": "1"}]))
    assert str(caught.value) == (
        "Events[0].Payload[0].RemotePrt: unknown field (did you mean 'RemotePort'?)"
    )
    with pytest.raises(MessageInvalid) as caught:
        decode_one(event("ConnectionCreated", [CONNECTION]))
    assert str(caught.value) == (
        "Events[0].Name: unknown event name 'ConnectionCreated' (did you mean 'ConnectionCreate'?)"
    )


def test_explicit_offsets_keep_their_zone_through_a_round_trip() -> None:
    decoded = decode_message(message(event("Login", [LOGIN]))).message
    assert decoded.events[0].timestamp_local.tzinfo == timezone(timedelta(hours=3))
    assert decode_message(encode_message(decoded)).message == decoded
