"""Packets to bytes and back, strictly by MQTT 3.1.1; no I/O.

``decode_packet`` takes exactly one packet's bytes; ``iotsec.hub.mqtt.reader.PacketReader``
cuts a byte stream into packets with the same checks. Whatever the input, the only exception
either raises is ``PacketError``, with a reason that names the packet, the field and the rule.

    >>> data = encode(Publish("devices/d1/messages/events/", b"{}", qos=1, packet_id=7))
    >>> data[:2].hex(" ")
    '32 21'
    >>> decode_packet(data) == Publish("devices/d1/messages/events/", b"{}", qos=1, packet_id=7)
    True
    >>> decode_packet(b"\\x80\\x00")
    Traceback (most recent call last):
    ...
    iotsec.hub.errors.PacketError: reserved flags 0x0 on SUBSCRIBE must be 0x2
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any, TypeAlias

from iotsec.hub.errors import PacketError
from iotsec.hub.mqtt.packets import (
    MAX_REMAINING_LENGTH,
    Connack,
    Connect,
    ConnectRefused,
    Disconnect,
    Packet,
    PacketType,
    Pingreq,
    Pingresp,
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    Suback,
    Subscribe,
    Unsuback,
    Unsubscribe,
    Will,
    _shown,
)

__all__ = ["decode_packet", "encode", "encode_puback"]

#: What the decoders read: bytes as given to ``decode_packet``, or a view into the reader's.
Buffer: TypeAlias = bytes | bytearray | memoryview

_U16 = struct.Struct("!H")
_NAMES = {kind.value: kind.name for kind in PacketType}
#: The fixed-header flags of every type but PUBLISH are reserved to these values (Table 2.2).
_FLAGS = {kind: 0x2 if kind in (6, 8, 10) else 0x0 for kind in _NAMES if kind != 3}
#: The types whose remaining length is fixed by the standard.
_BODY_LENGTH = {2: 2, 4: 2, 5: 2, 6: 2, 7: 2, 11: 2, 12: 0, 13: 0, 14: 0}
#: Versions a CONNECT may ask for, to name in the refusal.
_VERSIONS = {("MQIsdp", 3): "MQTT 3.1", ("MQTT", 5): "MQTT 5"}

# == encoding =================================================================================


def _encode_length(value: int) -> bytes:
    """The remaining-length varint: seven bits a byte, low group first, the fewest bytes."""
    if value < 0x80:
        return bytes((value,))
    if value > MAX_REMAINING_LENGTH:
        raise PacketError(f"remaining length {value} is over MQTT's {MAX_REMAINING_LENGTH}")
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _string(text: str) -> bytes:
    raw = text.encode("utf-8")  # the packet values have checked it encodes, within 65535 bytes
    return _U16.pack(len(raw)) + raw


def _binary(data: bytes) -> bytes:
    return _U16.pack(len(data)) + data


def _encode_connect(packet: Connect) -> tuple[int, list[bytes]]:
    flags = 0x02 if packet.clean_session else 0
    parts = [b"\x00\x04MQTT\x04", b"", _U16.pack(packet.keepalive), _string(packet.client_id)]
    if packet.will is not None:
        will = packet.will
        flags |= 0x04 | will.qos << 3 | (0x20 if will.retain else 0)
        parts += (_string(will.topic), _binary(will.payload))
    if packet.username is not None:
        flags |= 0x80
        parts.append(_string(packet.username))
    if packet.password is not None:
        flags |= 0x40
        parts.append(_binary(packet.password))
    parts[1] = bytes((flags,))
    return 0x10, parts


def _encode_publish(packet: Publish) -> tuple[int, list[bytes]]:
    first = 0x30 | packet.dup << 3 | packet.qos << 1 | packet.retain
    if packet.packet_id is None:
        return first, [_string(packet.topic), packet.payload]
    return first, [_string(packet.topic), _U16.pack(packet.packet_id), packet.payload]


def _encode_ack(packet: Puback | Pubrec | Pubrel | Pubcomp | Unsuback) -> tuple[int, list[bytes]]:
    return packet.type << 4 | _FLAGS[packet.type], [_U16.pack(packet.packet_id)]


def _encode_subscribe(packet: Subscribe) -> tuple[int, list[bytes]]:
    parts = [_U16.pack(packet.packet_id)]
    for topic_filter, qos in packet.filters:
        parts += (_string(topic_filter), bytes((qos,)))
    return 0x82, parts


def _encode_unsubscribe(packet: Unsubscribe) -> tuple[int, list[bytes]]:
    return 0xA2, [_U16.pack(packet.packet_id), *map(_string, packet.filters)]


def _encode_empty(packet: Pingreq | Pingresp | Disconnect) -> tuple[int, list[bytes]]:
    return packet.type << 4, []


_ENCODERS: dict[type[Any], Callable[[Any], tuple[int, list[bytes]]]] = {
    Connect: _encode_connect,
    Connack: lambda p: (0x20, [bytes((p.session_present, p.return_code))]),
    Publish: _encode_publish,
    Puback: _encode_ack,
    Pubrec: _encode_ack,
    Pubrel: _encode_ack,
    Pubcomp: _encode_ack,
    Subscribe: _encode_subscribe,
    Suback: lambda p: (0x90, [_U16.pack(p.packet_id), bytes(p.codes)]),
    Unsubscribe: _encode_unsubscribe,
    Unsuback: _encode_ack,
    Pingreq: _encode_empty,
    Pingresp: _encode_empty,
    Disconnect: _encode_empty,
}


def encode(packet: Packet) -> bytes:
    """The bytes of ``packet``; raises ``PacketError`` only for one over MQTT's 256 MB limit."""
    first, parts = _ENCODERS[type(packet)](packet)
    size = sum(map(len, parts))
    return b"".join((bytes((first,)), _encode_length(size), *parts))


