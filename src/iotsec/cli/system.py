"""The whole system in one process: the hub, the workspace, analytics and the console.

This is the composition root's wiring: the hub, the workspace and analytics never import each
other; they meet here. The workspace and analytics each consume the hub's durable log (their
own consumer positions); analytics writes alerts, recommendations and the device inventory to
the workspace through adapters; one HTTPS listener serves devices, the service API, the
workspace's query API (``/workspace``), analytics' routes (``/security/...``) and the console
(``/console``), all signed in through the hub's policies.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable

from starlette.requests import Request
from starlette.routing import BaseRoute, Mount

from iotsec.cli.alerts_cmd import validate_for_hub
from iotsec.cli.analytics_service import AnalyticsService
from iotsec.cli.console_wiring import ConsoleWiring
from iotsec.cli.local_agent import LocalAgent
from iotsec.hub.server import HubServer
from iotsec.hub.settings import HubSettings
from iotsec.workspace.api import build_query_app
from iotsec.workspace.ingest import log_ingest_workers
from iotsec.workspace.query import Workspace
from iotsec.workspace.retention import RetentionPolicy, run_retention
from iotsec.workspace.rows import HubIdentity
from iotsec.workspace.store import WorkspaceStore

__all__ = ["System"]


class System:
    """``iotsec up``: the hub serving devices, and the workspace filling and answering."""

    def __init__(
        self,
        settings: HubSettings,
        *,
        on_progress: Callable[[str], None],
        workspace: bool = True,
        analytics: bool = True,
        console: bool = True,
        local_agent: bool = False,
    ) -> None:
        self.settings = settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.store: WorkspaceStore | None = None
        routes: list[BaseRoute] = []
        if workspace:
            self.store = WorkspaceStore(settings.data_dir / "workspace.duckdb")
            query_app = build_query_app(Workspace(self.store), self._authorize)
            routes.append(Mount("/workspace", app=query_app))
        self.analytics: AnalyticsService | None = None
        if analytics:
            self.analytics = AnalyticsService(settings.data_dir, settings.resource_id, self.store)
            routes += self.analytics.routes()
        self.console: ConsoleWiring | None = None
        if console:
            self.console = ConsoleWiring(settings, lambda: self.hub)
            routes += self.console.routes()
        self.hub = HubServer(
            settings,
            on_progress=on_progress,
            extra_routes=routes,
            custom_alert_validator=validate_for_hub,
        )
        if self.analytics is not None:
            self.analytics.attach(self.hub)
        self.local_agent = LocalAgent(settings.data_dir, on_progress) if local_agent else None
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._on_progress = on_progress

    async def _authorize(self, request: Request) -> None:
        await self.hub.authorize_service(request, "RegistryRead")

    async def start(self) -> None:
        """Start the hub, then the workspace's jobs, then analytics."""
        self.hub.install_stop_signals()
        await self.hub.start()
        loop = asyncio.get_running_loop()
        if self.store is not None:
            # One ingest worker per core, each with its own partitions and store lane.
            ingests = log_ingest_workers(
                self.hub.log,
                self.store,
                HubIdentity(self.settings.resource_id),
                workers=os.cpu_count() or 1,
            )
            self._tasks = [loop.create_task(ingest.run(self._stop)) for ingest in ingests]
            self._tasks.append(
                loop.create_task(run_retention(self.store, RetentionPolicy(), self._stop))
            )
        if self.analytics is not None:
            self._on_progress("starting analytics (rules, baselines, threat intelligence)")
            await self.analytics.start(self._stop)
        if self.local_agent is not None:
            await self.local_agent.start(self.hub)
            if self.store is not None:
                self._tasks.append(loop.create_task(self._report_first_snapshot()))

    async def _report_first_snapshot(self) -> None:
        """Progress for the slow first step: the local agent's first snapshot and baseline."""
        assert self.local_agent is not None and self.store is not None
        device = self.local_agent.device_id.replace("'", "''")
        sql = (
            "SELECT RawEventName, count(*) FROM SecurityIoTRawEvent"  # noqa: S608 - quoted id
            f" WHERE DeviceId = '{device}' AND RawEventCategory = 'Periodic' GROUP BY 1"
        )
        self._on_progress("waiting for the first snapshot and OS baseline of this machine")
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), 2.0)
            counts = await asyncio.to_thread(self._counts, sql)
            if "OSBaseline" in counts:
                listed = ", ".join(f"{name} {n}" for name, n in sorted(counts.items()))
                self._on_progress(f"first snapshot of this machine received ({listed} rows)")
                return

    def _counts(self, sql: str) -> dict[str, int]:
        assert self.store is not None
        cursor = self.store.query_cursor()
        try:
            return {str(name): int(n) for name, n in cursor.execute(sql).fetchall()}
        finally:
            cursor.close()

    async def serve_forever(self) -> None:
        """Serve until SIGINT/SIGTERM, then stop everything cleanly."""
        try:
            await self.hub.wait_for_stop_request()
        finally:
            await self.stop()

    async def stop(self) -> None:
        """Flush and stop the workspace jobs while the log is open, then stop the hub."""
        if self.local_agent is not None:
            await self.local_agent.stop()  # first: what it still sends reaches the log
        self._stop.set()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.analytics is not None:
            await self.analytics.stop()
        if self.console is not None:
            await self.console.close()
        await self.hub.stop()
        if self.store is not None:
            self.store.close()
