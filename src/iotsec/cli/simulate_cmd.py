"""``iotsec simulate``: a simulated fleet sending realistic security events to the running hub.

Devices (and their ``azureiotsecurity`` modules) are created through the service API when
missing and reused when present; each connects over MQTT/TLS with its module's SAS key, which
is never printed. See docs/operations.md, "Demo fleet".
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from iotsec.cli.device_cmd import SECURITY_MODULE, connection_string
from iotsec.cli.service_client import CliError, ServiceClient, add_data_dir_flag, data_dir_from

if TYPE_CHECKING:  # the simulator is imported when the command runs, not for every command
    from iotsec.simulate import Registration, SimDevice

__all__ = ["ServiceRegistrar", "register"]

_PAGE = 1000


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``iotsec simulate``."""
    simulate = sub.add_parser(
        "simulate",
        help="a simulated fleet: benign traffic and attack scenarios, sent to the running hub",
        description="Register N simulated devices on the running hub (reusing those that "
        "exist), connect them over MQTT with real credentials, and send realistic security "
        "events in compressed time, injecting attack scenarios on some devices.",
    )
    simulate.add_argument(
        "--devices", type=int, default=5, metavar="N", help="fleet size (default 5)"
    )
    simulate.add_argument(
        "--scenario",
        action="extend",
        nargs="+",
        default=[],
        metavar="NAME",
        help="attack scenario(s) to inject, or 'all' (see --list-scenarios)",
    )
    simulate.add_argument(
        "--speed",
        type=float,
        default=60.0,
        help="simulated seconds per real second (default 60: a simulated hour a minute)",
    )
    simulate.add_argument(
        "--duration", type=float, metavar="S", help="real seconds to run (default: until Ctrl-C)"
    )
    simulate.add_argument("--seed", type=int, default=0, help="same seed, same fleet and events")
    simulate.add_argument("--group", help="security group for every device (default: by kind)")
    simulate.add_argument("--prefix", default="sim", help="device id prefix (default sim)")
    simulate.add_argument(
        "--start",
        help="simulated start time, ISO 8601 with a zone (default: so that the run ends now "
        "when --duration is given, else now)",
    )
    simulate.add_argument(
        "--tick", type=float, default=1.0, help="real seconds between sends (default 1)"
    )
    simulate.add_argument(
        "--list-scenarios", action="store_true", help="list the scenarios and their alerts"
    )
    simulate.add_argument(
        "--print-stix",
        action="store_true",
        help="print the STIX 2.1 bundle of the ti-connection addresses (a feed to load)",
    )
    add_data_dir_flag(simulate)
    simulate.set_defaults(handler=_simulate)


class ServiceRegistrar:
    """Registers simulated devices through the running hub's service API."""

    def __init__(self, client: ServiceClient) -> None:
        self._client = client
        self._existing: set[str] | None = None

    def _devices(self) -> set[str]:
        if self._existing is None:
            found: set[str] = set()
            while True:
                page = self._client.request("GET", f"/devices?top={_PAGE}&skip={len(found)}")
                found.update(d["deviceId"] for d in page or [])
                if len(page or []) < _PAGE:
                    break
            self._existing = found
        return self._existing

    def register(self, device: SimDevice) -> Registration:
        """Create the device and its security module when missing; set group and tags."""
        from iotsec.simulate import Registration  # noqa: PLC0415

        client, device_id = self._client, device.device_id
        created: list[str] = []
        if device_id not in self._devices():
            client.request(
                "PUT",
                f"/devices/{device_id}",
                body={"deviceId": device_id, "status": "enabled"},
                headers={"If-None-Match": "*"},
            )
            self._devices().add(device_id)
            created.append("device")
        modules = client.request("GET", f"/devices/{device_id}/modules") or []
        module = next((m for m in modules if m.get("moduleId") == SECURITY_MODULE), None)
        if module is None:
            module = client.request(
                "PUT",
                f"/devices/{device_id}/modules/{SECURITY_MODULE}",
                body={"deviceId": device_id, "moduleId": SECURITY_MODULE},
                headers={"If-None-Match": "*"},
            )
            created.append("module")
        if module.get("authentication", {}).get("symmetricKey") is None:
            module = client.request("GET", f"/devices/{device_id}/modules/{SECURITY_MODULE}")
        tags = {"SecurityGroup": device.group, **dict(device.tags)}
        client.request("PATCH", f"/twins/{device_id}", body={"tags": tags})
        host = client.info["device_host"]
        return Registration(
            device_id=device_id,
            connection_string=connection_string(host, module, SECURITY_MODULE),
            created=tuple(created),
        )


