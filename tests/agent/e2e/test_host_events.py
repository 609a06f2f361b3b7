"""What happens on this machine arrives at the hub: ``iotsec agent run`` against a real hub.

Each test makes something happen on the live host (a process, a connection, a listening port,
a failed login) and waits for the event in the hub's durable log.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from iotsec.agent.collectors.proc_connector import ProcConnector
from iotsec.agent.collectors.utmp import UtmpRecord, UtmpType, encode_utmp
from iotsec.agent.errors import HostReadError
from iotsec.agent.hostroot import HostRoot
from iotsec.agent.runner import Agent, AgentOptions
from iotsec.agent.selfmon import Budget
from iotsec.agent.state import StateDir
from iotsec.schema import Event, aggregation_of
from iotsec.sdk import ConnectionString, make_transport
from tests.agent.e2e.conftest import FAST, AgentProcess, Hub

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the agent reads the live host as root")


def proc_connector_available() -> bool:
    try:
        ProcConnector.open().close()
    except HostReadError:
        return False
    return True


@pytest.mark.skipif(
    not proc_connector_available(),
    reason="no netlink proc connector here (needs CAP_NET_ADMIN in the initial namespaces)",
)
async def test_a_process_that_lives_under_50_ms_arrives_as_process_create(
    hub: Hub, agent_process: Callable[..., AgentProcess], tmp_path: Path
) -> None:
    # A copy of sleep under a unique name: the kernel's comm for it is that name, so the
    # process is recognisable even if it is gone before the agent could read its /proc entry.
    marker = f"ie2e{secrets.token_hex(4)}"
    program = tmp_path / marker
    shutil.copy(shutil.which("sleep") or "/bin/sleep", program)
    agent = agent_process()
    agent.start()
    # Wait until the agent is up and sending: its first heartbeat is at the hub.
    await hub.wait_for("MessageStatistics", agent=agent)
    started = time.monotonic()
    subprocess.run([str(program), "0.01"], check=True)
    assert time.monotonic() - started < 0.05, "the process lived too long to prove anything"

    event = await hub.wait_for(
        "ProcessCreate", lambda e: marker in e.payload[0].executable, agent=agent
    )
    row = event.payload[0]
    assert row.user_id == "0" and row.user_name == "root"
    if row.extra_details.get("Partial") != "true":
        assert row.executable == str(program)
        assert row.command_line == f"{program} 0.01"
    aggregation = aggregation_of(event)
    assert aggregation is not None and aggregation.hit_count == 1
    assert agent.stop() == 0


@pytest.fixture
def veth_namespace() -> Iterator[tuple[str, str]]:
    """A network namespace joined by a veth pair: (its name, the peer address inside it)."""
    if shutil.which("ip") is None:
        pytest.skip("needs iproute2 (ip)")
    tag = secrets.token_hex(3)
    namespace, outside, inside = f"iotsec-{tag}", f"ivh{tag}", f"ivn{tag}"
    octet = 16 + secrets.randbelow(200)
    host_address, peer_address = f"10.{octet}.77.1", f"10.{octet}.77.2"

    def ip(*args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)

    made = subprocess.run(
        ["ip", "netns", "add", namespace], check=False, capture_output=True, text=True, timeout=10
    )
    if made.returncode != 0:
        pytest.skip(f"cannot create a network namespace here: {made.stderr.strip()}")
    try:
        ip("link", "add", outside, "type", "veth", "peer", "name", inside)
        ip("link", "set", inside, "netns", namespace)
        ip("addr", "add", f"{host_address}/30", "dev", outside)
        ip("link", "set", outside, "up")
        ip("netns", "exec", namespace, "ip", "addr", "add", f"{peer_address}/30", "dev", inside)
        ip("netns", "exec", namespace, "ip", "link", "set", inside, "up")
        ip("netns", "exec", namespace, "ip", "link", "set", "lo", "up")
        yield namespace, peer_address
    finally:
        for cleanup in (["link", "del", outside], ["netns", "del", namespace]):
            subprocess.run(["ip", *cleanup], check=False, capture_output=True, timeout=10)


async def test_an_outbound_tcp_connection_arrives_as_connection_create(
    hub: Hub, agent_process: Callable[..., AgentProcess], veth_namespace: tuple[str, str]
) -> None:
    namespace, peer = veth_namespace
    port = 20000 + secrets.randbelow(20000)
    server_code = (
        "import socket,sys,time\n"
        f"s=socket.create_server(({peer!r},{port}))\n"
        "print('ready',flush=True)\n"
        "c,_=s.accept()\n"
        "time.sleep(10)\n"
    )
    server = subprocess.Popen(
        ["ip", "netns", "exec", namespace, sys.executable, "-c", server_code],
        stdout=subprocess.PIPE,
    )
    agent = agent_process(eventPriorityConnectionCreate="High")
    try:
        assert server.stdout is not None and server.stdout.readline() == b"ready\n"
        agent.start()
        await hub.wait_for("MessageStatistics", agent=agent)
        marker = f"iotsec-e2e-{secrets.token_hex(6)}"
        client_code = (
            f"import socket,time\ns=socket.create_connection(({peer!r},{port}),timeout=10)\n"
            "print(s.getsockname()[1],flush=True)\ntime.sleep(5)"
        )
        client = subprocess.Popen(
            [sys.executable, "-c", client_code, marker], stdout=subprocess.PIPE, text=True
        )
        try:
            assert client.stdout is not None
            local_port = client.stdout.readline().strip()  # connected: it says from which port
            assert local_port.isdigit(), "the client could not connect through the veth pair"
            event = await hub.wait_for(
                "ConnectionCreate",
                lambda e: e.payload[0].remote_address == peer,
                agent=agent,
            )
        finally:
            client.kill()
            client.communicate()
    finally:
        server.kill()
        server.wait()
        if server.stdout is not None:
            server.stdout.close()
    row = event.payload[0]
    assert (row.remote_port, row.direction, row.protocol) == (str(port), "Out", "TCP")
    assert row.local_address is not None and row.local_address.startswith(peer.rsplit(".", 1)[0])
    assert Path(row.executable).resolve() == Path(sys.executable).resolve()
    assert row.command_line is not None and marker in row.command_line
    # Loopback is filtered out, and the agent's own link to the hub (on loopback here) too.
    loopback = [
        e
        for e in await hub.events("ConnectionCreate")
        if e.payload[0].remote_address in ("127.0.0.1", "::1")
    ]
    assert loopback == []
    assert agent.stop() == 0


async def test_a_new_listening_port_is_in_the_next_listening_ports_snapshot(
    hub: Hub, agent_process: Callable[..., AgentProcess]
) -> None:
    agent = agent_process(snapshotFrequency="PT2S")
    agent.start()
    await hub.wait_for("ListeningPorts", agent=agent)
    with socket.create_server(("0.0.0.0", 0)) as listener:  # a real open port, on every address
        port = str(listener.getsockname()[1])
        opened = datetime.now(UTC)
        after = await hub.wait_for(
            "ListeningPorts", lambda e: e.timestamp_utc > opened, agent=agent
        )
        rows = [r for r in after.payload if r.local_port == port]
        assert len(rows) == 1, f"port {port} is not in the first snapshot after it opened"
        assert rows[0].protocol == "TCP"
        assert rows[0].extra_details.get("Pid") == str(os.getpid())
    before = [e for e in await hub.events("ListeningPorts") if e.timestamp_utc < opened]
    assert before and all(r.local_port != port for e in before for r in e.payload)
    assert agent.stop() == 0


class BtmpElsewhere(HostRoot):
    """The live host, except that /var/log/btmp is a file the test owns."""

    def __init__(self, btmp: Path) -> None:
        super().__init__("/")
        self.btmp = btmp

    def local_path(self, host_path: str) -> str:
        if host_path == "/var/log/btmp":
            return str(self.btmp)
        return super().local_path(host_path)


async def test_a_failed_login_written_to_btmp_arrives_as_a_failed_login(
    hub: Hub, tmp_path: Path
) -> None:
    btmp = tmp_path / "btmp"
    btmp.write_bytes(b"")
    connection = hub.module_connection_string()
    transport = make_transport(
        connection, transport="mqtt", ca_file=hub.ca_file, port=hub.mqtt_port
    )
    from iotsec.agent.config import LocalConfig  # noqa: PLC0415

    base = LocalConfig.from_mapping(
        {
            "ms_iotn:urn_azureiot_Security_SecurityAgentConfiguration": {
                # Low waits an hour, so the Login (High) cannot go as a Low message's padding.
                name: {"value": value}
                for name, value in {**FAST, "lowPriorityMessageFrequency": "PT1H"}.items()
            }
        },
        path=tmp_path / "agent.json",
    ).configuration
    agent = Agent(
        transport,
        StateDir.open(tmp_path / "state"),
        host=BtmpElsewhere(btmp),
        base_config=base,
        identity=ConnectionString.parse(connection),
        hub_port=hub.mqtt_port,
        # In the test runner's process, whose memory is far over an agent's budget.
        options=AgentOptions(
            twin_timeout=5.0,
            poll_every={"Login": 1.0},
            budget=Budget(cpu_percent=100.0, rss_bytes=2**40),
        ),
    )
    import asyncio  # noqa: PLC0415

    running = asyncio.create_task(agent.run())
    try:
        await hub.wait_for("MessageStatistics")
        record = UtmpRecord(
            type=UtmpType.LOGIN_PROCESS,
            pid=4242,
            line="ssh:notty",
            user="mallory",
            host="203.0.113.9",
            seconds=int(time.time()),
            address="203.0.113.9",
        )
        with btmp.open("ab") as log:
            log.write(encode_utmp([record]))

        def is_ours(event: Event) -> bool:
            return event.payload[0].user_name == "mallory"

        event = await hub.wait_for("Login", is_ours)
    finally:
        agent.stop()
        await running
    row = event.payload[0]
    assert (row.result, row.remote_address, row.process_id) == ("Fail", "203.0.113.9", 4242)
    assert row.extra_details.get("Source") == "/var/log/btmp"
    # Login is High priority by default: it went in a message sent for the High queue.
    priorities = {
        r.properties.get("MessagePriority") for r in await hub.received() if r.event.id == event.id
    }
    assert priorities == {"High"}
