"""ConnectionCreate: diffing the socket tables of fixture hosts, and real connections through a
network namespace."""

from __future__ import annotations

import doctest
import ipaddress
import os
import random
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from iotsec.agent.collectors import connections as connections_module
from iotsec.agent.collectors.connections import (
    ConnectionCreateCollector,
    connection_create_collector,
    is_connection,
)
from iotsec.agent.collectors.procfs import parse_net_sockets
from iotsec.agent.errors import HostReadError, ParseError
from iotsec.agent.hostroot import HostRoot
from iotsec.schema import ConnectionCreate, Event
from tests.agent.collectors.procfixtures import (
    assert_schema_valid,
    fixture_host,
    socket_line,
)

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
AT_START = {"SeenAtStart": "true"}
NO_PROCESS = {"Partial": "true", "Missing": "process", "SeenAtStart": "true"}

Summary = tuple[str, str, str, str, str, str, int, str, str | None, str | None, dict[str, str]]


def _summary(row: ConnectionCreate) -> Summary:
    return (
        row.protocol,
        f"{row.local_address}:{row.local_port}",
        row.direction,
        f"{row.remote_address}:{row.remote_port}",
        str(row.remote_port),
        row.executable,
        row.process_id,
        row.command_line,
        row.command_line and row.user_id,
        row.user_id,
        row.extra_details,
    )


def _rows(events: list[Event]) -> list[ConnectionCreate]:
    rows = [row for event in events for row in event.payload]
    assert all(isinstance(row, ConnectionCreate) for row in rows)
    return rows  # type: ignore[return-value]  # checked just above


def _collector(host: HostRoot, **kwargs: Any) -> ConnectionCreateCollector:
    return ConnectionCreateCollector(host, background=False, clock=lambda: T0, **kwargs)


EXPECTED: dict[str, list[tuple[str, str, str, str, int, str, str | None, dict[str, str]]]] = {
    "debian12": [
        ("TCP", "10.0.2.15:22", "In", "192.168.1.50:53122", 2201, "/usr/sbin/sshd", "0", AT_START),
        (
            "TCP",
            "10.0.2.15:43512",
            "Out",
            "140.82.112.3:443",
            2290,
            "/usr/bin/curl",
            "1000",
            AT_START,
        ),
        (
            "TCP",
            "10.0.2.15:43500",
            "Out",
            "151.101.1.69:80",
            0,
            "",
            None,
            {"State": "TIME_WAIT", **NO_PROCESS},
        ),
        ("TCP", "10.0.2.15:80", "In", "192.168.1.77:51000", 733, "/usr/sbin/nginx", "33", AT_START),
        (
            "TCP",
            "2001:db8:0:1::15:50312",
            "Out",
            "2606:4700::6810:85e5:443",
            0,
            "",
            "1000",
            NO_PROCESS,
        ),
        ("UDP", "10.0.2.15:40000", "Out", "8.8.8.8:53", 2290, "/usr/bin/curl", "1000", AT_START),
    ],
    "ubuntu2204": [
        (
            "TCP",
            "10.0.0.20:51514",
            "Out",
            "52.168.112.66:8883",
            1450,
            "/usr/bin/python3.10",
            "0",
            AT_START,
        ),
        (
            "TCP",
            "10.0.0.20:1883",
            "In",
            "10.0.0.31:49822",
            820,
            "/usr/sbin/mosquitto",
            "113",
            AT_START,
        ),
        (
            "TCP",
            "10.0.0.20:22",
            "In",
            "10.0.0.5:60122",
            0,
            "",
            "0",
            {"State": "CLOSE_WAIT", **NO_PROCESS},
        ),
        (
            "TCP",
            "10.0.0.20:34800",
            "Out",
            "185.125.190.18:443",
            0,
            "",
            None,
            {"State": "FIN_WAIT2", **NO_PROCESS},
        ),
    ],
    "alpine318": [
        (
            "TCP",
            "192.168.7.2:22",
            "In",
            "192.168.7.1:50514",
            450,
            "/usr/sbin/dropbear",
            "0",
            AT_START,
        ),
        ("TCP", "192.168.7.2:38144", "Out", "151.101.2.132:443", 470, "/sbin/apk", "0", AT_START),
        (
            "UDP",
            "192.168.7.2:55123",
            "Out",
            "162.159.200.1:123",
            402,
            "/bin/busybox",
            "123",
            AT_START,
        ),
    ],
    "rhel9": [
        ("TCP", "172.16.4.21:22", "In", "172.16.4.9:61544", 3201, "/usr/sbin/sshd", "0", AT_START),
        (
            "TCP",
            "fd00:4::21:9090",
            "In",
            "fd00:4::9:52014",
            1500,
            "/usr/libexec/cockpit-ws",
            "0",
            AT_START,
        ),
        (
            "TCP",
            "fd00:4::21:39122",
            "Out",
            "2620:52:3:1:dead:beef:cafe:fed6:443",
            3305,
            "/usr/bin/python3.9",
            "0",
            AT_START,
        ),
    ],
}