def encode_puback(packet_id: int) -> bytes:
    """``encode(Puback(packet_id))`` for the id of a decoded PUBLISH, which is known valid.

    >>> encode_puback(258) == encode(Puback(258))
    True
    """
    return _PUBACK_HEADER + packet_id.to_bytes(2, "big")


_PUBACK_HEADER = bytes((0x40, 2))


# == the fixed header =========================================================================


def _check_first_byte(first: int) -> int:
    """The packet type in ``first``, once its flags are checked against Table 2.2."""
    kind = first >> 4
    flags = first & 0x0F
    if kind == 3:
        qos = flags >> 1 & 3
        if qos == 3:  # MQTT-3.3.1-4
            raise PacketError("PUBLISH QoS 3 is invalid; QoS is 0, 1 or 2")
        if qos == 0 and flags & 0x08:  # MQTT-3.3.1-2
            raise PacketError("QoS 0 PUBLISH must not set DUP")
        return kind
    expected = _FLAGS.get(kind)
    if expected is None:
        if kind == 15:
            raise PacketError("packet type 15 (AUTH) is MQTT 5, not 3.1.1")
        raise PacketError("packet type 0 is reserved")
    if flags != expected:  # MQTT-2.2.2-1
        raise PacketError(f"reserved flags {flags:#x} on {_NAMES[kind]} must be {expected:#x}")
    return kind


def _read_length(data: Buffer, start: int, end: int) -> tuple[int, int] | None:
    """(remaining length, fixed header size) of the packet at ``start``; None if cut short."""
    if start + 1 < end and data[start + 1] < 0x80:  # the common one-byte length
        return data[start + 1], 2
    value = 0
    for index in range(1, 5):
        if start + index >= end:
            return None
        byte = data[start + index]
        value |= (byte & 0x7F) << 7 * (index - 1)
        if byte < 0x80:
            # Section 2.2.3's table gives each value one size: a zero last byte is padding.
            if byte == 0:
                raise PacketError(f"remaining length {value} is padded to {index} bytes")
            return value, index + 1
    raise PacketError("remaining length is longer than 4 bytes")


def _check_length(kind: int, remaining: int) -> None:
    expected = _BODY_LENGTH.get(kind)
    if expected is not None and remaining != expected:
        raise PacketError(f"{_NAMES[kind]} remaining length {remaining} must be {expected}")


# == decoding =================================================================================


def _bytes(count: int) -> str:
    return "1 byte" if count == 1 else f"{count} bytes"


