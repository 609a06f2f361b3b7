"""Security messages with one event of every kind, as the hub writes them to the durable log."""

from __future__ import annotations

from datetime import UTC, datetime

from iotsec.schema import (
    ConfigurationError,
    ConfigurationErrorEvent,
    ConnectedHardware,
    ConnectedHardwareEvent,
    ConnectionCreate,
    ConnectionCreateEvent,
    Diagnostic,
    DiagnosticEvent,
    DroppedEventsStatistics,
    DroppedEventsStatisticsEvent,
    Event,
    FirewallConfiguration,
    FirewallConfigurationEvent,
    ListeningPorts,
    ListeningPortsEvent,
    LocalUsers,
    LocalUsersEvent,
    Login,
    LoginEvent,
    MessageStatistics,
    MessageStatisticsEvent,
    OSBaselineEvent,
    ProcessCreate,
    ProcessCreateEvent,
    ProcessTerminate,
    ProcessTerminateEvent,
    SecurityMessage,
    SystemInformation,
    SystemInformationEvent,
    encode_message,
)
from iotsec.stream import Record
from iotsec.workspace.rows import HubIdentity

AT = datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)
AGENT = "b97faf0a-0f57-471f-9dab-46a8e1764946"
HUB = HubIdentity(
    "/subscriptions/sub-1/resourceGroups/rg/providers/Microsoft.Devices/IotHubs/Hub-1"
)


def every_event(at: datetime = AT) -> list[Event]:
    """One event of each of the 14 kinds; OSBaseline is empty (all checks passed)."""
    return [
        ProcessCreateEvent.create(
            [
                ProcessCreate(
                    executable="/usr/bin/curl",
                    process_id=42,
                    parent_process_id=1,
                    user_id="0",
                    command_line="curl http://x",
                    user_name="root",
                )
            ],
            at=at,
        ),
        ProcessTerminateEvent.create(
            [ProcessTerminate(executable="/bin/sh", process_id=43, exit_status=0)], at=at
        ),
        ConnectionCreateEvent.create(
            [
                ConnectionCreate(
                    remote_address="10.0.0.9",
                    remote_port="443",
                    direction="Out",
                    protocol="TCP",
                    process_id=42,
                    executable="/usr/bin/curl",
                    local_address="10.0.0.2",
                    local_port="50000",
                )
            ],
            at=at,
        ),
        LoginEvent.create(
            [
                Login(
                    process_id=7,
                    operation="sshd",
                    executable="/usr/sbin/sshd",
                    result="Fail",
                    user_name="admin",
                    remote_address="203.0.113.5",
                    remote_port="4444",
                )
            ],
            at=at,
        ),
        ListeningPortsEvent.create(
            [
                ListeningPorts(protocol="TCP", local_port="22", local_address="0.0.0.0"),
                ListeningPorts(protocol="UDP", local_port="53"),
            ],
            at=at,
        ),
        FirewallConfigurationEvent.create(
            [FirewallConfiguration(enabled=True, action="Deny", direction="In", protocol="TCP")],
            at=at,
        ),
        LocalUsersEvent.create(
            [
                LocalUsers(
                    user_name="pi", user_id="1000", group_names="pi;sudo", group_ids="1000;27"
                )
            ],
            at=at,
        ),
        ConnectedHardwareEvent.create(
            [
                ConnectedHardware(
                    hardware_category="usb", hardware_sub_category="hid", hardware_name="kbd"
                )
            ],
            at=at,
        ),
        OSBaselineEvent.create([], at=at),
        SystemInformationEvent.create([SystemInformation(os_name="Linux", host_name="h")], at=at),
        DiagnosticEvent.create(
            [Diagnostic(severity="Warning", message="slow", process_id=1, thread_id=2)], at=at
        ),
        ConfigurationErrorEvent.create(
            [
                ConfigurationError(
                    configuration_name="x",
                    error_type="Conflict",
                    used_configuration="y",
                    message="z",
                )
            ],
            at=at,
        ),
        DroppedEventsStatisticsEvent.create(
            [DroppedEventsStatistics(queue="High", collected_events=10, dropped_events=1)], at=at
        ),
        MessageStatisticsEvent.create(
            [MessageStatistics(messages_sent=5, messages_under_4kb=5, total_failed=0)], at=at
        ),
    ]


def security_record(
    events: list[Event],
    *,
    device: str = "dev-1",
    module: str | None = None,
    enqueued: float | None = None,
) -> Record:
    """The durable-log record the hub appends for a security message from ``device``."""
    message = SecurityMessage.create(events, agent_id=AGENT, agent_version="2.1.0")
    headers = {
        "device_id": device,
        "protocol": "mqtt",
        "source_ip": "127.0.0.1",
        "enqueued_time": repr(enqueued if enqueued is not None else AT.timestamp() + 2),
    }
    if module is not None:
        headers["module_id"] = module
    return Record(device, "security", encode_message(message), headers, AT.timestamp() + 2)
