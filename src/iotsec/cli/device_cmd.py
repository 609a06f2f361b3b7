"""``iotsec device``: add, list and manage devices on the running hub."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import orjson

from iotsec.cli.service_client import CliError, ServiceClient, add_data_dir_flag, data_dir_from

__all__ = ["connection_string", "register"]

SECURITY_MODULE = "azureiotsecurity"


def connection_string(host: str, device: dict[str, Any], module_id: str | None = None) -> str:
    """The IoT Hub connection string of a device (or module) as the service API returned it."""
    parts = [f"HostName={host}", f"DeviceId={device['deviceId']}"]
    if module_id is not None:
        parts.append(f"ModuleId={module_id}")
    authentication = device.get("authentication", {})
    if authentication.get("type", "sas") == "sas":
        parts.append(f"SharedAccessKey={authentication['symmetricKey']['primaryKey']}")
    else:
        parts.append("x509=true")
    return ";".join(parts)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``device`` command group."""
    device = sub.add_parser("device", help="devices on the running hub")
    device.add_argument(
        "--data-dir", help="the hub's data dir (default: $IOTSEC_DATA_DIR or ./iotsec-data)"
    )
    commands = device.add_subparsers(dest="device_command", metavar="SUBCOMMAND", required=True)

    add = commands.add_parser("add", help="register a device; prints its connection string")
    add.add_argument("device_id")
    add.add_argument("--group", default="default", help="security group (twin tag SecurityGroup)")
    add.add_argument("--x509-thumbprint", help="self-signed X.509: the certificate thumbprint")
    add.add_argument("--x509-ca", action="store_true", help="X.509 signed by a trusted CA")
    add_data_dir_flag(add)
    add.set_defaults(handler=_add)

    conn = commands.add_parser("connection-string", help="print a device's connection string")
    conn.add_argument("device_id")
    conn.add_argument("--module", help=f"a module, e.g. {SECURITY_MODULE} for the agent")
    add_data_dir_flag(conn)
    conn.set_defaults(handler=_connection_string)

    listing = commands.add_parser("list", help="list devices")
    listing.add_argument("--format", choices=("text", "json"), default="text")
    add_data_dir_flag(listing)
    listing.set_defaults(handler=_list)

    for name, text in (
        ("show", "show a device"),
        ("disable", "refuse a device's connections"),
        ("enable", "allow a device to connect again"),
        ("remove", "delete a device, its modules and twins"),
    ):
        cmd = commands.add_parser(name, help=text)
        cmd.add_argument("device_id")
        add_data_dir_flag(cmd)
        cmd.set_defaults(handler=_ACTIONS[name])

    twin = commands.add_parser("twin", help="device and module twins")
    twins = twin.add_subparsers(dest="twin_command", metavar="SUBCOMMAND", required=True)
    show = twins.add_parser("show", help="print a twin")
    show.add_argument("device_id")
    show.add_argument("--module")
    add_data_dir_flag(show)
    show.set_defaults(handler=_twin_show)
    desired = twins.add_parser("set-desired", help="merge a JSON patch into desired properties")
    desired.add_argument("device_id")
    desired.add_argument("patch", metavar="JSON")
    desired.add_argument("--module")
    add_data_dir_flag(desired)
    desired.set_defaults(handler=_twin_set_desired)


def _client(args: argparse.Namespace) -> ServiceClient:
    return ServiceClient(data_dir_from(args.data_dir))


def _print_json(value: Any) -> None:
    sys.stdout.buffer.write(orjson.dumps(value, option=orjson.OPT_INDENT_2) + b"\n")


def _fail(exc: CliError) -> int:
    sys.stderr.write(f"iotsec: {exc}\n")
    return 1


def _add(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"deviceId": args.device_id, "status": "enabled"}
    if args.x509_thumbprint:
        body["authentication"] = {
            "type": "selfSigned",
            "x509Thumbprint": {"primaryThumbprint": args.x509_thumbprint},
        }
    elif args.x509_ca:
        body["authentication"] = {"type": "certificateAuthority"}
    try:
        with _client(args) as client:
            device = client.request(
                "PUT", f"/devices/{args.device_id}", body=body, headers={"If-None-Match": "*"}
            )
            if args.group != "default":
                client.request(
                    "PATCH",
                    f"/twins/{args.device_id}",
                    body={"tags": {"SecurityGroup": args.group}},
                )
            host = client.info["device_host"]
    except CliError as exc:
        return _fail(exc)
    print(connection_string(host, device))
    return 0


def _connection_string(args: argparse.Namespace) -> int:
    path = f"/devices/{args.device_id}"
    if args.module:
        path += f"/modules/{args.module}"
    try:
        with _client(args) as client:
            identity = client.request("GET", path)
            host = client.info["device_host"]
    except CliError as exc:
        return _fail(exc)
    print(connection_string(host, identity, args.module))
    return 0


def _list(args: argparse.Namespace) -> int:
    try:
        with _client(args) as client:
            devices = client.request("GET", "/devices?top=1000") or []
    except CliError as exc:
        return _fail(exc)
    if args.format == "json":
        _print_json(devices)
        return 0
    for device in devices:
        print(
            f"{device['deviceId']}\t{device.get('status', '')}\t"
            f"{device.get('authentication', {}).get('type', '')}"
        )
    return 0


def _show(args: argparse.Namespace) -> int:
    try:
        with _client(args) as client:
            _print_json(client.request("GET", f"/devices/{args.device_id}"))
    except CliError as exc:
        return _fail(exc)
    return 0


def _set_status(args: argparse.Namespace, status: str) -> int:
    try:
        with _client(args) as client:
            device = client.request("GET", f"/devices/{args.device_id}")
            device["status"] = status
            client.request(
                "PUT", f"/devices/{args.device_id}", body=device, headers={"If-Match": "*"}
            )
    except CliError as exc:
        return _fail(exc)
    print(f"{args.device_id} {status}")
    return 0


def _remove(args: argparse.Namespace) -> int:
    try:
        with _client(args) as client:
            client.request("DELETE", f"/devices/{args.device_id}", headers={"If-Match": "*"})
    except CliError as exc:
        return _fail(exc)
    print(f"{args.device_id} removed")
    return 0


def _twin_path(args: argparse.Namespace) -> str:
    return f"/twins/{args.device_id}" + (f"/modules/{args.module}" if args.module else "")


def _twin_show(args: argparse.Namespace) -> int:
    try:
        with _client(args) as client:
            _print_json(client.request("GET", _twin_path(args)))
    except CliError as exc:
        return _fail(exc)
    return 0


def _twin_set_desired(args: argparse.Namespace) -> int:
    try:
        patch = orjson.loads(args.patch)
    except orjson.JSONDecodeError as exc:
        sys.stderr.write(f"iotsec: the patch is not JSON: {exc}\n")
        return 2
    if not isinstance(patch, dict):
        sys.stderr.write("iotsec: the patch must be a JSON object\n")
        return 2
    try:
        with _client(args) as client:
            twin = client.request(
                "PATCH", _twin_path(args), body={"properties": {"desired": patch}}
            )
    except CliError as exc:
        return _fail(exc)
    _print_json(twin)
    return 0


_ACTIONS = {
    "show": _show,
    "disable": lambda args: _set_status(args, "disabled"),
    "enable": lambda args: _set_status(args, "enabled"),
    "remove": _remove,
}
