"""``iotsec rules``: check rule files and list rules (docs/rules.md)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from iotsec.analytics.errors import RuleError
    from iotsec.analytics.rules import RuleSet

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``iotsec rules check`` and ``iotsec rules list``."""
    rules = sub.add_parser("rules", help="detection rules: check files, list rules")
    commands = rules.add_subparsers(dest="rules_command", metavar="SUBCOMMAND", required=True)

    check = commands.add_parser(
        "check", help="validate rule files; prints file:line:col: reason for each problem"
    )
    check.add_argument("files", nargs="+", type=Path, metavar="FILE", help="rule files (YAML)")
    check.add_argument("--format", choices=("text", "json"), default="text")
    check.set_defaults(handler=_check)

    listing = commands.add_parser("list", help="list rules (the built-in catalogue by default)")
    listing.add_argument("files", nargs="*", type=Path, metavar="FILE", help="rule files (YAML)")
    listing.add_argument("--format", choices=("text", "json"), default="text")
    listing.set_defaults(handler=_list)


def _problem(problem: RuleError) -> dict[str, Any]:
    from iotsec.analytics.rules import RuleWarning  # noqa: PLC0415  # pyyaml is an extra

    return {
        "file": problem.source,
        "line": problem.line,
        "column": problem.column,
        "severity": "warning" if isinstance(problem, RuleWarning) else "error",
        "rule": problem.rule_id,
        "reason": problem.reason,
    }


def _check(args: argparse.Namespace) -> int:
    from iotsec.analytics.rules import check_files  # noqa: PLC0415  # pyyaml is an extra

    problems = [_problem(p) for p in check_files(args.files)]
    errors = sum(p["severity"] == "error" for p in problems)
    if args.format == "json":
        sys.stdout.buffer.write(orjson.dumps(problems, option=orjson.OPT_INDENT_2) + b"\n")
    else:
        for p in problems:
            where = ":".join(str(x) for x in (p["file"], p["line"], p["column"]) if x is not None)
            kind = "warning: " if p["severity"] == "warning" else ""
            who = f" (rule {p['rule']})" if p["rule"] else ""
            sys.stdout.write(f"{where}: {kind}{p['reason']}{who}\n")
        warnings = len(problems) - errors
        files = len(args.files)
        sys.stdout.write(
            f"{files} file{'s' * (files != 1)}: {errors} error{'s' * (errors != 1)}, "
            f"{warnings} warning{'s' * (warnings != 1)}\n"
        )
    return 1 if errors else 0


def _list(args: argparse.Namespace) -> int:
    from iotsec.analytics.rules import (  # noqa: PLC0415  # pyyaml is an extra
        RuleErrors,
        load_catalogue,
        load_rules,
    )

    try:
        ruleset: RuleSet = load_rules(args.files) if args.files else load_catalogue()
    except RuleErrors as exc:
        for error in exc.errors:
            sys.stderr.write(f"{error}\n")
        sys.stderr.write("iotsec: the rules do not load; run 'iotsec rules check' on the files\n")
        return 1
    rows = [
        {
            "id": rule.id,
            "severity": rule.severity,
            "kind": "sequence" if rule.sequence else "threshold" if rule.threshold else "match",
            "name": rule.name,
            "tactics": list(rule.tactics),
            "techniques": list(rule.techniques),
            "location": str(rule.location),
        }
        for rule in ruleset
    ]
    if args.format == "json":
        sys.stdout.buffer.write(orjson.dumps(rows, option=orjson.OPT_INDENT_2) + b"\n")
        return 0
    width = max((len(r["id"]) for r in rows), default=2)
    sys.stdout.write(f"{'ID':<{width}}  {'SEVERITY':<13}  {'KIND':<9}  NAME\n")
    for row in rows:
        sys.stdout.write(
            f"{row['id']:<{width}}  {row['severity']:<13}  {row['kind']:<9}  {row['name']}\n"
        )
    return 0
