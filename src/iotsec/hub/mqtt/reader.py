"""Cutting a connection's byte stream into packets, and the hub's rules on what a device sends.

``PacketReader`` is fed whatever the socket returned and gives back the packets completed so
far; it holds at most one incomplete packet. Everything the fixed header can tell (a reserved
type or flag, a first packet that is not CONNECT, a remaining length over the cap) is refused
as soon as its byte arrives, so an announced 256 MB packet costs five bytes of buffer.

    >>> reader = PacketReader(expect_connect=True)
    >>> reader.feed(bytes.fromhex("10 0d 00 04 4d 51 54 54 04 02 00 3c 00 01"))
    []
    >>> reader.feed(b"d"), reader.buffered
    ([Connect(client_id='d', username=None, keepalive=60, clean_session=True, will=None)], 0)
    >>> reader.feed(bytes.fromhex("30 ff ff ff 7f"))
    Traceback (most recent call last):
    ...
    iotsec.hub.errors.PacketError: remaining length 268435455 over the 263168-byte cap
"""

from __future__ import annotations

from iotsec.hub.errors import PacketError
from iotsec.hub.mqtt.codec import (
    _NAMES,
    _byte_view,
    _check_first_byte,
    _check_length,
    _decode_body,
    _read_length,
)
from iotsec.hub.mqtt.packets import (
    MAX_REMAINING_LENGTH,
    Connack,
    Packet,
    PacketType,
    Pingresp,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    Suback,
    Unsuback,
)

__all__ = ["DEFAULT_MAX_PACKET_BYTES", "PacketReader", "check_client_packet"]

#: IoT Hub's 256 KB device-to-cloud message, plus room for the topic and its properties.
DEFAULT_MAX_PACKET_BYTES = 262_144 + 1024
_CONNECT = PacketType.CONNECT


class PacketReader:
    """An incremental decoder for one connection; a ``PacketError`` ends it for good.

    Args:
        max_packet_bytes: the largest remaining length accepted (the packet less its 2 to 5
            byte fixed header); a longer one is refused as soon as its length is read.
        expect_connect: the server's side of a connection: the first packet must be CONNECT
            (MQTT-3.1.0-1) and a second CONNECT is a protocol violation (MQTT-3.1.0-2).
    """

    __slots__ = ("_buffer", "_cap", "_connected", "_expect_connect", "_failure", "_header")

    def __init__(
        self, max_packet_bytes: int = DEFAULT_MAX_PACKET_BYTES, *, expect_connect: bool = False
    ) -> None:
        if not 0 <= max_packet_bytes <= MAX_REMAINING_LENGTH:
            raise ValueError(f"max_packet_bytes {max_packet_bytes} is outside 0..268435455")
        self._cap = max_packet_bytes
        self._expect_connect = expect_connect
        self._connected = False
        self._buffer = bytearray()  # the incomplete packet, fixed header included
        self._header: tuple[int, int] | None = None  # its (header size, total size), once known
        self._failure: PacketError | None = None

    @property
    def buffered(self) -> int:
        """Bytes held for an incomplete packet."""
        return len(self._buffer)

    def feed(self, data: bytes | bytearray | memoryview) -> list[Packet]:
        """The packets that ``data`` completes, in order; raises ``PacketError`` on the first
        malformed one (packets before it in the same ``data`` are dropped with the connection).
        """
        if self._failure is not None:
            raise self._failure
        try:
            return self._feed(_byte_view(data))
        except PacketError as exc:
            self._failure = exc
            self._buffer = bytearray()
            raise

    def _feed(self, view: memoryview) -> list[Packet]:
        packets: list[Packet] = []
        pos, end = 0, len(view)
        if self._buffer:
            buffer = self._buffer
            # A fixed header split across reads: take its bytes one at a time (four at most).
            while self._header is None and pos < end:
                buffer.append(view[pos])
                pos += 1
                self._header = self._read_header(buffer, 0, len(buffer))
            if self._header is None:
                return packets
            header_size, total = self._header
            take = min(total - len(buffer), end - pos)
            buffer += view[pos : pos + take]
            pos += take
            if len(buffer) < total:
                return packets
            packets.append(self._decode(memoryview(buffer), header_size, total))
            self._buffer, self._header = bytearray(), None
        while pos < end:
            header = self._read_header(view, pos, end)
            if header is None or header[1] > end - pos:
                # Bounded: at most 4 bytes without a header, else a packet within the cap.
                self._buffer, self._header = bytearray(view[pos:end]), header
                break
            header_size, total = header
            packets.append(self._decode(view[pos : pos + total], header_size, total))
            pos += total
        return packets

    def _read_header(
        self, data: memoryview | bytearray, start: int, end: int
    ) -> tuple[int, int] | None:
        """(header size, total size) of the packet at ``start``, checked; None if cut short."""
        kind = _check_first_byte(data[start])
        if self._expect_connect:
            if not self._connected and kind != _CONNECT:
                raise PacketError(f"first packet must be CONNECT, not {_NAMES[kind]}")
            if self._connected and kind == _CONNECT:
                raise PacketError("second CONNECT on the connection")
        length = _read_length(data, start, end)
        if length is None:
            return None
        remaining, header_size = length
        _check_length(kind, remaining)
        if remaining > self._cap:
            raise PacketError(f"remaining length {remaining} over the {self._cap}-byte cap")
        return header_size, header_size + remaining

    def _decode(self, data: memoryview, header_size: int, total: int) -> Packet:
        packet = _decode_body(data, header_size, total)
        if packet.type == _CONNECT:
            self._connected = True
        return packet


_SERVER_TO_CLIENT = (Connack, Suback, Unsuback, Pingresp)


def check_client_packet(packet: Packet) -> None:
    """Raise ``PacketError`` for a packet a device must not send to the hub.

    That is a packet only servers send, and QoS 2: like IoT Hub, the hub takes QoS 0 and 1
    and closes the connection of a device that publishes at QoS 2 (a QoS 2 subscription is
    fine: the hub grants QoS 1 in the SUBACK).
    """
    if isinstance(packet, Publish) and packet.qos == 2:
        raise PacketError("QoS 2 PUBLISH is not supported; the hub takes QoS 0 and 1")
    if isinstance(packet, Pubrec | Pubrel | Pubcomp):
        raise PacketError(f"{packet.type.name} is part of a QoS 2 flow, which the hub refuses")
    if isinstance(packet, _SERVER_TO_CLIENT):
        raise PacketError(f"{packet.type.name} is sent by servers, not clients")