@pytest.mark.parametrize("distro", sorted(EXPECTED))
def test_the_first_poll_reports_the_open_connections_with_their_process(
    distro: str, tmp_path: Path
) -> None:
    collector = _collector(fixture_host(distro, tmp_path))
    events = list(collector.collect(T0))
    rows = _rows(events)
    assert [
        (
            r.protocol,
            f"{r.local_address}:{r.local_port}",
            r.direction,
            f"{r.remote_address}:{r.remote_port}",
            r.process_id,
            r.executable,
            r.user_id,
            r.extra_details,
        )
        for r in rows
    ] == EXPECTED[distro]
    assert all(e.name == "ConnectionCreate" and e.timestamp_utc == T0 for e in events)
    assert collector.collect(T0) == []  # each connection once
    assert_schema_valid(events)


def test_command_lines_come_from_the_owning_process(tmp_path: Path) -> None:
    rows = _rows(list(_collector(fixture_host("debian12", tmp_path)).collect(T0)))
    assert [r.command_line for r in rows] == [
        "sshd: pi [priv]",
        "curl -sS https://github.com/",
        None,
        "nginx: worker process",
        None,
        "curl -sS https://github.com/",
    ]


def test_only_connected_non_loopback_sockets_count() -> None:
    lines = "".join(
        [
            socket_line(0, ("0.0.0.0", 22), ("0.0.0.0", 0), 0x0A, 1),  # LISTEN
            socket_line(1, ("10.0.0.2", 5000), ("10.0.0.9", 443), 0x02, 2),  # SYN_SENT
            socket_line(2, ("10.0.0.2", 22), ("10.0.0.9", 6000), 0x03, 3),  # SYN_RECV
            socket_line(3, ("127.0.0.1", 80), ("127.0.0.5", 6000), 0x01, 4),  # loopback
            socket_line(4, ("10.0.0.2", 5001), ("10.0.0.9", 443), 0x0B, 5),  # CLOSING
            socket_line(5, ("10.0.0.2", 5002), ("10.0.0.9", 443), 0x09, 6),  # LAST_ACK
        ]
    )
    tcp = parse_net_sockets(lines, "tcp")
    assert [is_connection(e) for e in tcp] == [False, False, False, False, True, True]
    udp = parse_net_sockets(
        socket_line(0, ("0.0.0.0", 53), ("0.0.0.0", 0), 0x07, 1)
        + socket_line(1, ("10.0.0.2", 53), ("10.0.0.9", 0), 0x01, 2)
        + socket_line(2, ("::ffff:10.0.0.2", 4000), ("::ffff:127.0.0.1", 53), 0x01, 3),
        "udp",
    )
    assert [is_connection(e) for e in udp] == [False, False, False]


