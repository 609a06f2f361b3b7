"""MQTT 3.1.1 control packets as frozen values that are valid once they exist.

Every constructor checks what the OASIS MQTT 3.1.1 standard requires of the packet, so the
decoder (``iotsec.hub.mqtt.codec``) only has to read bytes and the encoder cannot produce a
packet a conforming receiver would refuse. Each refusal is a ``PacketError`` whose reason names
the packet, the field and the rule, e.g. ``PUBLISH topic contains a wildcard '+'``.

    >>> Publish("devices/d1/messages/events/", b"{}", qos=1, packet_id=7).qos
    1
    >>> Publish("devices/+/messages/events/", b"{}")
    Traceback (most recent call last):
    ...
    iotsec.hub.errors.PacketError: PUBLISH topic contains a wildcard '+'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import ClassVar, TypeAlias

from iotsec.hub.errors import PacketError

__all__ = [
    "MAX_REMAINING_LENGTH",
    "Connack",
    "Connect",
    "ConnectRefused",
    "Disconnect",
    "Packet",
    "PacketType",
    "Pingreq",
    "Pingresp",
    "Puback",
    "Pubcomp",
    "Publish",
    "Pubrec",
    "Pubrel",
    "Suback",
    "Subscribe",
    "Unsuback",
    "Unsubscribe",
    "Will",
]

#: The largest remaining length four varint bytes can say (MQTT 3.1.1 section 2.2.3).
MAX_REMAINING_LENGTH = 268_435_455
_MAX_STRING = 0xFFFF  # a UTF-8 string or binary field has a two-byte length prefix
_SUBACK_CODES = frozenset({0x00, 0x01, 0x02, 0x80})


class PacketType(IntEnum):
    """The control packet type, the high nibble of the first byte."""

    CONNECT = 1
    CONNACK = 2
    PUBLISH = 3
    PUBACK = 4
    PUBREC = 5
    PUBREL = 6
    PUBCOMP = 7
    SUBSCRIBE = 8
    SUBACK = 9
    UNSUBSCRIBE = 10
    UNSUBACK = 11
    PINGREQ = 12
    PINGRESP = 13
    DISCONNECT = 14


class ConnectRefused(PacketError):
    """A CONNECT the server answers with a CONNACK refusal before closing the connection.

    ``return_code`` is the CONNACK code the standard asks for: 1 for an unsupported protocol
    level (MQTT-3.1.2-2), 2 for a rejected client id (MQTT-3.1.3-8).
    """

    def __init__(self, reason: str, return_code: int) -> None:
        super().__init__(reason)
        self.return_code = return_code


# == field checks =============================================================================


def _shown(text: str) -> str:
    """``text`` quoted for a reason, cut short: reasons go to the operation log."""
    return repr(text) if len(text) <= 64 else repr(text[:61]) + "..."


def _check_string(text: str, what: str) -> None:
    """A UTF-8 string field: no U+0000, no lone surrogates, at most 65535 bytes encoded."""
    if "\x00" in text:
        raise PacketError(f"{what} contains U+0000")
    if text.isascii():  # O(1) in CPython, and the common case
        size = len(text)
    else:
        try:
            size = len(text.encode("utf-8"))
        except UnicodeEncodeError as exc:
            raise PacketError(
                f"{what} contains the surrogate U+{ord(text[exc.start]):04X}"
            ) from None
    if size > _MAX_STRING:
        raise PacketError(f"{what} is {size} bytes of UTF-8, over the 65535-byte limit")


def _check_binary(data: bytes, what: str) -> None:
    if len(data) > _MAX_STRING:
        raise PacketError(f"{what} is {len(data)} bytes, over the 65535-byte limit")


def _check_topic_name(topic: str, what: str) -> None:
    """A topic name (PUBLISH, will): at least one character and no wildcard (MQTT-4.7)."""
    if not topic:
        raise PacketError(f"{what} is empty")
    for wildcard in "+#":
        if wildcard in topic:
            raise PacketError(f"{what} contains a wildcard '{wildcard}'")
    _check_string(topic, what)


def _check_topic_filter(topic_filter: str, what: str) -> None:
    """A topic filter: '#' only as the whole last level, '+' only as a whole level."""
    if not topic_filter:
        raise PacketError(f"{what} is empty")
    _check_string(topic_filter, what)
    hash_at = topic_filter.find("#")
    if hash_at >= 0:
        if hash_at != len(topic_filter) - 1:
            raise PacketError(f"{what} {_shown(topic_filter)} has '#' before its end")
        if hash_at > 0 and topic_filter[hash_at - 1] != "/":
            raise PacketError(f"{what} {_shown(topic_filter)} has '#' inside a level")
    if "+" in topic_filter and any(
        "+" in level and level != "+" for level in topic_filter.split("/")
    ):
        raise PacketError(f"{what} {_shown(topic_filter)} has '+' inside a level")


def _check_qos(qos: int, what: str) -> None:
    if qos not in (0, 1, 2):
        raise PacketError(f"{what} {qos} is invalid; QoS is 0, 1 or 2")


def _check_packet_id(packet_id: int, kind: str) -> None:
    if not 0 < packet_id <= 0xFFFF:
        raise PacketError(f"packet id {packet_id} on {kind} is invalid; ids are 1..65535")


# == the packets ==============================================================================


@dataclass(frozen=True, slots=True)
class Will:
    """The message a server publishes for a client whose connection ends without DISCONNECT."""

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False

    def __post_init__(self) -> None:
        _check_topic_name(self.topic, "CONNECT will topic")
        _check_binary(self.payload, "CONNECT will message")
        _check_qos(self.qos, "CONNECT will QoS")


@dataclass(frozen=True, slots=True)
class Connect:
    """CONNECT: the first packet of a connection. The password is kept out of ``repr``."""

    type: ClassVar[PacketType] = PacketType.CONNECT

    client_id: str
    username: str | None = None
    password: bytes | None = field(default=None, repr=False)
    keepalive: int = 60
    clean_session: bool = True
    will: Will | None = None

    def __post_init__(self) -> None:
        _check_string(self.client_id, "CONNECT client id")
        if not self.client_id and not self.clean_session:
            raise ConnectRefused(
                "CONNECT with an empty client id must set clean session",
                return_code=2,
            )
        if self.username is not None:
            _check_string(self.username, "CONNECT user name")
        if self.password is not None:
            if self.username is None:
                raise PacketError("CONNECT has a password but no user name")
            _check_binary(self.password, "CONNECT password")
        if not 0 <= self.keepalive <= 0xFFFF:
            raise PacketError(f"CONNECT keep alive {self.keepalive} is outside 0..65535")


@dataclass(frozen=True, slots=True)
class Connack:
    """CONNACK: the server's answer to CONNECT; ``return_code`` 0 accepts, 1..5 refuse."""

    type: ClassVar[PacketType] = PacketType.CONNACK

    session_present: bool
    return_code: int

    def __post_init__(self) -> None:
        if not 0 <= self.return_code <= 5:
            raise PacketError(f"CONNACK return code {self.return_code} is reserved")
        if self.session_present and self.return_code:
            raise PacketError("CONNACK refusing a connection must not set session present")


