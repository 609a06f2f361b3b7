"""The /proc parsers and readers, on fixture trees of four distributions and on arbitrary input."""

from __future__ import annotations

import contextlib
import doctest
import ipaddress
import os
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from iotsec.agent.collectors import procfs as procfs_module
from iotsec.agent.collectors.procfs import (
    SocketEntry,
    TcpState,
    display_address,
    is_loopback,
    list_pids,
    parse_cmdline,
    parse_net_sockets,
    parse_socket_link,
    parse_stat,
    parse_status,
    parse_tcp_opens,
    read_exec,
    read_process,
    read_sockets,
    read_tcp_opens,
    socket_owners,
)
from iotsec.agent.errors import HostReadError, ParseError
from iotsec.agent.hostroot import FakeHostRoot, HostRoot
from tests.agent.collectors.procfixtures import (
    DISTROS,
    HOSTS,
    fixture_host,
    hex_address,
    socket_line,
)

HEADER = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid\n"


def _key(entry: SocketEntry) -> tuple[str, int, str, int, str]:
    return (
        str(entry.local_address),
        entry.local_port,
        str(entry.remote_address),
        entry.remote_port,
        entry.state_name,
    )


def test_debian_tcp_table_decodes_addresses_ports_states_uids_and_inodes() -> None:
    text = (HOSTS / "debian12" / "proc" / "net" / "tcp").read_text()
    entries = parse_net_sockets(text, "tcp")
    assert [_key(e) for e in entries] == [
        ("0.0.0.0", 22, "0.0.0.0", 0, "LISTEN"),
        ("0.0.0.0", 80, "0.0.0.0", 0, "LISTEN"),
        ("127.0.0.1", 5432, "0.0.0.0", 0, "LISTEN"),
        ("10.0.2.15", 22, "192.168.1.50", 53122, "ESTABLISHED"),
        ("10.0.2.15", 43512, "140.82.112.3", 443, "ESTABLISHED"),
        ("10.0.2.15", 43500, "151.101.1.69", 80, "TIME_WAIT"),
        ("127.0.0.1", 5432, "127.0.0.1", 40122, "ESTABLISHED"),
        ("127.0.0.1", 40122, "127.0.0.1", 5432, "ESTABLISHED"),
        ("10.0.2.15", 44001, "93.184.216.34", 443, "SYN_SENT"),
    ]
    assert [(e.uid, e.inode) for e in entries[3:6]] == [(0, 31337), (1000, 31500), (0, 0)]
    assert all(e.protocol == "tcp" for e in entries)


def test_tcp6_table_decodes_native_and_ipv4_mapped_addresses() -> None:
    text = (HOSTS / "debian12" / "proc" / "net" / "tcp6").read_text()
    entries = parse_net_sockets(text, "tcp", source="/proc/net/tcp6")
    mapped, native = entries[2], entries[3]
    assert str(mapped.local_address) == "::ffff:a00:20f"
    assert display_address(mapped.local_address) == "10.0.2.15"
    assert display_address(mapped.remote_address) == "192.168.1.77"
    assert (mapped.remote_port, mapped.inode) == (51000, 40001)
    assert native.local_address == ipaddress.IPv6Address("2001:db8:0:1::15")
    assert native.remote_address == ipaddress.IPv6Address("2606:4700::6810:85e5")


def test_udp_tables_tell_bound_sockets_from_connected_flows() -> None:
    text = (HOSTS / "debian12" / "proc" / "net" / "udp").read_text()
    bound, _, connected = parse_net_sockets(text, "udp")
    assert bound.is_listening and bound.local_port == 68 and bound.state_name == "CLOSE"
    assert not connected.is_listening
    assert (str(connected.remote_address), connected.remote_port) == ("8.8.8.8", 53)


@pytest.mark.parametrize("distro", DISTROS)
def test_every_fixture_table_parses(distro: str, tmp_path: Path) -> None:
    host = fixture_host(distro, tmp_path)
    entries = read_sockets(host)
    assert entries, distro
    assert {e.protocol for e in entries} == {"tcp", "udp"}
    assert any(e.is_listening for e in entries)
    assert all(e.local_address.version == e.remote_address.version for e in entries)


def test_a_big_endian_host_prints_addresses_in_network_order() -> None:
    line = socket_line(0, ("192.0.2.7", 8883), ("198.51.100.1", 40000), 1, 77, byteorder="big")
    assert "C0000207:22B3" in line
    (entry,) = parse_net_sockets(HEADER + line, "tcp", byteorder="big")
    assert (str(entry.local_address), entry.local_port) == ("192.0.2.7", 8883)
    (v6,) = parse_net_sockets(
        HEADER + socket_line(0, ("2001:db8::1", 22), ("::", 0), 10, 5, byteorder="big"),
        "tcp",
        byteorder="big",
    )
    assert str(v6.local_address) == "2001:db8::1"


