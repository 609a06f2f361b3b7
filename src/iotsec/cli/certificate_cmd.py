"""``iotsec certificate``: the CA certificates the running hub trusts for CA-signed devices."""

from __future__ import annotations

import argparse
import base64
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson

from iotsec.cli.service_client import CliError, ServiceClient, add_data_dir_flag, data_dir_from

__all__ = ["register"]

#: Larger than any certificate the hub accepts; a bigger file is not read into memory.
_MAX_FILE_BYTES = 65_536


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``certificate`` command group."""
    group = sub.add_parser(
        "certificate", help="CA certificates the hub trusts for X.509 CA-signed devices"
    )
    add_data_dir_flag(group, leaf=False)
    commands = group.add_subparsers(dest="certificate_command", metavar="SUBCOMMAND", required=True)

    add = commands.add_parser(
        "add", help="trust a CA certificate (PEM or DER file); devices it signed connect at once"
    )
    add.add_argument("name", help="1-64 of A-Z a-z 0-9 - . _ (not starting with '.')")
    add.add_argument("file", type=Path, help="the CA certificate: PEM, or DER (.cer)")
    add.add_argument(
        "--replace", action="store_true", help="replace the certificate of that name, if any"
    )
    add_data_dir_flag(add)
    add.set_defaults(handler=_add)

    listing = commands.add_parser("list", help="list the trusted CA certificates")
    listing.add_argument("--format", choices=("text", "json"), default="text")
    add_data_dir_flag(listing)
    listing.set_defaults(handler=_list)

    show = commands.add_parser("show", help="print one certificate's description as JSON")
    show.add_argument("name")
    add_data_dir_flag(show)
    show.set_defaults(handler=_show)

    delete = commands.add_parser(
        "delete", help="stop trusting a CA certificate (new connections are refused at once)"
    )
    delete.add_argument("name")
    add_data_dir_flag(delete)
    delete.set_defaults(handler=_delete)


def _client(args: argparse.Namespace) -> ServiceClient:
    return ServiceClient(data_dir_from(args.data_dir))


def _path(name: str) -> str:
    # Quoted whole: a name is one path segment, whatever it holds (the hub checks it).
    return f"/certificates/{quote(name, safe='')}"


def _fail(exc: CliError) -> int:
    sys.stderr.write(f"iotsec: {exc}\n")
    return 1


def _certificate_text(path: Path) -> str:
    """The file as the API takes it: PEM text as is, DER as base64 (IoT Hub's .cer form)."""
    try:
        with path.open("rb") as file:
            data = file.read(_MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > _MAX_FILE_BYTES:
        raise CliError(f"{path} is over {_MAX_FILE_BYTES} bytes: not one CA certificate")
    if b"-----BEGIN" in data:
        return data.decode("utf-8", "replace")
    return base64.b64encode(data).decode("ascii")


def _add(args: argparse.Namespace) -> int:
    try:
        body = {"properties": {"certificate": _certificate_text(args.file)}}
        headers = {} if args.replace else {"If-None-Match": "*"}
        with _client(args) as client:
            added = client.request("PUT", _path(args.name), body=body, headers=headers)
    except CliError as exc:
        if not args.replace and "PreconditionFailed" in str(exc):
            sys.stderr.write(f"iotsec: {exc}\niotsec: add --replace to replace it\n")
            return 1
        return _fail(exc)
    properties = added["properties"]
    print(f"{added['name']}\t{properties['thumbprint']}\t{properties['subject']}")
    return 0


def _list(args: argparse.Namespace) -> int:
    try:
        with _client(args) as client:
            listed: dict[str, Any] = client.request("GET", "/certificates") or {"value": []}
    except CliError as exc:
        return _fail(exc)
    if args.format == "json":
        sys.stdout.buffer.write(orjson.dumps(listed["value"], option=orjson.OPT_INDENT_2) + b"\n")
        return 0
    for entry in listed["value"]:
        properties = entry["properties"]
        print(
            f"{entry['name']}\t{properties['thumbprint']}\t{properties['expiry']}\t"
            f"{properties['subject']}"
        )
    return 0


def _show(args: argparse.Namespace) -> int:
    try:
        with _client(args) as client:
            entry = client.request("GET", _path(args.name))
    except CliError as exc:
        return _fail(exc)
    sys.stdout.buffer.write(orjson.dumps(entry, option=orjson.OPT_INDENT_2) + b"\n")
    return 0


def _delete(args: argparse.Namespace) -> int:
    try:
        with _client(args) as client:
            client.request("DELETE", _path(args.name), headers={"If-Match": "*"})
    except CliError as exc:
        return _fail(exc)
    print(f"{args.name} deleted")
    return 0
