"""A loopback IoT Hub MQTT endpoint for SDK tests: real MQTT 3.1.1, real TLS, IoT Hub rules.

Until iotsec's hub exists the SDK is tested against this server. It has a small, strict packet
codec (only what a device needs), authenticates like IoT Hub (username form, client id, SAS
password recomputed from the registered key, or an X.509 client certificate by thumbprint or
CA chain), records device-to-cloud messages, serves twins with versions, pushes desired patches
and C2D messages, and can be scripted to answer the next twin request with a given status.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import ssl
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from cryptography import x509
from cryptography.x509.oid import NameOID

from iotsec.protocol.message import Message
from iotsec.protocol.sas import generate_sas_token, parse_sas_token, resource_uri
from iotsec.protocol.topics import (
    TWIN_DESIRED_FILTER,
    TWIN_RESPONSE_FILTER,
    PropertyBag,
    TopicError,
    TwinOp,
    build_c2d_topic,
    c2d_subscribe_filter,
    parse_client_id,
    parse_d2c_topic,
    parse_twin_request,
    parse_username,
    twin_desired_topic,
    twin_response_topic,
)
from iotsec.sdk.errors import SasTokenError
from tests.tls import CertFiles, LoopbackPki

# == codec ====================================================================================

CONNECT, CONNACK, PUBLISH, PUBACK = 1, 2, 3, 4
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK = 8, 9, 10, 11
PINGREQ, PINGRESP, DISCONNECT = 12, 13, 14
#: The flags MQTT 3.1.1 fixes for every packet type but PUBLISH.
_FLAGS = {
    CONNECT: 0,
    CONNACK: 0,
    PUBACK: 0,
    SUBSCRIBE: 2,
    SUBACK: 0,
    UNSUBSCRIBE: 2,
    UNSUBACK: 0,
    PINGREQ: 0,
    PINGRESP: 0,
    DISCONNECT: 0,
}
MAX_REMAINING = 268_435_455


class PacketError(Exception):
    """A malformed MQTT packet (the connection must be closed)."""


@dataclass(frozen=True)
class Connect:
    client_id: str
    username: str | None = None
    password: bytes | None = field(default=None, repr=False)
    keepalive: int = 60
    clean_session: bool = True
    will: tuple[str, bytes, int, bool] | None = None
    protocol_level: int = 4


@dataclass(frozen=True)
class ConnAck:
    return_code: int
    session_present: bool = False


@dataclass(frozen=True)
class Publish:
    topic: str
    payload: bytes = b""
    qos: int = 0
    packet_id: int | None = None
    retain: bool = False
    dup: bool = False


@dataclass(frozen=True)
class PubAck:
    packet_id: int


@dataclass(frozen=True)
class Subscribe:
    packet_id: int
    filters: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class SubAck:
    packet_id: int
    codes: tuple[int, ...]


@dataclass(frozen=True)
class Unsubscribe:
    packet_id: int
    filters: tuple[str, ...]


@dataclass(frozen=True)
class UnsubAck:
    packet_id: int


@dataclass(frozen=True)
class Simple:
    """PINGREQ, PINGRESP or DISCONNECT: a packet type with no body."""

    kind: int


Packet = Connect | ConnAck | Publish | PubAck | Subscribe | SubAck | Unsubscribe | UnsubAck | Simple


def encode_varint(value: int) -> bytes:
    """MQTT's remaining-length encoding: 7 bits a byte, low first, at most four bytes."""
    if not 0 <= value <= MAX_REMAINING:
        raise PacketError(f"remaining length {value} out of range")
    out = bytearray()
    while True:
        value, digit = divmod(value, 128)
        out.append(digit | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _string(text: str) -> bytes:
    raw = text.encode("utf-8")
    if len(raw) > 0xFFFF:
        raise PacketError("string longer than 65535 bytes")
    return struct.pack("!H", len(raw)) + raw


def _blob(data: bytes) -> bytes:
    return struct.pack("!H", len(data)) + data


def _packet(kind: int, flags: int, body: bytes) -> bytes:
    return bytes([kind << 4 | flags]) + encode_varint(len(body)) + body


def encode(packet: Packet) -> bytes:
    """The bytes of ``packet``."""
    match packet:
        case Connect():
            flags = (
                (0x80 if packet.username is not None else 0)
                | (0x40 if packet.password is not None else 0)
                | (0x02 if packet.clean_session else 0)
            )
            payload = _string(packet.client_id)
            if packet.will is not None:
                topic, message, qos, retain = packet.will
                flags |= 0x04 | qos << 3 | (0x20 if retain else 0)
                payload += _string(topic) + _blob(message)
            payload += _string(packet.username) if packet.username is not None else b""
            payload += _blob(packet.password) if packet.password is not None else b""
            header = _string("MQTT") + struct.pack(
                "!BBH", packet.protocol_level, flags, packet.keepalive
            )
            return _packet(CONNECT, 0, header + payload)
        case ConnAck():
            return _packet(CONNACK, 0, bytes([int(packet.session_present), packet.return_code]))
        case Publish():
            flags = (8 if packet.dup else 0) | packet.qos << 1 | int(packet.retain)
            pid = struct.pack("!H", packet.packet_id) if packet.qos else b""
            return _packet(PUBLISH, flags, _string(packet.topic) + pid + packet.payload)
        case PubAck() | UnsubAck():
            kind = PUBACK if isinstance(packet, PubAck) else UNSUBACK
            return _packet(kind, 0, struct.pack("!H", packet.packet_id))
        case Subscribe():
            body = b"".join(_string(f) + bytes([q]) for f, q in packet.filters)
            return _packet(SUBSCRIBE, 2, struct.pack("!H", packet.packet_id) + body)
        case SubAck():
            return _packet(SUBACK, 0, struct.pack("!H", packet.packet_id) + bytes(packet.codes))
        case Unsubscribe():
            body = b"".join(_string(f) for f in packet.filters)
            return _packet(UNSUBSCRIBE, 2, struct.pack("!H", packet.packet_id) + body)
        case Simple():
            return _packet(packet.kind, 0, b"")
    raise PacketError(f"cannot encode {packet!r}")


class _Reader:
    """Reads fields off one packet's body; running past its end is a PacketError."""

    def __init__(self, body: bytes) -> None:
        self.body, self.pos = body, 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.body):
            raise PacketError("packet ends early")
        self.pos += n
        return self.body[self.pos - n : self.pos]

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int(struct.unpack("!H", self.take(2))[0])

    def blob(self) -> bytes:
        return self.take(self.u16())

    def string(self) -> str:
        try:
            text = self.blob().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PacketError("string is not UTF-8") from exc
        if "\x00" in text:
            raise PacketError("string contains U+0000")
        return text

    def packet_id(self) -> int:
        pid = self.u16()
        if pid == 0:
            raise PacketError("packet id 0")
        return pid

    def rest(self) -> bytes:
        return self.take(len(self.body) - self.pos)

    def end(self) -> None:
        if self.pos != len(self.body):
            raise PacketError("trailing bytes in packet")


