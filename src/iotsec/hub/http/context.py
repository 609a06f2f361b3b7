"""What the HTTPS application needs from the rest of the hub, passed in once at build time."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from iotsec.hub.auth import Authenticator
from iotsec.hub.c2d import C2dQueue
from iotsec.hub.certificates import CaCertificateStore
from iotsec.hub.customalerts import CustomAlertValidator, check_shape
from iotsec.hub.deadletters import DeadLetterStore
from iotsec.hub.hubconfig import HubConfiguration
from iotsec.hub.ingest import Ingestor
from iotsec.hub.oplog import OperationLog
from iotsec.hub.registry import RegistryStore
from iotsec.schema import MAX_MESSAGE_BYTES

__all__ = ["DesiredNotifier", "HubContext"]

#: ``notify_desired(device_id, module_id, patch)``; the patch carries the new ``$version``.
DesiredNotifier = Callable[[str, str | None, dict[str, Any]], None]


def _nobody_connected(device_id: str, module_id: str | None) -> bool:
    return False


def _ignore_configuration(config: HubConfiguration) -> None:
    return None


@dataclass(frozen=True, slots=True)
class HubContext:
    """Everything the HTTPS application calls, built once by the composition root.

    ``notify_c2d`` and ``notify_desired`` let the MQTT endpoint push to connected devices;
    ``notify_configuration`` lets the owner of the rate limiter apply a new configuration;
    ``is_connected`` feeds ``connectionState`` in the registry answers;
    ``validate_custom_alerts`` checks custom alerts before they are stored; ``certificates``
    holds the trusted CA certificates (its owner applies a change to the TLS listeners).
    """

    registry: RegistryStore
    authenticator: Authenticator
    ingestor: Ingestor
    c2d: C2dQueue
    deadletters: DeadLetterStore
    oplog: OperationLog
    hub_name: str
    hub_host: str
    notify_c2d: Callable[[str], None]
    notify_desired: DesiredNotifier
    certificates: CaCertificateStore
    clock: Callable[[], float] = time.time
    is_connected: Callable[[str, str | None], bool] = _nobody_connected
    notify_configuration: Callable[[HubConfiguration], None] = _ignore_configuration
    max_message_bytes: int = MAX_MESSAGE_BYTES
    #: How long an HTTPS device holds a received cloud-to-device message before it is redelivered.
    c2d_lock_seconds: float = 60.0
    #: Checks a security group's custom alerts before they are stored (the composition root
    #: passes the analytics model's; the hub alone checks the shape).
    validate_custom_alerts: CustomAlertValidator = check_shape
