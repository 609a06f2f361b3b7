"""Analytics inside ``iotsec up``: built from the hub's registry, fed by its log, writing to the
workspace and the outputs.

Configuration is one optional file, ``analytics.yaml`` in the data dir::

    rules: [my-rules.yaml]            # extra rule files (relative to the data dir)
    feeds:                            # threat-intelligence feeds (see docs/operations.md)
      - {name: local-bad-ips, kind: list-file, path: bad-ips.txt}
    outputs:
      webhooks: [{url: "https://siem.example/hook", secret_file: hook.secret}]
      syslog: [{host: siem.example, port: 6514, transport: tls, format: cef}]

Detector state (baselines, fleet, recommendations) lives in ``analytics-state.db`` and alerts
in ``alerts.db``, both in the data dir; positions in the durable log are the ``analytics``
consumer's, so a restart resumes where the last run stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from iotsec.analytics.alerts import AlertError, AlertNotFound, AlertSink
from iotsec.analytics.alertstore import AlertStore
from iotsec.analytics.baseline import NoveltyDetector, OutlierDetector, RateDetector
from iotsec.analytics.baseline.state import Stateful, StateStore
from iotsec.analytics.custom import CustomAlertDetector, DocumentSource, watch_custom_alerts
from iotsec.analytics.detection import Detector
from iotsec.analytics.enrich import Enricher
from iotsec.analytics.errors import AnalyticsError
from iotsec.analytics.fleet import DeviceOnboardedDetector, DeviceSilentDetector
from iotsec.analytics.intel import FeedConfig, FeedManager, load_feed_configs
from iotsec.analytics.outputs import (
    Outputs,
    SyslogConfig,
    SyslogOutput,
    WebhookConfig,
    WebhookOutput,
)
from iotsec.analytics.pipeline import AnalyticsPipeline
from iotsec.analytics.processor import AnalyticsProcessor, DeviceSink, RecommendationSink
from iotsec.analytics.recommendations import Recommendations
from iotsec.analytics.rules import RuleEngine, load_catalogue, load_rules
from iotsec.cli.adapters import RegistryDirectory, WorkspaceAnalyticsSink, hub_state, utc_now
from iotsec.cli.intel_api import IntelFeedApi
from iotsec.cli.service_client import CliError
from iotsec.hub.server import HubServer
from iotsec.workspace.store import WorkspaceStore

__all__ = ["CONFIG_FILE", "AnalyticsConfig", "AnalyticsService", "load_analytics_config"]

log = logging.getLogger("iotsec.analytics")

CONFIG_FILE = "analytics.yaml"
_HUB_STATE_EVERY = 60.0


@dataclass(frozen=True, slots=True)
class AnalyticsConfig:
    """What ``analytics.yaml`` sets: extra rule files, feeds and outputs."""

    rule_files: tuple[Path, ...] = ()
    feeds: tuple[FeedConfig, ...] = ()
    webhooks: tuple[WebhookConfig, ...] = ()
    syslog: tuple[SyslogConfig, ...] = ()


def load_analytics_config(path: Path) -> AnalyticsConfig:
    """Read ``path`` (a missing file is the default configuration).

    Raises:
        CliError: the file is not YAML, or a section is wrong (the file and section named).
    """
    if not path.exists():
        return AnalyticsConfig()
    try:
        data: Any = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise CliError(f"{path}: cannot read: {exc}") from exc
    if not isinstance(data, dict):
        raise CliError(f"{path}: expected a mapping with rules, feeds and outputs")
    unknown = set(data) - {"rules", "feeds", "outputs"}
    if unknown:
        raise CliError(f"{path}: unknown section {sorted(unknown)[0]!r} (rules, feeds, outputs)")
    base = path.parent
    try:
        rules = tuple(base / str(p) for p in data.get("rules") or ())
        feeds = load_feed_configs(data.get("feeds") or [], base=base)
        outputs = data.get("outputs") or {}
        if not isinstance(outputs, dict):
            raise CliError(f"{path}: outputs must be a mapping with webhooks and syslog")
        webhooks = tuple(
            WebhookConfig.from_json(_with_secret(item, base), where=f"outputs.webhooks[{i}]")
            for i, item in enumerate(outputs.get("webhooks") or ())
        )
        syslog = tuple(
            SyslogConfig.from_json(item, where=f"outputs.syslog[{i}]")
            for i, item in enumerate(outputs.get("syslog") or ())
        )
    except (AnalyticsError, ValueError, TypeError) as exc:
        raise CliError(f"{path}: {exc}") from exc
    return AnalyticsConfig(rules, feeds, webhooks, syslog)


def _with_secret(item: Any, base: Path) -> Any:
    # A webhook secret may live in a file of its own, so analytics.yaml holds no secret.
    if isinstance(item, dict) and "secret_file" in item:
        item = dict(item)
        secret_path = base / str(item.pop("secret_file"))
        try:
            item["secret"] = secret_path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ValueError(f"cannot read the webhook secret file {secret_path}: {exc}") from exc
    return item


@dataclass
class AnalyticsService:
    """Builds and runs the analytics pipeline for one hub (and its workspace, if any).

    Its service routes exist before the hub does (the hub is built with them), so the hub is
    attached afterwards (``attach``); the routes answer 503 until ``start`` has run.
    """

    data_dir: Path
    resource_id: str
    store: WorkspaceStore | None = None
    _hub: HubServer | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def hub(self) -> HubServer:
        """The hub this service reads (set by ``attach``)."""
        if self._hub is None:
            raise RuntimeError("AnalyticsService.attach(hub) was not called")
        return self._hub

    def attach(self, hub: HubServer) -> None:
        """Use ``hub``'s registry, log and service authorization."""
        self._hub = hub

    def __post_init__(self) -> None:
        self.config = load_analytics_config(self.data_dir / CONFIG_FILE)
        self.intel_api = IntelFeedApi(
            self.data_dir,
            config_file=self.data_dir / CONFIG_FILE,
            hub=lambda: self.hub,
            feeds=lambda: self.feeds,
        )
        self.alerts: AlertStore | None = None
        self.feeds: FeedManager | None = None
        self.outputs: Outputs | None = None
        self.processor: AnalyticsProcessor | None = None
        self.pipeline: AnalyticsPipeline | None = None
        self.recommendations: Recommendations | None = None

    def routes(self) -> list[BaseRoute]:
        """Service API routes: alert dismiss/resolve, and the threat-intel feeds (see
        ``iotsec.cli.intel_api``)."""
        return [
            Route("/security/alerts/{alert_id}/{action}", self._alert_action, methods=["POST"]),
            *self.intel_api.routes(),
        ]

    async def start(self, stop: asyncio.Event) -> None:
        """Build everything from the running hub, then start the pipeline and its helpers."""
        registry = self.hub.registry
        ruleset = load_catalogue()
        if self.config.rule_files:
            ruleset = ruleset.merge(load_rules(self.config.rule_files))
        self.feeds = FeedManager(self.config.feeds)
        self.feeds.start()
        custom = CustomAlertDetector({})
        novelty, rates, outlier = NoveltyDetector(None), RateDetector(None), OutlierDetector(None)
        silent, onboarded = DeviceSilentDetector(), DeviceOnboardedDetector()
        rules = RuleEngine(ruleset, self.feeds)
        detectors: list[Detector] = [
            rules,
            custom,
            silent,
            onboarded,
            novelty,
            rates,
            outlier,
        ]
        self.recommendations = Recommendations(
            hub=await asyncio.to_thread(hub_state, registry, hub=self.resource_id)
        )
        self.alerts = AlertStore(self.data_dir / "alerts.db", clock=utc_now)
        alert_sinks: list[AlertSink] = []
        recommendation_sinks: list[RecommendationSink] = []
        device_sinks: list[DeviceSink] = []
        if self.store is not None:
            workspace = WorkspaceAnalyticsSink(self.store)
            alert_sinks.append(workspace)
            recommendation_sinks.append(workspace)
            device_sinks.append(workspace)
        outputs = [WebhookOutput(c) for c in self.config.webhooks]
        outputs += [SyslogOutput(c) for c in self.config.syslog]  # type: ignore[misc]  # both are queued outputs
        if outputs:
            self.outputs = Outputs(outputs)
            await self.outputs.start()
            alert_sinks.append(self.outputs)
        stateful: dict[str, Stateful] = {
            "rules": rules,
            "novelty": novelty,
            "rates": rates,
            "outlier": outlier,
            "silent": silent,
            "onboarded": onboarded,
            "recommendations": self.recommendations,
        }
        self.processor = await asyncio.to_thread(
            AnalyticsProcessor,
            detectors=detectors,
            alerts=self.alerts,
            alert_sinks=alert_sinks,
            recommendations=self.recommendations,
            recommendation_sinks=recommendation_sinks,
            device_sinks=device_sinks,
            state=StateStore(self.data_dir / "analytics-state.db"),
            stateful=stateful,
        )
        enricher = Enricher(RegistryDirectory(registry, hub=self.resource_id), hub=self.resource_id)
        self.pipeline = AnalyticsPipeline(self.hub.log, enricher, self.processor)
        source = DocumentSource(registry.custom_alert_groups)
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self.pipeline.run(stop)),
            loop.create_task(watch_custom_alerts(source, custom, stop)),
            loop.create_task(self._refresh_hub_state(stop)),
        ]
        log.info(
            "analytics started: %d rules, %d feeds, %d outputs",
            len(ruleset.rules),
            len(self.config.feeds),
            len(outputs),
        )

    async def _refresh_hub_state(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), _HUB_STATE_EVERY)
            if stop.is_set() or self.recommendations is None:
                return
            try:
                state = await asyncio.to_thread(hub_state, self.hub.registry, hub=self.resource_id)
            except Exception:
                log.exception("cannot read the registry for hub recommendations; retrying")
                continue
            self.recommendations.update_hub(state)

    async def stop(self) -> None:
        """Wait for the tasks (``stop`` was set by the caller), save state, close stores."""
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.processor is not None:
            await asyncio.to_thread(self.processor.close)
        if self.outputs is not None:
            await self.outputs.close()
        if self.feeds is not None:
            await asyncio.to_thread(self.feeds.stop, 5.0)
        if self.alerts is not None:
            self.alerts.close()

    async def _alert_action(self, request: Request) -> Response:
        await self.hub.authorize_service(request, "ServiceConnect")
        action = request.path_params["action"]
        alert_id = request.path_params["alert_id"]
        if action not in ("dismiss", "resolve"):
            return _error(404, "NotFound", f"no action {action!r} (dismiss or resolve)")
        if self.alerts is None:
            return _error(503, "ServiceUnavailable", "analytics is starting")
        try:
            body = await request.json()
        except ValueError:
            body = {}
        reason = str(body.get("reason") or "") if isinstance(body, dict) else ""
        by = str(body.get("by") or "service") if isinstance(body, dict) else "service"
        change = self.alerts.dismiss if action == "dismiss" else self.alerts.resolve
        try:
            alert = await asyncio.to_thread(change, alert_id, reason=reason, by=by)
        except AlertNotFound:
            return _error(404, "AlertNotFound", f"no alert {alert_id!r}")
        except AlertError as exc:
            return _error(409, "AlertConflict", str(exc))
        if self.store is not None:
            await asyncio.to_thread(WorkspaceAnalyticsSink(self.store).write_alerts, [alert])
        return Response(status_code=204)


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"ErrorCode": code, "Message": message}, status_code=status)