@dataclass(frozen=True, slots=True)
class Publish:
    """PUBLISH: an application message; ``packet_id`` is present exactly when ``qos`` > 0."""

    type: ClassVar[PacketType] = PacketType.PUBLISH

    topic: str
    payload: bytes = b""
    qos: int = 0
    retain: bool = False
    dup: bool = False
    packet_id: int | None = None

    def __post_init__(self) -> None:
        _check_topic_name(self.topic, "PUBLISH topic")
        _check_qos(self.qos, "PUBLISH QoS")
        if self.qos == 0:
            if self.packet_id is not None:
                raise PacketError("QoS 0 PUBLISH must not carry a packet id")
            if self.dup:
                raise PacketError("QoS 0 PUBLISH must not set DUP")
        elif self.packet_id is None:
            raise PacketError(f"QoS {self.qos} PUBLISH needs a packet id")
        else:
            _check_packet_id(self.packet_id, "PUBLISH")


@dataclass(frozen=True, slots=True)
class Puback:
    """PUBACK: the receiver has taken a QoS 1 PUBLISH."""

    type: ClassVar[PacketType] = PacketType.PUBACK

    packet_id: int

    def __post_init__(self) -> None:
        _check_packet_id(self.packet_id, "PUBACK")


@dataclass(frozen=True, slots=True)
class Pubrec:
    """PUBREC: step 2 of a QoS 2 flow (decoded so the hub can name it; it refuses QoS 2)."""

    type: ClassVar[PacketType] = PacketType.PUBREC

    packet_id: int

    def __post_init__(self) -> None:
        _check_packet_id(self.packet_id, "PUBREC")


