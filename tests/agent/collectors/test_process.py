"""ProcessCreate and ProcessTerminate: the tracker, the shared source (netlink and polling
backends) and the two collectors, on fixture hosts and on the real kernel."""

from __future__ import annotations

import doctest
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from iotsec.agent.collectors import process as process_module
from iotsec.agent.collectors.proc_connector import (
    ExecEvent,
    ExitEvent,
    FakeProcConnector,
    ForkEvent,
    ProcConnector,
)
from iotsec.agent.collectors.process import (
    EventBuffer,
    ProcessCreateCollector,
    ProcessEventSource,
    ProcessExit,
    ProcessStart,
    ProcessTerminateCollector,
    ProcessTracker,
    process_create_collector,
    process_terminate_collector,
    shared_process_source,
)
from iotsec.agent.collectors.procfs import ProcessSnapshot
from iotsec.agent.errors import HostReadError
from iotsec.agent.hostroot import HostRoot
from iotsec.schema import Event, ProcessCreate, ProcessTerminate
from tests.agent.collectors.procfixtures import (
    DISTROS,
    add_process,
    assert_schema_valid,
    fixture_host,
)

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def _snap(
    pid: int,
    ppid: int,
    exe: str | None,
    args: tuple[str, ...] = (),
    *,
    uid: int | None = 1000,
    euid: int | None = None,
    comm: str = "",
    kthread: bool = False,
) -> ProcessSnapshot:
    return ProcessSnapshot(
        pid=pid,
        ppid=ppid,
        comm=comm or (exe.rsplit("/", 1)[-1][:15] if exe else "x"),
        state="S",
        start_ticks=1,
        exe=exe,
        args=args,
        uid=uid,
        euid=uid if euid is None else euid,
        is_kernel_thread=kthread,
    )


def _tracker(live: dict[int, ProcessSnapshot], *, exclude: Sequence[int] = ()) -> ProcessTracker:
    tracker = ProcessTracker(live.get, clock=lambda: T0, exclude_descendants_of=exclude)
    tracker.seed(
        [
            _snap(1, 0, "/usr/lib/systemd/systemd", ("/sbin/init",), uid=0),
            _snap(2, 0, None, kthread=True, uid=0, comm="kthreadd"),
            _snap(500, 1, "/usr/bin/bash", ("-bash",)),
        ]
    )
    return tracker


# The tracker


def test_fork_then_exec_is_a_start_with_exe_command_line_parent_and_user() -> None:
    live = {600: _snap(600, 500, "/usr/bin/curl", ("curl", "-sS", "http://x"))}
    tracker = _tracker(live)
    assert (
        tracker.handle(ForkEvent(parent_pid=500, parent_tgid=500, child_pid=600, child_tgid=600))
        is None
    )
    start = tracker.handle(ExecEvent(pid=600, tgid=600))
    assert start == ProcessStart(
        pid=600,
        ppid=500,
        executable="/usr/bin/curl",
        command_line="curl -sS http://x",
        uid=1000,
        at=T0,
    )
    exit_ = tracker.handle(ExitEvent(pid=600, tgid=600, exit_code=2 << 8, exit_signal=17))
    assert exit_ == ProcessExit(pid=600, executable="/usr/bin/curl", status=2, signal=None, at=T0)


def test_a_process_gone_before_it_was_read_is_reported_partial_with_its_parent() -> None:
    tracker = _tracker({})
    tracker.handle(ForkEvent(parent_pid=500, parent_tgid=500, child_pid=601, child_tgid=601))
    start = tracker.handle(ExecEvent(pid=601, tgid=601))
    assert isinstance(start, ProcessStart)
    assert (start.executable, start.command_line, start.ppid, start.uid) == ("", "", 500, 1000)
    assert start.details == {
        "Partial": "true",
        "Missing": "exe,cmdline,uid",
        "ParentExecutable": "/usr/bin/bash",
        "UserIdFrom": "parent",
    }
    gone = tracker.handle(ExitEvent(pid=601, tgid=601, exit_code=0, exit_signal=17))
    assert isinstance(gone, ProcessExit)
    assert (gone.executable, gone.status, gone.details) == (
        "",
        0,
        {"Partial": "true", "Missing": "exe"},
    )


