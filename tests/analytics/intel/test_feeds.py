"""FeedConfig, configuration files, and FeedManager: reloads that never block readers."""

from __future__ import annotations

import doctest
import shutil
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from iotsec.analytics.errors import FeedError
from iotsec.analytics.indicators import IntelLookup
from iotsec.analytics.intel import (
    SOURCES,
    FeedConfig,
    FeedLoad,
    FeedManager,
    Indicator,
    load_feed_configs,
    parse_feed_config,
)
from iotsec.analytics.intel import feeds as feeds_module

FIXTURES = Path(__file__).parent / "fixtures"
NOW = datetime(2025, 1, 1, tzinfo=UTC)


class Clock:
    """A wall clock that moves only when told."""

    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


def test_doctests() -> None:
    assert doctest.testmod(feeds_module).failed == 0


# --- FeedConfig ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"name": "", "kind": "list-file", "path": Path("x")}, "a feed needs a name"),
        ({"name": "f", "kind": "stix-fil", "path": Path("x")}, "did you mean 'stix-file'?"),
        ({"name": "f", "kind": "list-file"}, "a list-file feed needs a path"),
        ({"name": "f", "kind": "list-file", "path": Path("x"), "list_kind": "ips"}, "'ip'?"),
        ({"name": "f", "kind": "list-file", "path": Path("x"), "refresh": 0}, "refresh"),
        ({"name": "f", "kind": "taxii", "url": "https://t.example/taxii2/"}, "collection"),
        ({"name": "f", "kind": "taxii", "url": "http://t.example/", "collection": "c"}, "https"),
        (
            {"name": "f", "kind": "taxii", "url": "https://u:p@t.example/", "collection": "c"},
            "not in the url",
        ),
        (
            {"name": "f", "kind": "taxii", "url": "https://t.example/", "collection": "c",
             "password": "secret"},
            "a password needs a username",
        ),
    ],
)  # fmt: skip
def test_a_feed_config_that_cannot_work_is_refused(kwargs: dict[str, object], reason: str) -> None:
    with pytest.raises(FeedError) as caught:
        FeedConfig(**kwargs)  # type: ignore[arg-type]
    assert reason in caught.value.reason


def test_a_feed_config_never_shows_its_password() -> None:
    config = FeedConfig(
        "cti",
        "taxii",
        url="https://t.example/taxii2/",
        collection="c1",
        username="reader",
        password="hunter2-secret",
    )
    assert "hunter2-secret" not in repr(config)
    assert "hunter2-secret" not in str(config)


def test_feed_configs_from_a_config_file(tmp_path: Path) -> None:
    (tmp_path / "taxii.pass").write_text("s3cret\n")
    configs = load_feed_configs(
        {
            "feeds": [
                {"name": "local", "kind": "stix-file", "path": "intel/bundle.json"},
                {"name": "block", "kind": "list-file", "path": "/abs/block.txt",
                 "list_kind": "ip", "refresh": "15m"},
                {"name": "cti", "kind": "taxii", "url": "https://t.example/taxii2/",
                 "collection": "c1", "username": "reader", "password_file": "taxii.pass",
                 "ca_file": "ca.pem", "refresh": 21600},
            ]
        },
        base=tmp_path,
    )  # fmt: skip
    local, block, cti = configs
    assert local.path == tmp_path / "intel/bundle.json"
    assert (block.path, block.list_kind, block.refresh) == (Path("/abs/block.txt"), "ip", 900.0)
    assert (cti.password, cti.ca_file, cti.refresh) == ("s3cret", tmp_path / "ca.pem", 21600.0)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ({"feeds": "x"}, "feeds: expected a list of feeds"),
        ([7], "feeds[0]: expected a mapping"),
        ([{"name": "f", "kind": "taxii", "colection": "c"}], "did you mean 'collection'?"),
        ([{"name": "f", "kind": "list-file", "path": 7}], "feeds[0].path: expected a string"),
        ([{"name": "f", "kind": "list-file", "path": "x", "refresh": "soon"}], "feeds[0].refresh"),
        ([{"kind": "list-file", "path": "x"}], "a feed needs a name and a kind"),
        ([{"name": "f", "kind": "taxii", "password_file": "/nonexistent/x"}], "cannot read"),
    ],
)
def test_a_bad_config_file_names_the_feed_and_key(data: object, reason: str) -> None:
    with pytest.raises(FeedError) as caught:
        load_feed_configs(data)
    assert reason in caught.value.reason


