"""Microsoft's ``azure-iot-device`` SDK against a real hub: the migration promise, tested.

A device keeps Microsoft's SDK and changes only its connection string (from ``iotsec device add``)
and its trusted CA (the hub's, from the data dir). Over MQTT it connects, sends a security
message, reads its twin, patches reported properties and receives a desired-property update.

The SDK pins paho-mqtt<2 and iotsec's SDK needs paho-mqtt 2, so the SDK lives in its own
virtualenv (``.venv-azure-iot-device`` at the repository root). CI makes it before the tests
(``.ci/run``); the ``azure_python`` fixture makes it when it is missing. The device runs
``azure_device_script.py`` in that virtualenv as a subprocess, while the hub keeps serving in
the test's event loop; the script prints a JSON line per step.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from iotsec.schema import SECURITY_INTERFACE_ID, ListeningPorts, ListeningPortsEvent, decode_message
from iotsec.sdk import build_security_messages
from tests.hub.e2e.conftest import RunningHub

REPO = Path(__file__).resolve().parents[3]
AZURE_VENV = REPO / ".venv-azure-iot-device"
#: Keep in step with .ci/run, which installs the same requirement.
AZURE_REQUIREMENT = "azure-iot-device>=2.13,<3"
SCRIPT = Path(__file__).with_name("azure_device_script.py")
SCRIPT_TIMEOUT = 60.0
SECURITY_MODULE = "azureiotsecurity"
AGENT = "b97faf0a-0f57-471f-9dab-46a8e1764946"


@pytest.fixture(scope="session")
def azure_python() -> Path:
    """The Python of a virtualenv with Microsoft's device SDK; made here if missing."""
    python = AZURE_VENV / "bin" / "python"
    probe = [str(python), "-c", "import azure.iot.device"]
    if python.exists() and subprocess.run(probe, capture_output=True, check=False).returncode == 0:
        return python
    steps = [
        [sys.executable, "-m", "venv", str(AZURE_VENV)],
        [str(python), "-m", "pip", "install", "--quiet", AZURE_REQUIREMENT],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, timeout=600, check=False)
        if done.returncode != 0:
            pytest.fail(
                f"cannot make the azure-iot-device virtualenv ({' '.join(step)}):\n"
                f"{done.stdout}{done.stderr}\nmake it by hand: python3 -m venv {AZURE_VENV} && "
                f"{AZURE_VENV}/bin/pip install '{AZURE_REQUIREMENT}'",
                pytrace=False,
            )
    return python


async def _iotsec(hub: RunningHub, *args: str) -> str:
    """Run the ``iotsec`` CLI against ``hub`` (it reaches the hub's HTTPS service API)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "iotsec",
        *args,
        "--data-dir",
        str(hub.data_dir),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, f"iotsec {' '.join(args)} failed: {err.decode()}"
    return out.decode().strip()


class Device:
    """The SDK script as a running subprocess, read one JSON line at a time."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None and process.stderr is not None
        self.process = process
        self.stdout = process.stdout
        # Read all along, so SDK logging can never fill the pipe and stall the device.
        self._stderr = asyncio.get_running_loop().create_task(process.stderr.read())

    async def step(self, name: str) -> dict[str, Any]:
        """The next line, which must report ``name`` without an error."""
        line = await self.stdout.readline()
        if not line:
            raise AssertionError(f"the device script ended before {name!r}: {await self.stderr()}")
        got: dict[str, Any] = json.loads(line)
        assert got["step"] == name, f"expected step {name!r}, got {got}: {await self.stderr()}"
        assert "error" not in got, f"{got}\n{await self.stderr()}"
        return got

    async def stderr(self) -> str:
        """What the script wrote to stderr (it is ended first if still running)."""
        if self.process.returncode is None:
            self.process.kill()
        return (await self._stderr).decode(errors="replace")[-4000:]


