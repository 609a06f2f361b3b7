"""Reading YAML as positioned nodes: typed scalars, checked mappings, and collected errors.

The rule loader never calls ``yaml.load``: it composes the document into nodes with the safe
resolver (so every key and value keeps its line and column) and turns only the scalar tags it
knows (str, int, float, bool, null, timestamp) into values. Anything else - a Python tag, a
binary blob, a recursive alias - is a ``RuleError`` at its position.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, timedelta

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from iotsec.analytics.errors import RuleError
from iotsec.analytics.rules.errors import error_at
from iotsec.analytics.rules.fields import suggest
from iotsec.analytics.rules.model import Scalar, SourceLocation

__all__ = [
    "MAX_DEPTH",
    "MAX_NODES",
    "Entry",
    "Reader",
    "compose",
]

#: Limits on a document after aliases are expanded: rules are small, and a "billion laughs"
#: document must be refused before anything walks it.
MAX_NODES = 200_000
MAX_DEPTH = 64

_STR = "tag:yaml.org,2002:str"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"
_NULL = "tag:yaml.org,2002:null"
_BOOL = "tag:yaml.org,2002:bool"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_TYPED = {_NULL, _BOOL, _INT, _FLOAT, _TIMESTAMP}
# Only the scalar constructors are used; they read nothing but the node they are given.
_SCALARS = SafeConstructor()
_LINE_BREAK = re.compile("\r\n|[\n\r\x85\u2028\u2029]")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_SHORT_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)(ms|s|m|h|d|w))+")
_SHORT_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_ISO_DURATION = re.compile(
    r"P(?:(?P<w>\d+(?:\.\d+)?)W)?(?:(?P<d>\d+(?:\.\d+)?)D)?"
    r"(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?"
)
_MAX_DURATION = timedelta(days=366)

#: A mapping entry: the key's node and the value's node.
Entry = tuple[ScalarNode, Node]


def compose(text: str, source: str) -> Node | None:
    """The document's root node (None for an empty document), after the size checks.

    Raises:
        RuleError: the text is not YAML, holds several documents, or is too large or too deep
            once aliases are expanded.
    """
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        reason = " ".join(p for p in (exc.context, exc.problem) if p) or "not valid YAML"
        line, column = (mark.line + 1, mark.column + 1) if mark is not None else (None, None)
        raise RuleError(f"YAML: {reason}", source=source, line=line, column=column) from None
    except yaml.YAMLError as exc:
        raise RuleError(f"YAML: {exc}", source=source) from None
    except RecursionError:
        raise RuleError(f"YAML: nested deeper than {MAX_DEPTH} levels", source=source) from None
    if root is not None:
        _check_size(root, source)
    return root


def _children(node: Node) -> Sequence[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [n for pair in node.value for n in pair]
    return ()


def _check_size(root: Node, source: str) -> None:
    """Refuse recursive aliases and documents too big or deep once aliases are expanded."""
    sizes: dict[int, int] = {}
    depths: dict[int, int] = {}
    entered: set[int] = set()
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, leaving = stack.pop()
        key = id(node)
        if leaving:
            kids = _children(node)
            sizes[key] = 1 + sum(sizes[id(k)] for k in kids)
            depths[key] = 1 + max((depths[id(k)] for k in kids), default=0)
            entered.discard(key)
            if sizes[key] > MAX_NODES or depths[key] > MAX_DEPTH:
                limit = "large" if sizes[key] > MAX_NODES else "deep"
                mark = node.start_mark
                raise RuleError(
                    f"YAML: document too {limit} (aliases expanded: at most {MAX_NODES} "
                    f"values, {MAX_DEPTH} levels)",
                    source=source,
                    line=mark.line + 1,
                    column=mark.column + 1,
                )
            continue
        if key in entered:
            mark = node.start_mark
            raise RuleError(
                "YAML: an alias refers to a value that contains it",
                source=source,
                line=mark.line + 1,
                column=mark.column + 1,
            )
        if key in sizes:
            continue
        entered.add(key)
        stack.append((node, True))
        stack.extend((kid, False) for kid in _children(node))


class Reader:
    """Reads one document's nodes, collecting every problem instead of stopping at the first."""

    def __init__(self, source: str, text: str) -> None:
        self.source = source
        self.errors: list[RuleError] = []
        #: The rule being read, named in its errors.
        self.rule_id: str | None = None
        self._lines = _LINE_BREAK.split(text)

    # -- positions and errors ------------------------------------------------------------

    def at(self, node: Node) -> SourceLocation:
        """Where ``node`` starts."""
        return SourceLocation(self.source, node.start_mark.line + 1, node.start_mark.column + 1)

    def error(self, where: Node | SourceLocation, reason: str, *, warning: bool = False) -> None:
        """Record a problem at ``where``."""
        location = where if isinstance(where, SourceLocation) else self.at(where)
        self.errors.append(error_at(reason, location, self.rule_id, warning=warning))

    def offset(self, node: ScalarNode, offset: int) -> SourceLocation:
        """Where character ``offset`` of ``node``'s value was written (its start if unknown)."""
        start, end = node.start_mark, node.end_mark
        if start.line == end.line and node.style in (None, "'", '"'):
            raw = self._lines[start.line][start.column : end.column]
            column = _raw_column(raw, node.style, offset)
            if column is not None:
                return SourceLocation(self.source, start.line + 1, start.column + column + 1)
        elif node.style == "|":
            # A literal block keeps its lines: count them, then add the block's indentation.
            before = node.value[:offset]
            line = start.line + 1 + before.count("\n")
            if line < len(self._lines):
                text = self._lines[line]
                indent = len(text) - len(text.lstrip(" "))
                column = indent + len(before) - (before.rfind("\n") + 1)
                return SourceLocation(self.source, line + 1, column + 1)
        return self.at(node)

    # -- structure -----------------------------------------------------------------------

    def mapping(self, node: Node, what: str) -> dict[str, Entry] | None:
        """``node`` as ``{key: (key node, value node)}``; duplicate or non-text keys are errors."""
        if not isinstance(node, MappingNode):
            self.error(node, f"{what} must be a mapping (key: value), not {_kind(node)}")
            return None
        if node.tag != _MAP:
            self.error(node, f"unsupported YAML tag {node.tag!r} in {what}")
            return None
        entries: dict[str, Entry] = {}
        for key, value in node.value:
            if not isinstance(key, ScalarNode) or key.tag in (_NULL, _MAP, _SEQ):
                self.error(key, f"keys in {what} must be names, not {_kind(key)}")
                continue
            if key.value == "<<":
                self.error(key, "YAML merge keys (<<) are not supported in rule files")
                continue
            if key.value in entries:
                first = self.at(entries[key.value][0])
                self.error(key, f"duplicate key {key.value!r} (first at line {first.line})")
                continue
            entries[key.value] = (key, value)
        return entries

    def known_keys(self, entries: dict[str, Entry], allowed: Sequence[str], what: str) -> bool:
        """Report keys not in ``allowed``, with a suggestion; True when all are known."""
        ok = True
        for name, (key, _value) in entries.items():
            if name not in allowed:
                choices = ", ".join(allowed)
                hint = suggest(name, allowed) or f"; expected one of: {choices}"
                self.error(key, f"unknown key {name!r} in {what}{hint}")
                ok = False
        return ok

    def sequence(self, node: Node, what: str, *, empty: bool = False) -> list[Node] | None:
        """``node``'s items; a non-list, or an empty list unless ``empty``, is an error."""
        if not isinstance(node, SequenceNode):
            self.error(node, f"{what} must be a list, not {_kind(node)}")
            return None
        if node.tag != _SEQ:
            self.error(node, f"unsupported YAML tag {node.tag!r} in {what}")
            return None
        if not node.value and not empty:
            self.error(node, f"{what} must not be empty")
            return None
        return list(node.value)

    def one_or_more(self, node: Node) -> Iterator[Node]:
        """The items of a list, or the node itself when it is not a list."""
        if isinstance(node, SequenceNode) and node.tag == _SEQ:
            yield from node.value
        else:
            yield node

    # -- scalars -------------------------------------------------------------------------

    def scalar(self, node: Node, what: str) -> Scalar | None:  # noqa: PLR0911 - per YAML kind
        """A typed scalar (str, int, float or bool); null, lists and mappings are errors."""
        if not isinstance(node, ScalarNode):
            self.error(node, f"{what} must be a single value, not {_kind(node)}")
            return None
        if node.tag == _STR:
            return str(node.value)
        if node.tag == _NULL:
            self.error(node, f"{what} is empty")
            return None
        if node.tag not in _TYPED:
            self.error(node, f"unsupported YAML tag {node.tag!r} in {what}")
            return None
        try:
            # The tag's own constructor: construct_object would also cache the node forever.
            value = _SCALARS.yaml_constructors[node.tag](_SCALARS, node)
        except (ValueError, OverflowError, yaml.YAMLError):
            self.error(node, f"{what}: cannot read {node.value!r}")
            return None
        if isinstance(value, (date, datetime)):
            return str(node.value)
        if isinstance(value, float) and not math.isfinite(value):
            self.error(node, f"{what} must be a finite number")
            return None
        assert isinstance(value, (bool, int, float))  # the typed tags above give only these
        return value

    def text(self, node: Node, what: str, *, empty: bool = False) -> str | None:
        """A string as written (a plain ``22`` or ``yes`` reads as its text)."""
        if isinstance(node, ScalarNode) and node.tag in (_INT, _FLOAT, _BOOL, _TIMESTAMP):
            return str(node.value)
        value = self.scalar(node, what)
        if value is None:
            return None
        if not isinstance(value, str):  # pragma: no cover - every typed tag is handled above
            self.error(node, f"{what} must be text")
            return None
        if not value.strip() and not empty:
            self.error(node, f"{what} must not be empty")
            return None
        return value

    def texts(self, node: Node, what: str) -> list[tuple[ScalarNode, str]] | None:
        """One string or a non-empty list of them, each with its node."""
        if isinstance(node, SequenceNode) and not node.value:
            self.error(node, f"{what} must not be an empty list")
            return None
        found: list[tuple[ScalarNode, str]] = []
        ok = True
        for item in self.one_or_more(node):
            value = self.text(item, what)
            if value is None or not isinstance(item, ScalarNode):
                ok = False
                continue
            found.append((item, value))
        return found if ok else None

    def integer(self, node: Node, what: str, minimum: int = 1) -> int | None:
        """A whole number of at least ``minimum``."""
        value = self.scalar(node, what)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            self.error(node, f"{what} must be a whole number, not {node_text(node)!r}")
            return None
        if value < minimum:
            self.error(node, f"{what} must be at least {minimum}")
            return None
        return value

    def number(self, node: Node, what: str) -> float | int | None:
        """A finite number."""
        value = self.scalar(node, what)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.error(node, f"{what} must be a number, not {node_text(node)!r}")
            return None
        return value

    def boolean(self, node: Node, what: str) -> bool | None:
        """``true`` or ``false``."""
        value = self.scalar(node, what)
        if value is None:
            return None
        if not isinstance(value, bool):
            self.error(node, f"{what} must be true or false, not {node_text(node)!r}")
            return None
        return value

    def duration(self, node: Node, what: str) -> tuple[timedelta, str] | None:
        """A positive duration (``30s``, ``5m``, ``1h30m``, ``2d``, ``PT5M``) and its text."""
        raw = self.text(node, what)
        if raw is None:
            return None
        written = raw.strip()
        seconds = _seconds(written)
        if seconds is None:
            self.error(
                node,
                f"{what}: {written!r} is not a duration (write 30s, 5m, 1h, 2d or ISO 8601 "
                "such as PT5M)",
            )
            return None
        if seconds <= 0:
            self.error(node, f"{what} must be longer than zero")
            return None
        span = timedelta(seconds=seconds)
        if span > _MAX_DURATION:
            self.error(node, f"{what} must be at most 366 days")
            return None
        return span, written

    def timestamp(self, node: Node, what: str) -> datetime | None:
        """An ISO 8601 date or time (UTC when it names no zone; a date means its midnight)."""
        raw = self.text(node, what)
        if raw is None:
            return None
        try:
            value = datetime.fromisoformat(raw.strip())
        except ValueError:
            self.error(node, f"{what}: {raw!r} is not an ISO 8601 time (2027-01-01T00:00:00Z)")
            return None
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def node_text(node: Node) -> str:
    """The node's text as written, or its kind for lists and mappings."""
    return str(node.value) if isinstance(node, ScalarNode) else _kind(node)