def _decode_connect(r: _Reader) -> Connect:
    name, level, flags, keepalive = r.string(), r.u8(), r.u8(), r.u16()
    if name not in ("MQTT", "MQIsdp"):  # the level is the server's to refuse (CONNACK 1)
        raise PacketError(f"unknown protocol {name!r}")
    if flags & 0x01:
        raise PacketError("reserved CONNECT flag set")
    will_qos = flags >> 3 & 3
    if will_qos == 3 or (not flags & 0x04 and (will_qos or flags & 0x20)):
        raise PacketError("invalid will flags")
    if flags & 0x40 and not flags & 0x80:
        raise PacketError("password without user name")
    client_id = r.string()
    will = (r.string(), r.blob(), will_qos, bool(flags & 0x20)) if flags & 0x04 else None
    username = r.string() if flags & 0x80 else None
    password = r.blob() if flags & 0x40 else None
    r.end()
    return Connect(client_id, username, password, keepalive, bool(flags & 0x02), will, level)


def _decode_publish(flags: int, r: _Reader) -> Publish:
    qos = flags >> 1 & 3
    if qos == 3:
        raise PacketError("PUBLISH with QoS 3")
    if qos == 0 and flags & 8:
        raise PacketError("DUP set on a QoS 0 PUBLISH")
    topic = r.string()
    if not topic or "+" in topic or "#" in topic:
        raise PacketError(f"invalid topic name {topic!r}")
    pid = r.packet_id() if qos else None
    return Publish(topic, r.rest(), qos, pid, bool(flags & 1), bool(flags & 8))


