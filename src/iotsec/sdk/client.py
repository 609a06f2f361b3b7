"""The device client: retries, security messages and twins over any transport.

``AsyncDeviceClient`` is the asyncio API; ``DeviceClient`` is the same API, blocking, running an
event loop in a background thread. Both retry each operation under a ``RetryPolicy``, reconnect
the transport before each attempt, and raise ``ClientClosedError`` once closed.

>>> import asyncio
>>> from iotsec.sdk.memory import MemoryTransport
>>> async def demo() -> int:
...     async with AsyncDeviceClient(MemoryTransport()) as client:
...         await client.send_message(Message.json({"temperature": 21.5}))
...         return await client.patch_reported({"firmware": "1.0"})
>>> asyncio.run(demo())
2
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from concurrent.futures import CancelledError, Future
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self, TypeVar

from iotsec.protocol.message import Message
from iotsec.schema import MAX_MESSAGE_BYTES, Event
from iotsec.sdk.connection_string import ConnectionString
from iotsec.sdk.core import build_security_messages
from iotsec.sdk.errors import ClientClosedError, SdkError
from iotsec.sdk.retry import RetryPolicy
from iotsec.sdk.transport import DesiredHandler, MessageHandler, Transport

__all__ = ["AsyncDeviceClient", "DeviceClient", "TransportKind", "make_transport"]

log = logging.getLogger("iotsec.sdk")

T = TypeVar("T")
#: The transports ``from_connection_string`` can build.
TransportKind = Literal["mqtt", "https"]
Sleep = Callable[[float], Awaitable[object]]


def make_transport(
    connection_string: str | ConnectionString,
    *,
    transport: TransportKind = "mqtt",
    ca_file: str | Path | None = None,
    cert_file: str | Path | None = None,
    key_file: str | Path | None = None,
    port: int | None = None,
    token_ttl: int = 3600,
) -> Transport:
    """Build the named transport for a connection string (MQTT on 8883, HTTPS on 443)."""
    conn = (
        connection_string
        if isinstance(connection_string, ConnectionString)
        else ConnectionString.parse(connection_string)
    )
    options: dict[str, Any] = {
        "ca_file": ca_file,
        "cert_file": cert_file,
        "key_file": key_file,
        "token_ttl": token_ttl,
    }
    if port is not None:
        options["port"] = port
    if transport == "https":
        # Imported on demand, as MQTT is: MQTT devices need not load httpx.
        from iotsec.sdk.https import HttpsTransport  # noqa: PLC0415

        return HttpsTransport(conn, **options)
    if transport == "mqtt":
        # Imported on demand: HTTPS-only devices need not load paho-mqtt.
        from iotsec.sdk.mqtt import MqttTransport  # noqa: PLC0415

        return MqttTransport(conn, **options)
    raise ValueError(f"unknown transport {transport!r}: expected 'mqtt' or 'https'")


class AsyncDeviceClient:
    """A device (or module) client for asyncio: send messages and security events, use the twin.

    ``agent_id`` identifies the security agent in security messages (a fresh UUID by default;
    pass a stable one). ``sleep`` and ``clock`` are injected so retry tests need not wait.
    """

    def __init__(
        self,
        transport: Transport,
        *,
        retry: RetryPolicy | None = None,
        sleep: Sleep = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        agent_id: str | None = None,
        agent_version: str = "1.0.0",
        max_message_bytes: int = MAX_MESSAGE_BYTES,
    ) -> None:
        self._transport = transport
        self._retry = retry if retry is not None else RetryPolicy()
        self._sleep = sleep
        self._clock = clock
        self._agent_id = agent_id or str(uuid.uuid4())
        self._agent_version = agent_version
        self._max_message_bytes = max_message_bytes
        self._closed = False

    @classmethod
    def from_connection_string(
        cls,
        connection_string: str | ConnectionString,
        *,
        transport: TransportKind = "mqtt",
        ca_file: str | Path | None = None,
        cert_file: str | Path | None = None,
        key_file: str | Path | None = None,
        port: int | None = None,
        token_ttl: int = 3600,
        **options: Any,
    ) -> Self:
        """A client over MQTT (default) or HTTPS; ``options`` go to the client's constructor."""
        built = make_transport(
            connection_string,
            transport=transport,
            ca_file=ca_file,
            cert_file=cert_file,
            key_file=key_file,
            port=port,
            token_ttl=token_ttl,
        )
        return cls(built, **options)

    @property
    def transport(self) -> Transport:
        """The transport this client drives."""
        return self._transport

    @property
    def agent_id(self) -> str:
        """The agent id put in every security message."""
        return self._agent_id

    @property
    def closed(self) -> bool:
        """True once ``close()`` was called."""
        return self._closed

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def connect(self) -> None:
        """Connect, retrying under the retry policy."""
        await self._with_retry("connect", _nothing)

    async def close(self) -> None:
        """Close the transport; idempotent. Every later call raises ClientClosedError."""
        if self._closed:
            return
        self._closed = True
        await self._transport.close()

    async def send_message(self, message: Message) -> None:
        """Send one device-to-cloud message; returns once the hub acknowledged it."""
        await self._with_retry("send", lambda: self._transport.send(message))

    async def send_security_message(self, events: Iterable[Event]) -> list[Message]:
        """Send ``events`` as security messages, split to fit the size limit; returns them.

        Every message is validated before anything is sent. Messages go in order; if one
        fails for good, the ones before it were delivered (sending all again is safe: the hub
        dedupes on event ids).

        Raises:
            RejectedError: an event is invalid or too large on its own (nothing was sent).
        """
        self._check_open()
        messages = build_security_messages(
            events,
            agent_id=self._agent_id,
            agent_version=self._agent_version,
            max_bytes=self._max_message_bytes,
        )
        for message in messages:
            await self.send_message(message)
        return messages

    async def get_twin(self) -> dict[str, Any]:
        """The twin: ``{"desired": {...}, "reported": {...}}``, each with ``$version``."""
        return await self._with_retry("get_twin", self._transport.get_twin)

    async def patch_reported(self, patch: dict[str, Any]) -> int:
        """Merge ``patch`` into the reported properties (null deletes); returns the version."""
        return await self._with_retry(
            "patch_reported", lambda: self._transport.patch_reported(patch)
        )

    def on_desired(self, handler: DesiredHandler) -> None:
        """Call ``handler`` with each desired-properties patch the hub pushes (MQTT only)."""
        self._check_open()
        self._transport.on_desired(handler)

    def on_message(self, handler: MessageHandler) -> None:
        """Call ``handler`` with each cloud-to-device message (MQTT only)."""
        self._check_open()
        self._transport.on_message(handler)

    def _check_open(self) -> None:
        if self._closed:
            raise ClientClosedError("the device client is closed")

    async def _with_retry(self, what: str, operation: Callable[[], Awaitable[T]]) -> T:
        started = self._clock()
        attempt = 0
        while True:
            self._check_open()
            attempt += 1
            try:
                await self._transport.connect()
                return await operation()
            except SdkError as exc:
                delay = self._retry.next_delay(attempt, exc, elapsed=self._clock() - started)
                if delay is None:
                    raise
                log.warning(
                    "%s failed (attempt %d): %s; retrying in %.2f s", what, attempt, exc, delay
                )
            await self._sleep(delay)


