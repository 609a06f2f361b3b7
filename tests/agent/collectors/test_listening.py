"""ListeningPorts: snapshots of fixture hosts and of the real kernel."""

from __future__ import annotations

import doctest
import os
import socket
from datetime import UTC, datetime
from pathlib import Path

import pytest

from iotsec.agent.collectors import listening as listening_module
from iotsec.agent.collectors.listening import ListeningPortsCollector, listening_ports_collector
from iotsec.agent.hostroot import FakeHostRoot, HostRoot
from iotsec.schema import ListeningPorts
from tests.agent.collectors.procfixtures import assert_schema_valid, fixture_host

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)

Row = tuple[str, str, str, str, str]

EXPECTED: dict[str, list[Row]] = {
    "debian12": [
        ("TCP", "0.0.0.0", "22", "612", "/usr/sbin/sshd"),
        ("TCP", "::", "22", "612", "/usr/sbin/sshd"),
        ("TCP", "0.0.0.0", "80", "731", "/usr/sbin/nginx"),
        ("TCP", "::", "80", "731", "/usr/sbin/nginx"),
        ("TCP", "127.0.0.1", "5432", "801", "/usr/lib/postgresql/15/bin/postgres"),
        ("TCP", "::1", "8080", "2310", "/usr/bin/python3.11"),
        ("UDP", "0.0.0.0", "68", "530", "/usr/sbin/dhclient"),
        ("UDP", "127.0.0.1", "323", "541", "/usr/sbin/chronyd"),
        ("UDP", "::1", "323", "541", "/usr/sbin/chronyd"),
    ],
    "ubuntu2204": [
        ("TCP", "0.0.0.0", "22", "702", "/usr/sbin/sshd"),
        ("TCP", "::", "22", "702", "/usr/sbin/sshd"),
        ("TCP", "127.0.0.53", "53", "590", "/usr/lib/systemd/systemd-resolved"),
        ("TCP", "0.0.0.0", "1883", "820", "/usr/sbin/mosquitto"),
        ("TCP", "::", "1883", "820", "/usr/sbin/mosquitto"),
        ("UDP", "127.0.0.53", "53", "590", "/usr/lib/systemd/systemd-resolved"),
        ("UDP", "10.0.0.20", "68", "596", "/usr/lib/systemd/systemd-networkd"),
        ("UDP", "0.0.0.0", "5353", "640", "/usr/sbin/avahi-daemon"),
        ("UDP", "::", "5353", "640", "/usr/sbin/avahi-daemon"),
    ],
    "alpine318": [
        # The listener dropbear (410), not the session it forked (450) that shares the socket.
        ("TCP", "0.0.0.0", "22", "410", "/usr/sbin/dropbear"),
        ("UDP", "0.0.0.0", "123", "402", "/bin/busybox"),
    ],
    "rhel9": [
        ("TCP", "0.0.0.0", "22", "900", "/usr/sbin/sshd"),
        ("TCP", "::", "22", "900", "/usr/sbin/sshd"),
        ("TCP", "0.0.0.0", "111", "701", "/usr/bin/rpcbind"),
        ("TCP", "::", "111", "701", "/usr/bin/rpcbind"),
        # Socket activation: systemd holds cockpit's socket and hands it to cockpit-ws.
        ("TCP", "::", "9090", "1", "/usr/lib/systemd/systemd"),
        ("UDP", "0.0.0.0", "111", "701", "/usr/bin/rpcbind"),
        ("UDP", "::", "111", "701", "/usr/bin/rpcbind"),
        ("UDP", "127.0.0.1", "323", "745", "/usr/sbin/chronyd"),
        ("UDP", "::1", "323", "745", "/usr/sbin/chronyd"),
    ],
}


def _row(row: ListeningPorts) -> Row:
    details = row.extra_details
    return (
        row.protocol,
        row.local_address or "",
        row.local_port,
        details.get("Pid", ""),
        details.get("Executable", ""),
    )


@pytest.mark.parametrize("distro", sorted(EXPECTED))
def test_snapshot_lists_listening_and_bound_sockets_with_their_process(
    distro: str, tmp_path: Path
) -> None:
    (event,) = ListeningPortsCollector(fixture_host(distro, tmp_path)).collect(T0)
    assert (event.name, event.category, event.event_type, event.is_empty) == (
        "ListeningPorts",
        "Periodic",
        "Security",
        False,
    )
    assert event.timestamp_utc == T0
    rows = [row for row in event.payload if isinstance(row, ListeningPorts)]
    assert [_row(row) for row in rows] == EXPECTED[distro]
    assert {(row.remote_address, row.remote_port) for row in rows} <= {
        ("0.0.0.0", "*"),
        ("::", "*"),
    }
    assert_schema_valid([event])


def test_unowned_sockets_and_unreadable_executables(tmp_path: Path) -> None:
    host = fixture_host("debian12", tmp_path)
    (tmp_path / "proc" / "541" / "exe").unlink()  # another user's process, for a non-root agent
    for link in (tmp_path / "proc" / "530" / "fd").iterdir():
        link.unlink()  # dhclient's socket now belongs to nobody we can see
    (event,) = ListeningPortsCollector(host).collect(T0)
    by_port = {(r.protocol, r.local_port, r.local_address): r.extra_details for r in event.payload}
    assert by_port[("UDP", "323", "127.0.0.1")] == {"Pid": "541", "Comm": "chronyd"}
    assert by_port[("UDP", "68", "0.0.0.0")] == {}


def test_a_host_with_no_listening_socket_sends_an_empty_snapshot(tmp_path: Path) -> None:
    host = FakeHostRoot.build(
        tmp_path, files={"/proc/net/tcp": "  sl  local_address rem_address   st\n"}
    )
    collector = listening_ports_collector(host)
    (event,) = collector.collect(T0)
    collector.close()
    assert (event.is_empty, event.payload) == (True, ())
    assert collector.spec.default_priority == "High"
    assert_schema_valid([event])


def _ipv6_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


def test_live_a_socket_this_test_listens_on_appears_with_this_pid() -> None:
    tcp = socket.socket()
    tcp.bind(("0.0.0.0", 0))
    tcp.listen()
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("0.0.0.0", 0))
    sockets = [tcp, udp]
    wanted = {
        ("TCP", "0.0.0.0", str(tcp.getsockname()[1])),
        ("UDP", "0.0.0.0", str(udp.getsockname()[1])),
    }
    if _ipv6_available():
        tcp6 = socket.socket(socket.AF_INET6)
        tcp6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        tcp6.bind(("::", 0))
        tcp6.listen()
        sockets.append(tcp6)
        wanted.add(("TCP", "::", str(tcp6.getsockname()[1])))
    try:
        (event,) = ListeningPortsCollector(HostRoot("/")).collect(datetime.now(UTC))
    finally:
        for sock in sockets:
            sock.close()
    ours = {
        (r.protocol, r.local_address, r.local_port): r.extra_details
        for r in event.payload
        if (r.protocol, r.local_address, r.local_port) in wanted
    }
    assert set(ours) == wanted
    exe = os.readlink("/proc/self/exe")
    assert all(details == {"Pid": str(os.getpid()), "Executable": exe} for details in ours.values())
    connected = [r for r in event.payload if r.remote_port != "*"]
    assert connected == []


def test_doctests() -> None:
    assert doctest.testmod(listening_module).failed == 0
