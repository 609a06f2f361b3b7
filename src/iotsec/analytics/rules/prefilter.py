"""Literal prefilters for regular expressions: skip the regex when it cannot match.

Most rule regexes name something that must appear in the text for them to match: a program
(``nc``, ``socat``), a path (``/dev/tcp/``), an option. ``needles(pattern)`` finds a set of
such literals, one of which every match contains; the compiled ``regex`` test first checks that
one of them occurs in the (lower-cased) text, which costs a few ``in`` tests, and runs the
regex only then. Benign command lines, the vast majority, never reach the regex engine.
``factors(pattern)`` gives up to ``MAX_FACTORS`` such sets, the most selective first; all must
be present, so a common first set (``bin/``, ``sh``) is backed by a rarer second one
(``cp``/``mv``/``install``/``rsync``, ``nc``/``telnet``).

The literals come from the pattern's parse tree (the standard library's own parser, which the
pattern has already gone through when it compiled). Anything the analysis does not understand
adds no literal, so it can only make the prefilter weaker, never wrong. The check is used
only on ASCII text: Unicode case folding has equivalences (the long s, U+017F, and ``s``) that
lower-casing does not reproduce.

>>> sorted(needles(re.compile(r"\\bnc(at)?\\s+-e\\s|socat\\s.*exec:", re.I)))
['nc', 'socat']
>>> needles(re.compile(r"\\d+\\.\\d+")) is None
True
>>> [sorted(f) for f in factors(re.compile(r"(?:cp|mv)\\s.*\\s/usr/bin/ls$", re.I))]
[['/usr/bin/ls'], ['cp', 'mv']]
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterable
from types import ModuleType
from typing import cast

__all__ = ["MAX_FACTORS", "MIN_NEEDLE", "factors", "needles"]

#: Shortest literal worth a prefilter; a set whose shortest literal is shorter gives none.
MIN_NEEDLE = 2
#: Most literals in one set (an alternation of many words still filters well).
MAX_NEEDLES = 24
#: Most sets ``factors`` gives (each one more check when the ones before it are present).
MAX_FACTORS = 3


def _load(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except ImportError:  # pragma: no cover - present in every CPython this project supports
        return None


# The regex parser is private to the standard library (re._parser since 3.11); without it the
# engine simply runs every regex.
_PARSER = _load("re._parser")
_CONSTANTS = _load("re._constants")

_Factor = frozenset[str]
# Shapes of the parser's (op, argument) items, for the ops read here.
_Items = list[tuple[object, object]]
_Group = tuple[object, int, int, _Items]  # (group, add flags, del flags, items)
_Repeat = tuple[int, int, _Items]  # (min, max, items)
_Assert = tuple[int, _Items]  # (direction, items)
_Branch = tuple[None, list[_Items]]  # (None, branches)


def needles(pattern: re.Pattern[str]) -> frozenset[str] | None:
    """Lower-case literals, one of which is in every text ``pattern`` matches; None if unknown."""
    found = factors(pattern, limit=1)
    return found[0] if found else None


def factors(pattern: re.Pattern[str], limit: int = MAX_FACTORS) -> tuple[frozenset[str], ...]:
    """Up to ``limit`` sets of lower-case literals, each with one literal in every text
    ``pattern`` matches; the most selective first (``needles`` is the first)."""
    if _PARSER is None or _CONSTANTS is None:  # pragma: no cover - see _load
        return ()
    try:
        parsed = _PARSER.parse(pattern.pattern, pattern.flags)
    except (re.error, TypeError, ValueError, RecursionError):  # pragma: no cover - it compiled
        return ()
    usable: list[_Factor] = []
    for factor in _factors(parsed):
        # A non-ASCII literal can match ASCII text under IGNORECASE (U+017F matches "s").
        if _usable(factor) and all(n.isascii() for n in factor) and factor not in usable:
            usable.append(factor)
    # Stable: of equally selective sets, the one met first in the pattern comes first.
    return tuple(sorted(usable, key=_selectivity, reverse=True)[:limit])


def _usable(factor: _Factor) -> bool:
    return bool(factor) and len(factor) <= MAX_NEEDLES and min(map(len, factor)) >= MIN_NEEDLE


def _selectivity(factor: _Factor) -> tuple[int, int]:
    """The longest shortest literal, then the fewest literals."""
    return min(map(len, factor)), -len(factor)


def _best(factors: Iterable[_Factor]) -> _Factor | None:
    """The most selective factor of ``factors`` (a branch's own necessary literals)."""
    ranked = [f for f in factors if f and len(f) <= MAX_NEEDLES]
    if not ranked:
        return None
    return max(ranked, key=_selectivity)


def _lead(items: _Items) -> str:
    """The literal text a sequence starts with (lower case; empty if it starts otherwise)."""
    c = _CONSTANTS
    assert c is not None
    lead = []
    for op, av in items:
        if op is not c.LITERAL:
            break
        lead.append(chr(cast(int, av)))
    return "".join(lead).lower()


def _factors(items: Iterable[tuple[object, object]]) -> list[_Factor]:
    """Necessary factors of a sequence: each is a set of literals one of which must occur."""
    c = _CONSTANTS
    assert c is not None
    found: list[_Factor] = []
    run: list[str] = []

    def flush() -> None:
        if run:
            found.append(frozenset({"".join(run).lower()}))
            run.clear()

    for op, av in items:
        if op is c.LITERAL:
            run.append(chr(cast(int, av)))
            continue
        if op is c.BRANCH and run:
            # The parser moves a prefix all branches share out in front (nc|ncat becomes
            # n(c|cat)); the run before the branch and each branch's own start belong together.
            prefix = "".join(run)
            found.append(frozenset((prefix + _lead(b)).lower() for b in cast(_Branch, av)[1]))
        flush()
        if op is c.SUBPATTERN:
            found.extend(_factors(cast(_Group, av)[-1]))
        elif op is c.ATOMIC_GROUP:
            found.extend(_factors(cast(_Items, av)))
        elif op in (c.MAX_REPEAT, c.MIN_REPEAT, getattr(c, "POSSESSIVE_REPEAT", None)):
            low, _high, inner = cast(_Repeat, av)
            if low >= 1:
                found.extend(_factors(inner))
        elif op is c.ASSERT:
            found.extend(_factors(cast(_Assert, av)[1]))
        elif op is c.BRANCH:
            branches = [_best(_factors(branch)) for branch in cast(_Branch, av)[1]]
            if all(b is not None for b in branches):
                found.append(frozenset().union(*(b for b in branches if b is not None)))
        # Anything else (classes, anchors, negative assertions, back-references) adds nothing.
    flush()
    return found