async def _nothing() -> None:
    return None


class DeviceClient:
    """The blocking device client: ``AsyncDeviceClient`` on an event loop in a daemon thread.

    Handlers registered with ``on_desired``/``on_message`` run on that thread.
    """

    def __init__(
        self,
        transport: Transport,
        *,
        retry: RetryPolicy | None = None,
        sleep: Sleep = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        agent_id: str | None = None,
        agent_version: str = "1.0.0",
        max_message_bytes: int = MAX_MESSAGE_BYTES,
    ) -> None:
        self._client = AsyncDeviceClient(
            transport,
            retry=retry,
            sleep=sleep,
            clock=clock,
            agent_id=agent_id,
            agent_version=agent_version,
            max_message_bytes=max_message_bytes,
        )
        self._lock = threading.Lock()
        self._closed = False
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="iotsec-device-client", daemon=True
        )
        self._thread.start()

    @classmethod
    def from_connection_string(
        cls,
        connection_string: str | ConnectionString,
        *,
        transport: TransportKind = "mqtt",
        ca_file: str | Path | None = None,
        cert_file: str | Path | None = None,
        key_file: str | Path | None = None,
        port: int | None = None,
        token_ttl: int = 3600,
        **options: Any,
    ) -> Self:
        """A client over MQTT (default) or HTTPS; ``options`` go to the client's constructor."""
        built = make_transport(
            connection_string,
            transport=transport,
            ca_file=ca_file,
            cert_file=cert_file,
            key_file=key_file,
            port=port,
            token_ttl=token_ttl,
        )
        return cls(built, **options)

    @property
    def transport(self) -> Transport:
        """The transport this client drives."""
        return self._client.transport

    @property
    def agent_id(self) -> str:
        """The agent id put in every security message."""
        return self._client.agent_id

    @property
    def closed(self) -> bool:
        """True once ``close()`` was called."""
        return self._closed

    def __enter__(self) -> Self:
        self.connect()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def connect(self) -> None:
        """Connect, retrying under the retry policy."""
        self._run(self._client.connect)

    def send_message(self, message: Message) -> None:
        """Send one device-to-cloud message; returns once the hub acknowledged it."""
        self._run(lambda: self._client.send_message(message))

    def send_security_message(self, events: Iterable[Event]) -> list[Message]:
        """Send ``events`` as security messages, split to fit the size limit; returns them."""
        evs = tuple(events)
        return self._run(lambda: self._client.send_security_message(evs))

    def get_twin(self) -> dict[str, Any]:
        """The twin: ``{"desired": {...}, "reported": {...}}``, each with ``$version``."""
        return self._run(self._client.get_twin)

    def patch_reported(self, patch: dict[str, Any]) -> int:
        """Merge ``patch`` into the reported properties (null deletes); returns the version."""
        return self._run(lambda: self._client.patch_reported(patch))

    def on_desired(self, handler: DesiredHandler) -> None:
        """Call ``handler`` (on the client's thread) with each desired-properties patch."""
        self._check_open()
        self._client.on_desired(handler)

    def on_message(self, handler: MessageHandler) -> None:
        """Call ``handler`` (on the client's thread) with each cloud-to-device message."""
        self._check_open()
        self._client.on_message(handler)

    def close(self) -> None:
        """Close the transport and stop the client's thread; idempotent."""
        self._refuse_own_thread()
        with self._lock:
            if self._closed:
                return
            self._closed = True
            future = asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop)
        try:
            future.result()
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()

    async def _shutdown(self) -> None:
        try:
            await self._client.close()
        finally:
            current = asyncio.current_task()
            others = [task for task in asyncio.all_tasks() if task is not current]
            for task in others:
                task.cancel()
            await asyncio.gather(*others, return_exceptions=True)
            await self._loop.shutdown_asyncgens()

    def _check_open(self) -> None:
        if self._closed:
            raise ClientClosedError("the device client is closed")

    def _refuse_own_thread(self) -> None:
        if threading.current_thread() is self._thread:
            raise RuntimeError(
                "a blocking DeviceClient call from one of its own handlers would "
                "deadlock; do the work elsewhere or use AsyncDeviceClient"
            )

    def _run(self, call: Callable[[], Coroutine[Any, Any, T]]) -> T:
        self._refuse_own_thread()
        with self._lock:
            self._check_open()
            future: Future[T] = asyncio.run_coroutine_threadsafe(call(), self._loop)
        try:
            return future.result()
        except CancelledError:
            raise ClientClosedError("the device client was closed during the call") from None
