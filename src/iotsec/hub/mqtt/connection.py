"""One device's TCP connection, with TLS run over memory BIOs and the bytes cut into packets.

``TlsConnection`` is the ``asyncio`` protocol of a plain TCP transport. It runs TLS itself,
with ``SSLContext.wrap_bio``: ciphertext from the socket goes into the incoming BIO, the
plaintext is read out into the packet reader, and what the session writes is encrypted into the
outgoing BIO and handed to the transport. asyncio's own TLS transport keeps a 256 KiB read
buffer per connection; here every connection reads through one scratch buffer, shared by the
whole process (safe: it is used only on the event loop's thread, and nothing that reads it
keeps a view of it; the packet reader copies what it holds on to).

The session awaits ``handshake()``, then ``packets()``; it writes with ``write()`` and, to
respect the device's pace, ``drain()``. Flow control goes both ways: reading pauses while the
session has a backlog of packets it has not taken, and while the transport's write buffer is
over its high-water mark (a device that does not read its acks).

Keep-alive is one timer per connection: each packet notes its arrival time, and the timer, when
it fires, either ends the connection or re-arms itself for the rest of the period. No timer is
created per packet or per read.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable

from iotsec.hub.errors import PacketError
from iotsec.hub.mqtt.packets import Packet
from iotsec.hub.mqtt.reader import PacketReader

__all__ = ["DeviceClosed", "TlsConnection"]

#: The scratch buffer every connection reads ciphertext into, and then plaintext out of.
_SCRATCH_BYTES = 64 * 1024
_SCRATCH = bytearray(_SCRATCH_BYTES)
_VIEW = memoryview(_SCRATCH)
#: Reading pauses once this much plaintext waits in packets the session has not taken.
_BACKLOG_BYTES = 64 * 1024


class DeviceClosed(ConnectionError):
    """The device closed the connection (a TCP FIN or a TLS close_notify)."""


class TlsConnection(asyncio.BufferedProtocol):
    """TLS over one TCP connection, feeding MQTT packets to a session.

    Args:
        context: the server's TLS context.
        handshake_timeout: seconds for the TLS handshake to complete.
        on_connected: called with the connection once the TCP connection is made (the
            endpoint starts a session for it there).
    """

    def __init__(
        self,
        context: ssl.SSLContext,
        handshake_timeout: float,
        on_connected: Callable[[TlsConnection], None],
    ) -> None:
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self.ssl_object: ssl.SSLObject = context.wrap_bio(
            self._incoming, self._outgoing, server_side=True
        )
        self._handshake_timeout = handshake_timeout
        self._on_connected = on_connected
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self.peer_ip = "unknown"
        self._reader = PacketReader(expect_connect=True)
        self._queue: list[Packet] = []
        self._backlog = 0
        self._handshaken = False
        self._error: BaseException | None = None
        self._closing = False
        self._waiter: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._keepalive: float | None = None
        self._last_packet = 0.0
        self._paused_for_backlog = False
        self._paused_for_writes = False
        self._reading_paused = False
        self._drained: asyncio.Future[None] | None = None
        self._closed: asyncio.Future[None] = self._loop.create_future()

    # --- asyncio protocol callbacks ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Start the handshake clock and the session."""
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        address = transport.get_extra_info("peername")
        if address:
            self.peer_ip = str(address[0])
        self._timer = self._loop.call_later(self._handshake_timeout, self._handshake_timed_out)
        self._on_connected(self)

    def get_buffer(self, sizehint: int) -> memoryview:
        """The shared scratch buffer: ciphertext is copied out of it at once."""
        return _VIEW

    def buffer_updated(self, nbytes: int) -> None:
        """Ciphertext arrived: continue the handshake, or decrypt it into packets."""
        if self._error is not None:
            return
        self._incoming.write(_VIEW[:nbytes])
        if not self._handshaken and not self._continue_handshake():
            return
        self._decrypt()

    def eof_received(self) -> bool:
        """The device sent FIN: the session ends once it has taken the packets before it."""
        self._fail(DeviceClosed("connection closed by the device"))
        return False

    def pause_writing(self) -> None:
        """The transport's write buffer is full: stop reading what the device sends."""
        self._paused_for_writes = True
        self._update_reading()

    def resume_writing(self) -> None:
        """The write buffer drained: read again, and let ``drain`` return."""
        self._paused_for_writes = False
        self._update_reading()
        self._release_drain()

    def connection_lost(self, exc: Exception | None) -> None:
        """The TCP connection is gone; a waiting session hears why."""
        self._cancel_timer()
        if exc is None:
            self._fail(DeviceClosed("connection closed"))
        else:
            self._fail(exc)
        self._release_drain()
        if not self._closed.done():
            self._closed.set_result(None)

    # --- what the session calls ----------------------------------------------------------------

    async def handshake(self) -> None:
        """Wait for the TLS handshake.

        Raises:
            ssl.SSLError: the handshake failed (``handshake_failure`` tells a refused
                client certificate apart).
            TimeoutError: it did not complete within the handshake timeout.
            ConnectionError: the connection closed first.
        """
        while not self._handshaken:
            if self._error is not None:
                raise self._error
            await self._wait()

    async def packets(self) -> list[Packet]:
        """The packets received since the last call; waits for at least one.

        Packets that arrived before the connection failed are returned first; then the
        failure is raised: ``PacketError``, ``TimeoutError`` (keep-alive), ``DeviceClosed``,
        another ``ConnectionError`` or ``OSError``, or ``ssl.SSLError``.
        """
        while not self._queue:
            if self._error is not None:
                raise self._error
            await self._wait()
        packets, self._queue, self._backlog = self._queue, [], 0
        if self._paused_for_backlog:
            self._paused_for_backlog = False
            self._update_reading()
        return packets

    def set_keepalive(self, seconds: float | None) -> None:
        """End the connection when no packet arrives for ``seconds`` (None: never)."""
        self._cancel_timer()
        self._keepalive = seconds
        self._last_packet = self._loop.time()
        if seconds is not None and self._error is None:
            self._timer = self._loop.call_later(seconds, self._keepalive_check)

    def write(self, data: bytes) -> None:
        """Encrypt and send ``data``; does nothing once the connection is closing."""
        if self._closing or not self._handshaken:
            return
        self.ssl_object.write(data)
        self._flush()

    @property
    def writing_paused(self) -> bool:
        """True while the transport's write buffer is over its high-water mark."""
        return self._paused_for_writes

    async def drain(self) -> None:
        """Wait until the transport's write buffer is below its high-water mark."""
        if not self._paused_for_writes or self._error is not None:
            return
        if self._drained is None:
            self._drained = self._loop.create_future()
        await self._drained

    def close(self) -> None:
        """Send close_notify (best effort) and close once the buffered writes are out."""
        if self._closing:
            return
        self._closing = True
        self._cancel_timer()
        if self._handshaken:
            # Our close_notify goes out and the device's is not waited for (SSLWantReadError);
            # any other TLS error here only means there is no clean way to say goodbye.
            with contextlib.suppress(ssl.SSLError):
                self.ssl_object.unwrap()
            self._flush()
        if self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        """Drop the connection at once, buffered writes and all."""
        self._closing = True
        if self._transport is not None:
            self._transport.abort()

    async def wait_closed(self) -> None:
        """Wait until the TCP connection is gone."""
        await asyncio.shield(self._closed)

    # --- internals -----------------------------------------------------------------------------

    def _continue_handshake(self) -> bool:
        try:
            self.ssl_object.do_handshake()
        except ssl.SSLWantReadError:
            self._flush()
            return False
        except ssl.SSLError as exc:
            self._flush()  # the alert, so the device learns why
            self._fail(exc)
            return False
        self._handshaken = True
        self._cancel_timer()
        self._flush()
        self._wake()
        return True

    def _decrypt(self) -> None:
        read, feed = self.ssl_object.read, self._reader.feed
        queue = self._queue
        got = False
        try:
            while True:
                # With a buffer, read() returns a count (typeshed says bytes).
                count: int = read(_SCRATCH_BYTES, _SCRATCH)  # type: ignore[assignment]
                if not count:  # close_notify
                    self._fail(DeviceClosed("connection closed by the device"))
                    break
                packets = feed(_VIEW[:count])
                self._backlog += count
                if packets:
                    queue += packets
                    got = True
        except ssl.SSLWantReadError:
            pass  # all the plaintext there is, for now
        except PacketError as exc:
            # The session answers it (a CONNACK refusal, or the reason in the operation log),
            # then closes; nothing more is read meanwhile.
            self._fail(exc, close=False)
        except ssl.SSLError as exc:
            self._fail(exc)
        self._flush()  # TLS 1.3 session tickets and key updates
        if got:
            self._last_packet = self._loop.time()
            self._wake()
        # Only packets the session can take count as a backlog: pausing in the middle of a
        # packet larger than the backlog (a 256 KB security message) would wait forever.
        if self._backlog >= _BACKLOG_BYTES and queue and not self._paused_for_backlog:
            self._paused_for_backlog = True
            self._update_reading()

    def _flush(self) -> None:
        if self._outgoing.pending and self._transport is not None:
            self._transport.write(self._outgoing.read())

    def _fail(self, error: BaseException, *, close: bool = True) -> None:
        """Record the first failure, close the transport, and wake the session."""
        if self._error is None:
            self._error = error
        self._cancel_timer()
        if close and self._transport is not None and not self._closing:
            self._closing = True
            self._transport.close()
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _wait(self) -> None:
        self._waiter = self._loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def _release_drain(self) -> None:
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)

    def _update_reading(self) -> None:
        pause = self._paused_for_backlog or self._paused_for_writes
        if pause == self._reading_paused or self._transport is None or self._closing:
            return
        self._reading_paused = pause
        if pause:
            self._transport.pause_reading()
        else:
            self._transport.resume_reading()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _handshake_timed_out(self) -> None:
        self._timer = None
        self._fail(TimeoutError(f"no TLS handshake within {self._handshake_timeout:g} s"))

    def _keepalive_check(self) -> None:
        self._timer = None
        keepalive = self._keepalive
        if keepalive is None or self._error is not None:
            return
        due = self._last_packet + keepalive
        # A device held back by our own flow control is not silent.
        if self._reading_paused:
            due = self._loop.time() + keepalive
        if self._loop.time() >= due:
            self._fail(TimeoutError(f"no packet within {keepalive:g} s"))
        else:
            self._timer = self._loop.call_at(due, self._keepalive_check)