@dataclass(frozen=True, slots=True)
class Pubrel:
    """PUBREL: step 3 of a QoS 2 flow."""

    type: ClassVar[PacketType] = PacketType.PUBREL

    packet_id: int

    def __post_init__(self) -> None:
        _check_packet_id(self.packet_id, "PUBREL")


@dataclass(frozen=True, slots=True)
class Pubcomp:
    """PUBCOMP: the last step of a QoS 2 flow."""

    type: ClassVar[PacketType] = PacketType.PUBCOMP

    packet_id: int

    def __post_init__(self) -> None:
        _check_packet_id(self.packet_id, "PUBCOMP")


@dataclass(frozen=True, slots=True)
class Subscribe:
    """SUBSCRIBE: one or more (topic filter, requested QoS) pairs."""

    type: ClassVar[PacketType] = PacketType.SUBSCRIBE

    packet_id: int
    filters: tuple[tuple[str, int], ...]

    def __post_init__(self) -> None:
        _check_packet_id(self.packet_id, "SUBSCRIBE")
        if not self.filters:
            raise PacketError("SUBSCRIBE has no topic filters")
        for topic_filter, qos in self.filters:
            _check_topic_filter(topic_filter, "SUBSCRIBE topic filter")
            _check_qos(qos, "SUBSCRIBE requested QoS")


@dataclass(frozen=True, slots=True)
class Suback:
    """SUBACK: one return code per filter, the granted QoS or 0x80 for a refusal."""

    type: ClassVar[PacketType] = PacketType.SUBACK

    packet_id: int
    codes: tuple[int, ...]

    def __post_init__(self) -> None:
        _check_packet_id(self.packet_id, "SUBACK")
        if not self.codes:
            raise PacketError("SUBACK has no return codes")
        for code in self.codes:
            if code not in _SUBACK_CODES:
                raise PacketError(f"SUBACK return code {code:#04x} is reserved")


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    """UNSUBSCRIBE: one or more topic filters to drop."""

    type: ClassVar[PacketType] = PacketType.UNSUBSCRIBE

    packet_id: int
    filters: tuple[str, ...]

    def __post_init__(self) -> None:
        _check_packet_id(self.packet_id, "UNSUBSCRIBE")
        if not self.filters:
            raise PacketError("UNSUBSCRIBE has no topic filters")
        for topic_filter in self.filters:
            _check_topic_filter(topic_filter, "UNSUBSCRIBE topic filter")


@dataclass(frozen=True, slots=True)
class Unsuback:
    """UNSUBACK: the server has processed an UNSUBSCRIBE."""

    type: ClassVar[PacketType] = PacketType.UNSUBACK

    packet_id: int

    def __post_init__(self) -> None:
        _check_packet_id(self.packet_id, "UNSUBACK")


@dataclass(frozen=True, slots=True)
class Pingreq:
    """PINGREQ: the client's keep-alive."""

    type: ClassVar[PacketType] = PacketType.PINGREQ


@dataclass(frozen=True, slots=True)
class Pingresp:
    """PINGRESP: the server's answer to PINGREQ."""

    type: ClassVar[PacketType] = PacketType.PINGRESP


@dataclass(frozen=True, slots=True)
class Disconnect:
    """DISCONNECT: the client closes cleanly; its will is discarded."""

    type: ClassVar[PacketType] = PacketType.DISCONNECT


Packet: TypeAlias = (
    Connect
    | Connack
    | Publish
    | Puback
    | Pubrec
    | Pubrel
    | Pubcomp
    | Subscribe
    | Suback
    | Unsubscribe
    | Unsuback
    | Pingreq
    | Pingresp
    | Disconnect
)