def test_a_zombie_is_reported_by_its_comm() -> None:
    zombie = _snap(602, 500, None, (), comm="true")
    start = _tracker({602: zombie}).handle(ExecEvent(pid=602, tgid=602))
    assert isinstance(start, ProcessStart)
    assert (start.executable, start.command_line, start.uid) == ("true", "true", 1000)
    assert start.details == {
        "Partial": "true",
        "Missing": "exe,cmdline",
        "Comm": "true",
        "ParentExecutable": "/usr/bin/bash",
    }


def test_an_exec_with_an_empty_argv_keeps_its_exe_and_says_the_line_is_missing() -> None:
    pwnkit = _snap(603, 500, "/usr/bin/pkexec", (), euid=0)
    start = _tracker({603: pwnkit}).handle(ExecEvent(pid=603, tgid=603))
    assert isinstance(start, ProcessStart)
    assert (start.executable, start.command_line) == ("/usr/bin/pkexec", "")
    assert start.details["Missing"] == "cmdline"
    assert start.details["EffectiveUserId"] == "0"


def test_threads_and_forks_without_exec_are_not_processes_started_or_ended() -> None:
    tracker = _tracker({})
    assert (
        tracker.handle(ForkEvent(parent_pid=500, parent_tgid=500, child_pid=701, child_tgid=500))
        is None
    )
    assert (
        tracker.handle(ExitEvent(pid=701, tgid=500, exit_code=0, exit_signal=-1 & 0xFFFFFFFF))
        is None
    )
    tracker.handle(ForkEvent(parent_pid=500, parent_tgid=500, child_pid=702, child_tgid=702))
    assert tracker.handle(ExitEvent(pid=702, tgid=702, exit_code=0, exit_signal=17)) is None


def test_processes_running_at_start_report_their_exit_but_kernel_threads_do_not() -> None:
    tracker = _tracker({})
    bash = tracker.handle(ExitEvent(pid=500, tgid=500, exit_code=9, exit_signal=17))
    assert bash == ProcessExit(500, "/usr/bin/bash", 137, 9, T0, {"Signal": "9"})
    assert tracker.handle(ExitEvent(pid=2, tgid=2, exit_code=0, exit_signal=0)) is None
    unknown = tracker.handle(ExitEvent(pid=4242, tgid=4242, exit_code=0, exit_signal=17))
    assert isinstance(unknown, ProcessExit) and unknown.details["Partial"] == "true"


def test_descendants_of_excluded_pids_are_dropped_without_reading_proc() -> None:
    reads: list[int] = []
    live = {
        801: _snap(801, 800, "/usr/sbin/nft", ("nft", "-j", "list", "ruleset"), uid=0),
        802: _snap(802, 801, "/usr/bin/cat", ("cat",), uid=0),
    }

    def read(pid: int) -> ProcessSnapshot | None:
        reads.append(pid)
        return live.get(pid)

    tracker = ProcessTracker(read, clock=lambda: T0, exclude_descendants_of=[800])
    tracker.seed([_snap(800, 1, "/usr/bin/python3", ("iotsec-agent",), uid=0)])
    for child, parent in ((801, 800), (802, 801)):
        tracker.handle(
            ForkEvent(parent_pid=parent, parent_tgid=parent, child_pid=child, child_tgid=child)
        )
        assert tracker.handle(ExecEvent(pid=child, tgid=child)) is None
        assert tracker.is_excluded(child)
    for pid in (802, 801):
        assert tracker.handle(ExitEvent(pid=pid, tgid=pid, exit_code=0, exit_signal=17)) is None
        assert not tracker.is_excluded(pid)
    assert reads == []
    assert tracker.is_excluded(800)  # a root stays excluded


