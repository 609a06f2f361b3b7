"""``iotsec agent run`` and ``iotsec agent collect``: the device security agent.

``run`` connects as the device's security module and runs until SIGTERM or SIGINT. Settings
come from the flags, then the environment (``IOTSEC_AGENT_CONNECTION_STRING`` only), then the
local file (``--config``); the connection string is never logged or printed.

``collect`` prints what the collectors see now, as security message JSON, without a hub.
``unit`` prints the systemd unit shipped in the package, pointed at this installation.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # the agent is imported when a subcommand runs, not for every iotsec command
    from iotsec.agent.config import AgentConfiguration

__all__ = ["CONNECTION_STRING_ENV", "AgentSettings", "register", "settings_from", "unit_text"]

#: The one environment variable the agent reads: its connection string.
CONNECTION_STRING_ENV = "IOTSEC_AGENT_CONNECTION_STRING"
_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``agent`` command group."""
    agent = sub.add_parser("agent", help="the device security agent")
    commands = agent.add_subparsers(dest="agent_command", metavar="SUBCOMMAND", required=True)

    run = commands.add_parser(
        "run",
        help="run the agent: collect, queue and send security events to the hub",
        description="Run the agent until SIGTERM. The connection string comes from "
        f"--connection-string, ${CONNECTION_STRING_ENV}, or the --config file "
        "(connectionString or connectionStringFile); prefer the file: a command line is "
        "visible to every user of the device.",
    )
    run.add_argument("--connection-string", help="the azureiotsecurity module's (or device's)")
    run.add_argument("--config", type=Path, help="the local JSON file (see docs/agent.md)")
    run.add_argument("--ca-file", type=Path, help="the CA that signed the hub's certificate")
    run.add_argument("--cert-file", type=Path, help="X.509 identity (x509=true): certificate")
    run.add_argument("--key-file", type=Path, help="X.509 identity (x509=true): its key")
    run.add_argument(
        "--state-dir", type=Path, help="queue and state (default /var/lib/iotsec-agent)"
    )
    run.add_argument("--transport", choices=("mqtt", "https"), help="default mqtt")
    run.add_argument("--port", type=int, help="the hub's port (default 8883, or 443 for https)")
    run.add_argument("--host-root", type=Path, help="read the host under this directory")
    run.add_argument(
        "--cpu-budget",
        type=float,
        default=2.0,
        help="percent of one core; over it, collectors slow down (default 2)",
    )
    run.add_argument(
        "--memory-budget",
        type=int,
        default=40,
        help="resident MB; over it, collectors slow down (default 40)",
    )
    run.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    run.set_defaults(handler=_run)

    collect = commands.add_parser(
        "collect", help="print what the collectors see now, as security message JSON"
    )
    collect.add_argument("--event", action="append", help="only this event (repeatable)")
    collect.add_argument("--host-root", type=Path, help="read the host under this directory")
    collect.add_argument(
        "--wait",
        type=float,
        default=1.0,
        help="seconds triggered collectors watch before reporting (default 1)",
    )
    collect.set_defaults(handler=_collect)

    unit = commands.add_parser(
        "unit", help="print the systemd unit, with ExecStart for this installation"
    )
    unit.add_argument(
        "--config",
        type=Path,
        default=Path("/etc/iotsec/agent.json"),
        help="the local file the service reads (default /etc/iotsec/agent.json)",
    )
    unit.set_defaults(handler=_unit)


@dataclass(frozen=True, slots=True)
class AgentSettings:
    """What ``iotsec agent run`` resolved from its flags, the environment and the local file."""

    connection_string: str = field(repr=False)
    ca_file: Path | None
    state_dir: Path
    transport: Literal["mqtt", "https"]
    port: int | None
    host_root: Path
    agent_id: str | None
    config_file: Path | None
    #: The configuration before the twin: the defaults, or the local file's twin properties.
    base: AgentConfiguration

    @property
    def hub_port(self) -> int:
        """The port the transport connects to."""
        if self.port is not None:
            return self.port
        return 443 if self.transport == "https" else 8883


def settings_from(args: argparse.Namespace, environ: dict[str, str]) -> AgentSettings:
    """Resolve ``agent run``'s settings: flags, then ``environ``, then the local file.

    Raises:
        AgentConfigError: no connection string, or the local file cannot be used.
    """
    from iotsec.agent.config import DEFAULT_STATE_DIR, AgentConfiguration, LocalConfig  # noqa: PLC0415
    from iotsec.agent.errors import AgentConfigError  # noqa: PLC0415

    local = LocalConfig.load(args.config) if args.config is not None else None
    text = args.connection_string or environ.get(CONNECTION_STRING_ENV)
    if text is None:
        if local is None:
            raise AgentConfigError(
                "connection string",
                f"give --connection-string, set ${CONNECTION_STRING_ENV}, or give --config "
                "with connectionString or connectionStringFile",
            )
        text = local.read_connection_string()
    return AgentSettings(
        connection_string=text,
        ca_file=args.ca_file or (local.ca_file if local else None),
        state_dir=args.state_dir or (local.state_dir if local else DEFAULT_STATE_DIR),
        transport=args.transport or (local.transport if local else "mqtt"),
        port=args.port,
        host_root=args.host_root or Path("/"),
        agent_id=local.agent_id if local else None,
        config_file=args.config,
        base=local.configuration if local is not None else AgentConfiguration.default(),
    )


