"""The IoT Hub device protocol conventions, without I/O, shared by the SDK and the hub.

SAS tokens (``sas``), MQTT client ids, user names, topics and property bags (``topics``), and the
message value both sides exchange (``message``).
"""

from iotsec.protocol.errors import ProtocolError, SasTokenError, TopicError
from iotsec.protocol.message import Message
from iotsec.protocol.sas import (
    SasToken,
    SasTokenProvider,
    compute_signature,
    generate_sas_token,
    parse_sas_token,
    resource_uri,
)

__all__ = [
    "Message",
    "ProtocolError",
    "SasToken",
    "SasTokenError",
    "SasTokenProvider",
    "TopicError",
    "compute_signature",
    "generate_sas_token",
    "parse_sas_token",
    "resource_uri",
]