def test_without_forks_parents_are_learned_at_exec_and_unseen_exits_are_not_reported() -> None:
    # Behind the connector's kernel filter: no ForkEvent ever arrives.
    live = {
        801: _snap(801, 800, "/usr/sbin/nft", ("nft", "list", "ruleset"), uid=0),
        802: _snap(802, 801, "/usr/bin/cat", ("cat",), uid=0),
        900: _snap(900, 500, "/usr/bin/id", ("id",)),
    }
    tracker = ProcessTracker(
        live.get, clock=lambda: T0, exclude_descendants_of=[800], forks_reported=False
    )
    tracker.seed([_snap(800, 1, "/usr/bin/python3"), _snap(500, 1, "/usr/bin/bash")])
    for pid in (801, 802):  # the agent's command and its child: excluded by their parents
        assert tracker.handle(ExecEvent(pid=pid, tgid=pid)) is None
        assert tracker.is_excluded(pid)
    start = tracker.handle(ExecEvent(pid=900, tgid=900))
    assert isinstance(start, ProcessStart) and start.ppid == 500
    end = tracker.handle(ExitEvent(pid=900, tgid=900, exit_code=0, exit_signal=17))
    assert isinstance(end, ProcessExit) and end.executable == "/usr/bin/id"
    # bash forked a subshell that never exec'd: its exit is not a process ending.
    assert tracker.handle(ExitEvent(pid=901, tgid=901, exit_code=0, exit_signal=17)) is None
    seeded = tracker.handle(ExitEvent(pid=500, tgid=500, exit_code=0, exit_signal=17))
    assert isinstance(seeded, ProcessExit) and seeded.executable == "/usr/bin/bash"


def test_without_forks_a_process_reaped_before_its_read_waits_for_its_exit_for_a_parent() -> None:
    tracker = ProcessTracker(lambda pid: None, clock=lambda: T0, forks_reported=False)
    tracker.seed([_snap(500, 1, "/usr/bin/bash", uid=1000)])
    assert tracker.activities(ExecEvent(pid=950, tgid=950)) == []  # gone: nothing to read
    start, end = tracker.activities(
        ExitEvent(pid=950, tgid=950, exit_code=0, exit_signal=17, parent_pid=500, parent_tgid=500)
    )
    assert isinstance(start, ProcessStart) and (start.ppid, start.at) == (500, T0)
    assert start.details["Partial"] == "true"
    assert start.details["ParentExecutable"] == "/usr/bin/bash"
    assert (start.uid, start.details["UserIdFrom"]) == (1000, "parent")
    assert isinstance(end, ProcessExit) and end.pid == 950


def test_a_held_start_whose_exit_names_an_excluded_parent_is_dropped() -> None:
    tracker = ProcessTracker(
        lambda pid: None, clock=lambda: T0, exclude_descendants_of=[800], forks_reported=False
    )
    tracker.seed([_snap(800, 1, "/usr/bin/python3")])
    assert tracker.activities(ExecEvent(pid=960, tgid=960)) == []  # gone before its read
    exit_event = ExitEvent(
        pid=960, tgid=960, exit_code=0, exit_signal=17, parent_pid=800, parent_tgid=800
    )
    assert tracker.activities(exit_event) == []  # the agent's own child: neither start nor exit


def test_seeding_excludes_processes_already_descending_from_a_root() -> None:
    tracker = ProcessTracker(lambda pid: None, clock=lambda: T0, exclude_descendants_of=[800])
    tracker.seed(
        [
            _snap(800, 1, "/usr/bin/python3"),
            _snap(810, 800, "/usr/sbin/nft"),
            _snap(811, 810, "/usr/bin/cat"),
            _snap(900, 1, "/usr/bin/bash"),
        ]
    )
    assert [pid for pid in (800, 810, 811, 900) if tracker.is_excluded(pid)] == [800, 810, 811]


def test_exclude_later_applies_to_what_the_pid_starts_from_then_on() -> None:
    tracker = _tracker({900: _snap(900, 500, "/usr/bin/true", ("true",))})
    tracker.exclude(500)
    tracker.handle(ForkEvent(parent_pid=500, parent_tgid=500, child_pid=900, child_tgid=900))
    assert tracker.handle(ExecEvent(pid=900, tgid=900)) is None