def decode(first: int, body: bytes) -> Packet:
    """Decode one packet from its first byte and its body; raises only PacketError."""
    kind, flags = first >> 4, first & 0x0F
    if kind != PUBLISH and _FLAGS.get(kind) != flags:
        raise PacketError(f"packet type {kind} with flags {flags:#x}")
    r = _Reader(body)
    if kind == CONNECT:
        return _decode_connect(r)
    if kind == PUBLISH:
        return _decode_publish(flags, r)
    if kind == CONNACK:
        ack, code = r.u8(), r.u8()
        r.end()
        if ack > 1:
            raise PacketError("reserved CONNACK flags set")
        return ConnAck(code, bool(ack))
    if kind in (PUBACK, UNSUBACK):
        pid = r.packet_id()
        r.end()
        return PubAck(pid) if kind == PUBACK else UnsubAck(pid)
    if kind == SUBSCRIBE:
        pid, filters = r.packet_id(), []
        while r.pos < len(body):
            topic_filter, qos = r.string(), r.u8()
            if qos > 2:
                raise PacketError("requested QoS above 2")
            filters.append((topic_filter, qos))
        if not filters:
            raise PacketError("SUBSCRIBE without topic filters")
        return Subscribe(pid, tuple(filters))
    if kind == UNSUBSCRIBE:
        pid, names = r.packet_id(), []
        while r.pos < len(body):
            names.append(r.string())
        if not names:
            raise PacketError("UNSUBSCRIBE without topic filters")
        return Unsubscribe(pid, tuple(names))
    if kind == SUBACK:
        pid = r.packet_id()
        codes = tuple(r.rest())
        if not codes or any(c not in (0, 1, 2, 0x80) for c in codes):
            raise PacketError("invalid SUBACK return codes")
        return SubAck(pid, codes)
    r.end()
    return Simple(kind)  # PINGREQ, PINGRESP, DISCONNECT: flags checked above


def decode_varint(data: bytes, start: int = 0) -> tuple[int, int] | None:
    """(value, bytes used) of the remaining length at ``data[start:]``, or None if cut short."""
    value, mult = 0, 1
    for index in range(start, start + 4):
        if index >= len(data):
            return None
        value += (data[index] & 0x7F) * mult
        mult *= 128
        if not data[index] & 0x80:
            return value, index + 1 - start
    raise PacketError("remaining length longer than four bytes")


def split(data: bytes) -> tuple[Packet, bytes] | None:
    """Decode the first packet in ``data``: (packet, the rest), or None if it is incomplete."""
    header = decode_varint(data, 1) if data else None
    if header is None:
        return None
    length, used = header
    start = 1 + used
    if len(data) < start + length:
        return None
    return decode(data[0], data[start : start + length]), data[start + length :]


async def read_packet(reader: asyncio.StreamReader, max_size: int) -> Packet:
    """Read and decode one packet from ``reader``."""
    first = (await reader.readexactly(1))[0]
    length, mult = 0, 1
    for _ in range(4):
        digit = (await reader.readexactly(1))[0]
        length += (digit & 0x7F) * mult
        mult *= 128
        if not digit & 0x80:
            break
    else:
        raise PacketError("remaining length longer than four bytes")
    if length > max_size:
        raise PacketError(f"packet of {length} bytes is over the limit")
    return decode(first, await reader.readexactly(length))


# == the hub ==================================================================================


@dataclass
class Identity:
    device_id: str
    module_id: str | None
    key: str | None = None
    thumbprint: str | None = None  # X.509 self-signed: SHA-1 of the certificate, upper hex
    ca_signed: bool = False  # X.509 CA: chain checked by TLS, CN must be the device id
    desired: dict[str, Any] = field(default_factory=dict)
    reported: dict[str, Any] = field(default_factory=dict)
    desired_version: int = 1
    reported_version: int = 1


@dataclass(frozen=True)
class Received:
    """A device-to-cloud message as the hub recorded it."""

    device_id: str
    module_id: str | None
    topic: str
    properties: PropertyBag
    message: Message


