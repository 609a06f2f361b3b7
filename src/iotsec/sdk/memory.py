"""An in-memory transport, shipped for testing code that uses the SDK without a hub.

>>> import asyncio
>>> async def demo() -> tuple[int, int]:
...     transport = MemoryTransport()
...     await transport.connect()
...     await transport.send(Message(b"hello"))
...     return len(transport.sent), await transport.patch_reported({"fw": "1.2"})
>>> asyncio.run(demo())
(1, 2)
"""

from __future__ import annotations

import copy
import inspect
from typing import Any

from iotsec.protocol.message import Message
from iotsec.sdk.errors import SdkError, TransportError
from iotsec.sdk.transport import DesiredHandler, MessageHandler
from iotsec.sdk.twin import merge_patch

__all__ = ["MemoryTransport"]

_VERSION = "$version"


class MemoryTransport:
    """A fake hub connection: records what is sent, keeps a twin, and fails on request.

    The twin starts at ``$version`` 1 on both sides. ``push_desired`` and ``push_message``
    play the hub's part, calling the registered handlers; ``fail_next`` makes the next calls
    raise, to test retries. A ``TransportError`` drops the pretend link, so the next
    ``connect`` (which the client makes before each retry) is a call that can fail too.
    """

    def __init__(
        self,
        *,
        desired: dict[str, Any] | None = None,
        reported: dict[str, Any] | None = None,
    ) -> None:
        self.sent: list[Message] = []
        self.calls: list[str] = []
        self.connected = False
        self.connect_count = 0
        self._desired = copy.deepcopy(desired or {})
        self._reported = copy.deepcopy(reported or {})
        self._desired_version = 1
        self._reported_version = 1
        self._failures: list[SdkError] = []
        self._desired_handler: DesiredHandler | None = None
        self._message_handler: MessageHandler | None = None

    # --- the test's side --------------------------------------------------------------------

    def fail_next(self, error: SdkError, times: int = 1) -> None:
        """Make the next ``times`` calls of connect, send, get_twin or patch_reported raise."""
        if times < 1:
            raise ValueError(f"times must be >= 1, not {times}")
        self._failures.extend([error] * times)

    @property
    def desired(self) -> dict[str, Any]:
        """A copy of the desired properties, with ``$version``."""
        return {**copy.deepcopy(self._desired), _VERSION: self._desired_version}

    @property
    def reported(self) -> dict[str, Any]:
        """A copy of the reported properties, with ``$version``."""
        return {**copy.deepcopy(self._reported), _VERSION: self._reported_version}

    async def push_desired(self, patch: dict[str, Any]) -> int:
        """Merge ``patch`` into desired as the hub would, and call the desired handler with it."""
        self._desired = merge_patch(self._desired, _without_version(patch))
        self._desired_version += 1
        if self._desired_handler is not None:
            pushed = {**copy.deepcopy(patch), _VERSION: self._desired_version}
            await _call(self._desired_handler(pushed))
        return self._desired_version

    async def push_message(self, message: Message) -> None:
        """Deliver a cloud-to-device message to the message handler (dropped when none)."""
        if self._message_handler is not None:
            await _call(self._message_handler(message))

    # --- the Transport protocol -------------------------------------------------------------

    async def connect(self) -> None:
        """Open the (pretend) connection; a no-op (that cannot fail) when already open."""
        if self.connected:
            return
        self._enter("connect", needs_connection=False)
        self.connected = True
        self.connect_count += 1

    async def close(self) -> None:
        """Close the (pretend) connection; idempotent, never fails."""
        self.calls.append("close")
        self.connected = False

    async def send(self, message: Message) -> None:
        """Record ``message`` as sent."""
        self._enter("send")
        self.sent.append(message)

    async def get_twin(self) -> dict[str, Any]:
        """The twin as ``{"desired": {...}, "reported": {...}}`` with versions."""
        self._enter("get_twin")
        return {"desired": self.desired, "reported": self.reported}

    async def patch_reported(self, patch: dict[str, Any]) -> int:
        """Merge ``patch`` into reported properties; returns the new version."""
        self._enter("patch_reported")
        self._reported = merge_patch(self._reported, _without_version(patch))
        self._reported_version += 1
        return self._reported_version

    def on_desired(self, handler: DesiredHandler) -> None:
        """Register the desired-properties handler."""
        self._desired_handler = handler

    def on_message(self, handler: MessageHandler) -> None:
        """Register the cloud-to-device message handler."""
        self._message_handler = handler

    def _enter(self, call: str, *, needs_connection: bool = True) -> None:
        self.calls.append(call)
        if self._failures:
            error = self._failures.pop(0)
            if isinstance(error, TransportError):
                self.connected = False  # a network failure drops the connection
            raise error
        if needs_connection and not self.connected:
            raise TransportError(f"{call}: not connected")


def _without_version(patch: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in patch.items() if key != _VERSION}


async def _call(result: object) -> None:
    if inspect.isawaitable(result):
        await result
