"""The proc connector: its wire format (golden datagrams, properties), the fake, the listener,
and the real kernel socket."""

from __future__ import annotations

import contextlib
import doctest
import os
import shutil
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from iotsec.agent.collectors import proc_connector as proc_connector_module
from iotsec.agent.collectors.proc_connector import (
    CN_IDX_PROC,
    PROC_CN_MCAST_LISTEN,
    AckEvent,
    ConnectorListener,
    ExecEvent,
    ExitEvent,
    FakeProcConnector,
    ForkEvent,
    OtherEvent,
    ProcConnector,
    ProcEvent,
    encode_datagram,
    mcast_request,
    parse_datagram,
)
from iotsec.agent.errors import HostReadError, ParseError

# Captured from Linux 6.18 (x86_64) while `sh -c "exit 3"` ran: fork, exec, exit.
GOLDEN_FORK = bytes.fromhex(
    "4c000000030000005037000000000000010000000100000050370000000000002800000001000000"
    "01000000a7bc387583080000334500003345000034450000344500000000000000000000"
)
GOLDEN_EXEC = bytes.fromhex(
    "4c000000030000005137000000000000010000000100000051370000000000002800000002000000"
    "01000000b174747583080000344500003445000000000000000000000000000000000000"
)
GOLDEN_EXIT = bytes.fromhex(
    "4c000000030000005237000000000000010000000100000052370000000000002800000000000080"
    "010000008aa47f7583080000344500003445000000030000110000003345000033450000"
)

little_endian_only = pytest.mark.skipif(
    sys.byteorder != "little", reason="the golden datagrams were captured on a little-endian host"
)


@little_endian_only
def test_golden_fork_exec_exit_datagrams_decode() -> None:
    (fork,) = parse_datagram(GOLDEN_FORK)
    (execed,) = parse_datagram(GOLDEN_EXEC)
    (exited,) = parse_datagram(GOLDEN_EXIT)
    assert fork == ForkEvent(
        parent_pid=17715,
        parent_tgid=17715,
        child_pid=17716,
        child_tgid=17716,
        seq=0x3750,
        cpu=1,
        timestamp_ns=fork.timestamp_ns,
    )
    assert execed == ExecEvent(
        pid=17716, tgid=17716, seq=0x3751, cpu=1, timestamp_ns=execed.timestamp_ns
    )
    assert isinstance(exited, ExitEvent)
    assert (exited.pid, exited.exit_code, exited.exit_signal) == (17716, 0x300, 17)
    assert (exited.parent_pid, exited.parent_tgid) == (17715, 17715)
    assert (exited.status, exited.signal) == (3, None)
    assert fork.timestamp_ns < execed.timestamp_ns < exited.timestamp_ns


@little_endian_only
def test_golden_datagrams_re_encode_byte_for_byte() -> None:
    for golden in (GOLDEN_FORK, GOLDEN_EXEC, GOLDEN_EXIT):
        assert encode_datagram(parse_datagram(golden)) == golden


def test_several_messages_in_one_datagram_are_all_read() -> None:
    events: list[ProcEvent] = [
        ForkEvent(parent_pid=1, parent_tgid=1, child_pid=2, child_tgid=2, seq=1),
        ExecEvent(pid=2, tgid=2, seq=2),
        OtherEvent(what=0x200, data=b"\x02\0\0\0\x02\0\0\0bash" + bytes(12), seq=3),
    ]
    assert parse_datagram(encode_datagram(events)) == events


def test_exit_status_follows_the_shell_convention() -> None:
    killed = ExitEvent(pid=5, tgid=5, exit_code=9, exit_signal=17)
    assert (killed.status, killed.signal) == (137, 9)
    dumped = ExitEvent(pid=5, tgid=5, exit_code=0x80 | 11, exit_signal=17)
    assert (dumped.status, dumped.signal) == (139, 11)
    assert ExitEvent(pid=5, tgid=5, exit_code=0, exit_signal=17).status == 0


