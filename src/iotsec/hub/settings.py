"""How a hub process is started: data dir, listeners, name, certificates (built by the CLI)."""

from __future__ import annotations

import re
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path

from iotsec.hub.errors import HubConfigError

__all__ = ["HubSettings", "default_hub_name", "resource_id"]

_HUB_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{1,48}[a-z0-9])")


def default_hub_name() -> str:
    """A hub name from this machine's host name: IoT Hub's rule, 3-50 of [a-z0-9-]."""
    name = re.sub(r"[^a-z0-9-]+", "-", socket.gethostname().split(".")[0].lower()).strip("-")
    name = (name or "iotsec")[:50].strip("-")
    return name if _HUB_NAME.fullmatch(name) else f"iotsec-{name}"[:50].strip("-")


def resource_id(hub_name: str) -> str:
    """The hub's resource id, shaped like an Azure IoT Hub's, with the name in lower case.

    >>> resource_id("Lab-Hub").rsplit("/", 3)[1:]
    ['IotHubs', 'lab-hub']
    """
    subscription = uuid.uuid5(uuid.NAMESPACE_DNS, f"{hub_name.lower()}.hubs.iotsec")
    return (
        f"/subscriptions/{subscription}/resourceGroups/iotsec/providers/"
        f"Microsoft.Devices/IotHubs/{hub_name.lower()}"
    )


@dataclass(frozen=True, slots=True)
class HubSettings:
    """Everything ``iotsec up`` decides before the hub starts."""

    data_dir: Path
    hub_name: str
    host: str = "127.0.0.1"
    mqtt_port: int = 8883
    https_port: int = 8443
    tls_cert: Path | None = None
    tls_key: Path | None = None
    device_host: str | None = None
    local_agent: bool = True

    def __post_init__(self) -> None:
        if not _HUB_NAME.fullmatch(self.hub_name):
            raise HubConfigError(
                f"hub name {self.hub_name!r} must be 3-50 characters of a-z, 0-9 and '-', "
                "not starting or ending with '-'"
            )
        if (self.tls_cert is None) != (self.tls_key is None):
            raise HubConfigError("--tls-cert and --tls-key go together")
        for name, port in (("MQTT", self.mqtt_port), ("HTTPS", self.https_port)):
            if not 0 <= port <= 65535:
                raise HubConfigError(f"{name} port {port} is not a TCP port")

    @property
    def resource_id(self) -> str:
        """The hub's resource id (contains the hub name in lower case)."""
        return resource_id(self.hub_name)

    @property
    def public_host(self) -> str:
        """The host name devices should put in their connection strings."""
        if self.device_host:
            return self.device_host
        if self.host in ("127.0.0.1", "::1", "localhost"):
            return "localhost"
        if self.host in ("0.0.0.0", "::"):  # noqa: S104  # comparing, not binding
            return socket.getfqdn()
        return self.host

    @property
    def tls_dir(self) -> Path:
        """Where the local CA and the server certificate live."""
        return self.data_dir / "tls"
