"""The transport protocol: what the client needs from MQTT, HTTPS or the in-memory fake.

A transport is async and knows nothing of retries: it performs one attempt and raises a typed
``SdkError`` (AuthError, ThrottledError, RejectedError, TransportError) when that attempt fails.
The client's I/O-free core decides whether to retry.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol, runtime_checkable

from iotsec.protocol.message import Message

__all__ = ["DesiredHandler", "MessageHandler", "Transport"]

#: Called with each desired-properties patch the hub pushes (a dict including "$version").
DesiredHandler = Callable[[dict[str, Any]], Awaitable[None] | None]
#: Called with each cloud-to-device message.
MessageHandler = Callable[[Message], Awaitable[None] | None]


@runtime_checkable
class Transport(Protocol):
    """One connection to the hub for one device or module identity."""

    async def connect(self) -> None:
        """Open the connection (idempotent)."""

    async def close(self) -> None:
        """Close the connection (idempotent)."""

    async def send(self, message: Message) -> None:
        """Send one device-to-cloud message; returns once the hub acknowledged it."""

    async def get_twin(self) -> dict[str, Any]:
        """The twin as ``{"desired": {...}, "reported": {...}}``, each with ``$version``."""

    async def patch_reported(self, patch: dict[str, Any]) -> int:
        """Merge ``patch`` into reported properties; returns the new reported version."""

    def on_desired(self, handler: DesiredHandler) -> None:
        """Register the handler for desired-property updates."""

    def on_message(self, handler: MessageHandler) -> None:
        """Register the handler for cloud-to-device messages."""