# --- FeedManager --------------------------------------------------------------------------------


@pytest.fixture
def files(tmp_path: Path) -> Path:
    shutil.copy(FIXTURES / "bundle.json", tmp_path / "bundle.json")
    (tmp_path / "block.txt").write_text("# test\n192.0.2.200\nbad line here\nc2.example\n")
    return tmp_path


def two_feeds(folder: Path) -> list[FeedConfig]:
    return [
        FeedConfig("cti", "stix-file", path=folder / "bundle.json"),
        FeedConfig("block", "list-file", path=folder / "block.txt"),
    ]


def test_a_manager_is_an_intel_lookup_over_all_its_feeds(files: Path) -> None:
    manager = FeedManager(two_feeds(files), clock=Clock())
    lookup: IntelLookup = manager
    assert lookup.match("ip", "198.51.100.7") is None  # nothing loaded yet
    manager.reload()
    assert lookup.match("ip", "198.51.100.7").feed == "cti"  # type: ignore[union-attr]
    assert lookup.match("domain", "x.c2.example").feed == "block"  # type: ignore[union-attr]
    assert lookup.match("ip", "192.0.2.200").indicator_id == "block.txt:2"  # type: ignore[union-attr]


def test_status_reports_counts_and_load_times(files: Path) -> None:
    clock = Clock()
    manager = FeedManager(two_feeds(files), clock=clock)
    assert [(s.name, s.last_load, s.ok) for s in manager.status()] == [
        ("cti", None, True),
        ("block", None, True),
    ]
    manager.reload()
    cti, block = manager.status()
    assert (cti.indicators, cti.skipped, cti.last_load, cti.last_error) == (10, 7, NOW, None)
    assert cti.by_kind == {"ip": 4, "domain": 2, "url": 1, "hash": 3}
    assert (block.indicators, block.skipped) == (2, 1)
    assert block.skipped_sample[0].where == "block.txt:3"


def test_a_failed_reload_keeps_the_previous_data_and_reports_the_error(files: Path) -> None:
    clock = Clock()
    manager = FeedManager(two_feeds(files), clock=clock)
    manager.reload()
    before = manager.index
    (files / "bundle.json").write_text('{"type": "bundle", "objects": [')
    clock.now = NOW + timedelta(hours=1)
    manager.reload(["cti"])
    assert manager.index is before  # nothing new loaded: the same index stays
    assert manager.match("ip", "198.51.100.7") is not None
    cti = next(s for s in manager.status() if s.name == "cti")
    assert (cti.ok, cti.indicators, cti.last_load) == (False, 10, NOW)
    assert cti.last_error is not None and cti.last_error.startswith("$: not valid JSON")
    assert cti.last_error_at == cti.last_attempt == NOW + timedelta(hours=1)

    # The other feed reloads meanwhile, and the broken one's old indicators come along.
    (files / "block.txt").write_text("203.0.113.50\n")
    manager.reload()
    assert manager.match("ip", "203.0.113.50") is not None
    assert manager.match("ip", "198.51.100.7") is not None
    assert manager.match("ip", "192.0.2.200") is None

    shutil.copy(FIXTURES / "bundle.json", files / "bundle.json")
    clock.now = NOW + timedelta(hours=2)
    manager.reload(["cti"])
    cti = next(s for s in manager.status() if s.name == "cti")
    assert (cti.ok, cti.last_load) == (True, NOW + timedelta(hours=2))
    assert cti.last_error_at == NOW + timedelta(hours=1)  # kept for operators


def test_a_missing_file_and_a_non_utf8_list_are_feed_errors(tmp_path: Path) -> None:
    (tmp_path / "latin1.txt").write_bytes(b"c2.example\nb\xfccher.example\n")
    manager = FeedManager(
        [
            FeedConfig("gone", "stix-file", path=tmp_path / "missing.json"),
            FeedConfig("latin1", "list-file", path=tmp_path / "latin1.txt"),
        ]
    )
    manager.reload()
    gone, latin1 = manager.status()
    assert gone.last_error == f"cannot read {tmp_path / 'missing.json'}: No such file or directory"
    assert latin1.last_error == f"{tmp_path / 'latin1.txt'}:2: not UTF-8 (byte 12)"