def test_polling_appearances_and_disappearances() -> None:
    tracker = _tracker({}, exclude=[500])
    assert tracker.appeared(_snap(950, 500, "/usr/bin/vi")) is None  # a child of an excluded pid
    assert tracker.appeared(_snap(951, 2, None, kthread=True, comm="kworker/1:2")) is None
    assert tracker.vanished(951) is None
    start = tracker.appeared(_snap(952, 1, "/usr/sbin/cron", ("/usr/sbin/cron", "-f"), uid=0))
    assert isinstance(start, ProcessStart) and start.command_line == "/usr/sbin/cron -f"
    end = tracker.vanished(952)
    assert end == ProcessExit(952, "/usr/sbin/cron", None, None, T0, {"ExitStatus": "unknown"})


def test_memory_of_processes_is_bounded() -> None:
    tracker = ProcessTracker(lambda pid: None, clock=lambda: T0, capacity=3)
    tracker.seed([_snap(pid, 1, f"/bin/p{pid}") for pid in range(10, 20)])
    oldest = tracker.vanished(10)
    newest = tracker.vanished(19)
    assert oldest is not None and oldest.details.get("Partial") == "true"
    assert newest is not None and newest.executable == "/bin/p19"


def test_event_buffer_drops_and_counts_when_full() -> None:
    buffer: EventBuffer[int] = EventBuffer(2)
    assert [buffer.put(i) for i in range(5)] == [True, True, False, False, False]
    assert (buffer.drain(), buffer.dropped, len(buffer)) == ([0, 1], 3, 0)
    assert buffer.put(9) and buffer.drain() == [9]
    with pytest.raises(ValueError):
        EventBuffer(0)


# The source and the collectors on fixture hosts


def _collect_until(
    collect: Callable[[datetime], Sequence[Event]], count: int, timeout: float = 5.0
) -> list[Event]:
    events: list[Event] = []
    deadline = time.monotonic() + timeout
    while len(events) < count:
        assert time.monotonic() < deadline, f"got {len(events)} of {count} events: {events}"
        events.extend(collect(datetime.now(UTC)))
        time.sleep(0.005)
    return events


def test_both_collectors_share_one_connector_and_report_a_process(tmp_path: Path) -> None:
    host = fixture_host("debian12", tmp_path)
    fake = FakeProcConnector()
    source = ProcessEventSource(host, connector=fake)
    creates = ProcessCreateCollector(source)
    ends = ProcessTerminateCollector(source)
    try:
        add_process(
            tmp_path,
            3000,
            comm="wget",
            ppid=2250,
            argv=["wget", "http://203.0.113.9/x.sh"],
            exe="/usr/bin/wget",
            uid=1000,
        )
        fake.push(
            ForkEvent(parent_pid=2250, parent_tgid=2250, child_pid=3000, child_tgid=3000, seq=1)
        )
        fake.push(ExecEvent(pid=3000, tgid=3000, seq=2))
        fake.push(ExitEvent(pid=3000, tgid=3000, exit_code=4 << 8, exit_signal=17, seq=3))
        (created,) = _collect_until(creates.collect, 1)
        (ended,) = _collect_until(ends.collect, 1)
    finally:
        creates.close()
        ends.close()
    assert created.payload == (
        ProcessCreate(
            executable="/usr/bin/wget",
            process_id=3000,
            parent_process_id=2250,
            user_id="1000",
            user_name="pi",
            command_line="wget http://203.0.113.9/x.sh",
        ),
    )
    assert ended.payload == (
        ProcessTerminate(executable="/usr/bin/wget", process_id=3000, exit_status=4),
    )
    assert (created.name, created.category, ended.name) == (
        "ProcessCreate",
        "Triggered",
        "ProcessTerminate",
    )
    assert source.closed
    assert fake.fileno() == -1  # the last collector out closed the socket
    assert_schema_valid([created, ended])