def _run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level, format=_LOG_FORMAT)
    log = logging.getLogger("iotsec.agent")
    from iotsec.agent.errors import AgentError  # noqa: PLC0415
    from iotsec.agent.hostroot import HostRoot  # noqa: PLC0415
    from iotsec.agent.runner import Agent, AgentOptions  # noqa: PLC0415
    from iotsec.agent.selfmon import Budget  # noqa: PLC0415
    from iotsec.agent.state import StateDir  # noqa: PLC0415
    from iotsec.sdk import ConnectionString, SdkError, make_transport  # noqa: PLC0415

    try:
        settings = settings_from(args, dict(os.environ))
        identity = ConnectionString.parse(settings.connection_string)
        transport = make_transport(
            identity,
            transport=settings.transport,
            ca_file=settings.ca_file,
            cert_file=args.cert_file,
            key_file=args.key_file,
            port=settings.hub_port,
        )
        state = StateDir.open(settings.state_dir)
        budget = Budget(cpu_percent=args.cpu_budget, rss_bytes=args.memory_budget * 1024 * 1024)
        agent = Agent(
            transport,
            state,
            host=HostRoot(settings.host_root),
            base_config=settings.base,
            identity=identity,
            hub_port=settings.hub_port,
            agent_id=settings.agent_id,
            options=AgentOptions(budget=budget),
        )
    except (AgentError, SdkError, ValueError) as exc:
        sys.stderr.write(f"iotsec agent: {exc}\n")
        return 2
    log.info(
        "agent %s for %s (module %s) over %s to %s:%d; state in %s",
        agent.agent_id,
        identity.device_id,
        identity.module_id or "-",
        settings.transport,
        identity.connect_host,
        settings.hub_port,
        settings.state_dir,
    )

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for number in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(number, agent.stop)
        await agent.run()

    try:
        asyncio.run(main())
    except AgentError as exc:
        sys.stderr.write(f"iotsec agent: {exc}\n")
        return 1
    log.info("agent stopped; unsent events stay queued in %s", settings.state_dir)
    return 0


def _collect(args: argparse.Namespace) -> int:
    from iotsec import __version__  # noqa: PLC0415
    from iotsec.agent.collectors import COLLECTORS, SPECS, Collector  # noqa: PLC0415
    from iotsec.agent.errors import HostReadError, ParseError  # noqa: PLC0415
    from iotsec.agent.hostroot import HostRoot  # noqa: PLC0415
    from iotsec.schema import Event  # noqa: PLC0415
    from iotsec.sdk import build_security_messages  # noqa: PLC0415

    names = args.event or list(COLLECTORS)
    for name in names:
        if name not in COLLECTORS:
            known = ", ".join(sorted(COLLECTORS))
            why = "the running agent produces it" if name in SPECS else f"known: {known}"
            sys.stderr.write(f"iotsec agent collect: no collector for {name!r} ({why})\n")
            return 2
    host = HostRoot(args.host_root or "/")
    failed = False
    running: list[Collector] = []
    events: list[Event] = []

    def collect(collector: Collector) -> None:
        nonlocal failed
        try:
            events.extend(collector.collect(datetime.now(UTC)))
        except (HostReadError, ParseError) as exc:
            failed = True
            sys.stderr.write(f"{collector.spec.name}: {exc}\n")

    try:
        for name in names:
            try:
                running.append(COLLECTORS[name](host))
            except (HostReadError, ParseError) as exc:
                failed = True
                sys.stderr.write(f"{name}: cannot start: {exc}\n")
        for collector in running:
            collect(collector)
        triggered = [c for c in running if c.spec.category == "Triggered"]
        if triggered and args.wait > 0:
            time.sleep(args.wait)
            for collector in triggered:
                collect(collector)
    finally:
        for collector in running:
            collector.close()
    if not events:
        sys.stderr.write("no events\n")
        return 1 if failed else 0
    import orjson  # noqa: PLC0415

    agent_id = "00000000-0000-0000-0000-000000000000"
    for message in build_security_messages(events, agent_id=agent_id, agent_version=__version__):
        pretty = orjson.dumps(orjson.loads(message.body), option=orjson.OPT_INDENT_2)
        sys.stdout.buffer.write(pretty + b"\n")
    return 1 if failed else 0


def unit_text(executable: str, config: Path) -> str:
    """The shipped systemd unit, its ExecStart running ``executable`` with ``config``."""
    from importlib.resources import files  # noqa: PLC0415

    shipped = files("iotsec.agent").joinpath("iotsec-agent.service").read_text(encoding="utf-8")
    command = f"ExecStart={executable} -m iotsec agent run --config {config}"
    lines = [command if line.startswith("ExecStart=") else line for line in shipped.splitlines()]
    return "\n".join(lines) + "\n"


def _unit(args: argparse.Namespace) -> int:
    if any(c.isspace() for c in f"{sys.executable}{args.config}"):
        sys.stderr.write("iotsec agent unit: paths with spaces need quoting in a unit file\n")
        return 2
    sys.stdout.write(unit_text(sys.executable, args.config.absolute()))
    return 0
