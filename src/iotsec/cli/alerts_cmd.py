"""``iotsec alerts custom list|show|set|delete|check``: custom alerts per device security group.

The commands talk to the running hub's service API (``/securityGroups/...``), which keeps the
documents with the hub configuration. ``set`` and ``check`` validate a file with the analytics
model first, so a mistake is reported with its JSON path before anything is sent.

This module also holds ``validate_for_hub``, the validator the composition root gives the hub:
the hub stores custom alerts but must not import the analytics model that understands them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import orjson

from iotsec.analytics.customrules import CustomAlertInvalid, CustomAlertSet
from iotsec.cli.service_client import CliError, ServiceClient, add_data_dir_flag, data_dir_from

__all__ = ["register", "validate_for_hub"]


def validate_for_hub(document: Any) -> dict[str, Any]:
    """The hub's custom-alert validator: the analytics model's verdict, in the hub's error.

    Returns the canonical document (all four families, read-only fields filled in).

    Raises:
        iotsec.hub.customalerts.CustomAlertsInvalid: each problem's JSON path and reason.
    """
    # The hub is imported here: the other CLI commands must not need its dependencies.
    from iotsec.hub.customalerts import CustomAlertsInvalid  # noqa: PLC0415

    try:
        return CustomAlertSet.from_json(document).to_json()
    except CustomAlertInvalid as exc:
        raise CustomAlertsInvalid([(i.path, i.reason) for i in exc.issues]) from None


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``iotsec alerts``."""
    alerts = sub.add_parser("alerts", help="alerts: custom alerts per device security group")
    add_data_dir_flag(alerts, leaf=False)
    commands = alerts.add_subparsers(dest="alerts_command", metavar="SUBCOMMAND", required=True)
    custom = commands.add_parser(
        "custom", help="custom alerts per security group (ASC's time-window, allow and deny rules)"
    )
    actions = custom.add_subparsers(dest="custom_command", metavar="ACTION", required=True)

    listing = actions.add_parser("list", help="the groups that have custom alerts")
    listing.add_argument("--format", choices=("text", "json"), default="text")
    add_data_dir_flag(listing)
    listing.set_defaults(handler=_list)

    show = actions.add_parser("show", help="print a group's custom alerts as JSON")
    show.add_argument("group", metavar="GROUP")
    add_data_dir_flag(show)
    show.set_defaults(handler=_show)

    change = actions.add_parser("set", help="replace a group's custom alerts with a JSON file")
    change.add_argument("group", metavar="GROUP")
    change.add_argument("file", metavar="FILE", help="the JSON document ('-' reads stdin)")
    add_data_dir_flag(change)
    change.set_defaults(handler=_set)

    delete = actions.add_parser("delete", help="remove a group's custom alerts")
    delete.add_argument("group", metavar="GROUP")
    add_data_dir_flag(delete)
    delete.set_defaults(handler=_delete)

    check = actions.add_parser("check", help="validate a JSON file without a hub")
    check.add_argument("file", metavar="FILE", help="the JSON document ('-' reads stdin)")
    check.set_defaults(handler=_check)


def _path(group: str) -> str:
    return f"/securityGroups/{group}/customAlerts"


def _print_json(value: Any) -> None:
    sys.stdout.buffer.write(orjson.dumps(value, option=orjson.OPT_INDENT_2) + b"\n")
    sys.stdout.flush()


def _fail(message: str) -> int:
    sys.stderr.write(f"iotsec: {message}\n")
    return 1


def _read(file: str) -> CustomAlertSet | int:
    """The validated document in ``file``, or an exit status after saying what is wrong."""
    try:
        raw = sys.stdin.buffer.read() if file == "-" else Path(file).read_bytes()
    except OSError as exc:
        return _fail(f"cannot read {file}: {exc.strerror or exc}")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        sys.stderr.write(f"iotsec: {file} is not JSON: {exc}\n")
        return 2
    try:
        return CustomAlertSet.from_json(data)
    except CustomAlertInvalid as exc:
        sys.stderr.write(f"iotsec: {file}: invalid custom alerts\n")
        for issue in exc.issues:
            sys.stderr.write(f"  {issue}\n")
        return 2


def _list(args: argparse.Namespace) -> int:
    try:
        with ServiceClient(data_dir_from(args.data_dir)) as client:
            groups = client.request("GET", "/securityGroups")
    except CliError as exc:
        return _fail(str(exc))
    if args.format == "json":
        _print_json(groups)
        return 0
    if not groups:
        print("no security group has custom alerts")
        return 0
    print(f"{'GROUP':24} {'TIME-WINDOW':>11} {'ALLOW':>5} {'DENY':>5} {'ENABLED':>7}")
    for group in groups:
        document = group["customAlerts"]
        rules = [
            rule
            for family in ("timeWindowRules", "allowlistRules", "denylistRules")
            for rule in document.get(family) or []
        ]
        enabled = sum(1 for rule in rules if rule.get("isEnabled"))
        print(
            f"{group['name']:24} {len(document.get('timeWindowRules') or []):>11} "
            f"{len(document.get('allowlistRules') or []):>5} "
            f"{len(document.get('denylistRules') or []):>5} {enabled:>7}"
        )
    return 0


def _show(args: argparse.Namespace) -> int:
    try:
        with ServiceClient(data_dir_from(args.data_dir)) as client:
            document = client.request("GET", _path(args.group))
    except CliError as exc:
        return _fail(str(exc))
    _print_json(document)
    return 0


def _set(args: argparse.Namespace) -> int:
    rules = _read(args.file)
    if isinstance(rules, int):
        return rules
    try:
        with ServiceClient(data_dir_from(args.data_dir)) as client:
            stored = client.request("PUT", _path(args.group), body=rules.to_json())
    except CliError as exc:
        return _fail(str(exc))
    _print_json(stored)
    return 0


def _delete(args: argparse.Namespace) -> int:
    try:
        with ServiceClient(data_dir_from(args.data_dir)) as client:
            answer = client.request("DELETE", _path(args.group))
    except CliError as exc:
        return _fail(str(exc))
    if answer is None:
        print(f"security group {args.group} had no custom alerts")
    else:
        print(f"removed the custom alerts of security group {args.group}")
    return 0


def _check(args: argparse.Namespace) -> int:
    rules = _read(args.file)
    if isinstance(rules, int):
        return rules
    print(f"{args.file}: valid ({rules.rule_count} rules)")
    return 0