class BrokenSource:
    def load(self, now: datetime) -> FeedLoad:
        raise ZeroDivisionError("a bug")


def test_a_bug_in_a_source_is_reported_not_fatal(
    files: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sources = {**SOURCES, "list-file": lambda config: BrokenSource()}
    manager = FeedManager(two_feeds(files), sources=sources)  # type: ignore[arg-type]
    manager.reload()
    cti, block = manager.status()
    assert (cti.ok, block.ok) == (True, False)
    assert block.last_error == "internal error: ZeroDivisionError: a bug"
    assert "feed block: failed unexpectedly" in caplog.text
    assert manager.match("ip", "198.51.100.7") is not None


def test_names_are_unique_and_checked(files: Path) -> None:
    config = FeedConfig("cti", "stix-file", path=files / "bundle.json")
    with pytest.raises(FeedError, match="two feeds have this name"):
        FeedManager([config, config])
    with pytest.raises(FeedError, match="did you mean 'cti'"):
        FeedManager([config]).reload(["ct"])


class GatedSource:
    """A feed whose load waits for the test, so a reload is in progress while readers read."""

    def __init__(self, values: list[str]) -> None:
        self.values = values
        self.started = threading.Event()
        self.proceed = threading.Event()

    def load(self, now: datetime) -> FeedLoad:
        self.started.set()
        assert self.proceed.wait(10)
        indicators = tuple(Indicator("ip", v, v, "gated", v) for v in self.values)
        return FeedLoad("gated", indicators)


def test_readers_keep_matching_while_a_reload_is_in_progress() -> None:
    gated = GatedSource(["192.0.2.1", "192.0.2.2"])
    manager = FeedManager(
        [FeedConfig("gated", "list-file", path=Path("unused"))],
        sources={"list-file": lambda config: gated},  # type: ignore[dict-item]
    )
    gated.proceed.set()
    manager.reload()
    gated.proceed.clear()
    gated.started.clear()
    gated.values = ["192.0.2.1", "192.0.2.3"]

    stop = threading.Event()
    seen: list[tuple[bool, bool, bool]] = []
    slowest = [0.0]

    def reader() -> None:
        while not stop.is_set():
            start = time.perf_counter()
            index = manager.index  # one snapshot: a swap may fall between the manager's calls
            result = (
                manager.match("ip", "192.0.2.1") is not None,  # in both: always found
                index.match("ip", "192.0.2.2") is not None,
                index.match("ip", "192.0.2.3") is not None,
            )
            slowest[0] = max(slowest[0], time.perf_counter() - start)
            seen.append(result)

    thread = threading.Thread(target=reader)
    thread.start()
    reloading = threading.Thread(target=manager.reload)
    reloading.start()
    assert gated.started.wait(10)
    during = len(seen)
    time.sleep(0.2)  # the reload is held in its load: readers must carry on meanwhile
    assert len(seen) > during + 100
    assert seen[-1] == (True, True, False)  # still the old index
    gated.proceed.set()
    reloading.join(10)
    deadline = time.monotonic() + 5
    while seen[-1] != (True, False, True) and time.monotonic() < deadline:
        time.sleep(0.01)
    stop.set()
    thread.join(10)
    # Every answer came from one whole index, old or new; never a half-built one.
    assert set(seen) == {(True, True, False), (True, False, True)}
    assert slowest[0] < 0.5


def test_the_background_thread_loads_then_stops(files: Path) -> None:
    with FeedManager(two_feeds(files)) as manager:
        assert manager.wait_loaded(10)
        assert manager.match("ip", "198.51.100.7") is not None
        thread = manager._thread
        assert thread is not None and thread.is_alive()
    assert not thread.is_alive()


def test_a_failed_feed_is_retried_sooner_than_its_refresh(tmp_path: Path) -> None:
    calls: list[float] = []

    class Failing:
        def load(self, now: datetime) -> FeedLoad:
            calls.append(time.monotonic())
            raise FeedError("flaky", "server down")

    manager = FeedManager(
        [FeedConfig("flaky", "list-file", path=Path("unused"), refresh=3600)],
        sources={"list-file": lambda config: Failing()},  # type: ignore[dict-item]
        retry=0.05,
    )
    manager.start()
    try:
        deadline = time.monotonic() + 10
        while len(calls) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        manager.stop(10)
    assert len(calls) >= 3
    [status] = manager.status()
    assert (status.ok, status.last_error) == (False, "server down")


def test_the_operator_guide_example_config_loads(tmp_path: Path) -> None:
    guide = (Path(__file__).parents[3] / "docs" / "operations.md").read_text("utf-8")
    section = guide.split("## Threat intelligence", 1)[1]
    example = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "cti.pass").write_text("pw\n")
    configs = load_feed_configs(yaml.safe_load(example), base=tmp_path)
    assert [(c.name, c.kind) for c in configs] == [
        ("partner-cti", "taxii"),
        ("local-stix", "stix-file"),
        ("blocklist", "list-file"),
    ]
    assert (configs[0].password, configs[0].refresh) == ("pw", 3600.0)