def test_exits_of_processes_running_at_start_carry_their_executable(tmp_path: Path) -> None:
    host = fixture_host("alpine318", tmp_path)
    fake = FakeProcConnector()
    ends = ProcessTerminateCollector(ProcessEventSource(host, connector=fake))
    try:
        fake.push(ExitEvent(pid=470, tgid=470, exit_code=0, exit_signal=17))
        fake.push(ExitEvent(pid=2, tgid=2, exit_code=0, exit_signal=0))  # kthreadd: not reported
        fake.push(ExitEvent(pid=480, tgid=480, exit_code=1 << 8, exit_signal=17))  # the zombie
        events = _collect_until(ends.collect, 2)
    finally:
        ends.close()
    rows = [e.payload[0] for e in events]
    assert [(r.process_id, r.executable, r.exit_status) for r in rows] == [
        (470, "/sbin/apk", 0),
        (480, "sh", 1),
    ]
    assert rows[1].extra_details == {"Partial": "true", "Missing": "exe", "Comm": "sh"}


def test_the_buffer_overflow_is_the_dropped_count(tmp_path: Path) -> None:
    host = fixture_host("rhel9", tmp_path)
    fake = FakeProcConnector()
    creates = ProcessCreateCollector(ProcessEventSource(host, connector=fake, buffer_size=2))
    try:
        fake.push(
            *(ExecEvent(pid=pid, tgid=pid, seq=i) for i, pid in enumerate([3305, 3201, 900, 745]))
        )
        fake.push(ExecEvent(pid=701, tgid=701, seq=10))  # seq 4..9 never arrived
        deadline = time.monotonic() + 5
        while creates.dropped < 3 + 6:
            assert time.monotonic() < deadline, creates.dropped
            time.sleep(0.005)
        assert [e.payload[0].process_id for e in creates.collect(T0)] == [3305, 3201]
    finally:
        creates.close()


@pytest.mark.parametrize("distro", DISTROS)
def test_polling_reports_new_and_gone_processes(distro: str, tmp_path: Path) -> None:
    host = fixture_host(distro, tmp_path)
    source = ProcessEventSource(host, backend="poll", background=False, clock=lambda: T0)
    creates, ends = ProcessCreateCollector(source), ProcessTerminateCollector(source)
    try:
        assert (
            creates.collect(T0) == [] and ends.collect(T0) == []
        )  # running processes are the baseline
        add_process(
            tmp_path,
            4000,
            comm="nc",
            ppid=1,
            argv=["nc", "-lkp", "8888"],
            exe="/usr/bin/nc",
            uid=1000,
        )
        add_process(
            tmp_path, 4001, comm="kworker/u8:3", ppid=2, argv=[], exe=None, kernel_thread=True
        )
        shutil.rmtree(tmp_path / "proc" / "1")
        (created,) = creates.collect(T0)
        (ended,) = ends.collect(T0)
    finally:
        creates.close()
        ends.close()
    row = created.payload[0]
    assert (row.executable, row.command_line, row.process_id, row.user_id, row.user_name) == (
        "/usr/bin/nc",
        "nc -lkp 8888",
        4000,
        "1000",
        "pi",
    )
    assert created.timestamp_utc == T0
    end = ended.payload[0]
    assert (end.process_id, end.exit_status, end.extra_details) == (
        1,
        -1,
        {"ExitStatus": "unknown"},
    )
    assert end.executable in {"/usr/lib/systemd/systemd", "/bin/busybox"}
    assert_schema_valid([created, ended])


def test_the_poller_excludes_the_descendants_it_is_told_to(tmp_path: Path) -> None:
    host = fixture_host("ubuntu2204", tmp_path)
    source = ProcessEventSource(
        host, backend="poll", background=False, exclude_descendants_of=[1450]
    )
    creates = ProcessCreateCollector(source)
    try:
        add_process(
            tmp_path,
            5000,
            comm="nft",
            ppid=1450,
            argv=["nft", "-j", "list", "ruleset"],
            exe="/usr/sbin/nft",
        )
        add_process(
            tmp_path, 5001, comm="sshd", ppid=702, argv=["sshd: pi [priv]"], exe="/usr/sbin/sshd"
        )
        events = creates.collect(T0)
    finally:
        creates.close()
    assert [e.payload[0].process_id for e in events] == [5001]


