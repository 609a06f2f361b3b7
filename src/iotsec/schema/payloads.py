"""The payload rows of the 14 ASC security message v1.0 events.

Field names follow the wire (PascalCase, with the schema's own spellings such as
``OSName`` and ``MessagesUnder4KB``); attributes are snake_case. Optional fields are ``None``
when absent and are omitted on encode. Every row may carry ``ExtraDetails``, a map of string to
string.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

__all__ = [
    "Action",
    "BaselineResult",
    "BaselineSeverity",
    "ConfigurationError",
    "ConfigurationErrorType",
    "ConnectedHardware",
    "ConnectionCreate",
    "Diagnostic",
    "DiagnosticSeverity",
    "Direction",
    "DroppedEventsStatistics",
    "FirewallConfiguration",
    "Guid",
    "ListeningPorts",
    "LocalUsers",
    "Login",
    "LoginResult",
    "MessageStatistics",
    "OSBaseline",
    "Payload",
    "ProcessCreate",
    "ProcessTerminate",
    "QueueName",
    "SystemInformation",
]

Guid = Annotated[
    str,
    msgspec.Meta(min_length=36, max_length=36, examples=["9c647395-b913-4997-a732-a7fe7303b649"]),
]
Direction = Literal["In", "Out"]
LoginResult = Literal["Fail", "Success"]
Action = Literal["Allow", "Deny", "Other"]
BaselineResult = Literal["Pass", "Fail", "Err"]
BaselineSeverity = Literal["Critical", "Important", "Warning", "Informational"]
DiagnosticSeverity = Literal["Fatal", "Error", "Warning", "Information", "Debug"]
ConfigurationErrorType = Literal["TypeMismatch", "NotOptimal", "Conflict"]
# "Operational" is outside Microsoft's enum, but the C# agent sends it (reference Appendix B.3).
QueueName = Literal["High", "Low", "Operational"]


class _Row(
    msgspec.Struct,
    frozen=True,
    gc=False,
    kw_only=True,
    forbid_unknown_fields=True,
    omit_defaults=True,
    rename="pascal",
):
    extra_details: dict[str, str] = msgspec.field(default_factory=dict)


class ProcessCreate(_Row, frozen=True, kw_only=True):
    """A process started (Triggered, Security)."""

    executable: str
    process_id: int
    parent_process_id: int
    user_id: str
    command_line: str
    user_name: str | None = None


class ProcessTerminate(_Row, frozen=True, kw_only=True):
    """A process ended (Triggered, Security)."""

    executable: str
    process_id: int
    exit_status: int


class ConnectionCreate(_Row, frozen=True, kw_only=True):
    """A network connection was made or accepted (Triggered, Security)."""

    remote_address: str
    # The C agent blanks the source port of aggregated inbound connections with the integer 0;
    # decode normalizes it to "" as the C# agent sends it (reference Appendix B.2).
    remote_port: str | Literal[0]
    direction: Direction
    protocol: str
    process_id: int
    executable: str
    local_address: str | None = None
    local_port: str | None = None
    user_id: str | None = None
    command_line: str | None = None


class Login(_Row, frozen=True, kw_only=True):
    """A login attempt, successful or not (Triggered, Security). UserId or UserName is required."""

    process_id: int
    operation: str
    executable: str
    result: LoginResult
    user_id: str | None = None
    user_name: str | None = None
    remote_address: str | None = None
    remote_port: str | None = None
    local_port: str | None = None


class ListeningPorts(_Row, frozen=True, kw_only=True):
    """A listening or bound socket (Periodic, Security)."""

    protocol: str
    local_port: str
    local_address: str | None = None
    remote_address: str | None = None
    remote_port: str | None = None


class FirewallConfiguration(_Row, frozen=True, kw_only=True):
    """One firewall rule or chain policy (Periodic, Security)."""

    enabled: bool
    action: Action
    priority: int | None = None
    direction: Direction | None = None
    chain_name: str | None = None
    application: str | None = None
    source_address: str | None = None
    destination_address: str | None = None
    source_port: str | None = None
    destination_port: str | None = None
    protocol: str | None = None


class LocalUsers(_Row, frozen=True, kw_only=True):
    """A local account and its groups, ';'-joined (Periodic, Security)."""

    user_name: str
    user_id: str
    group_names: str
    group_ids: str


class ConnectedHardware(_Row, frozen=True, kw_only=True):
    """A piece of connected hardware (Periodic, Security)."""

    hardware_category: str
    hardware_sub_category: str
    hardware_name: str


class OSBaseline(_Row, frozen=True, kw_only=True):
    """One OS baseline check that did not pass (Periodic, Security)."""

    description: str
    cce_id: str
    result: BaselineResult
    error: str
    severity: BaselineSeverity


class SystemInformation(_Row, frozen=True, kw_only=True):
    """Operating system and hardware facts (Periodic, Security); every field optional."""

    os_name: str | None = msgspec.field(default=None, name="OSName")
    os_version: str | None = msgspec.field(default=None, name="OSVersion")
    os_vendor: str | None = msgspec.field(default=None, name="OSVendor")
    os_architecture: str | None = None
    host_name: str | None = None
    bios_version: str | None = msgspec.field(default=None, name="BIOSVersion")
    boot_device: str | None = None
    total_physical_memory_kb: int | None = msgspec.field(
        default=None, name="TotalPhysicalMemoryInKB"
    )
    free_physical_memory_kb: int | None = msgspec.field(default=None, name="FreePhysicalMemoryInKB")
    total_virtual_memory_kb: int | None = msgspec.field(default=None, name="TotalVirtualMemoryInKB")
    free_virtual_memory_kb: int | None = msgspec.field(default=None, name="FreeVirtualMemoryInKB")


class Diagnostic(_Row, frozen=True, kw_only=True):
    """An agent diagnostic log line (Triggered, Diagnostic)."""

    severity: DiagnosticSeverity
    message: str
    process_id: int
    thread_id: int
    correlation_id: Guid | None = None


class ConfigurationError(_Row, frozen=True, kw_only=True):
    """The agent could not use a configuration value (Triggered, Operational)."""

    configuration_name: str
    error_type: ConfigurationErrorType
    used_configuration: str
    message: str


class DroppedEventsStatistics(_Row, frozen=True, kw_only=True):
    """Events collected and dropped per queue (Periodic, Operational)."""

    queue: QueueName
    collected_events: int
    dropped_events: int


class MessageStatistics(_Row, frozen=True, kw_only=True):
    """Messages sent and failed (Periodic, Operational)."""

    messages_sent: int
    messages_under_4kb: int = msgspec.field(name="MessagesUnder4KB")
    total_failed: int


Payload = (
    ProcessCreate
    | ProcessTerminate
    | ConnectionCreate
    | Login
    | ListeningPorts
    | FirewallConfiguration
    | LocalUsers
    | ConnectedHardware
    | OSBaseline
    | SystemInformation
    | Diagnostic
    | ConfigurationError
    | DroppedEventsStatistics
    | MessageStatistics
)
