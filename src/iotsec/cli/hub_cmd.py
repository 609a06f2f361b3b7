"""``iotsec up``, ``iotsec info`` and ``iotsec hub config``: run the hub and look at it."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import sys
from pathlib import Path
from typing import Any

import orjson

from iotsec.cli.service_client import (
    CliError,
    ServiceClient,
    add_data_dir_flag,
    data_dir_from,
    server_info,
)

__all__ = ["register_hub", "register_info", "register_up"]


def register_up(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``iotsec up``."""
    up = sub.add_parser("up", help="run the hub on the embedded default (SQLite in the data dir)")
    add_data_dir_flag(up, leaf=False)
    up.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    up.add_argument("--mqtt-port", type=int, default=8883)
    up.add_argument("--https-port", type=int, default=8443)
    up.add_argument("--hub-name", help="the hub's name (default: from the host name)")
    up.add_argument(
        "--device-host",
        help="host name devices should use (default: localhost when listening on loopback)",
    )
    up.add_argument("--tls-cert", type=Path, help="your own server certificate (PEM)")
    up.add_argument("--tls-key", type=Path, help="the key of --tls-cert (PEM)")
    up.add_argument(
        "--no-workspace",
        action="store_true",
        help="run the hub alone (the workspace consumes its log elsewhere, or later)",
    )
    up.add_argument(
        "--no-analytics",
        action="store_true",
        help="do not run the analytics pipeline (it consumes the log elsewhere, or later)",
    )
    up.add_argument("--no-console", action="store_true", help="do not serve the web console")
    up.add_argument(
        "--no-local-agent", action="store_true", help="do not run a security agent for this machine"
    )
    up.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    up.set_defaults(handler=_up)


def register_info(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``iotsec info``."""
    info = sub.add_parser("info", help="where the hub listens, its name and CA")
    add_data_dir_flag(info, leaf=False)
    info.add_argument("--format", choices=("text", "json"), default="text")
    info.set_defaults(handler=_info)


def register_hub(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``iotsec hub config show|set``."""
    hub = sub.add_parser("hub", help="hub configuration")
    add_data_dir_flag(hub, leaf=False)
    commands = hub.add_subparsers(dest="hub_command", metavar="SUBCOMMAND", required=True)
    config = commands.add_parser("config", help="IP filter, minimum TLS version, rate limits")
    actions = config.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    show = actions.add_parser("show", help="print the hub configuration as JSON")
    add_data_dir_flag(show)
    show.set_defaults(handler=_config_show)
    change = actions.add_parser("set", help="replace settings with a JSON object (merged)")
    change.add_argument(
        "settings",
        metavar="JSON",
        help='e.g. \'{"minTlsVersion": "1.3"}\' or '
        '\'{"ipFilterRules": [{"filterName": "lab", "action": "Accept", '
        '"ipMask": "10.0.0.0/8"}], "ipFilterDefaultAction": "Reject"}\'',
    )
    add_data_dir_flag(change)
    change.set_defaults(handler=_config_set)


def _up(args: argparse.Namespace) -> int:
    # Imported here: the other commands must not pay for (or need) the server's dependencies.
    from iotsec.cli.system import System  # noqa: PLC0415
    from iotsec.hub.errors import HubError  # noqa: PLC0415
    from iotsec.hub.settings import HubSettings, default_hub_name  # noqa: PLC0415

    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        settings = HubSettings(
            data_dir=data_dir_from(args.data_dir),
            hub_name=args.hub_name or default_hub_name(),
            host=args.host,
            mqtt_port=args.mqtt_port,
            https_port=args.https_port,
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
            device_host=args.device_host,
            local_agent=not args.no_local_agent,
        )
    except HubError as exc:
        sys.stderr.write(f"iotsec: {exc}\n")
        return 2

    def progress(message: str) -> None:
        sys.stderr.write(f"iotsec: {message}\n")

    async def run() -> None:
        system = System(
            settings,
            on_progress=progress,
            workspace=not args.no_workspace,
            analytics=not args.no_analytics,
            console=not args.no_console,
            local_agent=not args.no_local_agent,
        )
        await system.start()
        # What start-up loaded (libraries, rules, models, feeds) lives as long as the server:
        # frozen, the collector's full passes skip it (analytics allocates at a high rate).
        gc.collect()
        gc.freeze()
        info = system.hub.info()
        progress(
            f"hub {info['hub_name']} up: MQTT {info['mqtt_url']}, HTTPS {info['https_url']}"
            f", CA {info['ca_file']}"
        )
        await system.serve_forever()
        progress("hub stopped")

    try:
        asyncio.run(run())
    except HubError as exc:
        sys.stderr.write(f"iotsec: {exc}\n")
        return 1
    except OSError as exc:
        sys.stderr.write(f"iotsec: cannot start the hub: {exc.strerror or exc}\n")
        return 1
    return 0


def _info(args: argparse.Namespace) -> int:
    try:
        info = server_info(data_dir_from(args.data_dir))
    except CliError as exc:
        sys.stderr.write(f"iotsec: {exc}\n")
        return 1
    if args.format == "json":
        sys.stdout.buffer.write(orjson.dumps(info, option=orjson.OPT_INDENT_2) + b"\n")
        return 0
    for key in (
        "hub_name",
        "device_host",
        "mqtt_url",
        "https_url",
        "ca_file",
        "resource_id",
        "data_dir",
    ):
        print(f"{key:12} {info.get(key)}")
    return 0


def _config_show(args: argparse.Namespace) -> int:
    try:
        with ServiceClient(data_dir_from(args.data_dir)) as client:
            config = client.request("GET", "/configuration")
    except CliError as exc:
        sys.stderr.write(f"iotsec: {exc}\n")
        return 1
    sys.stdout.buffer.write(orjson.dumps(config, option=orjson.OPT_INDENT_2) + b"\n")
    return 0


def _config_set(args: argparse.Namespace) -> int:
    try:
        change: Any = orjson.loads(args.settings)
    except orjson.JSONDecodeError as exc:
        sys.stderr.write(f"iotsec: the settings are not JSON: {exc}\n")
        return 2
    if not isinstance(change, dict):
        sys.stderr.write("iotsec: the settings must be a JSON object\n")
        return 2
    try:
        with ServiceClient(data_dir_from(args.data_dir)) as client:
            config = client.request("GET", "/configuration")
            config = client.request("PUT", "/configuration", body={**config, **change})
    except CliError as exc:
        sys.stderr.write(f"iotsec: {exc}\n")
        return 1
    sys.stdout.buffer.write(orjson.dumps(config, option=orjson.OPT_INDENT_2) + b"\n")
    return 0
