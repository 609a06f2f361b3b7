"""The DuckDB store: tables from the registry, idempotent appends, Device upserts, lockdown."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import msgspec
import pyarrow as pa  # type: ignore[import-untyped]  # pyarrow ships no type hints
import pytest

from iotsec.stream import Entry
from iotsec.workspace.errors import StoreError
from iotsec.workspace.rawevents import SOURCE_COLUMNS
from iotsec.workspace.rows import RowBuilder
from iotsec.workspace.sinks import AlertRow, RecommendationRow
from iotsec.workspace.store import WorkspaceStore
from iotsec.workspace.tables import TABLES
from tests.workspace.samples import AT, HUB, every_event, security_record


def _raw_table() -> pa.Table:
    builder = RowBuilder(HUB)
    builder.add(Entry(0, 0, security_record(every_event())))
    return builder.build()["SecurityIoTRawEvent"]


def test_every_registry_table_is_created_with_its_columns(store: WorkspaceStore) -> None:
    cursor = store.query_cursor()
    for table in TABLES.values():
        described = cursor.execute(f'DESCRIBE "{table.name}"').fetchall()
        assert [(r[0], r[1]) for r in described] == [
            (c.name, c.duckdb_type.replace("TIMESTAMPTZ", "TIMESTAMP WITH TIME ZONE"))
            for c in table.columns
        ]
    cursor.close()


def test_appending_the_same_rows_twice_keeps_one_of_each(store: WorkspaceStore) -> None:
    raw = _raw_table()
    assert store.append("SecurityIoTRawEvent", raw) == 15
    assert store.append("SecurityIoTRawEvent", raw) == 0
    assert store.append("SecurityIoTRawEvent", pa.concat_tables([raw, raw])) == 0
    assert store.count("SecurityIoTRawEvent") == 15


def _shifted(raw: pa.Table, by: timedelta) -> pa.Table:
    """The same rows, with TimeGenerated moved (as an agent with another clock would send)."""
    times = [t + by for t in raw.column("TimeGenerated").to_pylist()]
    index = raw.schema.get_field_index("TimeGenerated")
    return raw.set_column(index, "TimeGenerated", pa.array(times, raw.schema.field(index).type))


def test_duplicates_are_found_in_every_time_range_of_a_batch(store: WorkspaceStore) -> None:
    raw = _raw_table()
    old = _shifted(raw.slice(0, 5), timedelta(days=-400))
    assert store.append("SecurityIoTRawEvent", pa.concat_tables([raw.slice(5), old])) == 15
    # A batch spanning three time ranges, every row already stored.
    again = pa.concat_tables([old, raw.slice(5, 4), raw.slice(9)])
    assert store.append("SecurityIoTRawEvent", again) == 0
    assert store.count("SecurityIoTRawEvent") == 15


def test_a_batch_repeating_a_key_inside_itself_keeps_one_row(store: WorkspaceStore) -> None:
    raw = _raw_table()
    assert store.append("SecurityIoTRawEvent", pa.concat_tables([raw.slice(0, 3), raw])) == 15
    assert store.count("SecurityIoTRawEvent") == 15


def test_non_uuid_event_ids_are_kept_as_sent_and_deduplicated(store: WorkspaceStore) -> None:
    raw = _raw_table().slice(0, 2)
    ids = pa.array(["agent-specific-id-" + "x" * 18, "agent-specific-id-" + "y" * 18])
    raw = raw.set_column(raw.schema.get_field_index("EventId"), "EventId", ids)
    assert store.append("SecurityIoTRawEvent", raw) == 2
    assert store.append("SecurityIoTRawEvent", raw) == 0
    cursor = store.query_cursor()
    stored = cursor.execute(
        "SELECT EventId, IoTRawEventId, EventDetails->>'Id' FROM SecurityIoTRawEvent ORDER BY 1"
    ).fetchall()
    cursor.close()
    assert stored == [(i, f"{i}:0", i) for i in sorted(ids.to_pylist())]


def test_raw_rows_without_a_time_are_refused_not_dropped(store: WorkspaceStore) -> None:
    raw = _raw_table().slice(0, 1)
    index = raw.schema.get_field_index("TimeGenerated")
    raw = raw.set_column(index, "TimeGenerated", pa.nulls(1, raw.schema.field(index).type))
    with pytest.raises(StoreError, match="TimeGenerated"):
        store.append("SecurityIoTRawEvent", raw)


def test_event_details_is_json_that_extract_reads(store: WorkspaceStore) -> None:
    store.append("SecurityIoTRawEvent", _raw_table())
    cursor = store.query_cursor()
    rows = cursor.execute(
        "SELECT json_extract_string(EventDetails, '$.TimestampLocal'),"
        " json_extract_string(EventDetails, '$.UserName') FROM SecurityIoTRawEvent"
        " WHERE RawEventName = 'LocalUsers'"
    ).fetchall()
    cursor.close()
    [(local, user)] = rows
    assert datetime.fromisoformat(local) == AT and user == "pi"


def test_the_file_survives_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    with WorkspaceStore(path) as first:
        first.append("SecurityIoTRawEvent", _raw_table())
        first.checkpoint()
    with WorkspaceStore(path) as second:
        assert second.count("SecurityIoTRawEvent") == 15


def test_device_rows_are_upserted(store: WorkspaceStore) -> None:
    t0 = AT
    store.append(
        "Device",
        pa.table(
            {
                "DeviceId": ["d1", "d2"],
                "TimeGenerated": [t0, t0],
                "Status": ["enabled", "enabled"],
                "FirstSeen": [t0, t0],
                "LastSeen": [t0, t0],
                "RiskScore": [0.1, 0.2],
            }
        ),
    )
    later = t0 + timedelta(hours=1)
    store.upsert_devices(
        pa.table(
            {
                "DeviceId": ["d1", "d1"],
                "TimeGenerated": [later, later],
                "FirstSeen": [later, later],
                "LastSeen": [later, later],
                "RiskScore": [0.5, 0.9],
                "Status": [None, None],
            }
        )
    )
    cursor = store.query_cursor()
    rows = cursor.execute(
        "SELECT DeviceId, Status, FirstSeen, LastSeen, RiskScore, Type FROM Device ORDER BY 1"
    ).fetchall()
    cursor.close()
    assert [(r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows] == [
        ("d1", "enabled", t0, later, 0.9, "Device"),
        ("d2", "enabled", t0, t0, 0.2, "Device"),
    ]


def test_sinks_keep_one_row_per_alert_and_recommendation(store: WorkspaceStore) -> None:
    alert = AlertRow(
        time_generated=AT,
        system_alert_id="a-1",
        alert_name="IoT_Login",
        alert_severity="High",
        device_id="dev-1",
        extended_properties={"DeviceId": "dev-1"},
    )
    assert store.write_alerts([alert, alert]) == 1
    resolved = msgspec.structs.replace(alert, status="Resolved")
    assert store.write_alerts([resolved]) == 1
    rec = RecommendationRow(
        time_generated=AT,
        recommendation_id="r-1",
        recommendation_name="IoT_OpenPorts",
        recommendation_severity="Medium",
        discovered_time_utc=AT,
    )
    assert store.write_recommendations([rec]) == 1
    cursor = store.query_cursor()
    assert cursor.execute(
        "SELECT ExtendedProperties->>'DeviceId', ProviderName, Type, Status FROM SecurityAlert"
    ).fetchall() == [("dev-1", "IoTSecurity", "SecurityAlert", "Resolved")]
    assert cursor.execute(
        "SELECT DiscoveredTimeUTC, RecommendationState FROM SecurityRecommendation"
    ).fetchall() == [(AT, "Active")]
    cursor.close()


def test_the_database_cannot_reach_files_or_change_its_settings(
    store: WorkspaceStore, tmp_path: Path
) -> None:
    (tmp_path / "x.csv").write_text("a\n1\n")
    cursor = store.query_cursor()
    for sql in (
        f"SELECT * FROM read_csv('{tmp_path / 'x.csv'}')",
        f"COPY Device TO '{tmp_path / 'out.csv'}'",
        "SET enable_external_access = true",
        "SET threads = 1",
    ):
        with pytest.raises(duckdb.Error):
            cursor.execute(sql).fetchall()
    cursor.close()
    assert not (tmp_path / "out.csv").exists()


def test_unknown_tables_columns_and_closed_stores_raise_store_errors(
    store: WorkspaceStore,
) -> None:
    with pytest.raises(StoreError, match="no table"):
        store.append("Nope", pa.table({"a": [1]}))
    with pytest.raises(ValueError, match="no column"):
        store.append("DeadLetter", pa.table({"Nope": [1]}))
    with pytest.raises(StoreError, match="cannot write"):
        store.append(
            "DeadLetter",
            pa.table({"DeadLetterId": [None]}, pa.schema([("DeadLetterId", pa.string())])),
        )
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.count("Device")
    assert datetime.now(UTC) > AT


def _many_raw_rows(devices: int, events: int) -> list[pa.Table]:
    """One raw table per device: ``events`` events of every kind each, with distinct ids."""
    tables = []
    for d in range(devices):
        builder = RowBuilder(HUB)
        for _ in range(events):
            builder.add(Entry(0, 0, security_record(every_event(), device=f"dev-{d}")))
        tables.append(builder.build()["SecurityIoTRawEvent"])
    return tables


def test_appends_in_different_lanes_run_in_parallel_and_keep_every_row(tmp_path: Path) -> None:
    import threading  # noqa: PLC0415

    batches = _many_raw_rows(devices=8, events=5)
    expected = sum(t.num_rows for t in batches)
    inserted = [0, 0, 0, 0]
    with WorkspaceStore(tmp_path / "w.duckdb") as store:

        def lane(i: int) -> None:
            # Each lane sends its devices twice, as a redelivery would.
            for table in batches[i::4] * 2:
                inserted[i] += store.append("SecurityIoTRawEvent", table, lane=i)

        threads = [threading.Thread(target=lane, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sum(inserted) == expected
        assert store.count("SecurityIoTRawEvent") == expected
        store.checkpoint()
    with WorkspaceStore(tmp_path / "w.duckdb") as again:
        assert again.count("SecurityIoTRawEvent") == expected
        cursor = again.query_cursor()
        (distinct,) = cursor.execute(
            'SELECT count(DISTINCT "IoTRawEventId") FROM "SecurityIoTRawEvent"'
        ).fetchone() or (0,)
        cursor.close()
        assert distinct == expected


def test_a_closed_store_refuses_appends_in_any_lane(tmp_path: Path) -> None:
    store = WorkspaceStore(tmp_path / "w.duckdb")
    raw = _raw_table()
    assert store.append("SecurityIoTRawEvent", raw, lane=3) == 15
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.append("SecurityIoTRawEvent", raw, lane=3)
    with pytest.raises(StoreError, match="closed"):
        store.append("SecurityIoTRawEvent", raw, lane=4)


def _with(raw: pa.Table, column: str, value: object) -> pa.Table:
    index = raw.schema.get_field_index(column)
    return raw.set_column(
        index, column, pa.array([value] * raw.num_rows, raw.schema.field(index).type)
    )


def _new_ids(raw: pa.Table) -> pa.Table:
    ids = [str(uuid.uuid4()) for _ in range(raw.num_rows)]
    return raw.set_column(raw.schema.get_field_index("EventId"), "EventId", pa.array(ids))


def _sources(store: WorkspaceStore) -> int:
    cursor = store.query_cursor()
    try:
        sql = 'SELECT count(*) FROM "_SecurityIoTRawEventSources"'
        (n,) = cursor.execute(sql).fetchone() or (0,)
    finally:
        cursor.close()
    return int(n)


def _view_sources(store: WorkspaceStore) -> list[tuple[object, ...]]:
    cursor = store.query_cursor()
    try:
        names = ", ".join(f'"{name}"' for name in SOURCE_COLUMNS)
        return cursor.execute(
            f'SELECT "IoTRawEventId", {names} FROM "SecurityIoTRawEvent" ORDER BY 1'
        ).fetchall()
    finally:
        cursor.close()


def _expected_sources(*tables: pa.Table) -> list[tuple[object, ...]]:
    rows: list[tuple[object, ...]] = []
    for table in tables:
        events, indexes = table.column("EventId").to_pylist(), table.column("RowIndex").to_pylist()
        ids = [f"{event}:{row}" for event, row in zip(events, indexes, strict=True)]
        columns = [table.column(name).to_pylist() for name in SOURCE_COLUMNS]
        rows.extend(zip(ids, *columns, strict=True))
    return sorted(rows, key=lambda row: str(row[0]))


def test_agent_and_hub_columns_are_stored_once_per_source_and_read_back(
    store: WorkspaceStore,
) -> None:
    raw = _raw_table()
    assert raw.column("ModuleId").null_count == raw.num_rows  # a null is part of the source
    assert store.append("SecurityIoTRawEvent", raw) == 15
    assert _sources(store) == 1
    # The agent upgraded: new events carry the new version, old ones keep theirs.
    upgraded = _with(_shifted(raw, timedelta(minutes=5)), "AgentVersion", "2.2.0")
    upgraded = _new_ids(upgraded)
    moved = _new_ids(_with(_with(raw, "DeviceId", "dev-2"), "ModuleId", "azureiotsecurity"))
    assert store.append("SecurityIoTRawEvent", pa.concat_tables([upgraded, moved])) == 30
    assert store.append("SecurityIoTRawEvent", pa.concat_tables([raw, upgraded, moved])) == 0
    assert _sources(store) == 3
    assert _view_sources(store) == _expected_sources(raw, upgraded, moved)


def test_a_source_stored_twice_does_not_double_the_rows(store: WorkspaceStore) -> None:
    # Two lanes adding the same new source at once would each store it: the rows must still
    # appear once, with that source's values.
    raw = _raw_table()
    store.append("SecurityIoTRawEvent", raw.slice(0, 5))
    cursor = store.query_cursor()
    cursor.execute(
        'INSERT INTO "_SecurityIoTRawEventSources"'
        ' SELECT "SourceKey" + 100, * EXCLUDE ("SourceKey") FROM "_SecurityIoTRawEventSources"'
    )
    cursor.close()
    assert _sources(store) == 2
    assert store.append("SecurityIoTRawEvent", raw) == 10
    assert store.count("SecurityIoTRawEvent") == 15
    assert _view_sources(store) == _expected_sources(raw)


def test_a_workspace_of_the_older_raw_layout_is_upgraded_when_opened(tmp_path: Path) -> None:
    # Before source keys, every row held the agent and hub columns itself.
    path = tmp_path / "w.duckdb"
    raw = _raw_table()
    kinds = {
        pa.string(): "VARCHAR",
        pa.int16(): "SMALLINT",
        pa.int32(): "INTEGER",
        pa.int64(): "BIGINT",
        pa.bool_(): "BOOLEAN",
    }
    columns = ", ".join(
        f'"{field.name}" '
        + ("UUID" if field.name == "EventId" else kinds.get(field.type, "TIMESTAMPTZ"))
        for field in raw.schema
    )
    old = duckdb.connect(str(path))
    old.execute(f'CREATE TABLE "_SecurityIoTRawEventRows" ({columns})')
    old.register("staged", raw)
    old.execute('INSERT INTO "_SecurityIoTRawEventRows" SELECT * FROM staged')
    old.execute('CREATE VIEW "SecurityIoTRawEvent" AS SELECT * FROM "_SecurityIoTRawEventRows"')
    old.close()
    with WorkspaceStore(path) as store:
        assert store.count("SecurityIoTRawEvent") == 15
        assert _sources(store) == 1
        assert _view_sources(store) == _expected_sources(raw)
        assert store.append("SecurityIoTRawEvent", raw) == 0  # still idempotent
        cursor = store.query_cursor()
        (agent,) = cursor.execute(
            "SELECT DISTINCT EventDetails->>'AgentId' FROM SecurityIoTRawEvent"
        ).fetchone() or ("",)
        cursor.close()
        assert agent == raw.column("AgentId")[0].as_py()


def test_retention_of_raw_events_drops_the_sources_no_row_uses(store: WorkspaceStore) -> None:
    raw = _raw_table()
    old = _shifted(_with(raw, "DeviceId", "dev-gone"), timedelta(days=-400))
    store.append("SecurityIoTRawEvent", pa.concat_tables([raw, old]))
    assert _sources(store) == 2
    assert store.delete_older_than("SecurityIoTRawEvent", AT - timedelta(days=30)) == 15
    assert _sources(store) == 1
    assert _view_sources(store) == _expected_sources(raw)
    # The kept source is still used by new appends of its agent.
    assert store.append("SecurityIoTRawEvent", _new_ids(raw)) == 15
    assert _sources(store) == 1