def test_states_newer_than_this_code_keep_their_number() -> None:
    line = socket_line(0, ("10.0.0.1", 1), ("10.0.0.2", 2), 0x0E, 9)
    (entry,) = parse_net_sockets(line, "tcp")
    assert (entry.state, entry.state_name) == (14, "UNKNOWN_14")
    assert TcpState(13).name == "BOUND_INACTIVE"


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("   0: 0100007F:0016 00000000:0000 0A 0 0 0 0", "at least 10 fields"),
        ("   0: 0x00007F:0016 00000000:0000 0A 0:0 0:0 0 0 0 1", "not hexadecimal"),
        ("   0: 0100007F0016 00000000:0000 0A 0:0 0:0 0 0 0 1", "ADDRESS:PORT"),
        ("   0: 0100007F:16 00000000:0000 0A 0:0 0:0 0 0 0 1", "ADDRESS:PORT"),
        ("   0: 00007F:0016 00000000:0000 0A 0:0 0:0 0 0 0 1", "8 or 32 hex digits"),
        ("   0: 0100007F:0016 " + "0" * 32 + ":0000 0A 0:0 0:0 0 0 0 1", "families differ"),
        ("   0: 0100007F:0016 00000000:0000 A 0:0 0:0 0 0 0 1", "2 hex digits"),
        ("   0: 0100007F:0016 00000000:0000 0A 0:0 0:0 0 -1 0 1", "uid"),
        ("   0: 0100007F:0016 00000000:0000 0A 0:0 0:0 0 0 0 \u0661\u0662", "inode"),
    ],
)
def test_malformed_socket_lines_name_the_line_and_the_reason(line: str, reason: str) -> None:
    with pytest.raises(ParseError) as caught:
        parse_net_sockets(HEADER + line + "\n", "tcp", source="/proc/net/tcp")
    assert caught.value.line == 2
    assert reason in caught.value.reason
    assert str(caught.value).startswith("/proc/net/tcp:2: ")


@pytest.mark.parametrize(
    ("text", "pid", "comm", "ppid"),
    [
        (
            "1021 ((sd-pam)) S 1020 1020 1020 0 -1 4194560" + " 0" * 12 + " 9 0 0",
            1021,
            "(sd-pam)",
            1020,
        ),
        (
            "2250 (tmux: server) S 1 2250 2250 0 -1 4194560" + " 0" * 12 + " 9",
            2250,
            "tmux: server",
            1,
        ),
        (
            "2300 (evil) R 1 (x) S 2250 2300 2300 0 -1 0" + " 0" * 12 + " 9",
            2300,
            "evil) R 1 (x",
            2250,
        ),
        ("77 (a\nb) S 5 77 77 0 -1 0" + " 0" * 12 + " 9", 77, "a\nb", 5),
        ("78 () S 5 77 77 0 -1 0" + " 0" * 12 + " 9", 78, "", 5),
    ],
)
def test_stat_comm_ends_at_the_last_parenthesis(text: str, pid: int, comm: str, ppid: int) -> None:
    stat = parse_stat(text)
    assert (stat.pid, stat.comm, stat.ppid, stat.start_ticks) == (pid, comm, ppid, 9)


def test_stat_reads_flags_start_time_and_the_exit_code() -> None:
    fixture = HOSTS / "debian12" / "proc"
    kworker = parse_stat((fixture / "87" / "stat").read_text())
    assert kworker.is_kernel_thread and kworker.comm == "kworker/0:1-eve"
    curl = parse_stat((fixture / "2290" / "stat").read_text())
    assert not curl.is_kernel_thread
    assert (curl.state, curl.start_ticks, curl.exit_code) == ("S", 2390, 0)
    zombie = parse_stat((HOSTS / "alpine318" / "proc" / "480" / "stat").read_text())
    assert (zombie.state, zombie.exit_code) == ("Z", 256)  # a wait status: exit(1)
    old_kernel = parse_stat("5 (x) S 1 5 5 0 -1 0" + " 0" * 12 + " 7")
    assert old_kernel.exit_code is None


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "PID (COMM)"),
        ("12 sshd S 1", "PID (COMM)"),
        ("12 (sshd) S 1 2 3", "at least 20 fields"),
        ("x (sshd) S 1" + " 0" * 20, "pid"),
        ("12 (sshd) SS 1" + " 0" * 20, "state"),
        ("12 (sshd) S -1" + " 0" * 20, "ppid"),
    ],
)
def test_malformed_stat_raises_parse_error(text: str, reason: str) -> None:
    with pytest.raises(ParseError) as caught:
        parse_stat(text, "/proc/12/stat")
    assert reason in caught.value.reason


