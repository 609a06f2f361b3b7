"""A hub under load, for the hub benchmarks: ``iotsec up`` in its own process, and devices.

``HubProcess`` registers devices in a fresh data dir, then runs ``iotsec up`` (on ports the OS
picks) in a child process, so the hub has a process, and its CPU and memory figures, of its own.
``MqttDevice`` is the cheapest honest device: raw asyncio TLS with the hub's own MQTT codec, a
SAS token and IoT Hub's client id, user name and device-to-cloud topic.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import orjson

from iotsec.hub.mqtt.codec import encode
from iotsec.hub.mqtt.packets import Connack, Connect, Disconnect, Puback, Publish
from iotsec.hub.mqtt.reader import PacketReader
from iotsec.hub.registry import SqliteRegistry
from iotsec.protocol import Message, generate_sas_token, resource_uri
from iotsec.protocol.topics import build_client_id, build_d2c_topic, build_username
from iotsec.schema import SECURITY_INTERFACE_ID

HOST = "localhost"
# The hub is `iotsec up` itself; only its file-descriptor limit is raised first, as a service
# manager would (LimitNOFILE) for a hub serving thousands of devices.
_HUB_BOOT = """
import resource, sys
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
from iotsec.cli import main
sys.exit(main(sys.argv[1:]))
"""
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def raise_fd_limit() -> int:
    """Raise this process's soft limit on open files to the hard limit; returns it."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of process ``pid`` (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS  # utime, stime


