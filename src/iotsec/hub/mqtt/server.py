"""The device MQTT endpoint: MQTT 3.1.1 over TLS with IoT Hub's conventions, on asyncio.

One ``Session`` per connection. The first packet must be CONNECT; the client id, user name and
password (a SAS token) or the client certificate are checked by the ``Authenticator``. A new
connection for an identity replaces the old one, as in IoT Hub. Each device may publish only to
its own topics and subscribe only to its own filters; anything else ends the connection, with the
reason in the operation log.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable
from typing import Any

from iotsec.hub.auth import Authenticator
from iotsec.hub.c2d import C2dQueue
from iotsec.hub.ingest import Ingestor
from iotsec.hub.mqtt.connection import TlsConnection
from iotsec.hub.mqtt.session import Session
from iotsec.hub.oplog import OperationLog
from iotsec.hub.registry import SqliteRegistry

__all__ = ["MqttEndpoint"]


class MqttEndpoint:
    """Serves devices over MQTT 3.1.1 on TLS."""

    def __init__(
        self,
        *,
        registry: SqliteRegistry,
        authenticator: Authenticator,
        ingestor: Ingestor,
        c2d: C2dQueue,
        oplog: OperationLog,
        hub_host: str,
        ssl_context: ssl.SSLContext,
        host: str = "127.0.0.1",
        port: int = 8883,
        connect_timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.registry = registry
        self.authenticator = authenticator
        self.ingestor = ingestor
        self.c2d = c2d
        self.oplog = oplog
        self.hub_host = hub_host
        self.ssl_context = ssl_context
        self._host = host
        self._port = port
        self.connect_timeout = connect_timeout
        self.clock = clock
        self.sessions: dict[str, Session] = {}
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        """The bound port (useful when started on port 0)."""
        assert self._server is not None, "not started"
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        """Start listening."""
        # Plain TCP: each connection runs TLS itself (``TlsConnection``), so that it needs no
        # read buffer of its own and a handshake refused on the client's certificate reaches
        # the operation log instead of asyncio's logger.
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._new_connection, self._host, self._port, backlog=1024
        )

    async def stop(self) -> None:
        """Stop listening and close every session."""
        if self._server is not None:
            self._server.close()
        for session in list(self.sessions.values()):
            session.close("hub shutting down", failure=False)
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
        if self._server is not None:
            await self._server.wait_closed()
        await self.oplog.drain()

    def notify_c2d(self, device_id: str) -> None:
        """A cloud-to-device message was queued for ``device_id``: deliver it if connected."""
        session = self.sessions.get(device_id)
        if session is not None:
            session.wake_c2d()

    def notify_desired(self, device_id: str, module_id: str | None, patch: dict[str, Any]) -> None:
        """Desired properties changed: push the patch to the identity if it subscribed."""
        key = device_id if module_id is None else f"{device_id}/{module_id}"
        session = self.sessions.get(key)
        if session is not None:
            session.push_desired(patch)

    def _new_connection(self) -> TlsConnection:
        return TlsConnection(self.ssl_context, self.connect_timeout, self._start_session)

    def _start_session(self, connection: TlsConnection) -> None:
        task = asyncio.get_running_loop().create_task(Session(self, connection).run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def register(self, session: Session) -> None:
        """Make ``session`` the identity's connection, closing the one it replaces."""
        assert session.peer is not None
        old = self.sessions.get(session.peer.key)
        self.sessions[session.peer.key] = session
        if old is not None and old is not session:
            old.close("replaced by a new connection for the same identity", failure=False)

    def unregister(self, session: Session) -> None:
        """Forget ``session`` if it is still the identity's connection."""
        if session.peer is not None and self.sessions.get(session.peer.key) is session:
            del self.sessions[session.peer.key]
