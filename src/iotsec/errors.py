"""The root of every exception iotsec raises on purpose.

Each component has one base class under the root, and its own tree below that::

    IotsecError
    +-- SchemaError                  iotsec.schema: the security message contract
    |   +-- MessageTooLarge          refused before parsing (over 262,144 bytes)
    |   +-- MessageInvalid           failed to decode; carries FieldIssue(path, reason) items
    |   +-- DefenderReportInvalid    an AWS Device Defender metrics report failed to decode
    +-- ProtocolError                iotsec.protocol: IoT Hub conventions shared by SDK and hub
    |   +-- SasTokenError            a malformed SAS token, or a key that cannot sign
    |   +-- TopicError               a topic, username or client id off the IoT Hub conventions
    +-- SdkError                     iotsec.sdk: the device client
    |   +-- ConnectionStringError    a connection string (or cert file) that cannot be used
    |   +-- NotSupportedError        not possible on this transport (push over HTTPS)
    |   +-- AuthError                the hub refused our credentials (never retried)
    |   +-- ThrottledError           the hub asked us to slow down (429 / quota)
    |   +-- RejectedError            the hub refused the message, with its reason
    |   +-- TransportError           the network or TLS failed (retried)
    |   +-- ClientClosedError        the client was used after close()
    +-- AgentError                   iotsec.agent: the device security agent
    |   +-- HostReadError            a host file or command that cannot be read
    |   +-- ParseError               host data that does not parse (source and line named)
    |   +-- AgentConfigError         agent configuration that cannot be used
    |   +-- QueueError               the on-device queue's storage failed
    +-- AnalyticsError               iotsec.analytics: detections, alerts, recommendations
    |   +-- RuleError                a rule file that cannot be used (file, line, column)
    |   +-- FeedError                a threat-intelligence feed that cannot be configured or read
    |   +-- OutputError              a webhook or syslog output that failed after retries
    |   +-- StateError               the analytics state store failed
    +-- StreamError                  iotsec.stream: the durable log between hub and analytics
        +-- RecordInvalid            a record that cannot be built (empty key, non-bytes body)
        +-- InvalidRequest           a partition out of range, a negative offset, a bad limit
        +-- LogError                 the log's storage failed (sqlite3/OSError); carries the path
            +-- LogClosed            the log was used after close()

Errors carry structured context (JSON path, device id, status) as attributes, and foreign
exceptions (OSError, ssl.SSLError, httpx errors) are translated where they are met.
"""

from __future__ import annotations


class IotsecError(Exception):
    """Base class of every error iotsec raises on purpose."""
