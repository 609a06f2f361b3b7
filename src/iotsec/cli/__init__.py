"""The ``iotsec`` command line: the one composition root.

Each command group is a module with ``register(subparsers)``; the registry below is the one
place that lists them, so other parts of iotsec extend the CLI by adding a line here
(``"name": ("name_cmd", "register")``).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from iotsec import __version__

__all__ = ["COMMANDS", "build_parser", "main", "register_of"]

Register = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]

#: Command groups by name, in the order ``iotsec --help`` lists them: the module (in
#: ``iotsec.cli``) and its register function. A group's module is imported only when that
#: group runs, or for the full ``--help``: a command never pays for another's dependencies, so
#: ``iotsec agent run`` on a device with only ``iotsec[agent]`` installed loads neither the
#: hub's nor the console's (and stays within its memory budget).
COMMANDS: dict[str, tuple[str, str]] = {
    "up": ("hub_cmd", "register_up"),
    "info": ("hub_cmd", "register_info"),
    "device": ("device_cmd", "register"),
    "hub": ("hub_cmd", "register_hub"),
    "certificate": ("certificate_cmd", "register"),
    "query": ("query_cmd", "register"),
    "alerts": ("alerts_cmd", "register"),
    "rules": ("rules_cmd", "register"),
    "schema": ("schema_cmd", "register"),
    "agent": ("agent_cmd", "register"),
    "simulate": ("simulate_cmd", "register"),
    "users": ("users_cmd", "register"),
}


def register_of(name: str) -> Register:
    """The register function of the command group ``name`` (its module is imported now).

    Raises:
        KeyError: no such group.
        ModuleNotFoundError: the group needs an extra that is not installed.
    """
    module, function = COMMANDS[name]
    register: Register = getattr(importlib.import_module(f"iotsec.cli.{module}"), function)
    return register


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The argument parser with every registered command group, or with the group ``only``.

    A group whose dependencies are not installed is listed as unavailable.
    """
    parser = argparse.ArgumentParser(
        prog="iotsec",
        description="Self-hosted IoT device security: agent, SDK, hub, analytics, workspace.",
    )
    parser.add_argument("--version", action="version", version=f"iotsec {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        if only is not None and name != only:
            continue
        try:
            register = register_of(name)
        except ModuleNotFoundError as exc:
            if only is not None:
                raise
            sub.add_parser(name, help=f"unavailable: {exc.name} is not installed")
            continue
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit status."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in arguments if not a.startswith("-")), None)
    try:
        parser = build_parser(only=command if command in COMMANDS else None)
    except ModuleNotFoundError as exc:
        sys.stderr.write(f"iotsec {command}: needs {exc.name}, which is not installed\n")
        return 2
    args = parser.parse_args(arguments)
    handler: Callable[[argparse.Namespace], int] | None = getattr(args, "handler", None)
    if handler is None:
        parser.error(f"{args.command}: not available in this installation")
    try:
        return handler(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":  # pragma: no cover - exercised through the console script
    sys.exit(main())
