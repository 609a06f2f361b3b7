"""The device SDK: connect a device to an iotsec hub and send security messages.

>>> from iotsec.sdk import ConnectionString
>>> ConnectionString.parse("HostName=hub.example.net;DeviceId=dev1;x509=true").auth
'x509'
"""

from typing import TYPE_CHECKING, Any

from iotsec.protocol.message import Message
from iotsec.protocol.sas import (
    SasToken,
    SasTokenProvider,
    compute_signature,
    generate_sas_token,
    parse_sas_token,
    resource_uri,
)
from iotsec.sdk.client import AsyncDeviceClient, DeviceClient, TransportKind, make_transport
from iotsec.sdk.connection_string import ConnectionString, DeviceAuth
from iotsec.sdk.core import build_security_messages
from iotsec.sdk.errors import (
    AuthError,
    ClientClosedError,
    ConnectionStringError,
    NotSupportedError,
    RejectedError,
    SasTokenError,
    SdkError,
    ThrottledError,
    TopicError,
    TransportError,
)
from iotsec.sdk.memory import MemoryTransport
from iotsec.sdk.retry import RetryPolicy, is_retryable
from iotsec.sdk.transport import DesiredHandler, MessageHandler, Transport
from iotsec.sdk.twin import merge_patch

if TYPE_CHECKING:
    from iotsec.sdk.https import API_VERSION, HttpsTransport
    from iotsec.sdk.mqtt import MqttTransport


def __getattr__(name: str) -> Any:
    # Each transport loads its library (paho-mqtt, httpx: about 15 MB resident), so it is
    # imported only when asked for: a device on MQTT never loads httpx.
    if name == "MqttTransport":
        from iotsec.sdk.mqtt import MqttTransport  # noqa: PLC0415

        return MqttTransport
    if name in ("HttpsTransport", "API_VERSION"):
        from iotsec.sdk import https  # noqa: PLC0415

        return getattr(https, name)
    raise AttributeError(f"module 'iotsec.sdk' has no attribute {name!r}")


__all__ = [
    "API_VERSION",
    "AsyncDeviceClient",
    "AuthError",
    "ClientClosedError",
    "ConnectionString",
    "ConnectionStringError",
    "DesiredHandler",
    "DeviceAuth",
    "DeviceClient",
    "HttpsTransport",
    "MemoryTransport",
    "Message",
    "MessageHandler",
    "MqttTransport",
    "NotSupportedError",
    "RejectedError",
    "RetryPolicy",
    "SasToken",
    "SasTokenError",
    "SasTokenProvider",
    "SdkError",
    "ThrottledError",
    "TopicError",
    "Transport",
    "TransportError",
    "TransportKind",
    "build_security_messages",
    "compute_signature",
    "generate_sas_token",
    "is_retryable",
    "make_transport",
    "merge_patch",
    "parse_sas_token",
    "resource_uri",
]
