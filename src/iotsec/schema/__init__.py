"""The security message contract: ASC security message v1.0 as typed values, and its codec.

>>> from iotsec.schema import decode_message, encode_message
>>> raw = (b'{"AgentVersion":"0.0.5","AgentId":"b97faf0a-0f57-471f-9dab-46a8e1764946",'
...        b'"MessageSchemaVersion":"1.0","Events":[{"Id":"0d9c2f63-5b8e-4a43-9d2e-8a1f0f6c1e21",'
...        b'"TimestampLocal":"2019-06-02 10:00:05Z","TimestampUTC":"2019-06-02 07:00:05Z",'
...        b'"Category":"Periodic","Name":"ListeningPorts","EventType":"Security",'
...        b'"IsEmpty":false,"PayloadSchemaVersion":"1.0",'
...        b'"Payload":[{"Protocol":"tcp","LocalPort":"22"}]}]}')
>>> event = decode_message(raw).message.events[0]
>>> event.payload[0].protocol, event.timestamp_local.isoformat()
('TCP', '2019-06-02T10:00:05+03:00')
"""

from iotsec.schema.codec import (
    MAX_MESSAGE_BYTES,
    Decoded,
    ErrorPolicy,
    RejectedEvent,
    decode_event,
    decode_message,
    encode_message,
)
from iotsec.schema.defender import DefenderReport, agent_id_for_thing, decode_defender_report
from iotsec.schema.documents import iter_documents
from iotsec.schema.errors import (
    DefenderReportInvalid,
    FieldIssue,
    MessageInvalid,
    MessageTooLarge,
    SchemaError,
)
from iotsec.schema.events import (
    EVENT_TYPES,
    Aggregation,
    ConfigurationErrorEvent,
    ConnectedHardwareEvent,
    ConnectionCreateEvent,
    DiagnosticEvent,
    DroppedEventsStatisticsEvent,
    Event,
    FirewallConfigurationEvent,
    ListeningPortsEvent,
    LocalUsersEvent,
    LoginEvent,
    MessageStatisticsEvent,
    OSBaselineEvent,
    ProcessCreateEvent,
    ProcessTerminateEvent,
    SystemInformationEvent,
    aggregation_of,
)
from iotsec.schema.export import json_schema, json_schema_text
from iotsec.schema.message import SECURITY_INTERFACE_ID, SecurityMessage
from iotsec.schema.payloads import (
    ConfigurationError,
    ConnectedHardware,
    ConnectionCreate,
    Diagnostic,
    DroppedEventsStatistics,
    FirewallConfiguration,
    ListeningPorts,
    LocalUsers,
    Login,
    MessageStatistics,
    OSBaseline,
    Payload,
    ProcessCreate,
    ProcessTerminate,
    SystemInformation,
)

__all__ = [
    "EVENT_TYPES",
    "MAX_MESSAGE_BYTES",
    "SECURITY_INTERFACE_ID",
    "Aggregation",
    "ConfigurationError",
    "ConfigurationErrorEvent",
    "ConnectedHardware",
    "ConnectedHardwareEvent",
    "ConnectionCreate",
    "ConnectionCreateEvent",
    "Decoded",
    "DefenderReport",
    "DefenderReportInvalid",
    "Diagnostic",
    "DiagnosticEvent",
    "DroppedEventsStatistics",
    "DroppedEventsStatisticsEvent",
    "ErrorPolicy",
    "Event",
    "FieldIssue",
    "FirewallConfiguration",
    "FirewallConfigurationEvent",
    "ListeningPorts",
    "ListeningPortsEvent",
    "LocalUsers",
    "LocalUsersEvent",
    "Login",
    "LoginEvent",
    "MessageInvalid",
    "MessageStatistics",
    "MessageStatisticsEvent",
    "MessageTooLarge",
    "OSBaseline",
    "OSBaselineEvent",
    "Payload",
    "ProcessCreate",
    "ProcessCreateEvent",
    "ProcessTerminate",
    "ProcessTerminateEvent",
    "RejectedEvent",
    "SchemaError",
    "SecurityMessage",
    "SystemInformation",
    "SystemInformationEvent",
    "agent_id_for_thing",
    "aggregation_of",
    "decode_defender_report",
    "decode_event",
    "decode_message",
    "encode_message",
    "iter_documents",
    "json_schema",
    "json_schema_text",
]