def test_a_fixture_host_falls_back_to_polling_and_says_why(tmp_path: Path) -> None:
    host = fixture_host("debian12", tmp_path)
    source = ProcessEventSource(host)
    creates = ProcessCreateCollector(source)
    try:
        assert not source.background
        assert source.unavailable is not None and "not live" in source.unavailable
    finally:
        creates.close()
    with pytest.raises(HostReadError, match="closed"):
        source.subscribe_starts()


def test_user_names_are_left_out_when_passwd_is_unreadable(tmp_path: Path) -> None:
    host = fixture_host("debian12", tmp_path)
    (tmp_path / "etc" / "passwd").write_text("broken line\n")
    source = ProcessEventSource(host, backend="poll", background=False)
    creates = ProcessCreateCollector(source)
    try:
        add_process(tmp_path, 4000, comm="id", ppid=1, argv=["id"], exe="/usr/bin/id", uid=1000)
        (event,) = creates.collect(T0)
    finally:
        creates.close()
    assert event.payload[0].user_name is None and event.payload[0].user_id == "1000"


def test_the_registry_factories_share_one_source_per_host(tmp_path: Path) -> None:
    host = fixture_host("debian12", tmp_path)
    creates, ends = process_create_collector(host), process_terminate_collector(host)
    try:
        assert creates.source is ends.source is shared_process_source(host)
        assert creates.spec.default_priority == ends.spec.default_priority == "Low"
        assert (creates.spec.event_type, ends.spec.category) == ("Security", "Triggered")
    finally:
        creates.close()
        ends.close()
    again = process_create_collector(host)
    try:
        assert again.source is not creates.source
    finally:
        again.close()


# The real kernel (root, netlink)


def _live_source(**kwargs: Any) -> ProcessEventSource:
    try:
        ProcConnector.open().close()
    except HostReadError as exc:
        pytest.skip(f"the proc connector is unavailable here: {exc}")
    return ProcessEventSource(HostRoot("/"), backend="netlink", **kwargs)


def _rows_of(
    collect: Callable[[datetime], Sequence[Event]],
    match: Callable[[Any], bool],
    count: int = 1,
    timeout: float = 5.0,
) -> list[Any]:
    """Collect until ``count`` rows match; rows that do not match are dropped."""
    rows: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(rows) < count:
        assert time.monotonic() < deadline, f"timed out with {rows}"
        rows += [row for event in collect(datetime.now(UTC)) for row in event.payload if match(row)]
        time.sleep(0.01)
    return rows


def test_live_a_process_living_under_50_ms_is_seen_with_exe_and_command_line() -> None:
    source = _live_source()
    creates, ends = ProcessCreateCollector(source), ProcessTerminateCollector(source)
    try:
        started = time.monotonic()
        child = subprocess.Popen(["/bin/sleep", "0.02"])
        assert child.wait() == 0
        assert time.monotonic() - started < 0.5
        sleep_exe = os.path.realpath("/bin/sleep")
        (row,) = _rows_of(creates.collect, lambda r: r.process_id == child.pid)
        assert isinstance(row, ProcessCreate)
        assert (row.executable, row.parent_process_id, row.user_id) == (
            sleep_exe,
            os.getpid(),
            str(os.getuid()),
        )
        assert row.command_line == "/bin/sleep 0.02"
        assert row.extra_details == {}
        (end,) = _rows_of(
            ends.collect,
            lambda r: isinstance(r, ProcessTerminate) and r.process_id == row.process_id,
        )
        assert isinstance(end, ProcessTerminate)
        assert (end.executable, end.exit_status) == (sleep_exe, 0)
    finally:
        creates.close()
        ends.close()