def thread_cpu_seconds(pid: int) -> tuple[float, float]:
    """CPU time of process ``pid``: its main thread (the hub's event loop), its other threads."""
    main = others = 0.0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:  # the thread ended meanwhile
            continue
        used = (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS
        if int(task.name) == pid:
            main += used
        else:
            others += used
    return main, others


def rss_bytes(pid: int) -> int:
    """Resident set size of process ``pid`` (VmRSS), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


@dataclass(frozen=True, slots=True)
class DeviceCredential:
    """A registered device: its id and primary key."""

    device_id: str
    key: str


@dataclass
class HubProcess:
    """``iotsec up`` in a child process, with ``devices`` registered in a temporary data dir."""

    devices: int
    workspace: bool = True
    data_dir: Path = field(init=False)
    credentials: list[DeviceCredential] = field(init=False, default_factory=list)
    pid: int = field(init=False, default=0)
    mqtt_port: int = field(init=False, default=0)
    ca_file: Path = field(init=False)
    log_file: Path = field(init=False)
    _tmp: tempfile.TemporaryDirectory[str] = field(init=False)
    _process: subprocess.Popen[bytes] | None = field(init=False, default=None)

    def __enter__(self) -> Self:
        self._tmp = tempfile.TemporaryDirectory(prefix="iotsec-bench-hub-")
        self.data_dir = Path(self._tmp.name) / "data"
        self.data_dir.mkdir(mode=0o700)
        self._register()
        self._start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.stop()
        finally:
            self._tmp.cleanup()

    def _register(self) -> None:
        # Straight into the registry file before the hub opens it: thousands of service-API
        # calls would only slow the setup down.
        registry = SqliteRegistry(self.data_dir / "registry.db")
        try:
            for i in range(self.devices):
                identity = registry.create_device(f"bench-{i:05d}")
                assert identity.keys is not None
                self.credentials.append(DeviceCredential(identity.device_id, identity.keys.primary))
        finally:
            registry.close()

    def _start(self) -> None:
        args = ["up", "--data-dir", str(self.data_dir), "--mqtt-port", "0", "--https-port", "0"]
        args += ["--hub-name", "bench-hub", "--no-local-agent", "--log-level", "WARNING"]
        args += ["--no-console"]
        if not self.workspace:
            args += ["--no-workspace", "--no-analytics"]
        self.log_file = self.data_dir.parent / "hub.log"
        with self.log_file.open("wb") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-c", _HUB_BOOT, *args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.pid = self._process.pid
        info_file = self.data_dir / "server.json"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"the hub exited with status {self._process.returncode}:\n{self.log_tail()}"
                )
            if info_file.exists():
                info: dict[str, Any] = orjson.loads(info_file.read_bytes())
                if info["pid"] == self.pid:
                    self.mqtt_port = int(info["mqtt_port"])
                    self.ca_file = Path(info["ca_file"])
                    return
            time.sleep(0.05)
        raise RuntimeError(f"the hub did not start within 60 s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        """The end of what the hub wrote to stdout and stderr."""
        return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])

    def log_problems(self) -> list[str]:
        """The warnings, errors and tracebacks the hub logged."""
        marks = (" WARNING ", " ERROR ", "Traceback")
        text = self.log_file.read_text(errors="replace")
        return [line for line in text.splitlines() if any(mark in line for mark in marks)]

    def stop(self) -> None:
        """SIGTERM, as a service manager stops the hub; it finishes pending writes and exits."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(30)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()

    def client_context(self) -> ssl.SSLContext:
        """A TLS context that trusts the hub's CA, as a device's would."""
        return ssl.create_default_context(cafile=str(self.ca_file))


class MqttDevice:
    """One device's TLS MQTT connection: QoS 1 publishes, each acked by the hub.

    ``on_ack(sent_at)`` is called for each PUBACK with the time its PUBLISH was stamped with.
    """

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, device_id: str
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.device_id = device_id
        self._packets = PacketReader()
        self._sent_at: dict[int, float] = {}
        self._next_id = 0
        self._prefix = b""
        self._payload = b""
        self._reading: asyncio.Task[None] | None = None
        self.on_ack: Callable[[float], None] = _ignore
        self.acked = 0
        self.lost: BaseException | None = None

    @classmethod
    async def connect(
        cls,
        credential: DeviceCredential,
        port: int,
        context: ssl.SSLContext,
        *,
        keepalive: int = 600,
    ) -> MqttDevice:
        """Open TLS, send CONNECT with a one-day SAS token, and wait for CONNACK 0."""
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=context, server_hostname=HOST
        )
        device_id = credential.device_id
        token = generate_sas_token(
            resource_uri(HOST, device_id), credential.key, int(time.time()) + 86_400
        )
        connect = Connect(
            client_id=build_client_id(device_id),
            username=build_username(HOST, device_id),
            password=token.encode(),
            keepalive=keepalive,
        )
        writer.write(encode(connect))
        packets = PacketReader()
        while not (got := packets.feed(await reader.read(4096))):
            if reader.at_eof():
                raise ConnectionError(f"{device_id}: the hub closed before CONNACK")
        [connack] = got
        if not isinstance(connack, Connack) or connack.return_code != 0:
            raise ConnectionError(f"{device_id}: refused with {connack}")
        return cls(reader, writer, device_id)

    def prepare(self, body: bytes) -> None:
        """Encode the security message once; each publish only changes its packet id."""
        message = Message(
            body,
            content_type="application/json",
            content_encoding="utf-8",
            interface_id=SECURITY_INTERFACE_ID,
        )
        topic = build_d2c_topic(self.device_id, None, message)
        packet = encode(Publish(topic=topic, payload=body, qos=1, packet_id=1))
        cut = len(packet) - len(body) - 2
        assert packet[cut : cut + 2] == b"\x00\x01"
        self._prefix, self._payload = packet[:cut], body
        self._reading = asyncio.get_running_loop().create_task(self._read_acks())

    def publish(self, stamp: float) -> None:
        """Send one QoS 1 PUBLISH; ``stamp`` comes back in ``on_ack`` with its PUBACK."""
        self._next_id = self._next_id % 65535 + 1
        self._sent_at[self._next_id] = stamp
        self.writer.writelines((self._prefix, self._next_id.to_bytes(2, "big"), self._payload))

    @property
    def in_flight(self) -> int:
        """Publishes not acked yet."""
        return len(self._sent_at)

    async def _read_acks(self) -> None:
        try:
            while data := await self.reader.read(65536):
                for packet in self._packets.feed(data):
                    if isinstance(packet, Puback):
                        self.acked += 1
                        self.on_ack(self._sent_at.pop(packet.packet_id))
            self.lost = ConnectionError(f"{self.device_id}: the hub closed the connection")
        except (ConnectionError, ssl.SSLError) as exc:
            self.lost = exc

    async def close(self) -> None:
        """DISCONNECT and close."""
        if self._reading is not None:
            self._reading.cancel()
        with contextlib.suppress(ConnectionError, ssl.SSLError, TimeoutError):
            self.writer.write(encode(Disconnect()))
            self.writer.close()
            await asyncio.wait_for(self.writer.wait_closed(), 5)


def _ignore(_stamp: float) -> None:
    return None


async def connect_all(
    hub: HubProcess,
    credentials: list[DeviceCredential],
    *,
    keepalive: int = 600,
    parallel: int = 64,
) -> list[MqttDevice]:
    """Connect every device in ``credentials``, ``parallel`` handshakes at a time."""
    context = hub.client_context()
    gate = asyncio.Semaphore(parallel)

    async def one(credential: DeviceCredential) -> MqttDevice:
        async with gate:
            return await MqttDevice.connect(credential, hub.mqtt_port, context, keepalive=keepalive)

    return list(await asyncio.gather(*(one(c) for c in credentials)))