def test_other_connectors_and_netlink_messages_are_skipped() -> None:
    ours = encode_datagram([ExecEvent(pid=9, tgid=9)])
    other_connector = bytearray(ours)
    struct.pack_into("=I", other_connector, 16, CN_IDX_PROC + 1)
    noop = bytearray(ours)
    struct.pack_into("=H", noop, 4, 1)  # NLMSG_NOOP
    assert parse_datagram(bytes(other_connector) + bytes(noop) + ours) == [ExecEvent(pid=9, tgid=9)]
    assert parse_datagram(b"") == []
    assert parse_datagram(b"\x01\x02\x03") == []  # shorter than a header: nothing


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda d: struct.pack("=I", 200) + d[4:], "netlink message length 200"),
        (lambda d: struct.pack("=I", 8) + d[4:], "netlink message length 8"),
        (lambda d: d[:32] + struct.pack("=H", 500) + d[34:], "overruns"),
        (lambda d: d[:32] + struct.pack("=H", 8) + d[34:], "shorter than 16"),
        (lambda d: d[:32] + struct.pack("=H", 20) + d[34:], "bytes of data"),
    ],
)
def test_truncated_datagrams_raise_parse_error(
    mutate: Callable[[bytes], bytes], reason: str
) -> None:
    data = encode_datagram([ExitEvent(pid=1, tgid=1, exit_code=0, exit_signal=17)])
    with pytest.raises(ParseError, match=reason):
        parse_datagram(mutate(data))


def test_listen_request_layout() -> None:
    request = mcast_request(PROC_CN_MCAST_LISTEN, ack=41, port_id=77)
    length, kind, _, _, port = struct.unpack_from("=IHHII", request)
    assert (length, kind, port) == (40, 3, 77)
    assert struct.unpack_from("=IIIIHHI", request, 16) == (1, 1, 0, 41, 4, 0, 1)


# Properties: decode(encode(x)) == x, and arbitrary bytes raise only ParseError.

_u32 = st.integers(0, 2**32 - 1)
_header = {"seq": _u32, "cpu": _u32, "timestamp_ns": st.integers(0, 2**64 - 1)}
_events = st.one_of(
    st.builds(
        ForkEvent, parent_pid=_u32, parent_tgid=_u32, child_pid=_u32, child_tgid=_u32, **_header
    ),
    st.builds(ExecEvent, pid=_u32, tgid=_u32, **_header),
    st.builds(
        ExitEvent,
        pid=_u32,
        tgid=_u32,
        exit_code=_u32,
        exit_signal=_u32,
        parent_pid=_u32,
        parent_tgid=_u32,
        **_header,
    ),
    st.builds(AckEvent, err=_u32, ack=_u32, **_header),
    st.builds(
        OtherEvent,
        what=_u32.filter(lambda w: w not in (0, 1, 2, 0x80000000)),
        data=st.binary(min_size=0, max_size=40),
        **_header,
    ),
)


@given(st.lists(_events, max_size=5))
def test_datagrams_round_trip(events: list[ProcEvent]) -> None:
    assert parse_datagram(encode_datagram(events)) == events


@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_parse_error(data: bytes) -> None:
    with contextlib.suppress(ParseError):
        parse_datagram(data)


@given(st.lists(_events, min_size=1, max_size=3), st.integers(0, 200), st.binary(max_size=8))
def test_corrupted_datagrams_raise_only_parse_error(
    events: list[ProcEvent], cut: int, noise: bytes
) -> None:
    data = encode_datagram(events)
    with contextlib.suppress(ParseError):
        parse_datagram(data[:cut] + noise + data[cut + len(noise) :])


# The fake connector, the listener thread, and loss counting.


def _collecting_listener(
    connector: ProcConnector,
) -> tuple[ConnectorListener, list[ProcEvent], threading.Event]:
    got: list[ProcEvent] = []
    arrived = threading.Event()

    def on_events(events: Sequence[ProcEvent]) -> None:
        got.extend(events)
        arrived.set()

    return ConnectorListener(connector, on_events), got, arrived


