"""One device's MQTT session, from CONNECT to close: auth, publish, subscribe, twins, C2D.

The session is a coroutine fed by its ``TlsConnection``: it waits for the TLS handshake, takes
CONNECT within the connect timeout, authenticates (SAS token or client certificate), and then
handles packets in order. A QoS 1 PUBLISH is acknowledged once the ingestor has it durably. Every
refusal and every end of a session goes to the operation log with its reason.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

import orjson

from iotsec.hub.auth import Authenticated
from iotsec.hub.errors import (
    AuthFailure,
    AuthFailureReason,
    HubError,
    PacketError,
    RateLimited,
)
from iotsec.hub.ingest import MessageRejected, Origin
from iotsec.hub.mqtt.codec import encode, encode_puback
from iotsec.hub.mqtt.connection import DeviceClosed, TlsConnection
from iotsec.hub.mqtt.packets import (
    Connack,
    Connect,
    ConnectRefused,
    Disconnect,
    Pingreq,
    Pingresp,
    Puback,
    Publish,
    Suback,
    Subscribe,
    Unsuback,
    Unsubscribe,
)
from iotsec.hub.mqtt.reader import check_client_packet
from iotsec.hub.oplog import OperationLogEntry
from iotsec.hub.tls import handshake_failure, peer_certificates
from iotsec.hub.twins import Twin
from iotsec.protocol import Message
from iotsec.protocol.errors import TopicError
from iotsec.protocol.topics import (
    TWIN_DESIRED_FILTER,
    TWIN_RESPONSE_FILTER,
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

if TYPE_CHECKING:
    from iotsec.hub.mqtt.server import MqttEndpoint

__all__ = ["Session"]

log = logging.getLogger("iotsec.hub.mqtt")

_CONNACK_BAD_CREDENTIALS = 4
_CONNACK_NOT_AUTHORIZED = 5
_BAD_CREDENTIAL_REASONS = {
    AuthFailureReason.EXPIRED_TOKEN,
    AuthFailureReason.BAD_SIGNATURE,
    AuthFailureReason.MALFORMED_TOKEN,
    AuthFailureReason.WRONG_IDENTITY,
    AuthFailureReason.NO_CREDENTIALS,
    AuthFailureReason.BAD_CERTIFICATE,
}
_SUBACK_FAILURE = 0x80
_TWIN_PREFIX = "$iothub/twin/"
#: Parsed device-to-cloud topics kept per session. Devices repeat their topic string unless it
#: carries a per-message id; the bound keeps a device that never repeats one from growing it.
_TOPIC_CACHE = 16


@dataclass(frozen=True, slots=True)
class _Peer:
    device_id: str
    module_id: str | None
    source_ip: str

    @property
    def key(self) -> str:
        return self.device_id if self.module_id is None else f"{self.device_id}/{self.module_id}"


class _Closed(Exception):
    """Raised inside a session to end it; ``reason`` goes to the operation log."""

    def __init__(self, reason: str, *, failure: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.failure = failure


class Session:
    """One device connection, from CONNECT to close."""

    def __init__(self, endpoint: MqttEndpoint, connection: TlsConnection) -> None:
        self.endpoint = endpoint
        self.connection = connection
        self.source_ip = connection.peer_ip
        self.peer: _Peer | None = None
        self.auth: Authenticated | None = None
        self._origin: Origin | None = None
        # Parsed and authorized D2C topics, each as the message it makes with an empty body.
        self._topics: dict[str, Message] = {}
        self._packet_ids = itertools.cycle(range(1, 65536))
        self._c2d_inflight: dict[int, str] = {}
        self._c2d_wake = asyncio.Event()
        self._subscribed_c2d = False
        self._subscribed_desired = False
        self._closing: _Closed | None = None
        self._tasks: list[asyncio.Task[None]] = []

    # --- lifecycle ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Serve the connection until it closes; never raises."""
        reason: _Closed = _Closed("connection closed by the device", failure=False)
        try:
            await self._start_tls()
            keepalive = await self._handshake()
            await self._serve(keepalive)
        except _Closed as closed:
            reason = closed
        except DeviceClosed:
            reason = _Closed("connection closed by the device", failure=False)
        except ConnectRefused as exc:
            self.connection.write(
                encode(Connack(session_present=False, return_code=exc.return_code))
            )
            reason = _Closed(f"CONNECT refused: {exc.reason}")
        except PacketError as exc:
            reason = _Closed(f"malformed packet: {exc.reason}")
        except TimeoutError:  # before OSError, of which it is a subclass
            reason = _Closed("no packet within the keep-alive or connect timeout")
        except (ConnectionError, ssl.SSLError, OSError) as exc:
            reason = _Closed(f"connection lost: {type(exc).__name__}", failure=False)
        except Exception:  # a bug must not take the endpoint down; it is logged with its stack
            log.exception("MQTT session for %s failed", self.peer.key if self.peer else "-")
            reason = _Closed("internal error")
        finally:
            if self._closing is not None:
                reason = self._closing
            await self._finish(reason)

    def close(self, reason: str, *, failure: bool = True) -> None:
        """End the session from outside (replaced, token expired, shutdown)."""
        if self._closing is None:
            self._closing = _Closed(reason, failure=failure)
        self.connection.close()

    async def _finish(self, reason: _Closed) -> None:
        for task in self._tasks:
            task.cancel()
        self.endpoint.unregister(self)
        self.connection.close()
        try:
            await asyncio.wait_for(self.connection.wait_closed(), 2)
        except TimeoutError:  # a device that stopped reading cannot hold the connection open
            self.connection.abort()
        if self._origin is not None:
            for entry in self.endpoint.ingestor.take_telemetry(self._origin.tally_key):
                self.endpoint.oplog.record_soon(entry)
        if self.peer is not None:
            self._log("Connections", "disconnect", failure=reason.failure, reason=reason.reason)
        elif reason.failure:
            log.info(
                "MQTT connection from %s closed before CONNECT: %s", self.source_ip, reason.reason
            )
            self.endpoint.oplog.record_soon(
                OperationLogEntry(
                    time=self.endpoint.clock(),
                    category="Connections",
                    operation="connect",
                    result="Failure",
                    protocol="mqtt",
                    source_ip=self.source_ip,
                    reason=reason.reason[:1000],
                )
            )

    # --- connect -----------------------------------------------------------------------------

    async def _start_tls(self) -> None:
        try:
            await self.connection.handshake()
        except TimeoutError as exc:
            raise _Closed(str(exc), failure=False) from None
        except ssl.SSLError as exc:
            failure = handshake_failure(exc)
            if failure is None:
                raise _Closed(f"TLS handshake failed: {exc.reason or exc}", failure=False) from None
            await self.endpoint.oplog.record(
                OperationLogEntry(
                    time=self.endpoint.clock(),
                    category="Connections",
                    operation="authenticate",
                    result="Failure",
                    protocol="mqtt",
                    source_ip=self.source_ip,
                    reason=failure.reason.value,
                    detail=failure.detail,
                )
            )
            raise _Closed(failure.detail, failure=False) from None

    async def _handshake(self) -> float | None:
        self.connection.set_keepalive(self.endpoint.connect_timeout)
        packets = await self.connection.packets()
        connect = packets[0]
        assert isinstance(connect, Connect)  # the reader refuses any other first packet
        try:
            device_id, module_id = parse_client_id(connect.client_id)
        except TopicError as exc:
            await self._refuse(_CONNACK_BAD_CREDENTIALS, None, f"bad client id: {exc.reason}")
        peer = _Peer(device_id, module_id, self.source_ip)
        try:
            self.auth = self._authenticate(connect, peer)
        except AuthFailure as failure:
            code = (
                _CONNACK_BAD_CREDENTIALS
                if failure.reason in _BAD_CREDENTIAL_REASONS
                else _CONNACK_NOT_AUTHORIZED
            )
            await self._refuse(code, peer, failure.detail, reason=failure.reason)
        self.peer = peer
        self._origin = Origin(peer.device_id, peer.module_id, "mqtt", self.source_ip)
        self.endpoint.register(self)
        self._send(Connack(session_present=False, return_code=0))
        await self.connection.drain()
        self._log("Connections", "connect", properties={"method": self.auth.method})
        expires = getattr(self.auth, "expires_at", None)
        if expires:
            self._tasks.append(asyncio.get_running_loop().create_task(self._expire(expires)))
        for packet in packets[1:]:
            await self._handle(packet)
        return float(connect.keepalive) if connect.keepalive else None

    def _authenticate(self, connect: Connect, peer: _Peer) -> Authenticated:
        auth = self.endpoint.authenticator
        auth.check_ip(peer.source_ip, device_id=peer.device_id, module_id=peer.module_id)
        if connect.username is not None:
            try:
                username = parse_username(connect.username)
            except TopicError as exc:
                raise AuthFailure(
                    AuthFailureReason.WRONG_IDENTITY,
                    f"bad user name: {exc.reason}",
                    device_id=peer.device_id,
                    module_id=peer.module_id,
                ) from None
            if (username.device_id, username.module_id) != (peer.device_id, peer.module_id):
                raise AuthFailure(
                    AuthFailureReason.WRONG_IDENTITY,
                    "user name and client id name different identities",
                    device_id=peer.device_id,
                    module_id=peer.module_id,
                )
        if connect.password:
            try:
                token = connect.password.decode("utf-8")
            except UnicodeDecodeError:
                raise AuthFailure(
                    AuthFailureReason.MALFORMED_TOKEN,
                    "password is not UTF-8",
                    device_id=peer.device_id,
                    module_id=peer.module_id,
                ) from None
            return auth.authenticate_sas(
                token, device_id=peer.device_id, module_id=peer.module_id, source_ip=peer.source_ip
            )
        presented = peer_certificates(self.connection.ssl_object)
        if presented.leaf:
            return auth.authenticate_certificate(
                presented.leaf,
                presented.chain,
                device_id=peer.device_id,
                module_id=peer.module_id,
                source_ip=peer.source_ip,
            )
        raise AuthFailure(
            AuthFailureReason.NO_CREDENTIALS,
            "neither a SAS token nor a client certificate was presented",
            device_id=peer.device_id,
            module_id=peer.module_id,
        )

    async def _refuse(
        self, code: int, peer: _Peer | None, detail: str, *, reason: AuthFailureReason | None = None
    ) -> NoReturn:
        entry = OperationLogEntry(
            time=self.endpoint.clock(),
            category="Connections",
            operation="authenticate",
            result="Failure",
            protocol="mqtt",
            device_id=peer.device_id if peer else None,
            module_id=peer.module_id if peer else None,
            source_ip=self.source_ip,
            reason=(reason.value if reason else "bad-client-id"),
            detail=detail,
        )
        # Logged before the device hears of it, so whoever sees the refusal finds the reason.
        await self.endpoint.oplog.record(entry)
        self._send(Connack(session_present=False, return_code=code))
        await self.connection.drain()
        raise _Closed(f"refused: {detail}", failure=False)

    async def _expire(self, expires_at: float) -> None:
        await asyncio.sleep(max(0.0, expires_at - self.endpoint.clock()))
        self.close("the SAS token expired", failure=True)

    # --- serving -----------------------------------------------------------------------------

    async def _serve(self, keepalive: float | None) -> None:
        # MQTT 3.1.1 §3.1.2.10: one and a half keep-alive periods without a packet ends it.
        self.connection.set_keepalive(keepalive * 1.5 if keepalive else None)
        self._tasks.append(asyncio.get_running_loop().create_task(self._deliver_c2d()))
        packets = self.connection.packets
        handle = self._handle
        while True:
            for packet in await packets():
                await handle(packet)

    async def _handle(self, packet: Any) -> None:
        check_client_packet(packet)  # QoS 2 and server-only packets end the connection
        if isinstance(packet, Publish):
            await self._publish(packet)
        elif isinstance(packet, Puback):
            self._c2d_acked(packet.packet_id)
        elif isinstance(packet, Subscribe):
            await self._subscribe(packet)
        elif isinstance(packet, Unsubscribe):
            self._send(Unsuback(packet.packet_id))
        elif isinstance(packet, Pingreq):
            self._send(Pingresp())
        elif isinstance(packet, Disconnect):
            raise _Closed("the device disconnected", failure=False)
        elif isinstance(packet, Connect):
            raise _Closed("a second CONNECT on one connection")
        else:
            raise _Closed(f"{type(packet).__name__} is not supported (QoS 2 is refused)")

    def _send(self, packet: Any) -> None:
        self.connection.write(encode(packet))

    async def _publish(self, packet: Publish) -> None:
        assert self._origin is not None
        if packet.qos == 2:
            raise _Closed("QoS 2 is not supported, as in IoT Hub")
        empty = self._topics.get(packet.topic)
        if empty is None:
            if packet.topic.startswith(_TWIN_PREFIX):
                await self._twin_request(packet)
                return
            empty = self._d2c_topic(packet.topic)
        # The message shares the cached properties dict: messages are values nobody changes.
        message = Message(
            packet.payload,
            empty.properties,
            empty.message_id,
            empty.correlation_id,
            empty.content_type,
            empty.content_encoding,
            empty.interface_id,
        )
        try:
            await self.endpoint.ingestor.ingest(self._origin, message)
        except RateLimited as exc:
            raise _Closed(str(exc)) from None
        except MessageRejected:
            pass  # dead-lettered and logged by the ingestor; acked so the device moves on
        if packet.qos == 1 and packet.packet_id is not None:
            self.connection.write(encode_puback(packet.packet_id))
            if self.connection.writing_paused:
                await self.connection.drain()

    def _d2c_topic(self, text: str) -> Message:
        """Parse a device-to-cloud topic and check it is the device's own; then cache it."""
        assert self.peer is not None
        try:
            topic = parse_d2c_topic(text)
        except TopicError as exc:
            self._deny(f"publish to {text[:200]!r}: {exc.reason}")
        if (topic.device_id, topic.module_id) != (self.peer.device_id, self.peer.module_id):
            self._deny(f"publish to another identity's topic {text[:200]!r}")
        if len(self._topics) >= _TOPIC_CACHE:
            self._topics.clear()
        empty = self._topics[text] = topic.message(b"")
        return empty

    def _deny(self, detail: str) -> NoReturn:
        assert self.peer is not None
        self.endpoint.oplog.record_soon(
            OperationLogEntry(
                time=self.endpoint.clock(),
                category="Connections",
                operation="authorize",
                result="Failure",
                protocol="mqtt",
                device_id=self.peer.device_id,
                module_id=self.peer.module_id,
                source_ip=self.source_ip,
                reason=AuthFailureReason.TOPIC_NOT_ALLOWED.value,
                detail=detail,
            )
        )
        raise _Closed(f"{AuthFailureReason.TOPIC_NOT_ALLOWED.value}: {detail}")

    async def _subscribe(self, packet: Subscribe) -> None:
        assert self.peer is not None
        own_c2d = c2d_subscribe_filter(self.peer.device_id) if self.peer.module_id is None else None
        codes = []
        for topic_filter, qos in packet.filters:
            if topic_filter == own_c2d:
                self._subscribed_c2d = True
            elif topic_filter == TWIN_DESIRED_FILTER:
                self._subscribed_desired = True
            elif topic_filter == TWIN_RESPONSE_FILTER or topic_filter.startswith(
                "$iothub/methods/"
            ):
                pass
            elif topic_filter.startswith("devices/"):
                self._deny(f"subscribe to another identity's filter {topic_filter[:200]!r}")
            else:
                codes.append(_SUBACK_FAILURE)
                continue
            codes.append(min(qos, 1))
        self._send(Suback(packet.packet_id, tuple(codes)))
        await self.connection.drain()
        if self._subscribed_c2d:
            self._c2d_wake.set()

    async def _twin_request(self, packet: Publish) -> None:
        assert self.peer is not None
        try:
            request = parse_twin_request(packet.topic)
        except TopicError as exc:
            self._deny(f"twin topic {packet.topic[:200]!r}: {exc.reason}")
        registry = self.endpoint.registry
        version: int | None = None
        try:
            if request.op is TwinOp.GET:
                # Registry calls touch SQLite (a write waits for fsync): off the event loop.
                twin: Twin = await asyncio.to_thread(
                    registry.get_twin, self.peer.device_id, self.peer.module_id
                )
                status, body = 200, orjson.dumps(twin.device_json())
                operation = "get"
            else:
                patch = orjson.loads(packet.payload)
                twin = await asyncio.to_thread(
                    registry.patch_reported, self.peer.device_id, self.peer.module_id, patch
                )
                status, body, version = 204, b"", twin.reported_version
                operation = "patch-reported"
        except (orjson.JSONDecodeError, HubError) as exc:
            status, body, operation = 400, orjson.dumps({"Message": str(exc)}), "twin"
        self._send(
            Publish(
                topic=twin_response_topic(status, request.rid, version),
                payload=body,
                qos=0,
                retain=False,
                dup=False,
                packet_id=None,
            )
        )
        await self.connection.drain()
        self._log(
            "D2CTwinOperations",
            operation,
            failure=status >= 400,
            reason=None if status < 400 else body.decode("utf-8", "replace")[:500],
        )

    # --- pushes ------------------------------------------------------------------------------

    def push_desired(self, patch: dict[str, Any]) -> None:
        """Send a desired-properties patch if the device subscribed to them."""
        if not self._subscribed_desired or self._closing is not None:
            return
        version = int(patch.get("$version", 0))
        self._send(
            Publish(
                topic=twin_desired_topic(version),
                payload=orjson.dumps(patch),
                qos=0,
                retain=False,
                dup=False,
                packet_id=None,
            )
        )

    def wake_c2d(self) -> None:
        """A cloud-to-device message is waiting."""
        self._c2d_wake.set()

    async def _deliver_c2d(self) -> None:
        assert self.peer is not None
        queue = self.endpoint.c2d
        while True:
            await self._c2d_wake.wait()
            self._c2d_wake.clear()
            if not self._subscribed_c2d or self._c2d_inflight:
                continue
            delivery = await asyncio.to_thread(
                functools.partial(queue.receive, self.peer.device_id, lock_seconds=60.0)
            )
            if delivery is None:
                continue
            packet_id = next(self._packet_ids)
            self._c2d_inflight[packet_id] = delivery.lock_token
            topic = build_c2d_topic(self.peer.device_id, delivery.message)
            self._send(
                Publish(
                    topic=topic,
                    payload=delivery.message.body,
                    qos=1,
                    retain=False,
                    dup=delivery.delivery_count > 1,
                    packet_id=packet_id,
                )
            )
            await self.connection.drain()
            self._log(
                "C2DCommands",
                "deliver",
                properties={"messageId": delivery.message.message_id or ""},
            )

    def _c2d_acked(self, packet_id: int) -> None:
        assert self.peer is not None
        token = self._c2d_inflight.pop(packet_id, None)
        if token is not None:
            self.endpoint.c2d.complete(self.peer.device_id, token)
            self._c2d_wake.set()  # the next one, if any

    def _log(
        self,
        category: Any,
        operation: str,
        *,
        failure: bool = False,
        reason: str | None = None,
        properties: dict[str, str] | None = None,
    ) -> None:
        assert self.peer is not None
        self.endpoint.oplog.record_soon(
            OperationLogEntry(
                time=self.endpoint.clock(),
                category=category,
                operation=operation,
                result="Failure" if failure else "Success",
                protocol="mqtt",
                device_id=self.peer.device_id,
                module_id=self.peer.module_id,
                source_ip=self.source_ip,
                reason=reason,
                properties=properties or {},
            )
        )
