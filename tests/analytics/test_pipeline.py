"""The stream processor: enrich, process, then commit; partitions; failures re-read."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime

import msgspec
import pytest

from iotsec.analytics.enrich import HUB_DEVICE, Enricher, StaticDirectory
from iotsec.analytics.observation import Observation
from iotsec.analytics.pipeline import CONSUMER, AnalyticsPipeline, PipelinePolicy
from iotsec.stream import Entry, MemoryLog, Record, partition_for
from tests.workspace.samples import AT, every_event, security_record

DIRECTORY = StaticDirectory({"dev-1": ("cameras", {"site": "north"})}, hub="/hubs/hub1")


class Recorder:
    """A processor that keeps what it saw; it can be told to fail once."""

    def __init__(self) -> None:
        self.batches: list[list[Observation]] = []
        self.ticks: list[datetime] = []
        self.fail = False

    def process(self, observations: Sequence[Observation], now: datetime) -> None:
        if self.fail:
            self.fail = False
            raise RuntimeError("sink down")
        self.batches.append(list(observations))

    def tick(self, now: datetime) -> None:
        self.ticks.append(now)


def _oplog(device: str | None, **fields: object) -> Record:
    body = {"time": AT.timestamp(), "category": "Connections", "operation": "authenticate"}
    if device:
        body["deviceId"] = device
    body.update(fields)
    return Record(device or HUB_DEVICE, "oplog", msgspec.json.encode(body), {}, AT.timestamp())


def test_security_events_become_one_observation_per_row_with_context() -> None:
    enricher = Enricher(DIRECTORY)
    observations = enricher.observations(Entry(2, 5, security_record(every_event())))
    assert len(observations) == 15
    ports = [o for o in observations if o.name == "ListeningPorts"]
    assert [o.row_index for o in ports] == [0, 1]
    assert [o.get("LocalPort") for o in ports] == ["22", "53"]
    first = observations[0]
    assert first.source == "agent" and first.position == (2, 5)
    assert first.device.group == "cameras" and first.get("Tags.site") == "north"
    assert first.device.hub == "/hubs/hub1" and first.time == AT
    assert first.evidence_id == f"{first.event_id}:0"


def test_unknown_devices_and_hub_entries_still_get_a_context() -> None:
    enricher = Enricher(DIRECTORY)
    [unknown] = enricher.observations(Entry(0, 1, _oplog("ghost", result="Failure")))
    assert unknown.device.known is False and unknown.device.group == "default"
    assert unknown.get("Result") == "Failure"
    [hub] = enricher.observations(Entry(0, 2, _oplog(None, category="Configurations")))
    assert hub.device.device_id == HUB_DEVICE and hub.source == "hub"


def test_entries_that_do_not_decode_are_counted_not_raised() -> None:
    enricher = Enricher(DIRECTORY)
    assert enricher.observations(Entry(0, 0, Record("d", "security", b"{", {}, 0.0))) == []
    assert enricher.observations(Entry(0, 1, Record("d", "oplog", b"[]", {}, 0.0))) == []
    assert enricher.observations(Entry(0, 2, Record("d", "d2c", b"{}", {}, 0.0))) == []
    assert enricher.undecodable == 2


async def test_positions_are_committed_after_the_processor_returns() -> None:
    log = MemoryLog(partitions=4)
    await log.append([security_record(every_event()), _oplog("dev-1")])
    recorder = Recorder()
    recorder.fail = True
    pipeline = AnalyticsPipeline(log, Enricher(DIRECTORY), recorder, clock=lambda: 1000.0)
    with pytest.raises(RuntimeError, match="sink down"):
        await pipeline.poll()
    assert [await log.position(CONSUMER, p) for p in range(4)] == [0, 0, 0, 0]
    assert await pipeline.poll() == 2  # re-read from the committed positions
    partition = partition_for("dev-1", 4)
    assert await log.position(CONSUMER, partition) == 2
    assert sum(len(b) for b in recorder.batches) == 16
    assert recorder.ticks == [datetime.fromtimestamp(1000.0, UTC)]
    assert await pipeline.poll() == 0


async def test_a_pipeline_reads_only_the_partitions_it_owns() -> None:
    log = MemoryLog(partitions=4)
    devices = [f"dev-{i}" for i in range(12)]
    await log.append([_oplog(d) for d in devices])
    owned = [0, 1]
    recorder = Recorder()
    pipeline = AnalyticsPipeline(log, Enricher(DIRECTORY), recorder, partitions=owned)
    await pipeline.poll()
    seen = {o.device.device_id for batch in recorder.batches for o in batch}
    assert seen == {d for d in devices if partition_for(d, 4) in owned}
    with pytest.raises(ValueError, match="no partition 7"):
        AnalyticsPipeline(log, Enricher(DIRECTORY), recorder, partitions=[7])


async def test_run_survives_a_failing_batch_and_stops_when_asked() -> None:
    log = MemoryLog(partitions=1)
    await log.append([_oplog("dev-1")])
    recorder = Recorder()
    recorder.fail = True
    stop = asyncio.Event()
    pipeline = AnalyticsPipeline(
        log, Enricher(DIRECTORY), recorder, policy=PipelinePolicy(idle_poll=0.01)
    )
    task = asyncio.create_task(pipeline.run(stop))
    for _ in range(300):
        if await log.position(CONSUMER, 0) == 1:
            break
        await asyncio.sleep(0.01)
    stop.set()
    await task
    assert await log.position(CONSUMER, 0) == 1
    assert len(recorder.batches) == 1
