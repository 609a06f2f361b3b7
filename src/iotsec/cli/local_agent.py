"""The security agent for the machine ``iotsec up`` runs on.

The machine is registered as a device (named after its host name) with the agent's module
``azureiotsecurity``; the agent runs as a child process (``iotsec agent run``), so its collectors
never compete with the hub for the event loop, and it connects like any other device: over TLS
MQTT, with the module's SAS key, trusting the hub's CA. Its local file (``<data dir>/agent/
agent.json``) asks for a high-priority send every 10 seconds, so the first snapshot (listening
ports, firewall, OS baseline, accounts) reaches analytics within a minute of start-up; the
module twin can change that like any agent's.

The key is written to ``<data dir>/agent/connection-string`` (mode 0600) and never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path

from iotsec.hub.errors import IdentityExists
from iotsec.hub.server import HubServer

__all__ = ["AGENT_MODULE", "LocalAgent", "local_device_id"]

log = logging.getLogger("iotsec.cli.local_agent")

AGENT_MODULE = "azureiotsecurity"
_FIRST_SEND = {
    "ms_iotn:urn_azureiot_Security_SecurityAgentConfiguration": {
        "highPriorityMessageFrequency": {"value": "PT10S"},
        "lowPriorityMessageFrequency": {"value": "PT1M"},
    }
}


def local_device_id(hostname: str | None = None) -> str:
    """This machine's device id: its host name, in the characters IoT Hub allows."""
    name = re.sub(r"[^A-Za-z0-9\-.%_*?!(),:=@$']", "-", hostname or socket.gethostname())
    return (name or "local-machine")[:128]


class LocalAgent:
    """Registers this machine and runs ``iotsec agent run`` for it until stopped."""

    def __init__(self, data_dir: Path, on_progress: Callable[[str], None]) -> None:
        self.folder = data_dir / "agent"
        self.device_id = local_device_id()
        self._on_progress = on_progress
        self._process: asyncio.subprocess.Process | None = None
        self._log_file: Path = self.folder / "agent.log"

    async def start(self, hub: HubServer) -> None:
        """Register the device and module (once), write the agent's files, start the agent."""
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        key = await asyncio.to_thread(self._register, hub)
        info = hub.info()
        host = str(info["device_host"])
        secret = self.folder / "connection-string"
        connection = (
            f"HostName={host};DeviceId={self.device_id};ModuleId={AGENT_MODULE};"
            f"SharedAccessKey={key}"
        )
        _write_private(secret, connection)
        config = {
            "connectionStringFile": secret.name,
            "caFile": str(info["ca_file"]),
            "stateDir": str(self.folder / "state"),
            **_FIRST_SEND,
        }
        _write_private(self.folder / "agent.json", json.dumps(config, indent=2))
        argv = [
            sys.executable,
            "-m",
            "iotsec",
            "agent",
            "run",
            "--config",
            str(self.folder / "agent.json"),
            "--port",
            str(info["mqtt_port"]),
        ]
        with self._log_file.open("ab") as out:
            self._process = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out
            )
        self._on_progress(
            f"security agent for this machine started as device {self.device_id}"
            f" (log: {self._log_file})"
        )

    def _register(self, hub: HubServer) -> str:
        registry = hub.registry
        with contextlib.suppress(IdentityExists):
            registry.create_device(self.device_id)
        with contextlib.suppress(IdentityExists):
            registry.create_module(self.device_id, AGENT_MODULE)
        module = registry.get_module(self.device_id, AGENT_MODULE)
        if module.keys is None:
            raise RuntimeError(f"module {self.device_id}/{AGENT_MODULE} has no SAS key")
        return module.keys.primary

    async def stop(self) -> None:
        """SIGTERM the agent (it keeps what it has not sent in its queue) and wait for it."""
        process = self._process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 15)
        except TimeoutError:
            log.warning("the local agent did not stop within 15 s; killing it")
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()


def _write_private(path: Path, text: str) -> None:
    # Written with mode 0600 from the start: the connection string holds the module's key.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(text)