def test_live_exit_statuses_and_signals() -> None:
    source = _live_source()
    creates, ends = ProcessCreateCollector(source), ProcessTerminateCollector(source)
    sleep_exe = os.path.realpath("/bin/sleep")
    try:
        failing = subprocess.Popen(["/bin/false"])
        failing.wait()
        victim = subprocess.Popen(["/bin/sleep", "30"])
        # Killed only once its start was read, so that its executable is known at exit.
        _rows_of(creates.collect, lambda r: r.process_id == victim.pid)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        rows = _rows_of(ends.collect, lambda r: r.process_id in {failing.pid, victim.pid}, 2)
        by_pid = {row.process_id: row for row in rows}
        failed, killed = by_pid[failing.pid], by_pid[victim.pid]
    finally:
        creates.close()
        ends.close()
    assert isinstance(failed, ProcessTerminate) and failed.exit_status == 1
    assert isinstance(killed, ProcessTerminate)
    assert (killed.executable, killed.exit_status, killed.extra_details) == (
        sleep_exe,
        137,
        {"Signal": "9"},
    )


def test_live_a_process_that_exits_at_once_is_still_reported() -> None:
    # /bin/true may be gone before /proc is read: then the row says so instead of vanishing.
    source = _live_source()
    creates = ProcessCreateCollector(source)
    try:
        pids = [subprocess.Popen(["/bin/true"]) for _ in range(5)]
        for child in pids:
            child.wait()
        wanted = {child.pid for child in pids}
        rows: list[ProcessCreate] = []
        deadline = time.monotonic() + 5
        while {r.process_id for r in rows} != wanted:
            assert time.monotonic() < deadline, rows
            rows += [
                r
                for e in creates.collect(datetime.now(UTC))
                for r in e.payload
                if isinstance(r, ProcessCreate) and r.process_id in wanted
            ]
            time.sleep(0.01)
    finally:
        creates.close()
    for row in rows:
        assert row.parent_process_id == os.getpid()
        complete = (row.executable, row.command_line) == (
            os.path.realpath("/bin/true"),
            "/bin/true",
        )
        assert complete or row.extra_details["Partial"] == "true", row


def test_live_the_agents_own_children_are_excluded() -> None:
    source = _live_source()
    creates = ProcessCreateCollector(source)
    helper = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess, sys; sys.stdin.readline(); "
            "subprocess.run(['/bin/echo', sys.argv[1]])",
            f"excluded-{os.getpid()}",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
    )
    try:
        source.exclude(helper.pid)
        assert helper.stdin is not None
        helper.stdin.write(b"go\n")
        helper.stdin.close()
        helper.wait(timeout=30)
        # Events arrive in order: once this later process shows, the helper's would have.
        marker = subprocess.Popen(["/bin/true"])
        marker.wait()
        rows: list[Any] = []
        deadline = time.monotonic() + 5
        while not any(r.process_id == marker.pid for r in rows):
            assert time.monotonic() < deadline, rows
            rows += [r for e in creates.collect(datetime.now(UTC)) for r in e.payload]
            time.sleep(0.01)
    finally:
        creates.close()
    assert not any(r.command_line == f"/bin/echo excluded-{os.getpid()}" for r in rows)
    assert not any(r.parent_process_id == helper.pid for r in rows)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the real /proc")
def test_live_polling_in_the_background_sees_a_process_that_stays() -> None:
    source = ProcessEventSource(HostRoot("/"), backend="poll", poll_interval=0.05)
    creates = ProcessCreateCollector(source)
    child = subprocess.Popen(["/bin/sleep", "3"])
    try:
        (row,) = _rows_of(
            creates.collect, lambda r: isinstance(r, ProcessCreate) and r.process_id == child.pid
        )
        assert isinstance(row, ProcessCreate) and row.command_line == "/bin/sleep 3"
        assert source.background
    finally:
        child.kill()
        child.wait()
        creates.close()


def test_doctests() -> None:
    assert doctest.testmod(process_module).failed == 0
