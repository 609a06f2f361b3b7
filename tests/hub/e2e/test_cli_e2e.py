"""``iotsec up`` and the device CLI as a user runs them, and kill -9 durability.

The hub runs as a real process; the CLI commands run as real processes and find it through
``--data-dir``. After ``kill -9`` and a restart, every message the hub acknowledged is in the log.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from iotsec.protocol import Message
from iotsec.sdk import AsyncDeviceClient, MqttTransport, RetryPolicy
from iotsec.sdk.connection_string import ConnectionString
from iotsec.stream import SqliteLog


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def iotsec(*args: str, data_dir: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "iotsec", *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if check:
        assert done.returncode == 0, done.stderr
    return done


class HubProcess:
    """``iotsec up`` in a child process."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.mqtt_port = free_port()
        self.https_port = free_port()
        self.output = data_dir.parent / "hub.out"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        (self.data_dir / "server.json").unlink(missing_ok=True)
        with self.output.open("ab") as output:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "iotsec",
                    "up",
                    "--data-dir",
                    str(self.data_dir),
                    "--mqtt-port",
                    str(self.mqtt_port),
                    "--https-port",
                    str(self.https_port),
                    "--hub-name",
                    "cli-hub",
                    "--no-local-agent",
                ],
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while not (self.data_dir / "server.json").exists():
            assert self.process.poll() is None, self.output.read_text()
            assert time.monotonic() < deadline, "the hub did not start"
            time.sleep(0.1)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.process is not None
        self.process.send_signal(sig)
        return self.process.wait(timeout=30)


@pytest.fixture
def hub_process(tmp_path: Path) -> Iterator[HubProcess]:
    hub = HubProcess(tmp_path / "data")
    hub.start()
    yield hub
    if hub.process is not None and hub.process.poll() is None:
        hub.stop(signal.SIGKILL)


def test_info_and_device_commands_talk_to_the_running_hub(hub_process: HubProcess) -> None:
    data = hub_process.data_dir
    info = json.loads(iotsec("info", "--format", "json", data_dir=data).stdout)
    assert info["hub_name"] == "cli-hub"
    assert info["mqtt_port"] == hub_process.mqtt_port
    assert Path(info["ca_file"]).exists()
    assert info["resource_id"].endswith("/IotHubs/cli-hub")
    assert oct((data / "owner.credential").stat().st_mode & 0o777) == "0o600"

    added = iotsec("device", "add", "dev-1", "--group", "lab", data_dir=data).stdout
    assert added.count("\n") == 1 and added.startswith("HostName=localhost;DeviceId=dev-1;")
    agent = iotsec(
        "device", "connection-string", "dev-1", "--module", "azureiotsecurity", data_dir=data
    ).stdout.strip()
    assert ";ModuleId=azureiotsecurity;SharedAccessKey=" in agent
    assert "dev-1\tenabled\tsas" in iotsec("device", "list", data_dir=data).stdout
    twin = json.loads(iotsec("device", "twin", "show", "dev-1", data_dir=data).stdout)
    assert twin["tags"]["SecurityGroup"] == "lab"
    patched = json.loads(
        iotsec("device", "twin", "set-desired", "dev-1", '{"interval": 5}', data_dir=data).stdout
    )
    assert patched["properties"]["desired"]["interval"] == 5
    iotsec("device", "disable", "dev-1", data_dir=data)
    assert (
        json.loads(iotsec("device", "show", "dev-1", data_dir=data).stdout)["status"] == "disabled"
    )
    config = json.loads(
        iotsec("hub", "config", "set", '{"minTlsVersion": "1.3"}', data_dir=data).stdout
    )
    assert config["minTlsVersion"] == "1.3"
    bad = iotsec("hub", "config", "set", '{"minTls": "1.3"}', data_dir=data, check=False)
    assert bad.returncode == 1 and "minTls" in bad.stderr
    iotsec("device", "remove", "dev-1", data_dir=data)
    missing = iotsec("device", "show", "dev-1", data_dir=data, check=False)
    assert missing.returncode == 1 and "404" in missing.stderr
    assert hub_process.stop() == 0  # SIGTERM: a clean shutdown