def _wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_a_queued_burst_is_received_at_once() -> None:
    fake = FakeProcConnector()
    try:
        for pid in range(100, 110):
            fake.push(ExecEvent(pid=pid, tgid=pid, seq=pid))
        fake.push_raw(struct.pack("=IHHII", 999, 3, 0, 0, 0))
        assert [e.pid for e in fake.receive(batch=5) if isinstance(e, ExecEvent)] == [
            100,
            101,
            102,
            103,
            104,
        ]
        assert len(fake.receive()) == 5
        assert fake.malformed == 1 and fake.lost == 0
    finally:
        fake.close()


def test_listener_hands_events_over_and_counts_bad_datagrams() -> None:
    fake = FakeProcConnector()
    listener, got, _ = _collecting_listener(fake)
    listener.start()
    try:
        fake.push(ExecEvent(pid=10, tgid=10, seq=1))
        fake.push_raw(struct.pack("=IHHII", 999, 3, 0, 0, 0))
        fake.push(ExitEvent(pid=10, tgid=10, exit_code=0, exit_signal=17, seq=2))
        _wait_for(lambda: len(got) == 2)
        assert (fake.malformed, listener.errors) == (1, 0)
        assert isinstance(fake.last_error, ParseError)
        assert listener.running
    finally:
        listener.stop()
        listener.stop()  # idempotent
    assert not listener.running
    assert listener.failure is None


def test_a_handler_agent_error_is_counted_and_reading_goes_on() -> None:
    fake = FakeProcConnector()
    calls: list[int] = []

    def handler(events: Sequence[ProcEvent]) -> None:
        calls.append(len(events))
        if len(calls) == 1:
            raise HostReadError("/proc/10/stat", "No such file or directory")

    listener = ConnectorListener(fake, handler)
    listener.start()
    try:
        fake.push(ExecEvent(pid=10, tgid=10))
        _wait_for(lambda: len(calls) == 1)
        fake.push(ExecEvent(pid=11, tgid=11))
        _wait_for(lambda: len(calls) == 2)
        assert listener.errors == 1
    finally:
        listener.stop()


def test_gaps_in_per_cpu_sequence_numbers_count_as_lost() -> None:
    fake = FakeProcConnector()
    try:
        fake.push(
            ExecEvent(pid=1, tgid=1, cpu=0, seq=10),
            ExecEvent(pid=2, tgid=2, cpu=1, seq=500),
            ExecEvent(pid=3, tgid=3, cpu=0, seq=11),
            ExecEvent(pid=4, tgid=4, cpu=0, seq=15),  # 12, 13 and 14 were lost
            AckEvent(err=0, ack=1, cpu=0xFFFFFFFF, seq=77),  # old kernels: outside the count
            ExecEvent(pid=5, tgid=5, cpu=1, seq=501),
            ExecEvent(pid=6, tgid=6, cpu=1, seq=499),  # reordered, not lost
        )
        assert len(fake.receive()) == 7
        assert fake.lost == 3
    finally:
        fake.close()


# The real kernel.


def _open_or_skip(*, kernel_filter: bool = True) -> ProcConnector:
    try:
        return ProcConnector.open(kernel_filter=kernel_filter)
    except HostReadError as exc:
        pytest.skip(f"the proc connector is unavailable here: {exc}")


def test_live_connector_reports_a_childs_fork_exec_and_exit() -> None:
    connector = _open_or_skip(kernel_filter=False)
    assert not connector.filtered
    listener, got, _ = _collecting_listener(connector)
    listener.start()
    try:
        child = subprocess.run(["/bin/false"], check=False)
        assert child.returncode == 1

        def seen_exit() -> bool:
            return any(isinstance(e, ExitEvent) and e.status == 1 for e in list(got))

        _wait_for(seen_exit)
    finally:
        listener.stop()
    exits = [e for e in got if isinstance(e, ExitEvent) and e.status == 1]
    pid = exits[-1].tgid
    assert any(isinstance(e, ExecEvent) and e.tgid == pid for e in got)
    assert any(isinstance(e, ForkEvent) and e.child_tgid == pid for e in got)
    assert exits[-1].parent_tgid == os.getpid()
    assert connector.lost == 0