def test_status_gives_real_and_effective_uid() -> None:
    sudo = parse_status((HOSTS / "ubuntu2204" / "proc" / "1502" / "status").read_text())
    assert (sudo.uid, sudo.euid, sudo.ppid) == (1000, 0, 1490)
    with pytest.raises(ParseError, match="no Uid line"):
        parse_status("Name:\tx\nPid:\t3\n")
    with pytest.raises(ParseError, match="4 ids") as caught:
        parse_status("Name:\tx\nUid:\t0\t0\n")
    assert caught.value.line == 2
    with pytest.raises(ParseError, match="uid"):
        parse_status("Uid:\t0\t0\tx\t0\n")


def test_cmdline_splits_on_nul_and_tolerates_rewritten_titles() -> None:
    assert parse_cmdline(b"curl\x00-sS\x00https://github.com/\x00") == (
        "curl",
        "-sS",
        "https://github.com/",
    )
    nginx = (HOSTS / "debian12" / "proc" / "733" / "cmdline").read_bytes()
    assert parse_cmdline(nginx) == ("nginx: worker process",)
    assert parse_cmdline(b"") == ()
    assert parse_cmdline(b"\x00\x00") == ()
    assert parse_cmdline(b"no-terminator") == ("no-terminator",)
    assert parse_cmdline(b"a\x00\x00b\x00") == ("a", "", "b")
    assert parse_cmdline(b"\xff\xfe\x00") == ("\ufffd\ufffd",)


def test_socket_links_and_addresses() -> None:
    assert parse_socket_link("socket:[31500]") == 31500
    assert parse_socket_link("pipe:[31500]") is None
    assert parse_socket_link("/tmp/socket:[1]") is None
    mapped = ipaddress.IPv6Address("::ffff:127.0.0.9")
    assert is_loopback(mapped) and display_address(mapped) == "127.0.0.9"
    assert is_loopback(ipaddress.IPv6Address("::1"))
    assert is_loopback(ipaddress.IPv4Address("127.255.0.1"))
    assert not is_loopback(ipaddress.IPv6Address("::ffff:10.0.0.1"))
    assert display_address(ipaddress.IPv6Address("2001:db8::1")) == "2001:db8::1"


def test_read_process_reads_a_complete_snapshot(tmp_path: Path) -> None:
    host = fixture_host("debian12", tmp_path)
    curl = read_process(host, 2290)
    assert curl is not None
    assert (curl.exe, curl.command_line, curl.ppid, curl.uid, curl.euid) == (
        "/usr/bin/curl",
        "curl -sS https://github.com/",
        2260,
        1000,
        1000,
    )
    assert curl.missing == ()
    evil = read_process(host, 2300)
    assert evil is not None and evil.comm == "evil) R 1 (x"
    assert evil.exe == "/home/pi/evil) R 1 (x (deleted)"


def test_read_process_is_partial_for_zombies_and_kernel_threads(tmp_path: Path) -> None:
    alpine = fixture_host("alpine318", tmp_path / "alpine")
    zombie = read_process(alpine, 480)
    assert zombie is not None
    assert (zombie.state, zombie.comm, zombie.exe, zombie.args) == ("Z", "sh", None, ())
    assert zombie.missing == ("exe", "cmdline")
    debian = fixture_host("debian12", tmp_path / "debian")
    kthread = read_process(debian, 87)
    assert kthread is not None and kthread.is_kernel_thread and kthread.exe is None


def test_read_process_of_a_vanished_process_is_none(tmp_path: Path) -> None:
    host = fixture_host("debian12", tmp_path)
    assert read_process(host, 99999) is None
    # Gone between reading exe and stat: stat is what decides.
    (tmp_path / "proc" / "2290" / "stat").unlink()
    assert read_process(host, 2290) is None
    # Gone after stat: status is missing, the rest is kept.
    (tmp_path / "proc" / "2250" / "status").unlink()
    tmux = read_process(host, 2250)
    assert tmux is not None and tmux.uid is None and tmux.missing == ("uid",)