def _kind(node: Node) -> str:
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    if node.tag == _NULL:
        return "nothing"
    return repr(node.value)


def _seconds(text: str) -> float | None:
    if _SHORT_DURATION.fullmatch(text):
        return sum(float(n) * _DURATION_UNITS[u] for n, u in _SHORT_PART.findall(text))
    iso = _ISO_DURATION.fullmatch(text.upper())
    if iso and text.upper() not in ("P", "PT") and not text.upper().endswith("T"):
        parts = {k: float(v) for k, v in iso.groupdict().items() if v}
        return (
            parts.get("w", 0) * 604800
            + parts.get("d", 0) * 86400
            + parts.get("h", 0) * 3600
            + parts.get("m", 0) * 60
            + parts.get("s", 0)
        )
    return None


def _raw_column(raw: str, style: str | None, offset: int) -> int | None:
    """The column within ``raw`` (a one-line scalar as written) of decoded character ``offset``."""
    if style is None:
        return offset if offset <= len(raw) else None
    i, decoded = 1, 0  # skip the opening quote
    while i < len(raw) and decoded < offset:
        if style == "'" and raw.startswith("''", i):
            i += 2
        elif style == '"' and raw[i] == "\\" and i + 1 < len(raw):
            i += {"x": 4, "u": 6, "U": 10}.get(raw[i + 1], 2)
        else:
            i += 1
        decoded += 1
    return i if decoded == offset else None