def test_new_connections_are_reported_once_and_only_their_inodes_are_looked_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    host = fixture_host("debian12", tmp_path)
    collector = _collector(host, report_existing=False)
    looked_up: list[set[int]] = []
    real = connections_module.socket_owners

    def spy(host: HostRoot, inodes: Any, **kwargs: Any) -> dict[int, int]:
        looked_up.append(set(inodes))
        return real(host, inodes, **kwargs)

    monkeypatch.setattr(connections_module, "socket_owners", spy)
    assert collector.collect(T0) == []  # the baseline
    assert looked_up == []
    table = tmp_path / "proc" / "net" / "tcp"
    original = table.read_text()
    fresh = socket_line(20, ("10.0.2.15", 43600), ("140.82.112.4", 22), 0x01, 31900, uid=1000)
    (tmp_path / "proc" / "2290" / "fd" / "9").symlink_to("socket:[31900]")
    table.write_text(original + fresh)
    (row,) = _rows(list(collector.collect(T0)))
    assert (row.remote_address, row.remote_port, row.process_id, row.direction) == (
        "140.82.112.4",
        "22",
        2290,
        "Out",
    )
    assert row.extra_details == {}
    assert looked_up == [{31900}]
    assert collector.collect(T0) == []
    table.write_text(original)  # closed ...
    assert collector.collect(T0) == []
    table.write_text(original + fresh)  # ... and the same four-tuple opened again
    assert len(collector.collect(T0)) == 1
    assert looked_up == [{31900}, {31900}]


def _snmp(active: int, passive: int) -> str:
    return (
        "Tcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens\n"
        f"Tcp: 1 200 120000 -1 {active} {passive}\n"
    )


def test_tcp_tables_are_read_only_when_the_open_counters_move(tmp_path: Path) -> None:
    host = fixture_host("alpine318", tmp_path)
    snmp = tmp_path / "proc" / "net" / "snmp"
    snmp.write_text(_snmp(10, 20))
    table = tmp_path / "proc" / "net" / "tcp"
    collector = _collector(host)
    assert len(collector.collect(T0)) == 3
    assert collector.tcp_reads == 1
    table.write_text(
        table.read_text()
        + socket_line(9, ("192.168.7.2", 38200), ("151.101.2.133", 443), 0x01, 5600)
    )
    # Counters still: the tables are not read (a real kernel would have moved them).
    assert collector.collect(T0) == []
    assert collector.tcp_reads == 1
    snmp.write_text(_snmp(11, 20))
    (event,) = collector.collect(T0)
    assert event.payload[0].remote_address == "151.101.2.133"
    assert collector.tcp_reads == 2
    for _ in range(59):
        collector.collect(T0)
    assert collector.tcp_reads == 2
    collector.collect(T0)  # the 60th poll since the last read reads them anyway
    assert collector.tcp_reads == 3


def test_a_handshake_in_progress_is_looked_at_again(tmp_path: Path) -> None:
    host = fixture_host("alpine318", tmp_path)
    snmp = tmp_path / "proc" / "net" / "snmp"
    snmp.write_text(_snmp(10, 20))
    table = tmp_path / "proc" / "net" / "tcp"
    original = table.read_text()
    collector = _collector(host, report_existing=False)
    collector.collect(T0)
    remote = ("151.101.2.133", 443)
    table.write_text(original + socket_line(9, ("192.168.7.2", 38200), remote, 0x02, 5600))
    snmp.write_text(_snmp(11, 20))  # connect() counted at SYN_SENT
    assert collector.collect(T0) == []
    table.write_text(original + socket_line(9, ("192.168.7.2", 38200), remote, 0x01, 5600))
    (event,) = collector.collect(T0)  # counters unchanged, but the handshake was pending
    assert event.payload[0].remote_port == "443"
    assert collector.collect(T0) == []
    assert collector.tcp_reads == 3


def test_an_overflowing_buffer_counts_what_it_drops(tmp_path: Path) -> None:
    collector = _collector(fixture_host("debian12", tmp_path), buffer_size=2)
    assert collector.poll() == 6
    assert collector.dropped == 4
    assert len(collector.collect(T0)) == 2  # collect polls again: nothing new, nothing dropped
    assert collector.dropped == 4