def test_read_process_raises_parse_error_for_a_corrupt_stat(tmp_path: Path) -> None:
    host = FakeHostRoot.build(tmp_path, files={"/proc/5/stat": "garbage"})
    with pytest.raises(ParseError, match="/proc/5/stat"):
        read_process(host, 5)


def test_read_exec_reads_exe_cmdline_and_status_alone(tmp_path: Path) -> None:
    host = fixture_host("debian12", tmp_path)
    for pid in (2290, 2300, 2250):
        full, at_exec = read_process(host, pid), read_exec(host, pid)
        assert full is not None and at_exec is not None
        assert at_exec.start_ticks is None
        # Everything else matches what stat and status together say (comm included).
        assert replace(at_exec, start_ticks=full.start_ticks) == full
    # stat is not read: a process whose stat is unreadable is still seen at its exec.
    (tmp_path / "proc" / "2290" / "stat").unlink()
    assert read_exec(host, 2290) is not None
    (tmp_path / "proc" / "2290" / "status").unlink()
    assert read_exec(host, 2290) is None
    assert read_exec(host, 99999) is None


def test_read_exec_unescapes_the_name_and_names_a_corrupt_status(tmp_path: Path) -> None:
    status = "Name:\tx\\nid\\\\\nState:\tR (running)\nPPid:\t1\nUid:\t5\t0\t5\t0\n"
    host = FakeHostRoot.build(tmp_path, files={"/proc/7/status": status, "/proc/8/status": "Uid:"})
    snap = read_exec(host, 7)
    assert snap is not None
    assert (snap.comm, snap.state, snap.ppid, snap.uid, snap.euid) == ("x\nid\\", "R", 1, 5, 0)
    assert snap.missing == ("exe", "cmdline")
    with pytest.raises(ParseError, match="/proc/8/status"):
        read_exec(host, 8)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs a Linux /proc")
def test_live_read_exec_agrees_with_read_process() -> None:
    host = HostRoot("/")
    full, at_exec = read_process(host, os.getpid()), read_exec(host, os.getpid())
    assert full is not None and at_exec is not None
    assert replace(at_exec, start_ticks=full.start_ticks, state=full.state) == full


def test_socket_owners_map_inodes_to_pids(tmp_path: Path) -> None:
    host = fixture_host("debian12", tmp_path)
    owners = socket_owners(host, {18431, 31500, 40001, 20110, 424242})
    # Default order is newest first: the nginx worker (733) before its master (731).
    assert owners == {18431: 612, 31500: 2290, 40001: 733, 20110: 733}
    oldest_first = socket_owners(host, {20110}, candidates=list_pids(host))
    assert oldest_first == {20110: 731}
    assert socket_owners(host, set()) == {}


def test_socket_owners_skip_processes_that_vanish_or_cannot_be_read(tmp_path: Path) -> None:
    host = fixture_host("debian12", tmp_path)
    shutil.rmtree(tmp_path / "proc" / "612" / "fd")
    (tmp_path / "proc" / "2201" / "fd").chmod(0)
    try:
        owners = socket_owners(host, {18431, 31337, 31500}, candidates=[99999, 612, 2201, 2290])
    finally:
        (tmp_path / "proc" / "2201" / "fd").chmod(0o755)
    # Root reads a mode-0 directory anyway; either way the search goes on past it.
    assert owners[31500] == 2290
    assert 18431 not in owners


def test_read_sockets_reads_tables_in_one_pass_and_skips_missing_ones(tmp_path: Path) -> None:
    lines = "".join(
        socket_line(i, ("10.1.0.1", 40000 + i % 20000), ("10.2.0.1", 443), 1, 100000 + i)
        for i in range(4000)
    )
    host = FakeHostRoot.build(tmp_path, files={"/proc/net/tcp": HEADER + lines})
    entries = read_sockets(host)  # tcp6, udp, udp6 absent: a kernel without IPv6 or UDP tables
    assert len(entries) == 4000
    assert entries[-1].inode == 103999
    (tmp_path / "proc" / "net" / "udp").mkdir()
    with pytest.raises(HostReadError, match="/proc/net/udp"):
        read_sockets(host)


SNMP = (
    "Ip: Forwarding DefaultTTL InReceives\nIp: 1 64 6605386\n"
    "Tcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens AttemptFails\n"
    "Tcp: 1 200 120000 -1 45968 45758 114\n"
    "Udp: InDatagrams NoPorts\nUdp: 5 0\n"
)


