"""The console inside ``iotsec up``: its backend calls this server's own service API.

The console imports nothing of the hub. It gets a ``ServiceApiBackend`` that signs its calls
with the owner credential (read from the data dir when needed, so a key rotation is picked up),
trusts the hub's own CA, and finds the service URL once the hub has started; user accounts live
in ``users.db`` and the session secret in ``console.secret``, both in the data dir.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable
from pathlib import Path

from starlette.routing import BaseRoute

from iotsec.cli.service_client import CliError, _credential
from iotsec.console import (
    ConsoleSettings,
    ServiceApiBackend,
    ServiceRoutes,
    SqliteUserStore,
    console_routes,
    load_or_create_secret,
)
from iotsec.console.users import USERS_FILE
from iotsec.hub.server import HubServer
from iotsec.hub.settings import HubSettings
from iotsec.protocol import generate_sas_token

__all__ = ["ConsoleWiring"]

#: The hub's routes for what the console shows beyond devices and queries.
ROUTES = ServiceRoutes(
    custom_alerts="/securityGroups",
    custom_alerts_group="/securityGroups/{group}/customAlerts",
)


class ConsoleWiring:
    """The console's routes for a hub that is built (and started) after them."""

    def __init__(self, settings: HubSettings, hub: Callable[[], HubServer]) -> None:
        self._data_dir: Path = settings.data_dir
        self._hub = hub
        self._context: ssl.SSLContext | None = None
        self.backend = ServiceApiBackend(
            base_url=lambda: str(self._hub().info()["service_url"]),
            token=self._token,
            verify=self._verify,
            routes=ROUTES,
        )
        self.users = SqliteUserStore(self._data_dir / USERS_FILE)
        self.settings = ConsoleSettings(
            secret=load_or_create_secret(self._data_dir / "console.secret"),
            owner_key=self._owner_key,
            hub_name=settings.hub_name,
        )

    def routes(self) -> list[BaseRoute]:
        """``/console`` and ``/`` (which redirects there)."""
        return console_routes(self.backend, self.users, self.settings)

    def _owner(self) -> dict[str, str]:
        return _credential(self._data_dir)

    def _owner_key(self) -> str | None:
        try:
            return self._owner()["SharedAccessKey"]
        except CliError:
            return None

    def _token(self) -> str:
        owner = self._owner()
        return generate_sas_token(
            owner["HostName"],
            owner["SharedAccessKey"],
            int(time.time()) + 300,
            owner["SharedAccessKeyName"],
        )

    def _verify(self) -> ssl.SSLContext:
        if self._context is None:
            ca = self._hub().pki.ca
            self._context = (
                ssl.create_default_context(cafile=str(ca)) if ca else ssl.create_default_context()
            )
        return self._context

    async def close(self) -> None:
        """Close the backend's connections."""
        await self.backend.aclose()
