"""The built-in rule catalogue (package data) and ``check_files``, what ``iotsec rules check`` runs.

The catalogue is every ``*.yaml`` file in ``iotsec/analytics/catalogue/``, loaded in name
order; ids are unique across the catalogue, and an operator's rule may not reuse one.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

from iotsec.analytics.errors import RuleError
from iotsec.analytics.rules.errors import error_at, sort_problems
from iotsec.analytics.rules.fields import suggest
from iotsec.analytics.rules.loader import (
    Document,
    build_ruleset,
    duplicates,
    parse_document,
    read_document,
)
from iotsec.analytics.rules.model import RuleSet, SourceLocation

__all__ = ["catalogue_files", "check_files", "load_catalogue"]


def catalogue_files() -> list[Traversable]:
    """The catalogue's rule files, in name order (none while the catalogue is empty)."""
    folder = files("iotsec.analytics").joinpath("catalogue")
    if not folder.is_dir():
        return []
    return sorted(
        (f for f in folder.iterdir() if f.name.endswith(".yaml") and f.is_file()),
        key=lambda f: f.name,
    )


def _catalogue_documents() -> list[Document]:
    return [parse_document(f.read_text(encoding="utf-8"), str(f)) for f in catalogue_files()]


def load_catalogue() -> RuleSet:
    """The built-in rules.

    Raises:
        RuleErrors: a catalogue file has problems (a packaging bug: the catalogue's own tests
            load it).
    """
    return build_ruleset(_catalogue_documents())


def check_files(paths: Iterable[Path], *, now: datetime | None = None) -> list[RuleError]:
    """Every problem in rule files, errors and warnings (``RuleWarning``), in file order.

    Beyond what loading checks, this reports: a rule id the built-in catalogue already uses,
    and as warnings a suppression that has expired (at ``now``, default the current time) or
    that names a rule neither these files nor the catalogue define.
    """
    when = now or datetime.now(UTC)
    checked = [Path(p) for p in paths]
    documents = [read_document(path) for path in checked]
    problems: list[RuleError] = [p for doc in documents for p in doc.problems]
    problems.extend(duplicates(documents))
    mine = {_resolved(str(p)) for p in checked}
    # The catalogue's own problems are not these files' problems; its valid rules still count.
    builtin: dict[str, SourceLocation] = {
        rule_id: location
        for doc in _catalogue_documents()
        if _resolved(doc.source) not in mine
        for rule_id, location in doc.ids
    }
    ids = [pair for doc in documents for pair in doc.ids]
    for rule_id, location in ids:
        if rule_id in builtin:
            reason = f"rule id {rule_id!r} is a built-in rule ({builtin[rule_id]})"
            problems.append(error_at(reason, location, rule_id))
    known = {rule_id for rule_id, _at in ids} | set(builtin)
    for suppression in (s for doc in documents for s in doc.suppressions):
        name = (
            "this suppression"
            if suppression.id == str(suppression.location)
            else f"suppression {suppression.id!r}"
        )
        if suppression.expired(when):
            reason = f"{name} expired at {suppression.expires.isoformat()} and is ignored"
            problems.append(error_at(reason, suppression.location, warning=True))
        if suppression.rule != "*" and suppression.rule not in known:
            reason = (
                f"{name} names rule {suppression.rule!r}, which neither these files nor the "
                f"built-in catalogue define{suggest(suppression.rule, known)}"
            )
            problems.append(error_at(reason, suppression.location, warning=True))
    return sort_problems(problems)


def _resolved(source: str) -> str:
    try:
        return str(Path(source).resolve())
    except (OSError, RuntimeError):
        return source
