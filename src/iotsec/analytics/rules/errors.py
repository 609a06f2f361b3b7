"""Rule problems, collected: ``RuleErrors`` holds every ``RuleError`` a load found.

The tree, below ``iotsec.analytics.errors.RuleError``::

    RuleError                 one problem, with file, line and column
    +-- RuleErrors            several problems from one load (``.errors``); raised by loaders
    +-- RuleWarning           a problem that does not stop a file from loading (an expired
                              suppression); only ``check_files`` reports these
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from iotsec.analytics.errors import RuleError

if TYPE_CHECKING:
    from iotsec.analytics.rules.model import Rule, SourceLocation

__all__ = ["RuleErrors", "RuleWarning", "duplicate_ids", "error_at", "sort_problems"]


class RuleWarning(RuleError):
    """A problem worth reporting that does not make the file unusable."""


class RuleErrors(RuleError):
    """Every problem one load found; ``errors`` lists them in file order.

    ``str()`` gives one ``file:line:col: reason`` line per problem.
    """

    def __init__(self, errors: Sequence[RuleError]) -> None:
        if not errors:
            raise ValueError("RuleErrors needs at least one error")
        first = errors[0]
        count = len(errors)
        super().__init__(
            f"{first.reason}" + (f" (and {count - 1} more)" if count > 1 else ""),
            source=first.source,
            line=first.line,
            column=first.column,
            rule_id=first.rule_id,
        )
        self.errors: tuple[RuleError, ...] = tuple(errors)

    def __str__(self) -> str:
        return "\n".join(str(error) for error in self.errors)


def error_at(
    reason: str, location: SourceLocation, rule_id: str | None = None, *, warning: bool = False
) -> RuleError:
    """A ``RuleError`` (or ``RuleWarning``) at ``location``."""
    kind = RuleWarning if warning else RuleError
    return kind(
        reason,
        source=location.file,
        line=location.line,
        column=location.column,
        rule_id=rule_id,
    )


def duplicate_ids(rules: Iterable[Rule]) -> RuleErrors:
    """The error for every rule whose id an earlier rule already used."""
    first: dict[str, Rule] = {}
    problems: list[RuleError] = []
    for rule in rules:
        seen = first.get(rule.id)
        if seen is None:
            first[rule.id] = rule
        else:
            problems.append(
                error_at(
                    f"duplicate rule id {rule.id!r} (first defined at {seen.location})",
                    rule.location,
                    rule.id,
                )
            )
    return RuleErrors(problems)


def sort_problems(problems: Iterable[RuleError]) -> list[RuleError]:
    """Problems in file, line, column order (stable for equal positions)."""
    return sorted(problems, key=lambda e: (e.source, e.line or 0, e.column or 0))