@contextlib.asynccontextmanager
async def _device(
    azure_python: Path,
    hub: RunningHub,
    connection_string: str,
    *steps: str,
    module: bool,
    message: Path,
    reported: dict[str, Any],
) -> AsyncIterator[Device]:
    process = await asyncio.create_subprocess_exec(
        str(azure_python),
        str(SCRIPT),
        "--connection-string",
        connection_string,
        "--ca-file",
        str(hub.ca_file),
        "--port",
        str(hub.mqtt_port),
        "--message",
        str(message),
        "--reported",
        json.dumps(reported),
        *(["--module"] if module else []),
        *steps,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    device = Device(process)
    try:
        yield device
        assert await asyncio.wait_for(process.wait(), SCRIPT_TIMEOUT) == 0, await device.stderr()
    finally:
        await device.stderr()  # ends the script if still running, and reaps the stderr reader
        await process.wait()


def _security_message_body() -> bytes:
    ports = [ListeningPorts(protocol="TCP", local_port=str(port)) for port in (22, 443, 8883)]
    [message] = build_security_messages([ListeningPortsEvent.create(ports)], agent_id=AGENT)
    return message.body


@pytest.mark.parametrize("module_id", [None, SECURITY_MODULE], ids=["device", "module"])
async def test_the_sdk_sends_security_messages_and_uses_its_twin(
    hub: RunningHub, azure_python: Path, tmp_path: Path, module_id: str | None
) -> None:
    device_id = "sdk-device"
    assert hub.ca_file.resolve().is_relative_to(hub.data_dir.resolve())  # the CA devices trust
    device_cs = await _iotsec(hub, "device", "add", device_id)
    if module_id is None:
        connection_string = device_cs
    else:
        connection_string = await _iotsec(
            hub, "device", "connection-string", device_id, "--module", module_id
        )
        assert f";ModuleId={module_id};" in connection_string
    module_flag = [] if module_id is None else ["--module", module_id]
    await _iotsec(hub, "device", "twin", "set-desired", device_id, '{"interval": 60}', *module_flag)
    body = tmp_path / "message.json"
    body.write_bytes(_security_message_body())
    reported = {"agent": {"version": "1.0.0"}, "ok": True}

    steps = ("connect", "send-security", "get-twin", "patch-reported", "get-twin", "wait-desired")
    async with asyncio.timeout(SCRIPT_TIMEOUT):
        async with _device(
            azure_python,
            hub,
            connection_string,
            *steps,
            module=module_id is not None,
            message=body,
            reported=reported,
        ) as device:
            assert (await device.step("connect"))["connected"] is True
            await device.step("send-security")
            first = (await device.step("get-twin"))["twin"]
            await device.step("patch-reported")
            second = (await device.step("get-twin"))["twin"]
            await device.step("desired-ready")
            await _iotsec(
                hub, "device", "twin", "set-desired", device_id, '{"interval": 5}', *module_flag
            )
            pushed = (await device.step("wait-desired"))["patch"]
            await device.step("shutdown")

    # The security message is durable, validated, and marked with the ASC interface id.
    [entry] = await hub.entries("security")
    headers = dict(entry.record.headers)
    assert entry.record.key == device_id
    assert headers["interface_id"] == SECURITY_INTERFACE_ID
    assert headers["protocol"] == "mqtt"
    assert headers.get("module_id") == module_id
    assert decode_message(entry.record.body).message == decode_message(body.read_bytes()).message

    # The twin the SDK read, its reported patch, and the desired update it was pushed.
    assert first["desired"] == {"interval": 60, "$version": 2}
    assert second["reported"] == {**reported, "$version": 2}
    twin = hub.server.registry.get_twin(device_id, module_id)
    assert twin.reported == reported
    assert pushed == {"interval": 5, "$version": 3} == {**twin.desired, "$version": 3}

    # The hub saw one clean session: connected, no failures, ended by the device's DISCONNECT.
    mine = [
        e
        for e in await hub.oplog()
        if e.get("deviceId") == device_id and e.get("protocol") == "mqtt"
    ]
    assert [e for e in mine if e.get("result") == "Failure"] == []
    assert [e["operation"] for e in mine if e["category"] == "Connections"] == [
        "connect",
        "disconnect",
    ]
    assert mine[-1]["reason"] == "the device disconnected"
    assert {e.get("moduleId") for e in mine} == {module_id}