def _list_scenarios() -> int:
    from iotsec.simulate import SCENARIOS  # noqa: PLC0415

    width = max(map(len, SCENARIOS))
    for scenario in SCENARIOS.values():
        alerts = ", ".join(sorted(scenario.expected_alerts))
        print(f"{scenario.name:<{width}}  {scenario.summary}")
        print(f"{'':<{width}}  expected alerts: {alerts}")
        if scenario.web_alerts:
            web = ", ".join(sorted(scenario.web_alerts))
            print(f"{'':<{width}}  and where it enters through a web server (cameras): {web}")
    return 0


def _print_stix() -> int:
    import orjson  # noqa: PLC0415

    from iotsec.simulate import scenario_indicators  # noqa: PLC0415

    sys.stdout.buffer.write(orjson.dumps(scenario_indicators(), option=orjson.OPT_INDENT_2))
    sys.stdout.buffer.write(b"\n")
    return 0


def _say(line: str) -> None:
    print(line, flush=True)


def _simulate(args: argparse.Namespace) -> int:
    if args.list_scenarios:
        return _list_scenarios()
    if args.print_stix:
        return _print_stix()
    from iotsec.sdk import AsyncDeviceClient, RetryPolicy  # noqa: PLC0415
    from iotsec.simulate import (  # noqa: PLC0415
        Simulation,
        SimulationConfig,
        SimulationError,
        build_fleet,
        expand_scenarios,
        plan_injections,
        register_fleet,
    )

    try:
        expand_scenarios(args.scenario)
        config = SimulationConfig(
            speed=args.speed, duration=args.duration, tick=args.tick, seed=args.seed
        )
        fleet = build_fleet(args.devices, seed=args.seed, prefix=args.prefix, group=args.group)
        start = _start(args.start, config.duration, config.speed)
    except (SimulationError, ValueError) as exc:
        sys.stderr.write(f"iotsec simulate: {exc}\n")
        return 2
    span = None if config.duration is None else timedelta(seconds=config.duration * config.speed)
    injections = plan_injections(fleet, args.scenario, start, seed=args.seed, span=span)
    try:
        with ServiceClient(data_dir_from(getattr(args, "data_dir", None))) as service:
            registrations = register_fleet(fleet, ServiceRegistrar(service), _say)
            ca_file, port = service.info["ca_file"], int(service.info["mqtt_port"])
    except CliError as exc:
        sys.stderr.write(f"iotsec simulate: {exc}\n")
        return 1
    clients = {
        device_id: AsyncDeviceClient.from_connection_string(
            registration.connection_string,
            transport="mqtt",
            ca_file=ca_file,
            port=port,
            agent_id=fleet.device(device_id).agent_id,
            retry=RetryPolicy(max_attempts=3, max_delay=5.0),
        )
        for device_id, registration in registrations.items()
    }
    for injection in injections:
        at = injection.at.astimezone(UTC).isoformat().replace("+00:00", "Z")
        _say(f"planned {injection.scenario} on {injection.device_id} at {at}")

    async def run() -> int:
        simulation = Simulation(
            fleet,
            clients,
            start=start,
            config=config,
            injections=injections,
            on_progress=_say,
        )
        loop = asyncio.get_running_loop()
        for number in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(number, simulation.stop)
        try:
            summary = await simulation.run()
        except SimulationError as exc:
            sys.stderr.write(f"iotsec simulate: {exc}\n")
            return 1
        for line in summary.lines():
            _say(line)
        return 0 if summary.failed_events == 0 else 1

    return asyncio.run(run())


def _start(text: str | None, duration: float | None, speed: float) -> datetime:
    """The simulated start: ``--start``, else early enough that the run ends about now."""
    if text is not None:
        start = datetime.fromisoformat(text)
        if start.tzinfo is None:
            raise ValueError(f"--start needs a time zone (e.g. {text}Z or {text}+00:00)")
        return start
    now = datetime.fromtimestamp(int(time.time()), UTC)
    return now if duration is None else now - timedelta(seconds=duration * speed)
