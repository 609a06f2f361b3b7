"""The ``iotsec`` command line: the one composition root.

Each command group is a module with ``register(subparsers)``; the registry below is the one
place that lists them, so other parts of iotsec extend the CLI by adding a line here.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from iotsec import __version__
from iotsec.cli import device_cmd, hub_cmd, query_cmd, schema_cmd

__all__ = ["COMMANDS", "build_parser", "main"]

Register = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]

#: Command groups by name, in the order ``iotsec --help`` lists them.
COMMANDS: dict[str, Register] = {
    "up": hub_cmd.register_up,
    "info": hub_cmd.register_info,
    "device": device_cmd.register,
    "hub": hub_cmd.register_hub,
    "query": query_cmd.register,
    "schema": schema_cmd.register,
}


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, with every registered command group."""
    parser = argparse.ArgumentParser(
        prog="iotsec",
        description="Self-hosted IoT device security: agent, SDK, hub, analytics, workspace.",
    )
    parser.add_argument("--version", action="version", version=f"iotsec {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for register in COMMANDS.values():
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":  # pragma: no cover - exercised through the console script
    sys.exit(main())