def _u16(data: Buffer, pos: int, end: int, what: str) -> int:
    if pos + 2 > end:
        raise PacketError(f"{what} runs past the end of the packet")
    return data[pos] << 8 | data[pos + 1]


def _read_binary(data: Buffer, pos: int, end: int, what: str) -> tuple[Buffer, int]:
    if pos + 2 > end:
        raise PacketError(f"{what} length runs past the end of the packet")
    stop = pos + 2 + (data[pos] << 8 | data[pos + 1])
    if stop > end:
        raise PacketError(f"{what} of {stop - pos - 2} bytes runs past the end of the packet")
    return data[pos + 2 : stop], stop


def _read_string(data: Buffer, pos: int, end: int, what: str) -> tuple[str, int]:
    raw, pos = _read_binary(data, pos, end, what)
    try:
        return str(raw, "utf-8"), pos
    except UnicodeDecodeError as exc:
        at = exc.start
        if raw[at] == 0xED and at + 1 < len(raw) and raw[at + 1] >= 0xA0:  # MQTT-1.5.3-1
            raise PacketError(f"{what} encodes a UTF-16 surrogate at byte {at}") from None
        raise PacketError(f"invalid UTF-8 in {what} at byte {at}") from None


def _decode_connect(first: int, data: Buffer, pos: int, end: int) -> Connect:
    name, pos = _read_string(data, pos, end, "CONNECT protocol name")
    if pos + 4 > end:
        raise PacketError("CONNECT variable header runs past the end of the packet")
    level, flags = data[pos], data[pos + 1]
    keepalive = data[pos + 2] << 8 | data[pos + 3]
    pos += 4
    # The rest of the packet is laid out by the protocol version, so that is checked first;
    # a version the hub does not speak is answered with CONNACK 1 (MQTT-3.1.2-2).
    if name not in ("MQTT", "MQIsdp"):  # MQTT-3.1.2-1: the server may just close
        raise PacketError(f"CONNECT protocol name {_shown(name)} is not 'MQTT'")
    if (name, level) != ("MQTT", 4):
        version = _VERSIONS.get((name, level), "an unknown version")
        raise ConnectRefused(
            f"CONNECT protocol {name!r} level {level} ({version}) is not supported; "
            "the hub speaks MQTT 3.1.1 ('MQTT' level 4)",
            return_code=1,
        )
    if flags & 0x01:  # MQTT-3.1.2-3
        raise PacketError("reserved CONNECT flag (bit 0) is set")
    will_qos = flags >> 3 & 0x03
    if not flags & 0x04 and (will_qos or flags & 0x20):  # MQTT-3.1.2-11, -13, -15
        raise PacketError("CONNECT will QoS or will retain set without the will flag")
    if will_qos == 3:  # MQTT-3.1.2-14
        raise PacketError("CONNECT will QoS 3 is invalid; QoS is 0, 1 or 2")
    if flags & 0x40 and not flags & 0x80:  # MQTT-3.1.2-22
        raise PacketError("CONNECT password flag set without the user name flag")
    client_id, pos = _read_string(data, pos, end, "CONNECT client id")
    will = username = password = None
    if flags & 0x04:
        topic, pos = _read_string(data, pos, end, "CONNECT will topic")
        message, pos = _read_binary(data, pos, end, "CONNECT will message")
        will = Will(topic, bytes(message), will_qos, bool(flags & 0x20))
    if flags & 0x80:
        username, pos = _read_string(data, pos, end, "CONNECT user name")
    if flags & 0x40:
        secret, pos = _read_binary(data, pos, end, "CONNECT password")
        password = bytes(secret)
    if pos != end:
        raise PacketError(f"{_bytes(end - pos)} left over after the CONNECT payload")
    clean_session = bool(flags & 0x02)
    return Connect(client_id, username, password, keepalive, clean_session, will)


def _decode_connack(first: int, data: Buffer, pos: int, end: int) -> Connack:
    if data[pos] & 0xFE:
        raise PacketError(f"reserved CONNACK acknowledge flags {data[pos]:#04x} must be 0")
    return Connack(bool(data[pos]), data[pos + 1])