def test_unreadable_or_corrupt_tables_raise_typed_errors(tmp_path: Path) -> None:
    host = fixture_host("rhel9", tmp_path)
    table = tmp_path / "proc" / "net" / "tcp"
    table.unlink()
    table.mkdir()
    with pytest.raises(HostReadError, match="/proc/net/tcp"):
        _collector(host).collect(T0)
    table.rmdir()
    table.write_text("  sl local\n 0: nonsense\n")
    with pytest.raises(ParseError, match="/proc/net/tcp:2"):
        _collector(host).collect(T0)


def test_a_background_poller_feeds_collect_and_reports_its_failure(tmp_path: Path) -> None:
    host = fixture_host("alpine318", tmp_path)
    collector = ConnectionCreateCollector(host, background=True, interval=0.01)
    try:
        events: list[Event] = []
        deadline = time.monotonic() + 30
        while len(events) < 3:
            assert time.monotonic() < deadline
            events += collector.collect(datetime.now(UTC))
            time.sleep(0.01)
        (tmp_path / "proc" / "net" / "udp").write_text("garbage line\n")
        while collector.failure is None:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        with pytest.raises(ParseError):
            collector.collect(datetime.now(UTC))
    finally:
        collector.close()
        collector.close()


def test_the_registry_factory_polls_every_second(tmp_path: Path) -> None:
    collector = connection_create_collector(fixture_host("debian12", tmp_path))
    try:
        assert collector.interval == 1.0 and not collector.background
        assert (collector.spec.name, collector.spec.category, collector.spec.default_priority) == (
            "ConnectionCreate",
            "Triggered",
            "Low",
        )
    finally:
        collector.close()


# The real kernel: a network namespace behind a veth pair.

_SERVER = """
import socket, sys
server = socket.socket()
server.bind((sys.argv[1], 0))
server.listen()
print(server.getsockname()[1], flush=True)
held = []
while True:
    held.append(server.accept()[0])
"""
_CLIENT = """
import socket, sys, time
conn = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
print("connected", flush=True)
sys.stdin.readline()
"""