def test_commands_without_a_hub_say_how_to_start_one(tmp_path: Path) -> None:
    done = iotsec("device", "list", data_dir=tmp_path / "nothing", check=False)
    assert done.returncode == 1
    assert "iotsec up" in done.stderr


def test_every_acknowledged_message_survives_kill_9(hub_process: HubProcess) -> None:
    data = hub_process.data_dir
    cs = iotsec("device", "add", "dev-1", data_dir=data).stdout.strip()
    ca = json.loads(iotsec("info", "--format", "json", data_dir=data).stdout)["ca_file"]
    acked: list[str] = []

    async def send_until_killed() -> None:
        transport = MqttTransport(
            ConnectionString.parse(cs), ca_file=ca, port=hub_process.mqtt_port, timeout=5
        )
        client = AsyncDeviceClient(transport, retry=RetryPolicy.never())
        try:
            for n in range(100_000):
                message_id = f"m-{n}"
                await client.send_message(Message(b'{"n": %d}' % n, message_id=message_id))
                acked.append(message_id)  # send returned: the hub sent PUBACK
                if n == 150:
                    assert hub_process.process is not None
                    os.kill(hub_process.process.pid, signal.SIGKILL)
        except Exception:  # the hub was killed under the sender: expected, and the point
            pass
        finally:
            await client.close()

    asyncio.run(send_until_killed())
    assert len(acked) >= 151
    assert hub_process.process is not None
    hub_process.process.wait(timeout=30)

    async def logged_ids() -> set[str]:
        log = await SqliteLog.open(data / "log.db")
        found: set[str] = set()
        try:
            for partition in range(log.partitions):
                offset = 0
                while batch := await log.read(partition, offset, 1000):
                    found.update(
                        e.record.header("message_id") or "" for e in batch if e.record.kind == "d2c"
                    )
                    offset = batch[-1].offset + 1
        finally:
            await log.close()
        return found

    assert set(acked) <= asyncio.run(logged_ids())
    hub_process.start()  # and the hub restarts on the same data
    assert "dev-1" in iotsec("device", "list", data_dir=data).stdout
    assert hub_process.stop() == 0


def test_an_acknowledged_event_is_queryable_through_iotsec_query(hub_process: HubProcess) -> None:
    from iotsec.schema import Login, LoginEvent  # noqa: PLC0415  # only this test needs them

    data = hub_process.data_dir
    cs = iotsec("device", "add", "dev-9", data_dir=data).stdout.strip()
    ca = json.loads(iotsec("info", "--format", "json", data_dir=data).stdout)["ca_file"]
    event = LoginEvent.create(
        [
            Login(
                process_id=7,
                operation="PAM:authentication",
                executable="/usr/sbin/sshd",
                result="Fail",
                user_name="mallory",
                remote_address="10.9.9.9",
            )
        ]
    )

    async def send() -> None:
        transport = MqttTransport(
            ConnectionString.parse(cs), ca_file=ca, port=hub_process.mqtt_port, timeout=10
        )
        async with AsyncDeviceClient(transport, retry=RetryPolicy.never()) as client:
            await client.send_security_message([event])

    asyncio.run(send())
    acked = time.monotonic()
    query = (
        'SecurityIoTRawEvent | where DeviceId == "dev-9" | '
        "project user = tostring(EventDetails.UserName), RemoteAddress"
    )
    while True:
        done = iotsec("query", query, "--format", "json", data_dir=data)
        rows = json.loads(done.stdout)
        if rows:
            break
        assert time.monotonic() - acked < 10, "the event never became queryable"
    assert rows == [{"user": "mallory", "RemoteAddress": "10.9.9.9"}]
    bad = iotsec("query", "SecurityIoTRawEvnt | take 1", data_dir=data, check=False)
    assert bad.returncode == 1
    assert "did you mean 'SecurityIoTRawEvent'?" in bad.stderr
    assert "^^^^" in bad.stderr
