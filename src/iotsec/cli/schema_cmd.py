"""``iotsec schema``: export our JSON Schema and validate security messages."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from iotsec.schema import (
    ErrorPolicy,
    FieldIssue,
    MessageInvalid,
    MessageTooLarge,
    decode_message,
    iter_documents,
    json_schema_text,
)

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``iotsec schema export`` and ``iotsec schema validate``."""
    schema = sub.add_parser("schema", help="the security message contract")
    commands = schema.add_subparsers(dest="schema_command", metavar="SUBCOMMAND", required=True)

    export = commands.add_parser("export", help="write the JSON Schema of iotsec's message types")
    export.add_argument("-o", "--output", type=Path, help="file to write (default: stdout)")
    export.set_defaults(handler=_export)

    validate = commands.add_parser(
        "validate",
        help="check security messages (one message, a JSON array of them, or JSON lines)",
    )
    validate.add_argument("files", nargs="+", metavar="FILE", help="files to check; - for stdin")
    validate.add_argument("--format", choices=("text", "json"), default="text")
    validate.add_argument(
        "--policy",
        choices=[p.value for p in ErrorPolicy],
        default=ErrorPolicy.REJECT.value,
        help="reject: a bad event fails its message; keep-valid: report bad events, keep the rest",
    )
    validate.set_defaults(handler=_validate)


def _export(args: argparse.Namespace) -> int:
    text = json_schema_text()
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text, encoding="utf-8")
    return 0


@dataclass(frozen=True, slots=True)
class _Verdict:
    source: str
    valid: bool
    events: int
    issues: tuple[FieldIssue, ...]
    rejected_events: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "valid": self.valid,
            "events": self.events,
            "rejected_events": self.rejected_events,
            "issues": [{"path": i.path, "reason": i.reason} for i in self.issues],
        }


def _read(name: str) -> bytes:
    if name == "-":
        return sys.stdin.buffer.read()
    return Path(name).read_bytes()


def _judge(source: str, raw: bytes, policy: ErrorPolicy) -> _Verdict:
    try:
        decoded = decode_message(raw, policy=policy)
    except MessageTooLarge as exc:
        return _Verdict(source, False, 0, (FieldIssue("$", str(exc)),))
    except MessageInvalid as exc:
        return _Verdict(source, False, 0, exc.issues)
    return _Verdict(
        source,
        valid=not decoded.rejected,
        events=len(decoded.message.events),
        issues=decoded.issues,
        rejected_events=len(decoded.rejected),
    )


def _verdicts(files: list[str], policy: ErrorPolicy) -> list[_Verdict]:
    verdicts: list[_Verdict] = []
    for name in files:
        try:
            data = _read(name)
        except OSError as exc:
            issue = FieldIssue("$", f"cannot read: {exc.strerror}")
            verdicts.append(_Verdict(name, False, 0, (issue,)))
            continue
        documents = list(iter_documents(data))
        if not documents:
            verdicts.append(_Verdict(name, False, 0, (FieldIssue("$", "no messages in input"),)))
        for doc in documents:
            where = (
                f"{name}{doc.where}"
                if doc.where.startswith("[")
                else (f"{name}:{doc.where}" if doc.where else name)
            )
            verdicts.append(_judge(where, doc.raw, policy))
    return verdicts


def _validate(args: argparse.Namespace) -> int:
    verdicts = _verdicts(args.files, ErrorPolicy(args.policy))
    if args.format == "json":
        sys.stdout.buffer.write(
            orjson.dumps([v.as_dict() for v in verdicts], option=orjson.OPT_INDENT_2) + b"\n"
        )
    else:
        for v in verdicts:
            if v.valid:
                plural = "" if v.events == 1 else "s"
                sys.stdout.write(f"{v.source}: valid ({v.events} event{plural})\n")
            elif v.events:
                sys.stdout.write(
                    f"{v.source}: invalid ({v.rejected_events} events rejected, {v.events} kept)\n"
                )
            else:
                sys.stdout.write(f"{v.source}: invalid\n")
            for issue in v.issues:
                sys.stdout.write(f"  {issue}\n")
        bad = sum(not v.valid for v in verdicts)
        sys.stdout.write(f"{len(verdicts)} messages, {len(verdicts) - bad} valid, {bad} invalid\n")
    return 0 if all(v.valid for v in verdicts) else 1
