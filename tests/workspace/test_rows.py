"""Durable-log entries to workspace rows."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import msgspec
import pyarrow as pa  # type: ignore[import-untyped]  # pyarrow ships no type hints

from iotsec.schema import (
    EVENT_TYPES,
    ConnectionCreate,
    ConnectionCreateEvent,
    Event,
    SecurityMessage,
    decode_message,
)
from iotsec.stream import Entry, Record
from iotsec.workspace.rows import RowBuilder, conform
from iotsec.workspace.store import WorkspaceStore
from iotsec.workspace.tables import TABLES
from tests.workspace.samples import AGENT, AT, HUB, every_event, security_record


def _raw_rows(*records: Record) -> list[dict[str, object]]:
    """The rows of ``records`` as a query of SecurityIoTRawEvent sees them (through the store)."""
    builder = RowBuilder(HUB)
    for offset, record in enumerate(records):
        builder.add(Entry(0, offset, record))
    tables = builder.build()
    with WorkspaceStore(None) as store:
        store.append("SecurityIoTRawEvent", tables["SecurityIoTRawEvent"])
        cursor = store.query_cursor()
        result = cursor.sql(
            "SELECT * FROM SecurityIoTRawEvent ORDER BY IoTRawEventId"
        ).to_arrow_table()
        cursor.close()
    return list(result.to_pylist())


def _wire_details(event: Event, message: SecurityMessage) -> list[dict[str, object]]:
    """What EventDetails held before storage was compacted: envelope plus each encoded row."""
    envelope = {
        "Id": event.id,
        "TimestampLocal": event.timestamp_local,
        "TimestampUTC": event.timestamp_utc,
        "Category": event.category,
        "Name": event.name,
        "EventType": event.event_type,
        "IsEmpty": event.is_empty,
        "PayloadSchemaVersion": event.payload_schema_version,
        "AgentId": message.agent_id,
        "AgentVersion": message.agent_version,
    }
    head = json.loads(msgspec.json.encode(envelope))
    return [{**head, **json.loads(msgspec.json.encode(row))} for row in event.payload] or [head]


def test_event_details_are_rebuilt_exactly_for_every_event_kind() -> None:
    events = every_event()
    record = security_record(events)
    message = decode_message(record.body).message
    expected = {
        f"{event.id}:{index}": details
        for event in message.events
        for index, details in enumerate(_wire_details(event, message))
    }
    rows = _raw_rows(record)
    assert {str(r["IoTRawEventId"]): json.loads(str(r["EventDetails"])) for r in rows} == expected


def test_local_offsets_fractions_skews_and_non_uuid_ids_survive_storage() -> None:
    india = timezone(timedelta(hours=5, minutes=30))
    when = datetime(2025, 3, 4, 5, 6, 7, 123456, tzinfo=UTC)
    plain = ConnectionCreateEvent.create(
        [
            ConnectionCreate(
                remote_address="1.2.3.4",
                remote_port="80",
                direction="Out",
                protocol="TCP",
                process_id=1,
                executable="/bin/x",
            )
        ],
        at=when,
    )
    shifted = msgspec.structs.replace(
        plain,
        id="not-a-uuid-".ljust(36, "x"),
        timestamp_local=(when + timedelta(seconds=2)).astimezone(india),
    )
    west = msgspec.structs.replace(
        plain, timestamp_local=when.astimezone(timezone(timedelta(hours=-7)))
    )
    record = security_record([shifted, west])
    message = decode_message(record.body).message
    rows = {str(r["EventId"]): r for r in _raw_rows(record)}
    for event in message.events:
        [details] = _wire_details(event, message)
        assert json.loads(str(rows[event.id]["EventDetails"])) == details
    assert rows[shifted.id]["IoTRawEventId"] == f"{shifted.id}:0"
    local = json.loads(str(rows[shifted.id]["EventDetails"]))["TimestampLocal"]
    assert local == "2025-03-04T10:36:09.123456+05:30"


def test_every_event_kind_gives_one_row_per_payload_row() -> None:
    events = every_event()
    rows = _raw_rows(security_record(events))
    assert {r["RawEventName"] for r in rows} == set(EVENT_TYPES)
    assert len(rows) == sum(max(1, len(e.payload)) for e in events) == 15
    for row in rows:
        assert row["Type"] == "SecurityIoTRawEvent"
        assert row["TimeGenerated"] == AT
        assert row["TimeStamp"] == AT + timedelta(seconds=2)
        assert row["AgentId"] == AGENT and row["AgentVersion"] == "2.1.0"
        assert row["DeviceId"] == "dev-1" and row["ModuleId"] is None
        assert row["AssociatedResourceId"] == HUB.resource_id
        assert row["HubName"] == "hub-1" and row["AzureSubscriptionId"] == "sub-1"
        assert row["HitCount"] == 1
    ports = [r for r in rows if r["RawEventName"] == "ListeningPorts"]
    assert [r["IoTRawEventId"] for r in ports] == [f"{ports[0]['EventId']}:{i}" for i in (0, 1)]
    assert [r["LocalPort"] for r in ports] == ["22", "53"]


def test_hot_columns_come_from_the_row_that_has_them() -> None:
    rows = {r["RawEventName"]: r for r in _raw_rows(security_record(every_event()))}
    proc = rows["ProcessCreate"]
    assert (proc["Executable"], proc["CommandLine"], proc["ProcessId"]) == (
        "/usr/bin/curl",
        "curl http://x",
        42,
    )
    assert (proc["ParentProcessId"], proc["UserName"], proc["UserId"]) == (1, "root", "0")
    conn = rows["ConnectionCreate"]
    assert (conn["RemoteAddress"], conn["RemotePort"], conn["Direction"], conn["Protocol"]) == (
        "10.0.0.9",
        "443",
        "Out",
        "TCP",
    )
    assert (conn["LocalAddress"], conn["LocalPort"]) == ("10.0.0.2", "50000")
    assert rows["Login"]["Result"] == "Fail" and rows["Login"]["UserName"] == "admin"
    assert rows["SystemInformation"]["Executable"] is None
    assert rows["DroppedEventsStatistics"]["RawEventType"] == "Operational"


def test_event_details_hold_the_payload_row_and_the_envelope() -> None:
    rows = {r["RawEventName"]: r for r in _raw_rows(security_record(every_event()))}
    details = json.loads(str(rows["LocalUsers"]["EventDetails"]))
    assert details["UserName"] == "pi" and details["GroupNames"] == "pi;sudo"
    assert details["Id"] == rows["LocalUsers"]["EventId"]
    assert details["Name"] == "LocalUsers" and details["Category"] == "Periodic"
    assert details["EventType"] == "Security" and details["IsEmpty"] is False
    assert details["AgentId"] == AGENT and details["PayloadSchemaVersion"] == "1.0"
    assert datetime.fromisoformat(details["TimestampUTC"]) == AT
    assert "TimestampLocal" in details


def test_an_empty_periodic_event_gives_one_row_with_the_envelope_only() -> None:
    rows = {r["RawEventName"]: r for r in _raw_rows(security_record(every_event()))}
    baseline = rows["OSBaseline"]
    assert baseline["IsEmpty"] is True
    assert baseline["IoTRawEventId"] == f"{baseline['EventId']}:0"
    details = json.loads(str(baseline["EventDetails"]))
    assert details["IsEmpty"] is True and details["Name"] == "OSBaseline"
    assert set(details) == {
        "Id",
        "TimestampLocal",
        "TimestampUTC",
        "Category",
        "Name",
        "EventType",
        "IsEmpty",
        "PayloadSchemaVersion",
        "AgentId",
        "AgentVersion",
    }


def test_aggregated_events_carry_their_hit_count() -> None:
    extra = {
        "HitCount": "17",
        "StartTimeUtc": "2025-03-04T05:00:00+00:00",
        "EndTimeUtc": "2025-03-04T05:06:00+00:00",
    }
    event = ConnectionCreateEvent.create(
        [
            ConnectionCreate(
                remote_address="1.2.3.4",
                remote_port="",
                direction="In",
                protocol="TCP",
                process_id=1,
                executable="/sbin/x",
                extra_details=extra,
            )
        ],
        at=AT,
    )
    [row] = _raw_rows(security_record([event]))
    assert row["HitCount"] == 17
    assert json.loads(str(row["EventDetails"]))["ExtraDetails"]["HitCount"] == "17"


def test_module_ids_and_devices_come_from_the_headers() -> None:
    rows = _raw_rows(security_record(every_event()[:1], device="dev-9", module="secmod"))
    assert (rows[0]["DeviceId"], rows[0]["ModuleId"]) == ("dev-9", "secmod")


def test_oplog_entries_become_operation_log_rows() -> None:
    body = msgspec.json.encode(
        {
            "time": AT.timestamp(),
            "category": "Connections",
            "operation": "deviceConnect",
            "result": "Failure",
            "protocol": "mqtt",
            "deviceId": "dev-1",
            "sourceIp": "10.1.1.1",
            "reason": "bad key",
            "properties": {"a": "b"},
        }
    )
    builder = RowBuilder(HUB)
    builder.add(Entry(3, 9, Record("dev-1", "oplog", body, {}, AT.timestamp())))
    [row] = builder.build()["OperationLog"].to_pylist()
    assert row["OperationId"] == "3:9" and row["TimeGenerated"] == AT
    assert (row["Level"], row["ResultType"], row["ResultDescription"]) == (
        "Error",
        "Failure",
        "bad key",
    )
    assert row["CallerIpAddress"] == "10.1.1.1" and json.loads(row["Properties"]) == {"a": "b"}
    assert row["ResourceId"] == HUB.resource_id


def test_dead_letters_and_undecodable_security_records_become_dead_letter_rows() -> None:
    builder = RowBuilder(HUB)
    headers = {"device_id": "dev-2", "protocol": "https", "reason": "too big", "event_index": "3"}
    builder.add(Entry(1, 0, Record("dev-2", "deadletter", b"\xff{", headers, AT.timestamp())))
    builder.add(Entry(1, 1, Record("dev-2", "security", b"{}", {}, AT.timestamp())))
    builder.add(Entry(1, 2, Record("dev-2", "d2c", b"{}", {}, AT.timestamp())))
    tables = builder.build()
    assert set(tables) == {"DeadLetter"}
    first, second = tables["DeadLetter"].to_pylist()
    assert (first["DeadLetterId"], first["Reason"], first["EventIndex"]) == ("1:0", "too big", 3)
    assert first["Protocol"] == "https" and first["Body"] == "\ufffd{"
    assert second["DeadLetterId"] == "1:1"
    assert str(second["Reason"]).startswith("workspace could not decode")


def test_build_resets_and_conform_fills_missing_columns() -> None:
    builder = RowBuilder(HUB)
    assert builder.build() == {}
    builder.add(Entry(0, 0, security_record(every_event()[:1])))
    assert builder.rows == 1
    assert builder.build()["SecurityIoTRawEvent"].num_rows == 1
    assert builder.rows == 0 and builder.build() == {}
    table = conform(TABLES["SecurityAlert"], pa.table({"SystemAlertId": ["a"]}))
    assert table.column_names == list(TABLES["SecurityAlert"].column_names)
    assert table.to_pylist()[0]["Type"] == "SecurityAlert"
    assert table.to_pylist()[0]["AlertName"] is None
    assert datetime(2025, 1, 1, tzinfo=UTC) < AT