def test_live_kernel_filter_passes_execs_and_process_exits_only() -> None:
    connector = _open_or_skip()
    if not connector.filtered:
        connector.close()
        pytest.skip(
            "this kernel takes no socket filters (CONFIG_BPF off): the agent then reads every"
            " event unfiltered, which test_live_connector_reports_a_childs_fork_exec_and_exit"
            " covers"
        )
    listener, got, _ = _collecting_listener(connector)
    listener.start()
    try:
        # A thread started and ended, a fork that never execs, and a child that execs.
        worker = threading.Thread(target=time.sleep, args=(0.01,))
        worker.start()
        worker.join()
        forked = os.fork()
        if forked == 0:
            os._exit(3)
        os.waitpid(forked, 0)
        child = subprocess.run(["/bin/false"], check=False)
        assert child.returncode == 1

        def seen_exit() -> bool:
            return any(isinstance(e, ExitEvent) and e.status == 1 for e in list(got))

        _wait_for(seen_exit)
    finally:
        listener.stop()
    pid = next(e.tgid for e in got if isinstance(e, ExitEvent) and e.status == 1)
    assert any(isinstance(e, ExecEvent) and e.tgid == pid for e in got)
    assert not [e for e in got if isinstance(e, ForkEvent | OtherEvent)]
    assert all(e.pid == e.tgid for e in got if isinstance(e, ExitEvent))
    # The fork that never exec'd is a process: its exit passes (the tracker drops it, having
    # never seen it start), but no exec of it does.
    assert [e.status for e in got if isinstance(e, ExitEvent) and e.tgid == forked] == [3]
    assert not [e for e in got if isinstance(e, ExecEvent) and e.tgid == forked]
    assert connector.lost == 0  # the filtered events' gaps are not losses


def test_behind_the_filter_only_gaps_across_an_overrun_count_as_lost() -> None:
    fake = FakeProcConnector(filtered=True)
    try:
        fake.push(ExecEvent(pid=1, tgid=1, cpu=0, seq=10), ExecEvent(pid=2, tgid=2, cpu=1, seq=5))
        fake.push(ExecEvent(pid=3, tgid=3, cpu=0, seq=14))  # 11-13 were forks, filtered
        fake.receive()
        assert fake.lost == 0
        fake.overrun()
        fake.push(ExecEvent(pid=4, tgid=4, cpu=0, seq=20), ExecEvent(pid=5, tgid=5, cpu=1, seq=8))
        fake.push(ExecEvent(pid=6, tgid=6, cpu=0, seq=25))  # after the overrun's gap: filtered
        fake.receive()
        assert (fake.overruns, fake.lost) == (1, 5 + 2)  # at most 5 on cpu 0 and 2 on cpu 1
    finally:
        fake.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="unshare needs root")
@pytest.mark.skipif(shutil.which("unshare") is None, reason="util-linux unshare is not installed")
def test_live_connector_is_unavailable_in_another_pid_namespace() -> None:
    _open_or_skip().close()
    code = (
        "from iotsec.agent.collectors.proc_connector import ProcConnector\n"
        "from iotsec.agent.errors import HostReadError\n"
        "try:\n"
        "    ProcConnector.open(ack_timeout=0.3)\n"
        "except HostReadError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run(
        ["unshare", "--pid", "--fork", sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0 and "unshare failed" in done.stderr:
        pytest.skip(f"cannot create a PID namespace here: {done.stderr.strip()}")
    assert "no acknowledgement within 0.3 s" in done.stdout, done.stderr


def test_doctests() -> None:
    assert doctest.testmod(proc_connector_module).failed == 0