def _decode_publish(first: int, data: Buffer, pos: int, end: int) -> Publish:
    qos = first >> 1 & 0x03
    topic, pos = _read_string(data, pos, end, "PUBLISH topic")
    packet_id = None
    if qos:
        packet_id = _u16(data, pos, end, "PUBLISH packet id")
        pos += 2
    retain, dup = bool(first & 0x01), bool(first & 0x08)
    return Publish(topic, bytes(data[pos:end]), qos, retain, dup, packet_id)


def _decode_ack(first: int, data: Buffer, pos: int, end: int) -> Packet:
    packet_id = data[pos] << 8 | data[pos + 1]
    return _ACKS[first >> 4](packet_id)


def _decode_subscribe(first: int, data: Buffer, pos: int, end: int) -> Subscribe:
    packet_id = _u16(data, pos, end, "SUBSCRIBE packet id")
    pos += 2
    filters = []
    while pos < end:
        topic_filter, pos = _read_string(data, pos, end, "SUBSCRIBE topic filter")
        if pos == end:
            raise PacketError("SUBSCRIBE topic filter has no requested QoS byte")
        qos = data[pos]
        pos += 1
        if qos & 0xFC:  # MQTT-3.8.3-4
            raise PacketError(f"reserved bits set in SUBSCRIBE requested QoS byte {qos:#04x}")
        filters.append((topic_filter, qos))
    return Subscribe(packet_id, tuple(filters))


def _decode_suback(first: int, data: Buffer, pos: int, end: int) -> Suback:
    packet_id = _u16(data, pos, end, "SUBACK packet id")
    return Suback(packet_id, tuple(data[pos + 2 : end]))


def _decode_unsubscribe(first: int, data: Buffer, pos: int, end: int) -> Unsubscribe:
    packet_id = _u16(data, pos, end, "UNSUBSCRIBE packet id")
    pos += 2
    filters = []
    while pos < end:
        topic_filter, pos = _read_string(data, pos, end, "UNSUBSCRIBE topic filter")
        filters.append(topic_filter)
    return Unsubscribe(packet_id, tuple(filters))


def _decode_empty(first: int, data: Buffer, pos: int, end: int) -> Packet:
    return _EMPTY[first >> 4]


_ACKS: dict[int, Callable[[int], Packet]] = {
    4: Puback,
    5: Pubrec,
    6: Pubrel,
    7: Pubcomp,
    11: Unsuback,
}
_EMPTY: dict[int, Packet] = {12: Pingreq(), 13: Pingresp(), 14: Disconnect()}
_DECODERS: dict[int, Callable[[int, Buffer, int, int], Packet]] = {
    1: _decode_connect,
    2: _decode_connack,
    3: _decode_publish,
    **dict.fromkeys(_ACKS, _decode_ack),
    8: _decode_subscribe,
    9: _decode_suback,
    10: _decode_unsubscribe,
    **dict.fromkeys(_EMPTY, _decode_empty),
}


def _decode_body(data: Buffer, header_size: int, end: int) -> Packet:
    """The packet whose checked fixed header starts ``data`` and whose body ends at ``end``."""
    first = data[0]
    return _DECODERS[first >> 4](first, data, header_size, end)


def _byte_view(data: Buffer) -> memoryview:
    view = memoryview(data)
    return view if view.format == "B" and view.ndim == 1 else view.cast("B")


def decode_packet(data: Buffer) -> Packet:
    """The one packet that is exactly ``data``; raises ``PacketError`` otherwise."""
    if type(data) is not bytes:  # bytes index and slice faster than a view; others are viewed
        data = _byte_view(data)
    end = len(data)
    if not end:
        raise PacketError("no bytes: a packet is at least 2")
    kind = _check_first_byte(data[0])
    length = _read_length(data, 0, end)
    if length is None:
        raise PacketError(f"{_NAMES[kind]} fixed header is cut short")
    remaining, header_size = length
    _check_length(kind, remaining)
    present = end - header_size
    if present < remaining:
        raise PacketError(
            f"{_NAMES[kind]} is truncated: remaining length {remaining}, {present} bytes follow"
        )
    if present > remaining:
        raise PacketError(f"{_bytes(present - remaining)} after the end of the {_NAMES[kind]}")
    return _DECODERS[kind](data[0], data, header_size, end)
