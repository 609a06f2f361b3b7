"""A device-to-cloud or cloud-to-device message: a body plus properties."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from iotsec.schema import SECURITY_INTERFACE_ID

__all__ = ["Message"]


@dataclass(frozen=True, slots=True)
class Message:
    """A message body and its properties, as IoT Hub carries them.

    ``properties`` are the application properties. ``interface_id`` is the system property that
    marks a security message (``$.ifid`` on MQTT, ``iothub-interface-id`` on HTTPS).
    """

    body: bytes
    properties: dict[str, str] = field(default_factory=dict)
    message_id: str | None = None
    correlation_id: str | None = None
    content_type: str | None = None
    content_encoding: str | None = None
    interface_id: str | None = None

    @classmethod
    def json(cls, value: Any, **kwargs: Any) -> Message:
        """A message whose body is ``value`` as JSON."""
        return cls(
            orjson.dumps(value), content_type="application/json", content_encoding="utf-8", **kwargs
        )

    @property
    def is_security_message(self) -> bool:
        """True when the message carries the ASC security interface id."""
        return self.interface_id == SECURITY_INTERFACE_ID