def test_tcp_open_counters_come_from_snmp(tmp_path: Path) -> None:
    opens = parse_tcp_opens(SNMP)
    assert (opens.active, opens.passive) == (45968, 45758)
    host = FakeHostRoot.build(tmp_path, files={"/proc/net/snmp": SNMP})
    assert read_tcp_opens(host) == opens
    assert read_tcp_opens(FakeHostRoot.build(tmp_path / "bare")) is None


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("Ip: a\nIp: 1\n", "got 0"),
        ("Tcp: ActiveOpens PassiveOpens\n", "got 1"),
        ("Tcp: ActiveOpens\nTcp: 5\n", "no PassiveOpens counter"),
        ("Tcp: ActiveOpens PassiveOpens\nTcp: 5 -1\n", "PassiveOpens"),
    ],
)
def test_malformed_snmp_raises_parse_error(text: str, reason: str) -> None:
    with pytest.raises(ParseError) as caught:
        parse_tcp_opens(text)
    assert reason in caught.value.reason


@given(st.text(max_size=300))
def test_snmp_parser_raises_only_parse_error(text: str) -> None:
    with contextlib.suppress(ParseError):
        parse_tcp_opens("Tcp: ActiveOpens PassiveOpens\n" + text)


def test_hex_address_helper_round_trips() -> None:
    assert hex_address("127.0.0.1") == "0100007F"
    assert hex_address("127.0.0.1", "big") == "7F000001"


# Property tests: arbitrary input raises only ParseError.

_TABLE_CHARS = st.text(
    alphabet=st.sampled_from("0123456789ABCDEFabcdefx: \n\t-\u0661"), max_size=400
)


@given(st.one_of(st.text(max_size=400), _TABLE_CHARS))
def test_socket_table_parser_raises_only_parse_error(text: str) -> None:
    with contextlib.suppress(ParseError):
        parse_net_sockets(text, "udp")


@given(st.one_of(st.text(max_size=300), st.from_regex(r"\d+ \(.*\) .*", fullmatch=True)))
def test_stat_parser_raises_only_parse_error(text: str) -> None:
    with contextlib.suppress(ParseError):
        parse_stat(text)


@given(st.one_of(st.text(max_size=300), st.from_regex(r"(Uid|PPid):[\s\d]*", fullmatch=True)))
def test_status_parser_raises_only_parse_error(text: str) -> None:
    with contextlib.suppress(ParseError):
        parse_status(text)
    with contextlib.suppress(ParseError):
        parse_status(text, names=True)


@given(st.binary(max_size=300))
def test_cmdline_parser_never_raises(data: bytes) -> None:
    args = parse_cmdline(data)
    assert all("\x00" not in a for a in args)


@given(st.text(max_size=60))
def test_socket_link_parser_never_raises(text: str) -> None:
    inode = parse_socket_link(text)
    assert inode is None or inode >= 0


@given(
    st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)).flatmap(
        lambda a: st.tuples(st.just(a), st.ip_addresses(v=a.version))
    ),
    st.integers(0, 65535),
    st.integers(0, 65535),
    st.integers(1, 13),
    st.integers(0, 2**32 - 1),
    st.sampled_from(["little", "big"]),
)
def test_socket_lines_round_trip(
    addresses: tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...],
    local_port: int,
    remote_port: int,
    state: int,
    inode: int,
    byteorder: str,
) -> None:
    local, remote = addresses
    line = socket_line(
        0, (str(local), local_port), (str(remote), remote_port), state, inode, byteorder=byteorder
    )
    (entry,) = parse_net_sockets(line, "tcp", byteorder="big" if byteorder == "big" else "little")
    assert (entry.local_address, entry.local_port) == (local, local_port)
    assert (entry.remote_address, entry.remote_port, entry.state, entry.inode) == (
        remote,
        remote_port,
        state,
        inode,
    )


def test_doctests() -> None:
    assert doctest.testmod(procfs_module).failed == 0


def test_live_a_socket_table_longer_than_one_kernel_page_is_read_whole() -> None:
    # The kernel hands /proc/net/tcp out about a page (some 26 sockets) per read(): 200
    # listeners span several reads, and every one of them must be in what comes back.
    import socket  # noqa: PLC0415

    from iotsec.agent.hostroot import HostRoot  # noqa: PLC0415

    listeners = []
    try:
        for _ in range(200):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sock.listen()
            listeners.append(sock)
        ports = {sock.getsockname()[1] for sock in listeners}
        entries = read_sockets(HostRoot("/"), tables=[("/proc/net/tcp", "tcp")])
        listening = {e.local_port for e in entries if e.state == TcpState.LISTEN}
        assert ports <= listening, f"{len(ports - listening)} of 200 listeners missing"
    finally:
        for sock in listeners:
            sock.close()