@dataclass
class Attempt:
    """One CONNECT and what became of it."""

    client_id: str
    username: str | None
    return_code: int
    closed: str | None = None  # why the connection ended, once it has


def merge_patch(target: dict[str, Any], patch: dict[str, Any]) -> None:
    """Twin patch semantics: nested objects merge, ``null`` deletes."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            merge_patch(target[key], value)
        else:
            target[key] = value


class LoopbackHub:
    """The server; start it with ``await hub.start()`` (port 0 on 127.0.0.1), stop with close."""

    def __init__(
        self,
        pki: LoopbackPki,
        *,
        host_name: str = "127.0.0.1",
        clock: Callable[[], float] = time.time,
        max_packet: int = 300_000,
    ) -> None:
        self.pki, self.host_name, self.clock, self.max_packet = pki, host_name, clock, max_packet
        self.identities: dict[tuple[str, str | None], Identity] = {}
        self.received: list[Received] = []
        self.attempts: list[Attempt] = []
        self.twin_script: list[tuple[int, bytes]] = []  # answers for the next twin requests
        self.twin_mute = False  # when True, twin requests go unanswered
        self._sessions: dict[tuple[str, str | None], _Session] = {}
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki.ca.cert))
        self.ssl.load_cert_chain(str(pki.server.cert), str(pki.server.key))
        self.ssl.minimum_version = ssl.TLSVersion.TLSv1_2
        self.ssl.verify_mode = ssl.CERT_OPTIONAL

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> LoopbackHub:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.ssl)
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for session in list(self._sessions.values()):
            session.drop("hub closed")
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    # -- registry ------------------------------------------------------------------------------

    def add_device(
        self,
        device_id: str,
        module_id: str | None = None,
        *,
        key: str | None = None,
        cert: CertFiles | None = None,
        ca_signed: bool = False,
    ) -> Identity:
        """Register an identity with a symmetric key, or an X.509 certificate."""
        identity = Identity(device_id, module_id, key)
        if cert is not None and ca_signed:
            identity.ca_signed = True
        elif cert is not None:  # self-signed: trust exactly this certificate
            identity.thumbprint = cert.thumbprint_sha1
            self.ssl.load_verify_locations(cafile=str(cert.cert))
        self.identities[(device_id, module_id)] = identity
        return identity

    def connection_string(self, device_id: str, module_id: str | None = None) -> str:
        identity = self.identities[(device_id, module_id)]
        text = f"HostName={self.host_name};DeviceId={device_id}"
        text += f";ModuleId={module_id}" if module_id else ""
        return text + (f";SharedAccessKey={identity.key}" if identity.key else ";x509=true")

    # -- what tests drive and inspect ----------------------------------------------------------

    async def wait_for(self, condition: Callable[[], object], timeout: float = 5.0) -> None:
        """Poll until ``condition()`` is true."""
        async with asyncio.timeout(timeout):
            while not condition():
                await asyncio.sleep(0.01)

    def connected(self, device_id: str, module_id: str | None = None) -> bool:
        return (device_id, module_id) in self._sessions

    async def update_desired(
        self, device_id: str, module_id: str | None, patch: dict[str, Any]
    ) -> int:
        """Merge ``patch`` into desired properties and notify the device if it listens."""
        identity = self.identities[(device_id, module_id)]
        merge_patch(identity.desired, patch)
        identity.desired_version += 1
        session = self._sessions.get((device_id, module_id))
        if session is not None and TWIN_DESIRED_FILTER in session.filters:
            body = orjson.dumps({**patch, "$version": identity.desired_version})
            session.send(Publish(twin_desired_topic(identity.desired_version), body))
        return identity.desired_version

    async def send_c2d(self, device_id: str, message: Message, timeout: float = 5.0) -> None:
        """Deliver a C2D message at QoS 1 and wait for the device's PUBACK."""
        session = self._sessions[(device_id, None)]
        if c2d_subscribe_filter(device_id) not in session.filters:
            raise AssertionError(f"{device_id} has not subscribed to C2D")
        topic = build_c2d_topic(
            device_id,
            message,
            extra_system=[("$.to", f"/devices/{device_id}/messages/deviceBound")],
        )
        await asyncio.wait_for(session.send_qos1(topic, message.body), timeout)

    # -- connections ---------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        session = _Session(self, reader, writer)
        try:
            await session.run()
        except (PacketError, OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
            session.end(f"{type(exc).__name__}: {exc}")
        finally:
            session.drop(session.reason or "ended")
            self._tasks.discard(task)
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()

    def authenticate(self, connect: Connect, peer_der: bytes | None) -> tuple[int, int | None]:
        """CONNACK code (0 accepts) and the token expiry, by IoT Hub's rules."""
        if connect.protocol_level != 4:
            return 1, None
        try:
            device_id, module_id = parse_client_id(connect.client_id)
        except TopicError:
            return 2, None
        try:
            user = parse_username(connect.username or "")
        except TopicError:
            return 4, None
        if (
            (user.device_id, user.module_id) != (device_id, module_id)
            or user.host != self.host_name
            or user.api_version is None
        ):
            return 4, None
        identity = self.identities.get((device_id, module_id))
        if identity is None:
            return 5, None
        if connect.password is not None:
            return self._check_sas(identity, connect.password)
        if peer_der is None or not (identity.thumbprint or identity.ca_signed):
            return 5, None
        if identity.thumbprint is not None:
            digest = hashlib.sha1(peer_der).hexdigest().upper()
            return (0 if hmac.compare_digest(digest, identity.thumbprint) else 5), None
        names = x509.load_der_x509_certificate(peer_der).subject.get_attributes_for_oid(
            NameOID.COMMON_NAME
        )
        return (0 if [n.value for n in names] == [device_id] else 5), None

    def _check_sas(self, identity: Identity, password: bytes) -> tuple[int, int | None]:
        if identity.key is None:
            return 5, None
        try:
            token = parse_sas_token(password.decode("utf-8"))
            expected = parse_sas_token(generate_sas_token(token.sr, identity.key, token.se))
        except (SasTokenError, UnicodeDecodeError):
            return 4, None
        if not hmac.compare_digest(expected.sig.encode(), token.sig.encode()):
            return 4, None
        if token.sr != resource_uri(self.host_name, identity.device_id, identity.module_id):
            return 5, None
        if token.expired(self.clock()):
            return 5, None
        return 0, token.se


class _Session:
    """One client connection."""

    def __init__(
        self, hub: LoopbackHub, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.hub, self.reader, self.writer = hub, reader, writer
        self.key: tuple[str, str | None] | None = None
        self.filters: set[str] = set()
        self.attempt: Attempt | None = None
        self.reason: str | None = None
        self._next_id = 0
        self._acks: dict[int, asyncio.Future[None]] = {}
        self._expiry: asyncio.TimerHandle | None = None

    def send(self, packet: Packet) -> None:
        if not self.writer.is_closing():
            self.writer.write(encode(packet))

    async def send_qos1(self, topic: str, payload: bytes) -> None:
        self._next_id = self._next_id % 0xFFFF + 1
        ack = self._acks[self._next_id] = asyncio.get_running_loop().create_future()
        self.send(Publish(topic, payload, 1, self._next_id))
        await ack

    def end(self, reason: str) -> None:
        """Record why the connection ends and close it."""
        self.reason = self.reason or reason
        self.writer.close()

    def drop(self, reason: str) -> None:
        self.end(reason)
        if self._expiry is not None:
            self._expiry.cancel()
        if self.attempt is not None and self.attempt.closed is None:
            self.attempt.closed = self.reason
        if self.key is not None and self.hub._sessions.get(self.key) is self:
            del self.hub._sessions[self.key]
        for ack in self._acks.values():
            ack.cancel()

    async def run(self) -> None:
        connect = await asyncio.wait_for(read_packet(self.reader, self.hub.max_packet), 10)
        if not isinstance(connect, Connect):
            raise PacketError("the first packet must be CONNECT")
        ssl_object = self.writer.get_extra_info("ssl_object")
        peer = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        code, expiry = self.hub.authenticate(connect, peer)
        self.attempt = Attempt(connect.client_id, connect.username, code)
        self.hub.attempts.append(self.attempt)
        self.send(ConnAck(code))
        if code != 0:
            return self.end(f"refused with CONNACK {code}")
        self.key = parse_client_id(connect.client_id)
        previous = self.hub._sessions.get(self.key)
        if previous is not None:  # IoT Hub allows one connection per identity
            previous.drop("replaced by a new connection")
        self.hub._sessions[self.key] = self
        if expiry is not None:
            delay = max(0.0, expiry - self.hub.clock())
            self._expiry = asyncio.get_running_loop().call_later(delay, self.end, "token expired")
        idle = connect.keepalive * 1.5 or None
        while not self.writer.is_closing():
            packet = await asyncio.wait_for(read_packet(self.reader, self.hub.max_packet), idle)
            if not self._handle(packet):
                return None
        return None

    def _handle(self, packet: Packet) -> bool:
        """Act on one packet; False ends the session."""
        match packet:
            case Publish():
                if packet.qos == 2:  # IoT Hub closes the connection on QoS 2
                    self.end("QoS 2 publish")
                    return False
                return self._publish(packet)
            case PubAck():
                ack = self._acks.pop(packet.packet_id, None)
                if ack is not None and not ack.done():
                    ack.set_result(None)
            case Subscribe():
                codes = []
                for topic_filter, qos in packet.filters:
                    allowed = self._may_subscribe(topic_filter)
                    if allowed:
                        self.filters.add(topic_filter)
                    codes.append(min(qos, 1) if allowed else 0x80)
                self.send(SubAck(packet.packet_id, tuple(codes)))
            case Unsubscribe():
                self.filters.difference_update(packet.filters)
                self.send(UnsubAck(packet.packet_id))
            case Simple() if packet.kind == PINGREQ:
                self.send(Simple(PINGRESP))
            case Simple() if packet.kind == DISCONNECT:
                self.end("disconnect")
                return False
            case _:
                raise PacketError(f"unexpected {type(packet).__name__} from a client")
        return True

    def _may_subscribe(self, topic_filter: str) -> bool:
        assert self.key is not None
        allowed = {TWIN_RESPONSE_FILTER, TWIN_DESIRED_FILTER, "$iothub/methods/POST/#"}
        if self.key[1] is None:
            allowed.add(c2d_subscribe_filter(self.key[0]))
        return topic_filter in allowed

    def _publish(self, packet: Publish) -> bool:
        assert self.key is not None
        try:
            if packet.topic.startswith("$iothub/twin/"):
                self._twin(packet)
            else:
                parsed = parse_d2c_topic(packet.topic)
                if (parsed.device_id, parsed.module_id) != self.key:
                    raise TopicError(packet.topic, "another identity's topic")
                self.hub.received.append(
                    Received(
                        *self.key, packet.topic, parsed.properties, parsed.message(packet.payload)
                    )
                )
        except TopicError as exc:  # IoT Hub closes the connection on a topic it does not serve
            self.end(f"bad topic: {exc}")
            return False
        if packet.qos == 1:
            assert packet.packet_id is not None
            self.send(PubAck(packet.packet_id))  # only after the message is recorded
        return True

    def _twin(self, packet: Publish) -> None:
        assert self.key is not None
        request = parse_twin_request(packet.topic)
        identity = self.hub.identities[self.key]
        if self.hub.twin_mute:
            return
        if self.hub.twin_script:
            status, body = self.hub.twin_script.pop(0)
            self.send(Publish(twin_response_topic(status, request.rid), body))
        elif request.op is TwinOp.GET:
            twin = {
                "desired": {**identity.desired, "$version": identity.desired_version},
                "reported": {**identity.reported, "$version": identity.reported_version},
            }
            self.send(Publish(twin_response_topic(200, request.rid), orjson.dumps(twin)))
        else:
            try:
                patch = orjson.loads(packet.payload)
            except orjson.JSONDecodeError:
                patch = None
            if not isinstance(patch, dict):
                self.send(Publish(twin_response_topic(400, request.rid), b"malformed JSON"))
                return
            merge_patch(identity.reported, patch)
            identity.reported_version += 1
            self.send(Publish(twin_response_topic(204, request.rid, identity.reported_version)))


def write_other_ca(directory: Path) -> Path:
    """A CA certificate file that did not sign the loopback server's certificate."""
    return LoopbackPki.create(directory).ca.cert
