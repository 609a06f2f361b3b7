"""The MQTT transport: IoT Hub's device protocol (MQTT 3.1.1 over TLS) on paho-mqtt.

paho runs its own network thread (``loop_start``). Its callbacks do nothing but hand their
arguments to the event loop with ``call_soon_threadsafe``, so every future, handler and piece of
state below is touched on the loop thread only. Each connection gets a fresh paho client;
reconnecting (for a new SAS token, or after the link dropped) replaces it.

>>> transport = MqttTransport(ConnectionString.parse(
...     "HostName=hub.example.net;DeviceId=dev1;SharedAccessKey=c2VjcmV0LWtleQ=="))
>>> transport.client_id, transport.username
('dev1', 'hub.example.net/dev1/?api-version=2021-04-12&DeviceClientType=iotsec%2F0.1.0')
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import logging
import ssl
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import orjson
from paho.mqtt import client as mqtt
from paho.mqtt.client import ConnectFlags, DisconnectFlags
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from iotsec import __version__
from iotsec.protocol.message import Message
from iotsec.protocol.sas import SasTokenProvider
from iotsec.protocol.topics import (
    TWIN_DESIRED_FILTER,
    TWIN_RESPONSE_FILTER,
    TopicError,
    TwinOp,
    TwinResponse,
    build_client_id,
    build_d2c_topic,
    build_username,
    c2d_subscribe_filter,
    parse_c2d_topic,
    parse_twin_desired,
    parse_twin_response,
    twin_request_topic,
)
from iotsec.schema import MAX_MESSAGE_BYTES
from iotsec.sdk.connection_string import ConnectionString, DeviceAuth
from iotsec.sdk.errors import (
    AuthError,
    ClientClosedError,
    NotSupportedError,
    RejectedError,
    SdkError,
    ThrottledError,
    TransportError,
)
from iotsec.sdk.transport import DesiredHandler, MessageHandler

__all__ = ["MqttTransport"]

_log = logging.getLogger(__name__)


def _not_shutdown_noise(record: logging.LogRecord) -> bool:
    # paho's loop thread logs "Client is not connected" at ERROR when it runs once more after
    # our disconnect; this transport reconnects itself, so the message only alarms users.
    return not str(record.msg).startswith("Client is not connected")


_paho_log = _log.getChild("paho")
_paho_log.addFilter(_not_shutdown_noise)
_T = TypeVar("_T")
_REFUSED_CREDENTIALS = frozenset(("Bad user name or password", "Not authorized"))
_Event = tuple[tuple[Callable[[Any], object], ...], Any, str]


def _renew_margin(ttl: int) -> int:
    """Seconds before expiry to reconnect: a fifth of the lifetime, at most five minutes."""
    return 0 if ttl < 2 else min(300, max(1, ttl // 5))


def _twin_error(status: int, body: bytes, what: str) -> SdkError | None:
    """The error a twin response status stands for, or None for 2xx."""
    if 200 <= status < 300:
        return None
    reason = body.decode("utf-8", errors="replace").strip()[:500] or f"status {status}"
    if status in (401, 403):
        return AuthError(f"{what}: hub refused access ({reason})", status=status)
    if status == 429:
        return ThrottledError(f"{what}: throttled by the hub ({reason})")
    if 400 <= status < 500:
        return RejectedError(reason, status=status)
    return TransportError(f"{what}: hub answered {status} ({reason})")


class _ClosingSSLSocket(ssl.SSLSocket):
    """An SSLSocket that closes itself when the handshake fails (paho would leak it)."""

    def do_handshake(self, block: bool = False) -> None:
        """Handshake, closing the socket if that fails."""
        try:
            super().do_handshake(block)
        except BaseException:
            self.close()
            raise


class _Bridge:
    """paho's callbacks, run on its network thread, replayed on the event loop."""

    def __init__(self, call: Callable[..., object], owner: MqttTransport) -> None:
        self._call, self._owner = call, owner

    def on_connect(
        self,
        client: mqtt.Client,
        _u: Any,
        _f: ConnectFlags,
        reason: ReasonCode,
        _p: Properties | None,
    ) -> None:
        self._call(self._owner._on_connack, client, reason)

    def on_disconnect(
        self,
        client: mqtt.Client,
        _u: Any,
        _f: DisconnectFlags,
        reason: ReasonCode,
        _p: Properties | None,
    ) -> None:
        self._call(self._owner._on_lost, client, reason)

    def on_publish(
        self, client: mqtt.Client, _u: Any, mid: int, _r: ReasonCode, _p: Properties
    ) -> None:
        self._call(self._owner._on_ack, self._owner._acks, client, mid, None)

    def on_subscribe(
        self, client: mqtt.Client, _u: Any, mid: int, codes: list[ReasonCode], _p: Properties | None
    ) -> None:
        self._call(self._owner._on_ack, self._owner._subacks, client, mid, codes)

    def on_message(self, _client: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        self._call(self._owner._on_inbound, message.topic, bytes(message.payload))


class MqttTransport:
    """One MQTT connection to the hub for one device or module identity."""

    def __init__(
        self,
        conn: ConnectionString,
        *,
        ca_file: str | Path | None = None,
        cert_file: str | Path | None = None,
        key_file: str | Path | None = None,
        port: int = 8883,
        token_ttl: int = 3600,
        keepalive: int = 60,
        timeout: float = 30.0,
    ) -> None:
        self._auth = DeviceAuth.from_connection_string(
            conn, ca_file=ca_file, cert_file=cert_file, key_file=key_file
        )
        self._conn = conn
        self._port = port
        self._keepalive = keepalive
        self._timeout = timeout
        self._margin = _renew_margin(token_ttl)
        self._tokens: SasTokenProvider | None = None
        if conn.shared_access_key is not None:
            self._tokens = SasTokenProvider(
                conn.resource_uri,
                conn.shared_access_key,
                policy_name=conn.shared_access_key_name,
                ttl=token_ttl,
                renew_before=self._margin,
            )
        self.client_id = build_client_id(conn.device_id, conn.module_id)
        self.username = build_username(
            conn.host_name, conn.device_id, conn.module_id, client_type=f"iotsec/{__version__}"
        )
        self._client: mqtt.Client | None = None  # the live (or opening) connection
        self._connected = False
        self._switching = False
        self._closed = False
        self._lock = asyncio.Lock()
        self._connack: asyncio.Future[ReasonCode] | None = None
        self._acks: dict[int, asyncio.Future[None]] = {}
        self._subacks: dict[int, asyncio.Future[list[ReasonCode]]] = {}
        self._twin: dict[str, asyncio.Future[tuple[TwinResponse, bytes]]] = {}
        self._rids = itertools.count(1)
        self._desired_handlers: list[DesiredHandler] = []
        self._message_handlers: list[MessageHandler] = []
        self._events: asyncio.Queue[_Event] = asyncio.Queue()
        self._tasks: set[asyncio.Task[None]] = set()
        self._renewal: asyncio.Task[None] | None = None
        self._dispatcher: asyncio.Task[None] | None = None

    # -- the Transport protocol ------------------------------------------------------------

    async def connect(self) -> None:
        """Open the connection and subscribe (idempotent)."""
        await self._ensure_connected()

    async def close(self) -> None:
        """Disconnect cleanly, stop paho's thread and the handler dispatcher (idempotent)."""
        if self._closed:
            return
        self._closed = True
        current = asyncio.current_task()  # close() may be called from a handler
        tasks = [
            t
            for t in (self._renewal, self._dispatcher, *self._tasks)
            if t is not None and t is not current
        ]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        async with self._lock:
            if self._client is not None:
                await self._stop(self._client, ClientClosedError("the transport was closed"))

    async def send(self, message: Message) -> None:
        """Publish one D2C message at QoS 1; returns after the hub's PUBACK."""
        if len(message.body) > MAX_MESSAGE_BYTES:
            raise RejectedError(
                f"message body of {len(message.body)} bytes is over the "
                f"hub's limit of {MAX_MESSAGE_BYTES}"
            )
        try:
            topic = build_d2c_topic(self._conn.device_id, self._conn.module_id, message)
        except TopicError as exc:
            raise RejectedError(exc.reason) from exc
        client = await self._ensure_connected()
        mid = self._publish(client, topic, message.body)
        ack = self._acks.setdefault(mid, asyncio.get_running_loop().create_future())
        try:
            await self._wait(ack, "PUBACK")
        finally:
            if self._acks.get(mid) is ack:
                del self._acks[mid]

    async def get_twin(self) -> dict[str, Any]:
        """The twin's ``desired`` and ``reported`` sections."""
        _, body = await self._twin_request(TwinOp.GET, b"", "twin GET")
        try:
            twin = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise TransportError(f"twin GET: the hub sent invalid JSON ({exc})") from exc
        if not isinstance(twin, dict) or not isinstance(twin.get("desired"), dict):
            raise TransportError("twin GET: the hub's answer has no 'desired' object")
        return twin

    async def patch_reported(self, patch: dict[str, Any]) -> int:
        """Merge ``patch`` into reported properties; returns the new reported version."""
        try:
            body = orjson.dumps(patch)
        except orjson.JSONEncodeError as exc:
            raise RejectedError(f"reported patch is not JSON-serialisable: {exc}") from exc
        response, _ = await self._twin_request(TwinOp.PATCH_REPORTED, body, "reported patch")
        if response.version is None:
            raise TransportError("reported patch: the hub's answer carries no $version")
        return response.version

    def on_desired(self, handler: DesiredHandler) -> None:
        """Call ``handler`` with each desired-properties patch (a dict with ``$version``)."""
        self._desired_handlers.append(handler)

    def on_message(self, handler: MessageHandler) -> None:
        """Call ``handler`` with each C2D message; subscribes at once if already connected."""
        if self._conn.module_id is not None:
            raise NotSupportedError(
                "IoT Hub delivers cloud-to-device messages to devices, not to modules"
            )
        self._message_handlers.append(handler)
        if self._connected and len(self._message_handlers) == 1 and self._client is not None:
            self._spawn(self._subscribe(self._client, [self._c2d_filter]))

    # -- connection lifecycle (loop thread) --------------------------------------------------

    @property
    def _c2d_filter(self) -> str:
        return c2d_subscribe_filter(self._conn.device_id)

    async def _ensure_connected(self) -> mqtt.Client:
        if self._closed:
            raise ClientClosedError("the transport was closed")
        if not self._connected or self._switching:
            async with self._lock:
                if self._closed:
                    raise ClientClosedError("the transport was closed")
                if not self._connected:
                    await self._open()
        assert self._client is not None  # _open() either connects or raises
        return self._client

    def _new_client(self) -> mqtt.Client:
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=mqtt.MQTTv311,
            clean_session=False,
            reconnect_on_failure=False,
        )
        client.enable_logger(_paho_log)  # paho logs packet flags, never the password
        client.connect_timeout = self._timeout
        client.username_pw_set(
            self.username, None if self._tokens is None else self._tokens.token()
        )
        client.tls_set_context(self._ssl_context())
        bridge = _Bridge(asyncio.get_running_loop().call_soon_threadsafe, self)
        client.on_connect, client.on_disconnect = bridge.on_connect, bridge.on_disconnect
        client.on_publish, client.on_subscribe = bridge.on_publish, bridge.on_subscribe
        client.on_message = bridge.on_message
        return client

    def _ssl_context(self) -> ssl.SSLContext:
        context = self._auth.ssl_context()
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.sslsocket_class = _ClosingSSLSocket
        return context

    async def _open(self) -> None:
        client = self._client = self._new_client()
        loop = asyncio.get_running_loop()
        connack = self._connack = loop.create_future()
        host = self._conn.connect_host
        try:
            try:
                await self._blocking(client.connect, host, self._port, self._keepalive)
            except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
                raise TransportError(f"cannot connect to {host}:{self._port}: {exc}") from exc
            client.loop_start()
            reason = await self._wait(connack, "CONNACK")
            if reason.is_failure:
                name = reason.getName()
                if name in _REFUSED_CREDENTIALS:
                    raise AuthError(f"hub refused {self.client_id!r}: {name}")
                raise TransportError(f"hub refused {self.client_id!r}: {name}")
            filters = [TWIN_RESPONSE_FILTER, TWIN_DESIRED_FILTER]
            if self._message_handlers:
                filters.append(self._c2d_filter)
            await self._subscribe(client, filters)
        except BaseException as exc:
            connack.cancel()  # nobody awaits it any more
            await self._stop(
                client,
                exc
                if isinstance(exc, SdkError)
                else TransportError("connection attempt abandoned"),
            )
            raise
        self._connected = True
        _log.info("connected to %s:%s as %s", host, self._port, self.client_id)
        if self._dispatcher is None:
            self._dispatcher = asyncio.create_task(self._dispatch())
        if self._tokens is not None and (self._renewal is None or self._renewal.done()):
            self._renewal = asyncio.create_task(self._renew_forever())

    async def _stop(self, client: mqtt.Client, error: SdkError) -> None:
        """Fail what waits on ``client``, send DISCONNECT, and join paho's thread."""
        if client is self._client:
            self._client, self._connected = None, False
            self._fail_pending(error)
        client.disconnect()
        await self._blocking(client.loop_stop)

    async def _renew_forever(self) -> None:
        """Reconnect with a fresh token ``margin`` seconds before the current one expires."""
        assert self._tokens is not None  # only started for SAS identities
        while True:
            await asyncio.sleep(max(0.0, self._tokens.expires_at - self._margin - time.time()))
            self._switching = True
            try:
                async with self._lock:
                    await self._drain()
                    if self._closed or self._client is None:
                        return
                    _log.info("reconnecting %s with a renewed SAS token", self.client_id)
                    await self._stop(self._client, TransportError("reconnecting"))
                    self._tokens.renew()
                    await self._open()
            except SdkError as exc:
                _log.warning("reconnect for token renewal failed: %s", exc)
                return
            finally:
                self._switching = False

    async def _drain(self) -> None:
        pending: list[asyncio.Future[Any]] = [*self._acks.values(), *self._twin.values()]
        if pending:
            await asyncio.wait(pending, timeout=self._timeout)

    # -- requests --------------------------------------------------------------------------

    def _publish(self, client: mqtt.Client, topic: str, payload: bytes) -> int:
        info = client.publish(topic, payload, qos=1)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise TransportError(f"publish failed: {mqtt.error_string(info.rc)}")
        return info.mid

    async def _subscribe(self, client: mqtt.Client, filters: list[str]) -> None:
        rc, mid = client.subscribe([(f, 1) for f in filters])
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or mid is None:
            raise TransportError(f"subscribe failed: {mqtt.error_string(rc)}")
        suback = self._subacks.setdefault(mid, asyncio.get_running_loop().create_future())
        granted = await self._wait(suback, "SUBACK")
        refused = [f for f, code in zip(filters, granted, strict=False) if code.is_failure]
        if refused or len(granted) != len(filters):
            raise TransportError(f"hub refused subscriptions {refused or filters}")

    async def _twin_request(self, op: TwinOp, body: bytes, what: str) -> tuple[TwinResponse, bytes]:
        client = await self._ensure_connected()
        rid = str(next(self._rids))
        future = self._twin[rid] = asyncio.get_running_loop().create_future()
        try:
            self._publish(client, twin_request_topic(op, rid), body)
            response, payload = await self._wait(future, f"{what} response")
        finally:
            self._twin.pop(rid, None)
        error = _twin_error(response.status, payload, what)
        if error is not None:
            raise error
        return response, payload

    async def _wait(self, future: asyncio.Future[_T], what: str) -> _T:
        try:
            return await asyncio.wait_for(future, self._timeout)
        except TimeoutError:
            raise TransportError(f"no {what} from the hub within {self._timeout:g} s") from None

    async def _blocking(self, func: Callable[..., object], *args: object) -> None:
        """Run a blocking paho call in a worker thread; even if cancelled, let it finish."""
        job = asyncio.get_running_loop().run_in_executor(None, func, *args)
        try:
            await asyncio.shield(job)
        except asyncio.CancelledError:
            with contextlib.suppress(OSError, ValueError):
                await job
            raise

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            _log.warning("background MQTT operation failed: %s", task.exception())

    def _fail_pending(self, error: SdkError) -> None:
        waiting: list[asyncio.Future[Any]] = [
            *self._acks.values(),
            *self._subacks.values(),
            *self._twin.values(),
        ]
        for future in waiting:
            if not future.done():
                future.set_exception(error)
        self._acks.clear()
        self._subacks.clear()
        self._twin.clear()

    # -- paho callbacks, replayed on the loop thread -----------------------------------------

    def _on_connack(self, client: mqtt.Client, reason: ReasonCode) -> None:
        if client is self._client and self._connack is not None and not self._connack.done():
            self._connack.set_result(reason)

    def _on_lost(self, client: mqtt.Client, reason: ReasonCode) -> None:
        if client is not self._client:
            return  # a connection we closed ourselves
        _log.warning("connection to the hub lost: %s", reason.getName())
        self._client, self._connected = None, False
        error = TransportError(f"connection lost: {reason.getName()}")
        if self._connack is not None and not self._connack.done():
            self._connack.set_exception(error)  # _open() is waiting for it
        self._fail_pending(error)
        self._spawn(self._blocking(client.loop_stop))

    def _on_ack(
        self, table: dict[int, asyncio.Future[_T]], client: mqtt.Client, mid: int, value: _T
    ) -> None:
        """A PUBACK or SUBACK; packet ids restart with each paho client, so check which."""
        future = table.pop(mid, None) if client is self._client else None
        if future is not None and not future.done():
            future.set_result(value)

    def _on_inbound(self, topic: str, payload: bytes) -> None:
        try:
            if topic.startswith("$iothub/twin/res/"):
                response = parse_twin_response(topic)
                future = self._twin.get(response.rid)
                if future is not None and not future.done():
                    future.set_result((response, payload))
            elif topic.startswith(TWIN_DESIRED_FILTER[:-1]):
                version = parse_twin_desired(topic).version
                patch = orjson.loads(payload)
                if not isinstance(patch, dict):
                    raise TypeError("the desired patch is not a JSON object")
                if version is not None:
                    patch.setdefault("$version", version)
                self._events.put_nowait((tuple(self._desired_handlers), patch, "desired"))
            elif topic.startswith("devices/"):
                message = parse_c2d_topic(topic).message(payload)
                self._events.put_nowait((tuple(self._message_handlers), message, "message"))
            else:
                _log.warning("ignoring a publish on unexpected topic %r", topic)
        except (TopicError, orjson.JSONDecodeError, TypeError) as exc:
            _log.warning("ignoring a malformed publish from the hub on %r: %s", topic, exc)

    async def _dispatch(self) -> None:
        """Run handlers one event at a time, in arrival order, on the loop."""
        while not self._closed:
            handlers, value, kind = await self._events.get()
            for handler in handlers:
                try:
                    result = handler(value)
                    if inspect.isawaitable(result):
                        await result
                except Exception:
                    _log.exception("%s handler %r failed", kind, handler)