@dataclass(frozen=True)
class Peer:
    """A network namespace reachable at ``address`` from ``local`` in the root namespace."""

    namespace: str
    local: str
    address: str
    port: int

    def run(self, code: str, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            ["ip", "netns", "exec", self.namespace, sys.executable, "-c", code, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=False, timeout=30)


def _free_subnet() -> ipaddress.IPv4Network:
    used = _ip("-o", "-4", "addr", "show").stdout + _ip("-4", "route", "show").stdout
    for _ in range(100):
        net = ipaddress.IPv4Network(f"10.213.{random.randrange(256)}.{random.randrange(64) * 4}/30")
        if f"{net.network_address + 1}" not in used and str(net) not in used:
            return net
    pytest.skip("no free 10.213.x.y/30 subnet")


@pytest.fixture
def peer() -> Iterator[Peer]:
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    if shutil.which("ip") is None:
        pytest.skip("iproute2 (ip) is not installed")
    tag = secrets.token_hex(3)
    namespace, outer, inner = f"iotsec-test-{tag}", f"ivh{tag}", f"ivp{tag}"
    created = _ip("netns", "add", namespace)
    if created.returncode != 0:
        pytest.skip(f"cannot create a network namespace: {created.stderr.strip()}")
    server: subprocess.Popen[str] | None = None
    try:
        net = _free_subnet()
        local, remote = str(net.network_address + 1), str(net.network_address + 2)
        for step in (
            ["link", "add", outer, "type", "veth", "peer", "name", inner],
            ["link", "set", inner, "netns", namespace],
            ["addr", "add", f"{local}/30", "dev", outer],
            ["link", "set", outer, "up"],
            ["netns", "exec", namespace, "ip", "addr", "add", f"{remote}/30", "dev", inner],
            ["netns", "exec", namespace, "ip", "link", "set", inner, "up"],
            ["netns", "exec", namespace, "ip", "link", "set", "lo", "up"],
        ):
            done = _ip(*step)
            assert done.returncode == 0, (step, done.stderr)
        placeholder = Peer(namespace, local, remote, 0)
        server = placeholder.run(_SERVER, remote)
        assert server.stdout is not None
        port = int(server.stdout.readline())
        yield Peer(namespace, local, remote, port)
    finally:
        if server is not None:
            server.kill()
            server.communicate()  # reaps it and closes its pipes
        _ip("netns", "del", namespace)  # takes the veth pair with it
        _ip("link", "del", outer)  # in case the pair was made but not moved


def _wait_rows(
    collector: ConnectionCreateCollector, match: Callable[[ConnectionCreate], bool]
) -> tuple[list[ConnectionCreate], list[ConnectionCreate]]:
    seen: list[ConnectionCreate] = []
    deadline = time.monotonic() + 30
    while not any(match(r) for r in seen):
        assert time.monotonic() < deadline, seen
        seen += _rows(list(collector.collect(datetime.now(UTC))))
        time.sleep(0.02)
    return [r for r in seen if match(r)], seen


def test_live_an_outbound_connection_is_out_with_the_connecting_pid(peer: Peer) -> None:
    collector = ConnectionCreateCollector(HostRoot("/"), interval=0.1)
    loopback = socket.socket()
    loopback.bind(("127.0.0.1", 0))
    loopback.listen()
    inside = socket.create_connection(loopback.getsockname(), timeout=5)
    conn = socket.create_connection((peer.address, peer.port), timeout=5)
    try:
        local_port = str(conn.getsockname()[1])
        _, seen = _wait_rows(
            collector, lambda r: (r.remote_address, r.remote_port) == (peer.address, str(peer.port))
        )
        time.sleep(0.3)  # a few more polls: still once
        seen += _rows(list(collector.collect(datetime.now(UTC))))
    finally:
        collector.close()
        conn.close()
        inside.close()
        loopback.close()
    (row,) = [r for r in seen if r.remote_address == peer.address]
    assert (row.direction, row.protocol, row.process_id) == ("Out", "TCP", os.getpid())
    assert (row.local_address, row.local_port) == (peer.local, local_port)
    assert row.executable == os.readlink("/proc/self/exe")
    assert row.user_id == str(os.getuid())
    assert "Partial" not in row.extra_details
    assert not any(r.remote_address.startswith("127.") for r in seen)


def test_live_an_accepted_connection_is_in(peer: Peer) -> None:
    server = socket.socket()
    server.bind((peer.local, 0))
    server.listen()
    port = server.getsockname()[1]
    collector = ConnectionCreateCollector(HostRoot("/"), interval=0.1, report_existing=False)
    client = peer.run(_CLIENT, peer.local, str(port))
    try:
        assert client.stdout is not None and client.stdout.readline().strip() == "connected"
        accepted, _ = server.accept()
        matching, _ = _wait_rows(
            collector, lambda r: r.remote_address == peer.address and r.local_port == str(port)
        )
    finally:
        collector.close()
        client.kill()
        client.communicate()
        server.close()
    (row,) = matching
    assert (row.direction, row.process_id) == ("In", os.getpid())
    accepted.close()


def test_live_a_connection_closed_before_the_poll_is_seen_in_time_wait(peer: Peer) -> None:
    collector = ConnectionCreateCollector(HostRoot("/"), interval=0.5, report_existing=False)
    try:
        time.sleep(0.1)  # the baseline poll has run
        conn = socket.create_connection((peer.address, peer.port), timeout=5)
        local_port = str(conn.getsockname()[1])
        conn.close()  # we close first: this end lingers in TIME_WAIT
        matching, _ = _wait_rows(
            collector, lambda r: r.remote_address == peer.address and r.local_port == local_port
        )
    finally:
        collector.close()
    (row,) = matching
    assert row.direction == "Out"
    if row.process_id == 0:  # closed: FIN_WAIT2 until the peer closes, then TIME_WAIT
        assert row.extra_details["State"] in {"FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT"}
        assert row.extra_details["Missing"] == "process"
    else:  # the poll caught it before the close
        assert row.process_id == os.getpid()


def test_doctests() -> None:
    assert doctest.testmod(connections_module).failed == 0