# --- errors name the field ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "field"),
    [
        ({"name": "f", "kind": "list-fil", "path": "x"}, "kind"),
        ({"name": "f", "kind": "list-file"}, "path"),
        ({"name": "f", "kind": "list-file", "path": "x", "refresh": "soon"}, "refresh"),
        ({"name": "f", "kind": "list-file", "path": "x", "refresh": -1}, "refresh"),
        ({"name": "f", "kind": "list-file", "path": "x", "list_kind": "ips"}, "list_kind"),
        ({"name": "f", "kind": "list-file", "pth": "x"}, "pth"),
        ({"name": "f", "kind": "list-file", "path": 7}, "path"),
        ({"kind": "list-file", "path": "x"}, "name"),
        ({"name": "f", "path": "x"}, "kind"),
        ({"name": "f", "kind": "taxii", "collection": "c"}, "url"),
        ({"name": "f", "kind": "taxii", "url": "https://t.example/"}, "collection"),
        ({"name": "f", "kind": "taxii", "url": "ftp://t.example/", "collection": "c"}, "url"),
        (
            {"name": "f", "kind": "taxii", "url": "https://t.example/", "collection": "c",
             "password": "pw"},
            "username",
        ),
        (
            {"name": "f", "kind": "taxii", "url": "https://t.example/", "collection": "c",
             "username": "u", "password_file": "/nonexistent/pass"},
            "password_file",
        ),
    ],
)  # fmt: skip
def test_a_refused_entry_names_the_field_at_fault(entry: dict[str, object], field: str) -> None:
    with pytest.raises(FeedError) as caught:
        parse_feed_config(entry)
    assert caught.value.field == field
    assert caught.value.reason.startswith(field) or field in caught.value.reason


def test_a_url_with_credentials_is_refused_without_quoting_it() -> None:
    entry = {"name": "f", "kind": "taxii", "url": "http://u:hunter2@t.example/", "collection": "c"}
    with pytest.raises(FeedError) as caught:
        parse_feed_config(entry)
    assert caught.value.field == "url"
    assert "hunter2" not in str(caught.value)


def test_a_config_file_entry_keeps_its_position_in_the_reason() -> None:
    with pytest.raises(FeedError) as caught:
        load_feed_configs([{"name": "a", "kind": "list-file", "path": "x"}, {"name": "b"}])
    assert (caught.value.feed, caught.value.field) == ("b", "kind")
    assert caught.value.reason == "feeds[1]: a feed needs a name and a kind"


# --- changing the feeds of a manager ------------------------------------------------------------


def test_put_adds_a_feed_whose_indicators_match_once_loaded(files: Path) -> None:
    manager = FeedManager(two_feeds(files), clock=Clock())
    manager.reload()
    (files / "extra.txt").write_text("100.64.0.77\n")
    assert manager.put(FeedConfig("extra", "list-file", path=files / "extra.txt")) is True
    assert [s.name for s in manager.status()] == ["cti", "block", "extra"]
    assert manager.match("ip", "100.64.0.77") is None  # due, not loaded yet
    assert manager.match("ip", "198.51.100.7") is not None  # the others stay
    manager.reload(["extra"])
    found = manager.match("ip", "100.64.0.77")
    assert found is not None and found.feed == "extra"
    assert [c.name for c in manager.configs()] == ["cti", "block", "extra"]


