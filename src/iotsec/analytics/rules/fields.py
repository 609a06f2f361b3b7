"""Which fields an observation can have, by event name: the table rules are checked against.

Agent observations carry the payload row of their event (the wire names, taken from
``iotsec.schema`` so the table cannot drift from the contract); hub observations carry the
operation-log entry. Every observation also answers the context names (``Name``,
``DeviceId``, ...). A rule that names a field its observations cannot have would never match,
or would render a hole in its description, so the loader refuses it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator

import msgspec

from iotsec.analytics.rules.model import AllOf, AnyOf, Condition, EventIs, FieldTest, Not, SourceIs
from iotsec.schema import EVENT_TYPES

__all__ = [
    "AGENT_EVENTS",
    "CONTEXT_FIELDS",
    "HUB_FIELDS",
    "FieldScope",
    "check_field",
    "event_names",
    "field_scope",
    "field_tests",
    "scoped_tests",
    "suggest",
    "unknown_event",
]

#: Payload fields by agent event name.
AGENT_EVENTS: dict[str, frozenset[str]] = {
    name: frozenset(f.encode_name for f in msgspec.structs.fields(cls.row_type))
    for name, cls in EVENT_TYPES.items()
}
#: Fields of a hub operation-log observation.
HUB_FIELDS = frozenset(
    {"Category", "Operation", "Result", "Reason", "Detail", "Protocol", "SourceIp", "Properties"}
)
#: Names every observation answers, whatever its source.
CONTEXT_FIELDS = frozenset({"Name", "DeviceId", "ModuleId", "Group", "Tags", "Source"})
#: Fields holding a map: any key below them may be named (``ExtraDetails.HitCount``).
_MAPS = frozenset({"ExtraDetails", "Tags", "Properties"})
_ALL_AGENT = frozenset().union(*AGENT_EVENTS.values())
_EVERY = _ALL_AGENT | HUB_FIELDS

#: The top-level field names a condition's observations may have; None when anything goes.
FieldScope = frozenset[str] | None


def _fields_of(names: Iterable[str]) -> frozenset[str]:
    result: set[str] = set()
    for name in names:
        # A name that is not an agent event is a hub operation (their set is open-ended).
        result |= AGENT_EVENTS.get(name, HUB_FIELDS)
    return frozenset(result)


def field_scope(condition: Condition | None) -> frozenset[str]:
    """The fields observations matching ``condition`` can have (context names included)."""
    scope = _scope(condition) if condition is not None else None
    return (_EVERY if scope is None else scope) | CONTEXT_FIELDS


def _scope(condition: Condition) -> FieldScope:
    if isinstance(condition, EventIs):
        return _fields_of(condition.names)
    if isinstance(condition, SourceIs):
        return _ALL_AGENT if condition.source == "agent" else HUB_FIELDS
    if isinstance(condition, AllOf):
        scopes = [s for s in map(_scope, condition.items) if s is not None]
        return frozenset.intersection(*scopes) if scopes else None
    if isinstance(condition, AnyOf):
        branches = [_scope(item) for item in condition.items]
        known = [s for s in branches if s is not None]
        return frozenset().union(*known) if len(known) == len(branches) else None
    return None  # Not, FieldTest: say nothing about which events can match


def event_names(condition: Condition) -> frozenset[str] | None:
    """The observation names ``condition`` can match, or None when any name can."""
    if isinstance(condition, EventIs):
        return condition.names
    if isinstance(condition, SourceIs):
        return frozenset(AGENT_EVENTS) if condition.source == "agent" else None
    if isinstance(condition, AllOf):
        sets = [s for s in map(event_names, condition.items) if s is not None]
        return frozenset.intersection(*sets) if sets else None
    if isinstance(condition, AnyOf):
        found = [event_names(item) for item in condition.items]
        named = [s for s in found if s is not None]
        return frozenset().union(*named) if len(named) == len(found) else None
    if isinstance(condition, (Not, FieldTest)):
        return None
    raise TypeError(condition)  # pragma: no cover - the Condition union is closed


def suggest(word: str, candidates: Iterable[str], cutoff: float = 0.6) -> str:
    """``; did you mean 'x'?`` for the closest candidate, or an empty string."""
    pool = sorted(set(candidates))
    folded = {c.casefold(): c for c in pool}
    best = folded.get(word.casefold())
    if best is None:
        close = difflib.get_close_matches(word, pool, n=1, cutoff=cutoff)
        best = close[0] if close else None
    return f"; did you mean {best!r}?" if best is not None and best != word else ""


def check_field(path: str, scope: frozenset[str], what: str) -> str | None:
    """Why ``path`` cannot be a field in ``scope`` (``what`` names the observations), or None."""
    head, dot, rest = path.partition(".")
    if not head or (dot and not all(rest.split("."))):
        return f"bad field path {path!r}: empty name between dots"
    if head not in scope:
        return f"{what} have no field {head!r}" + suggest(head, scope)
    if rest and head not in _MAPS:
        return f"field {head!r} has no sub-fields (only ExtraDetails, Tags and Properties do)"
    return None


def unknown_event(name: str) -> str | None:
    """Why ``name`` looks like a misspelt agent event (and which), or None.

    Names that are not agent events are taken as hub operations, an open set; only a name
    close to an agent event is refused, since it is almost certainly a typo.
    """
    if name in AGENT_EVENTS:
        return None
    hint = suggest(name, AGENT_EVENTS, cutoff=0.8)
    # Hub operations are lower-case words ("authenticate"); a case-only difference or a near
    # miss of a PascalCase event name is a typo.
    if hint and (name[:1].isupper() or name.casefold() in {n.casefold() for n in AGENT_EVENTS}):
        return f"unknown event {name!r}{hint}"
    return None


def scoped_tests(
    condition: Condition, inherited: frozenset[str]
) -> Iterator[tuple[FieldTest, frozenset[str]]]:
    """Each field test in ``condition`` with the fields its branch's observations can have."""
    own = _scope(condition)
    scope = inherited if own is None else own | CONTEXT_FIELDS
    if isinstance(condition, FieldTest):
        yield condition, scope
    elif isinstance(condition, (AllOf, AnyOf)):
        for item in condition.items:
            yield from scoped_tests(item, scope)
    elif isinstance(condition, Not):
        yield from scoped_tests(condition.item, scope)


def field_tests(condition: Condition | None) -> Iterator[FieldTest]:
    """Every field test in ``condition``, in the order written."""
    if condition is None:
        return
    yield from (test for test, _ in scoped_tests(condition, CONTEXT_FIELDS))
