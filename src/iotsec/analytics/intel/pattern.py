"""STIX 2.1 patterns: a real tokenizer and parser, then the part of the tree the index can match.

The whole patterning grammar is parsed (observation expressions joined by AND, OR and
FOLLOWEDBY, with WITHIN, REPEATS and START/STOP qualifiers; comparison expressions with every
operator and literal), so a malformed pattern is told apart from one we merely cannot match. Only
single-value tests become indicators:

- ``ipv4-addr:value`` / ``ipv6-addr:value`` with ``=`` (an address or a CIDR), ``ISSUBSET``
  (a CIDR) or ``IN (...)``;
- ``domain-name:value`` and ``url:value`` with ``=`` or ``IN``;
- ``file:hashes.MD5`` / ``'SHA-1'`` / ``'SHA-256'`` / ``'SHA-512'`` with ``=`` or ``IN``.

These may be joined by OR, in one observation or across observations. AND inside one observation
is kept when every part tests the same object type for the same kind of value (the hashes of one
file: each identifies it; an address and a CIDR around it: the address). Anything else - other
objects or operators, NOT, AND across types, AND of observations, FOLLOWEDBY, qualifiers - is
left out with a reason; the alternatives of an OR that are matchable are still kept.

>>> compiled = compile_pattern("[ipv4-addr:value = '198.51.100.1' OR domain-name:value = 'x.test']")
>>> compiled.values
(('ip', '198.51.100.1'), ('domain', 'x.test'))
>>> compile_pattern("[file:name = 'a.exe']").skipped
('file:name cannot be matched (only IP, domain, URL and file hash values)',)
>>> compile_pattern("[ipv4-addr:value = '1.2.3.4'").error
"column 29: expected ']', found end of pattern"
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import datetime
from itertools import pairwise
from typing import Literal, NoReturn, cast

from iotsec.analytics.indicators import IndicatorKind
from iotsec.analytics.intel.indicator import (
    HASH_LENGTHS,
    normalize_domain,
    normalize_hash,
    normalize_ip,
    normalize_url,
)

__all__ = ["CompiledPattern", "compile_pattern"]

_KEYWORDS = frozenset(
    {
        *("AND", "OR", "NOT", "FOLLOWEDBY", "IN", "EXISTS"),
        *("LIKE", "MATCHES", "ISSUPERSET", "ISSUBSET"),
        *("START", "STOP", "WITHIN", "SECONDS", "REPEATS", "TIMES"),
    }
)
_OPERATORS = ("<=", ">=", "!=", "=", "<", ">")
_SPACE = frozenset(" \t\r\n")
_MAX_DEPTH = 64
_MAX_ALTERNATIVES = 1024
_HASH_NAMES = {name.replace("-", ""): name for name in HASH_LENGTHS}


@dataclass(frozen=True, slots=True)
class CompiledPattern:
    """What a pattern yields for the index."""

    #: (kind, normalized value) pairs, each matchable on its own, in pattern order, no repeats.
    values: tuple[tuple[IndicatorKind, str], ...] = ()
    #: Why each alternative that cannot be matched was left out.
    skipped: tuple[str, ...] = ()
    #: Set when the pattern is malformed ("column N: ..."); then nothing else is.
    error: str | None = None


def compile_pattern(text: str) -> CompiledPattern:
    """Parse a STIX pattern and keep what the index can match (never raises)."""
    try:
        tree = _Parser(_tokenize(text)).pattern()
        alternatives = _observation_alternatives(tree)
    except _Malformed as exc:
        return CompiledPattern(error=str(exc))
    values: dict[tuple[IndicatorKind, str], None] = {}
    skipped: dict[str, None] = {}
    for alternative in alternatives:
        if isinstance(alternative, str):
            skipped[alternative] = None
        else:
            values.update(dict.fromkeys((kind, value) for kind, _, value in alternative))
    if values:  # an alternative that can never match costs nothing when others can
        skipped = {reason: None for reason in skipped if not isinstance(reason, _Never)}
    return CompiledPattern(tuple(values), tuple(str(reason) for reason in skipped))


class _Malformed(Exception):
    """A pattern that breaks the grammar, or a value that its object cannot hold."""


class _Never(str):
    """The reason an alternative is contradictory (it can never match anything)."""

    __slots__ = ()


# --- tokens ----------------------------------------------------------------------------------


TokenKind = Literal[
    "[", "]", "(", ")", ",", "op", "kw", "str", "num", "bool", "ts", "hex", "bin", "path", "end"
]
_PREFIXED: dict[str, TokenKind] = {"t": "ts", "h": "hex", "b": "bin"}


@dataclass(frozen=True, slots=True)
class _Token:
    kind: TokenKind
    text: str
    column: int
    #: An object path's parts: (object type, property, then names or list indexes).
    path: tuple[str, ...] = ()


def _fail(column: int, message: str) -> NoReturn:
    raise _Malformed(f"column {column}: {message}")


def _read_quoted(text: str, start: int) -> tuple[str, int]:
    """The string literal opening at ``text[start] == "'"`` (``\\'`` and ``\\\\`` escapes),
    and the index after its closing quote."""
    out: list[str] = []
    i = start + 1
    while i < len(text):
        char = text[i]
        if char == "\\":
            if i + 1 < len(text) and text[i + 1] in "'\\":
                out.append(text[i + 1])
                i += 2
                continue
            _fail(i + 1, "only \\' and \\\\ may be escaped in a string")
        if char == "'":
            return "".join(out), i + 1
        out.append(char)
        i += 1
    _fail(start + 1, "unterminated string")


def _is_word(char: str) -> bool:
    return char.isascii() and (char.isalnum() or char in "_-")


def _tokenize(text: str) -> list[_Token]:  # noqa: PLR0912, PLR0915 - one branch per token
    tokens: list[_Token] = []
    i = 0
    while i < len(text):
        char = text[i]
        column = i + 1
        if char in _SPACE:
            i += 1
        elif char in "[](),":
            tokens.append(_Token(cast("TokenKind", char), char, column))
            i += 1
        elif char == "'":
            value, i = _read_quoted(text, i)
            tokens.append(_Token("str", value, column))
        elif char in "<>=!":
            op = next((o for o in _OPERATORS if text.startswith(o, i)), None)
            if op is None:
                _fail(column, f"unexpected {char!r}")
            tokens.append(_Token("op", op, column))
            i += len(op)
        elif char.isascii() and (char.isdigit() or char in "+-"):
            j = i + 1
            while j < len(text) and text[j].isascii() and (text[j].isdigit() or text[j] == "."):
                j += 1
            number = text[i:j]
            try:
                float(number)
            except ValueError:
                _fail(column, f"bad number {number!r}")
            tokens.append(_Token("num", number, column))
            i = j
        elif _is_word(char):
            j = i
            while j < len(text) and _is_word(text[j]):
                j += 1
            word = text[i:j]
            if word in ("t", "h", "b") and text.startswith("'", j):
                value, i = _read_quoted(text, j)
                tokens.append(_Token(_PREFIXED[word], value, column))
            elif text.startswith(":", j):
                path, i = _read_path(text, word, j + 1, column)
                tokens.append(_Token("path", ":".join(path[:2]), column, path))
            elif word in _KEYWORDS:
                tokens.append(_Token("kw", word, column))
                i = j
            elif word in ("true", "false"):
                tokens.append(_Token("bool", word, column))
                i = j
            else:
                _fail(column, f"unexpected word {word!r} (object paths look like type:property)")
        else:
            _fail(column, f"unexpected {char!r}")
    tokens.append(_Token("end", "", len(text) + 1))
    return tokens


def _read_path(text: str, object_type: str, i: int, column: int) -> tuple[tuple[str, ...], int]:
    """``type:property(.name | .'quoted' | [n] | [*])*`` from after the colon."""
    parts = [object_type]

    def name(at: int) -> int:
        if text.startswith("'", at):
            value, end = _read_quoted(text, at)
        else:
            end = at
            while end < len(text) and _is_word(text[end]):
                end += 1
            value = text[at:end]
        if not value:
            _fail(at + 1, "expected a property name")
        parts.append(value)
        return end

    i = name(i)
    while i < len(text):
        if text[i] == ".":
            i = name(i + 1)
        elif text[i] == "[":
            close = text.find("]", i)
            index = text[i + 1 : close] if close > 0 else ""
            if index != "*" and not (index.isascii() and index.isdigit()):
                break  # not a list index: leave the bracket to the parser
            parts.append(f"[{index}]")
            i = close + 1
        else:
            break
    if len(parts) < 2:
        _fail(column, "expected type:property")
    return tuple(parts), i


# --- the tree ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Comparison:
    path: tuple[str, ...]
    operator: str
    negated: bool
    #: The right-hand literal(s): a set literal is a tuple of tokens.
    literals: tuple[_Token, ...]
    column: int


@dataclass(frozen=True, slots=True)
class _Boolean:
    operator: Literal["AND", "OR"]
    operands: tuple[_Comparison | _Boolean, ...]


@dataclass(frozen=True, slots=True)
class _Observation:
    expression: _Comparison | _Boolean
    #: Qualifiers as written (WITHIN 60 SECONDS, ...): none can be matched on one value.
    qualifiers: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class _Observations:
    operator: Literal["AND", "OR", "FOLLOWEDBY"]
    operands: tuple[_Observation | _Observations, ...]
    qualifiers: tuple[str, ...] = ()


_ObservationTree = _Observation | _Observations


class _Parser:
    """Recursive descent over the tokens; precedence (loosest first) FOLLOWEDBY, OR, AND."""

    def __init__(self, tokens: list[_Token]) -> None:
        self.tokens = tokens
        self.at = 0
        self.depth = 0

    @property
    def peek(self) -> _Token:
        return self.tokens[self.at]

    def take(self) -> _Token:
        token = self.tokens[self.at]
        self.at += 1
        return token

    def is_kw(self, word: str) -> bool:
        return self.peek.kind == "kw" and self.peek.text == word

    def unexpected(self, what: str) -> NoReturn:
        token = self.peek
        found = "end of pattern" if token.kind == "end" else repr(token.text)
        _fail(token.column, f"expected {what}, found {found}")

    def expect(self, kind: TokenKind, what: str) -> _Token:
        if self.peek.kind != kind:
            self.unexpected(what)
        return self.take()

    def expect_kw(self, word: str) -> None:
        if not self.is_kw(word):
            self.unexpected(word)
        self.take()

    def nest(self) -> None:
        self.depth += 1
        if self.depth > _MAX_DEPTH:
            _fail(self.peek.column, f"nested more than {_MAX_DEPTH} deep")

    def pattern(self) -> _ObservationTree:
        tree = self.observations("FOLLOWEDBY")
        self.expect("end", "end of pattern")
        return tree

    def observations(self, operator: Literal["AND", "OR", "FOLLOWEDBY"]) -> _ObservationTree:
        tighter: dict[str, Literal["AND", "OR", "FOLLOWEDBY"]] = {"FOLLOWEDBY": "OR", "OR": "AND"}
        operand = self.observations(tighter[operator]) if operator in tighter else self.qualified()
        operands = [operand]
        while self.is_kw(operator):
            self.take()
            operands.append(
                self.observations(tighter[operator]) if operator in tighter else self.qualified()
            )
        return operands[0] if len(operands) == 1 else _Observations(operator, tuple(operands))

    def qualified(self) -> _ObservationTree:
        self.nest()
        token = self.peek
        tree: _ObservationTree
        if token.kind == "[":
            self.take()
            tree = _Observation(self.comparisons())
            self.expect("]", "']'")
        elif token.kind == "(":
            self.take()
            tree = self.observations("FOLLOWEDBY")
            self.expect(")", "')'")
        else:
            self.unexpected("'[' or '('")
        qualifiers = []
        while self.peek.kind == "kw" and self.peek.text in ("WITHIN", "REPEATS", "START"):
            qualifiers.append(self.qualifier())
        self.depth -= 1
        if not qualifiers:
            return tree
        if isinstance(tree, _Observation):
            return _Observation(tree.expression, tree.qualifiers + tuple(qualifiers))
        return _Observations(tree.operator, tree.operands, tree.qualifiers + tuple(qualifiers))

    def qualifier(self) -> str:
        word = self.take().text
        if word == "WITHIN":
            amount = self.expect("num", "a number of seconds")
            self.expect_kw("SECONDS")
            return f"WITHIN {amount.text} SECONDS"
        if word == "REPEATS":
            count = self.expect("num", "a repeat count")
            if not count.text.isdigit():
                _fail(count.column, "REPEATS takes a positive integer")
            self.expect_kw("TIMES")
            return f"REPEATS {count.text} TIMES"
        start = self.expect("ts", "a t'...' timestamp")
        _timestamp(start)
        self.expect_kw("STOP")
        _timestamp(self.expect("ts", "a t'...' timestamp"))
        return "START ... STOP ..."

    def comparisons(self) -> _Comparison | _Boolean:
        operands = [self.conjunction()]
        while self.is_kw("OR"):
            self.take()
            operands.append(self.conjunction())
        return operands[0] if len(operands) == 1 else _Boolean("OR", tuple(operands))

    def conjunction(self) -> _Comparison | _Boolean:
        operands = [self.comparison()]
        while self.is_kw("AND"):
            self.take()
            operands.append(self.comparison())
        return operands[0] if len(operands) == 1 else _Boolean("AND", tuple(operands))

    def comparison(self) -> _Comparison | _Boolean:
        token = self.peek
        if token.kind == "(":
            self.nest()
            self.take()
            inner = self.comparisons()
            self.expect(")", "')'")
            self.depth -= 1
            return inner
        if self.is_kw("EXISTS"):
            self.take()
            path = self.expect("path", "an object path")
            return _Comparison(path.path, "EXISTS", False, (), token.column)
        path = self.expect("path", "an object path or '('")
        negated = self.is_kw("NOT")
        if negated:
            self.take()
        operator = self.peek
        if operator.kind == "op":
            self.take()
            literal = self.take()
            if literal.kind not in ("str", "num", "bool", "ts", "hex", "bin"):
                _fail(literal.column, f"expected a literal after {operator.text}")
            return _Comparison(path.path, operator.text, negated, (literal,), token.column)
        if operator.kind == "kw" and operator.text == "IN":
            self.take()
            self.expect("(", "'(' opening a set")
            literals = [self.take()]
            while self.peek.kind == ",":
                self.take()
                literals.append(self.take())
            for literal in literals:
                if literal.kind not in ("str", "num", "bool", "ts", "hex", "bin"):
                    _fail(literal.column, "expected a literal in the set")
            self.expect(")", "')' closing the set")
            return _Comparison(path.path, "IN", negated, tuple(literals), token.column)
        if operator.kind == "kw" and operator.text in ("LIKE", "MATCHES", "ISSUBSET", "ISSUPERSET"):
            self.take()
            literal = self.expect("str", f"a string after {operator.text}")
            return _Comparison(path.path, operator.text, negated, (literal,), token.column)
        self.unexpected("a comparison operator")


def _timestamp(token: _Token) -> datetime:
    try:
        return datetime.fromisoformat(token.text)
    except ValueError:
        _fail(token.column, f"bad timestamp {token.text!r}")


# --- from the tree to matchable values ----------------------------------------------------------

# A term is one (kind, group, normalized value); an alternative is a conjunction of terms, or the
# reason it cannot be matched.
_Term = tuple[IndicatorKind, str, str]
_Alternative = tuple[_Term, ...] | str


def _observation_alternatives(tree: _ObservationTree) -> list[_Alternative]:
    if isinstance(tree, _Observation):
        if tree.qualifiers:
            return [f"qualifier {tree.qualifiers[0]} cannot be matched on one value"]
        return [_reduce(conjunction) for conjunction in _dnf(tree.expression)]
    if tree.qualifiers:
        return [f"qualifier {tree.qualifiers[0]} cannot be matched on one value"]
    if tree.operator != "OR":
        return [f"observations joined by {tree.operator} need more than one observation"]
    out: list[_Alternative] = []
    for operand in tree.operands:
        out.extend(_observation_alternatives(operand))
    return out


def _dnf(expression: _Comparison | _Boolean) -> list[list[_Term | str]]:
    """The expression as OR of ANDs; a comparison we cannot match becomes its reason."""
    if isinstance(expression, _Comparison):
        return [[term] for term in _terms(expression)]
    parts = [_dnf(operand) for operand in expression.operands]
    if expression.operator == "OR":
        return [conjunction for part in parts for conjunction in part]
    product: list[list[_Term | str]] = [[]]
    for part in parts:
        product = [left + right for left in product for right in part]
        if len(product) > _MAX_ALTERNATIVES:
            return [[f"more than {_MAX_ALTERNATIVES} alternatives"]]
    return product


def _terms(comparison: _Comparison) -> list[_Term | str]:
    """One term per value a comparison accepts (``IN`` accepts several), or why none."""
    path = comparison.path
    where = ":".join(path[:2]) + "".join(p if p.startswith("[") else "." + p for p in path[2:])
    object_type = path[0]
    kind: IndicatorKind
    group = object_type
    if object_type in ("ipv4-addr", "ipv6-addr") and path[1:] == ("value",):
        kind = "ip"
    elif object_type == "domain-name" and path[1:] == ("value",):
        kind = "domain"
    elif object_type == "url" and path[1:] == ("value",):
        kind = "url"
    elif object_type == "file" and len(path) == 3 and path[1] == "hashes":
        algorithm = _HASH_NAMES.get(path[2].upper().replace("-", ""))
        if algorithm is None:
            return [f"{where}: only MD5, SHA-1, SHA-256 and SHA-512 hashes can be matched"]
        kind, group = "hash", f"file:{algorithm}"
    else:
        return [f"{where} cannot be matched (only IP, domain, URL and file hash values)"]
    operator = comparison.operator
    if comparison.negated:
        return [f"{where} NOT {operator} cannot be matched (negation)"]
    if operator not in ("=", "IN") and not (kind == "ip" and operator == "ISSUBSET"):
        return [f"{where} {operator} cannot be matched (only =, IN and, for addresses, ISSUBSET)"]
    terms: list[_Term | str] = []
    for literal in comparison.literals:
        if literal.kind != "str":
            _fail(literal.column, f"{where} takes a string, not {literal.text!r}")
        terms.append((kind, group, _normalize(kind, group, literal)))
    return terms


def _normalize(kind: IndicatorKind, group: str, literal: _Token) -> str:
    try:
        if kind == "ip":
            return normalize_ip(literal.text, version=4 if group == "ipv4-addr" else 6)
        if kind == "domain":
            return normalize_domain(literal.text)
        if kind == "url":
            return normalize_url(literal.text)[0]
        return normalize_hash(literal.text, algorithm=group.partition(":")[2])
    except ValueError as exc:
        _fail(literal.column, str(exc))


def _reduce(conjunction: list[_Term | str]) -> _Alternative:  # noqa: PLR0911 - per kind
    """The values one conjunction may be matched by, or why it cannot be."""
    reasons = [part for part in conjunction if isinstance(part, str)]
    if reasons:
        return reasons[0]
    terms = [part for part in conjunction if not isinstance(part, str)]
    if len(terms) == 1:
        return (terms[0],)
    kinds = {(kind, group.partition(":")[0]) for kind, group, _ in terms}
    if len(kinds) > 1:
        tested = " and ".join(sorted(group for _, group in kinds))
        return f"AND across {tested} cannot be matched on one value"
    kind = terms[0][0]
    if kind == "hash":
        # The hashes of one file: each one identifies it; two values of one algorithm cannot.
        by_algorithm: dict[str, set[str]] = {}
        for _, group, value in terms:
            by_algorithm.setdefault(group, set()).add(value)
        if any(len(values) > 1 for values in by_algorithm.values()):
            return _Never("AND of two different hashes of one algorithm can never match")
        return tuple(dict.fromkeys(terms))
    if kind == "ip":
        networks = sorted(
            (ipaddress.ip_network(value) for _, _, value in terms),
            key=lambda n: n.prefixlen,
        )
        for outer, inner in pairwise(networks):
            if inner.version != outer.version or not inner.subnet_of(outer):  # type: ignore[arg-type]  # versions checked first
                return _Never(f"AND of {outer} and {inner} can never match")
        innermost = networks[-1]
        value = (
            str(innermost.network_address)
            if innermost.prefixlen == innermost.max_prefixlen
            else str(innermost)
        )
        return ((kind, terms[-1][1], value),)
    if len({value for _, _, value in terms}) > 1:
        return _Never(f"AND of different {kind} values can never match")
    return (terms[0],)