def test_put_replaces_a_feed_and_drops_its_old_indicators_at_once(files: Path) -> None:
    manager = FeedManager(two_feeds(files), clock=Clock())
    manager.reload()
    assert manager.match("ip", "192.0.2.200") is not None
    (files / "other.txt").write_text("192.0.2.201\n")
    replaced = FeedConfig("block", "list-file", path=files / "other.txt", list_kind="ip")
    assert manager.put(replaced) is False
    assert manager.match("ip", "192.0.2.200") is None  # gone before any reload
    assert manager.match("ip", "198.51.100.7") is not None  # the other feed is untouched
    block = manager.status()[1]
    assert (block.name, block.indicators, block.last_attempt) == ("block", 0, None)
    manager.reload(["block"])
    assert manager.match("ip", "192.0.2.201") is not None
    assert manager.configs()[1] == replaced


def test_remove_drops_a_feed_and_refuses_an_unknown_one(files: Path) -> None:
    manager = FeedManager(two_feeds(files), clock=Clock())
    manager.reload()
    manager.remove("cti")
    assert manager.match("ip", "198.51.100.7") is None
    assert manager.match("ip", "192.0.2.200") is not None
    assert [s.name for s in manager.status()] == ["block"]
    with pytest.raises(FeedError, match="did you mean 'block'"):
        manager.remove("blok")
    manager.reload()  # only the remaining feed
    assert manager.match("ip", "198.51.100.7") is None


class CountingSource:
    def __init__(self, value: str) -> None:
        self.value = value
        self.loads = 0

    def load(self, now: datetime) -> FeedLoad:
        self.loads += 1
        indicator = Indicator("ip", self.value, self.value, "counted", f"n:{self.loads}")
        return FeedLoad("counted", (indicator,))


def test_a_running_manager_loads_a_new_feed_at_once_and_stops_refreshing_the_old(
    tmp_path: Path,
) -> None:
    made: dict[str, CountingSource] = {}

    def source(config: FeedConfig) -> CountingSource:
        made[str(config.path)] = CountingSource(str(config.path))
        return made[str(config.path)]

    old = FeedConfig("counted", "list-file", path=Path("192.0.2.1"), refresh=0.02)
    manager = FeedManager([old], sources={"list-file": source})  # type: ignore[dict-item]
    manager.start()
    try:
        assert manager.wait_loaded(10)
        assert manager.match("ip", "192.0.2.1") is not None
        # The new feed refreshes hourly: it must be loaded at once, not after its refresh.
        manager.put(FeedConfig("counted", "list-file", path=Path("192.0.2.2"), refresh=3600))
        assert manager.wait_attempted("counted", 10)
        assert manager.match("ip", "192.0.2.2") is not None
        assert manager.match("ip", "192.0.2.1") is None
        old_loads = made["192.0.2.1"].loads
        time.sleep(0.2)  # ten of the old feed's refresh periods
        assert made["192.0.2.1"].loads == old_loads
        assert made["192.0.2.2"].loads == 1
        manager.remove("counted")
        assert manager.match("ip", "192.0.2.2") is None
        assert manager.wait_attempted("counted", 0) is False
    finally:
        manager.stop(10)


def test_a_load_that_ends_after_its_feed_was_replaced_is_dropped() -> None:
    gated = GatedSource(["192.0.2.1"])
    counted = CountingSource("192.0.2.9")

    def source(config: FeedConfig) -> object:
        return gated if config.path == Path("gated") else counted

    manager = FeedManager(
        [FeedConfig("feed", "list-file", path=Path("gated"))],
        sources={"list-file": source},  # type: ignore[dict-item]
    )
    loading = threading.Thread(target=manager.reload)
    loading.start()
    assert gated.started.wait(10)
    # The change does not wait for the load in progress.
    manager.put(FeedConfig("feed", "list-file", path=Path("new")))
    gated.proceed.set()
    loading.join(10)
    assert manager.match("ip", "192.0.2.1") is None
    [status] = manager.status()
    assert status.last_attempt is None  # the stale load did not count for the new feed
    manager.reload()
    assert manager.match("ip", "192.0.2.9") is not None
