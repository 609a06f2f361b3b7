"""The KQL parser: recursive descent from tokens to the :mod:`~iotsec.workspace.kql.ast` tree.

Grammar (informally)::

    query     := (let ';')* pipeline ';'?
    let       := 'let' NAME '=' (pipeline | expr)
    pipeline  := source ('|' operator)*
    source    := NAME | 'union' ... | '(' pipeline ')'
    expr      := or ; or := and ('or' and)* ; and := cmp ('and' cmp)*
    cmp       := add (CMP_OP add | 'in' '(' list ')' | 'between' '(' add '..' add ')')?
    add       := mul (('+'|'-') mul)* ; mul := unary (('*'|'/'|'%') unary)*
    unary     := ('-'|'+') unary | postfix ; postfix := primary ('.' NAME | '[' expr ']')*
"""

from __future__ import annotations

from collections.abc import Callable

from iotsec.workspace.kql import ast
from iotsec.workspace.kql.errors import KqlError, Span, did_you_mean
from iotsec.workspace.kql.lexer import tokenize
from iotsec.workspace.kql.tokens import Token, TokenKind

__all__ = ["COMPARISON_OPERATORS", "TABULAR_OPERATORS", "parse"]

#: Binary operators at comparison precedence (besides in/between).
COMPARISON_OPERATORS = frozenset(
    {
        "==",
        "!=",
        "<>",
        "<",
        "<=",
        ">",
        ">=",
        "=~",
        "!~",
        "contains",
        "!contains",
        "contains_cs",
        "!contains_cs",
        "has",
        "!has",
        "has_cs",
        "!has_cs",
        "startswith",
        "!startswith",
        "startswith_cs",
        "!startswith_cs",
        "endswith",
        "!endswith",
        "endswith_cs",
        "!endswith_cs",
        "matches regex",
    }
)
_IN_OPERATORS = frozenset({"in", "!in", "in~", "!in~"})
JOIN_KINDS = frozenset(
    {"inner", "innerunique", "leftouter", "rightouter", "fullouter", "leftanti", "leftsemi"}
)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.pos = 0

    # --- token helpers ------------------------------------------------------------------------

    @property
    def tok(self) -> Token:
        return self.tokens[self.pos]

    def ahead(self, n: int = 1) -> Token:
        return self.tokens[min(self.pos + n, len(self.tokens) - 1)]

    def advance(self) -> Token:
        token = self.tokens[self.pos]
        if token.kind is not TokenKind.EOF:
            self.pos += 1
        return token

    def error(self, message: str, token: Token | None = None) -> KqlError:
        return KqlError(message, self.text, (token or self.tok).span)

    def describe(self, token: Token) -> str:
        if token.kind is TokenKind.EOF:
            return "end of query"
        return f"'{self.text[token.span.start : token.span.end]}'"

    def expect_op(self, value: str) -> Token:
        if not self.tok.is_op(value):
            raise self.error(f"expected '{value}', found {self.describe(self.tok)}")
        return self.advance()

    def expect_word(self, *words: str) -> Token:
        if not self.tok.is_word(*words):
            wanted = " or ".join(f"'{w}'" for w in words)
            raise self.error(f"expected {wanted}, found {self.describe(self.tok)}")
        return self.advance()

    def name(self, what: str = "a name") -> ast.Name:
        token = self.tok
        if token.kind is TokenKind.IDENT:
            self.advance()
            return ast.Name(token.value, token.span)
        if token.is_op("[") and self.ahead().kind is TokenKind.STRING and self.ahead(2).is_op("]"):
            self.pos += 3
            return ast.Name(self.ahead(-2).value, token.span.to(self.ahead(-1).span))
        raise self.error(f"expected {what}, found {self.describe(token)}")

    def span_from(self, start: Span) -> Span:
        return Span(start.start, self.tokens[max(self.pos - 1, 0)].span.end)

    def comma_list(self, item: Callable[[], ast.Assignment]) -> tuple[ast.Assignment, ...]:
        items = [item()]
        while self.tok.is_op(","):
            self.advance()
            items.append(item())
        return tuple(items)

    # --- statements ---------------------------------------------------------------------------

    def query(self) -> ast.Query:
        start = self.tok.span
        lets: list[ast.Let] = []
        while self.tok.is_word("let"):
            lets.append(self.let())
            self.expect_op(";")
        body = self.pipeline()
        while self.tok.is_op(";"):
            self.advance()
        if self.tok.kind is not TokenKind.EOF:
            raise self.error(f"expected '|' or end of query, found {self.describe(self.tok)}")
        return ast.Query(tuple(lets), body, self.span_from(start))

    def let(self) -> ast.Let:
        start = self.advance().span
        name = self.name("a name after 'let'")
        self.expect_op("=")
        value: ast.Expr | ast.Pipeline = self.pipeline() if self.looks_tabular() else self.expr()
        return ast.Let(name.name, value, self.span_from(start))

    def looks_tabular(self) -> bool:
        tok = self.tok
        if tok.is_word("union"):
            return True
        if tok.is_op("("):
            return self.ahead().kind is TokenKind.IDENT and self.ahead(2).is_op("|")
        return tok.kind is TokenKind.IDENT and self.ahead().is_op("|")

    def pipeline(self) -> ast.Pipeline:
        start = self.tok.span
        source: ast.Source
        operators: list[ast.Operator] = []
        if self.tok.is_op("("):
            self.advance()
            inner = self.pipeline()
            self.expect_op(")")
            source, operators = inner.source, list(inner.operators)
        elif self.tok.is_word("union"):
            source = self.union(self.advance().span)
        else:
            name = self.name("a table name")
            source = ast.TableRef(name.name, name.span)
        while self.tok.is_op("|"):
            self.advance()
            operators.append(self.operator())
        return ast.Pipeline(source, tuple(operators), self.span_from(start))

    # --- tabular operators --------------------------------------------------------------------

    def operator(self) -> ast.Operator:
        token = self.tok
        if token.kind is not TokenKind.IDENT:
            raise self.error(f"expected a tabular operator after '|', found {self.describe(token)}")
        handler = _OPERATOR_PARSERS.get(token.value)
        if handler is None:
            raise self.error(did_you_mean("tabular operator", token.value, _OPERATOR_PARSERS))
        self.advance()
        return handler(self, token.span)

    def where(self, start: Span) -> ast.Operator:
        return ast.Where(self.expr(), self.span_from(start))

    def project(self, start: Span) -> ast.Operator:
        return ast.Project(self.comma_list(self.assignment), self.span_from(start))

    def extend(self, start: Span) -> ast.Operator:
        return ast.Extend(self.comma_list(self.assignment), self.span_from(start))

    def project_away(self, start: Span) -> ast.Operator:
        names = [self.name("a column name")]
        while self.tok.is_op(","):
            self.advance()
            names.append(self.name("a column name"))
        return ast.ProjectAway(tuple(names), self.span_from(start))

    def project_rename(self, start: Span) -> ast.Operator:
        pairs: list[tuple[ast.Name, ast.Name]] = []
        while True:
            new = self.name("a new column name")
            self.expect_op("=")
            pairs.append((new, self.name("a column name")))
            if not self.tok.is_op(","):
                break
            self.advance()
        return ast.ProjectRename(tuple(pairs), self.span_from(start))

    def summarize(self, start: Span) -> ast.Operator:
        aggregates: tuple[ast.Assignment, ...] = ()
        if not self.tok.is_word("by"):
            aggregates = self.comma_list(self.assignment)
        by: tuple[ast.Assignment, ...] = ()
        if self.tok.is_word("by"):
            self.advance()
            by = self.comma_list(self.assignment)
        if not aggregates and not by:
            raise self.error("summarize needs an aggregate or a 'by' clause")
        return ast.Summarize(aggregates, by, self.span_from(start))

    def count(self, start: Span) -> ast.Operator:
        return ast.Count(start)

    def distinct(self, start: Span) -> ast.Operator:
        if self.tok.is_op("*"):
            self.advance()
            return ast.Distinct((), self.span_from(start))
        items = [self.expr()]
        while self.tok.is_op(","):
            self.advance()
            items.append(self.expr())
        return ast.Distinct(tuple(items), self.span_from(start))

    def take(self, start: Span) -> ast.Operator:
        return ast.Take(self.expr(), self.span_from(start))

    def top(self, start: Span) -> ast.Operator:
        count = self.expr()
        self.expect_word("by")
        return ast.Top(count, self.sort_keys(), self.span_from(start))

    def sort(self, start: Span) -> ast.Operator:
        self.expect_word("by")
        return ast.Sort(self.sort_keys(), self.span_from(start))

    def sort_keys(self) -> tuple[ast.SortKey, ...]:
        keys: list[ast.SortKey] = []
        while True:
            begin = self.tok.span
            expr = self.expr()
            descending = True
            if self.tok.is_word("asc", "desc"):
                descending = self.advance().value == "desc"
            nulls_first: bool | None = None
            if self.tok.is_word("nulls"):
                self.advance()
                nulls_first = self.expect_word("first", "last").value == "first"
            keys.append(ast.SortKey(expr, descending, nulls_first, self.span_from(begin)))
            if not self.tok.is_op(","):
                return tuple(keys)
            self.advance()

    def mv_expand(self, start: Span) -> ast.Operator:
        return ast.MvExpand(self.comma_list(self.assignment), self.span_from(start))

    def render(self, start: Span) -> ast.Operator:
        kind = self.name("a chart kind").name
        props: list[tuple[str, ast.Expr]] = []
        if self.tok.is_word("with"):
            self.advance()
            self.expect_op("(")
            while not self.tok.is_op(")"):
                prop = self.name("a render property").name
                self.expect_op("=")
                props.append((prop, self.expr()))
                if not self.tok.is_op(","):
                    break
                self.advance()
            self.expect_op(")")
        return ast.Render(kind, tuple(props), self.span_from(start))

    def union_kind(self) -> str:
        if self.tok.is_word("kind") and self.ahead().is_op("="):
            self.pos += 2
            return self.expect_word("inner", "outer").value
        return "outer"

    def union(self, start: Span) -> ast.Union:
        kind = self.union_kind()
        sources = [self.union_source()]
        while self.tok.is_op(","):
            self.advance()
            sources.append(self.union_source())
        return ast.Union(kind, tuple(sources), self.span_from(start))

    def union_source(self) -> ast.Pipeline:
        if self.tok.is_op("("):
            self.advance()
            inner = self.pipeline()
            self.expect_op(")")
            return inner
        name = self.name("a table name")
        return ast.Pipeline(ast.TableRef(name.name, name.span), (), name.span)

    def union_operator(self, start: Span) -> ast.Operator:
        return self.union(start)

    def join(self, start: Span) -> ast.Operator:
        kind = "innerunique"
        if self.tok.is_word("kind") and self.ahead().is_op("="):
            self.pos += 2
            token = self.tok
            kind = self.name("a join kind").name
            if kind not in JOIN_KINDS:
                raise self.error(did_you_mean("join kind", kind, sorted(JOIN_KINDS)), token)
        right = self.union_source()
        self.expect_word("on")
        keys = [self.join_key()]
        while self.tok.is_op(","):
            self.advance()
            keys.append(self.join_key())
        return ast.Join(kind, right, tuple(keys), self.span_from(start))

    def join_key(self) -> ast.JoinKey:
        begin = self.tok.span
        if not self.tok.is_op("$"):
            name = self.name("a join column")
            return ast.JoinKey(name, name, name.span)
        sides: dict[str, ast.Name] = {}
        for position in (0, 1):
            self.expect_op("$")
            side = self.expect_word("left", "right").value
            self.expect_op(".")
            sides[side] = self.name("a column name")
            if position == 0:
                self.expect_op("==")
        if len(sides) != 2:
            raise KqlError(
                "a join condition compares $left with $right", self.text, self.span_from(begin)
            )
        return ast.JoinKey(sides["left"], sides["right"], self.span_from(begin))

    def assignment(self) -> ast.Assignment:
        begin = self.tok.span
        if self.tok.kind is TokenKind.IDENT and self.ahead().is_op("="):
            name = self.advance().value
            self.advance()
            return ast.Assignment(name, self.expr(), self.span_from(begin))
        if (
            self.tok.is_op("[")
            and self.ahead(3).is_op("=")
            and self.ahead().kind is TokenKind.STRING
        ):
            quoted = self.name()
            self.advance()
            return ast.Assignment(quoted.name, self.expr(), self.span_from(begin))
        return ast.Assignment(None, self.expr(), self.span_from(begin))

    # --- scalar expressions -------------------------------------------------------------------

    def expr(self) -> ast.Expr:
        return self.or_expr()

    def or_expr(self) -> ast.Expr:
        left = self.and_expr()
        while self.tok.is_word("or"):
            self.advance()
            right = self.and_expr()
            left = ast.Binary("or", left, right, left.span.to(right.span))
        return left

    def and_expr(self) -> ast.Expr:
        left = self.comparison()
        while self.tok.is_word("and"):
            self.advance()
            right = self.comparison()
            left = ast.Binary("and", left, right, left.span.to(right.span))
        return left

    def comparison(self) -> ast.Expr:
        left = self.additive()
        tok = self.tok
        op = tok.value if tok.kind in (TokenKind.OP, TokenKind.IDENT) else ""
        if op == "matches" and tok.kind is TokenKind.IDENT:
            self.advance()
            self.expect_word("regex")
            op = "matches regex"
        elif op in COMPARISON_OPERATORS:
            self.advance()
        elif op in _IN_OPERATORS:
            self.advance()
            self.expect_op("(")
            items = [self.expr()]
            while self.tok.is_op(","):
                self.advance()
                items.append(self.expr())
            self.expect_op(")")
            return ast.InList(op, left, tuple(items), self.span_from(left.span))
        elif op in ("between", "!between"):
            self.advance()
            self.expect_op("(")
            low = self.additive()
            self.expect_op("..")
            high = self.additive()
            self.expect_op(")")
            return ast.Between(op == "!between", left, low, high, self.span_from(left.span))
        else:
            return left
        right = self.additive()
        return ast.Binary(op, left, right, left.span.to(right.span))

    def additive(self) -> ast.Expr:
        left = self.multiplicative()
        while self.tok.is_op("+", "-"):
            op = self.advance().value
            right = self.multiplicative()
            left = ast.Binary(op, left, right, left.span.to(right.span))
        return left

    def multiplicative(self) -> ast.Expr:
        left = self.unary()
        while self.tok.is_op("*", "/", "%"):
            op = self.advance().value
            right = self.unary()
            left = ast.Binary(op, left, right, left.span.to(right.span))
        return left

    def unary(self) -> ast.Expr:
        if self.tok.is_op("-", "+"):
            token = self.advance()
            operand = self.unary()
            if isinstance(operand, ast.Literal) and operand.kind in ("long", "real", "timespan"):
                value = operand.value
                assert isinstance(value, int | float)  # numeric kinds hold numbers
                signed = -value if token.value == "-" else value
                return ast.Literal(operand.kind, signed, token.span.to(operand.span))
            return ast.Unary(token.value, operand, token.span.to(operand.span))
        return self.postfix()

    def postfix(self) -> ast.Expr:
        expr = self.primary()
        while True:
            if self.tok.is_op(".") and self.ahead().kind is TokenKind.IDENT:
                self.advance()
                name = self.advance()
                expr = ast.Member(expr, name.value, expr.span.to(name.span))
            elif self.tok.is_op("[") and not isinstance(expr, ast.Literal):
                self.advance()
                index = self.expr()
                end = self.expect_op("]")
                expr = ast.Index(expr, index, expr.span.to(end.span))
            else:
                return expr

    def primary(self) -> ast.Expr:  # noqa: PLR0911 - one return per kind of primary
        tok = self.tok
        kind = tok.kind
        if kind is TokenKind.STRING:
            self.advance()
            return ast.Literal("string", tok.value, tok.span)
        if kind in (TokenKind.LONG, TokenKind.REAL, TokenKind.TIMESPAN):
            self.advance()
            assert tok.number is not None  # the lexer decodes every number
            lit_kind: ast.LiteralKind = (
                "long"
                if kind is TokenKind.LONG
                else "real"
                if kind is TokenKind.REAL
                else "timespan"
            )
            return ast.Literal(lit_kind, tok.number, tok.span)
        if kind is TokenKind.DATETIME:
            self.advance()
            return ast.Literal("datetime", tok.value, tok.span)
        if kind is TokenKind.DYNAMIC:
            self.advance()
            return ast.Literal("dynamic", tok.value, tok.span)
        if tok.is_op("("):
            self.advance()
            inner = self.expr()
            self.expect_op(")")
            return inner
        if tok.is_op("*"):
            self.advance()
            return ast.Star(tok.span)
        if kind is TokenKind.IDENT:
            if tok.value in ("true", "false"):
                self.advance()
                return ast.Literal("bool", tok.value == "true", tok.span)
            if self.ahead().is_op("("):
                return self.call()
            self.advance()
            return ast.Name(tok.value, tok.span)
        if tok.is_op("[") and self.ahead().kind is TokenKind.STRING:
            return self.name()
        raise self.error(f"expected an expression, found {self.describe(tok)}")

    def call(self) -> ast.Expr:
        name = self.advance()
        self.expect_op("(")
        args: list[ast.Expr] = []
        if not self.tok.is_op(")"):
            args.append(self.expr())
            while self.tok.is_op(","):
                self.advance()
                args.append(self.expr())
        end = self.expect_op(")")
        return ast.Call(name.value, tuple(args), name.span.to(end.span))


_OPERATOR_PARSERS: dict[str, Callable[[_Parser, Span], ast.Operator]] = {
    "where": _Parser.where,
    "filter": _Parser.where,
    "project": _Parser.project,
    "project-away": _Parser.project_away,
    "project-rename": _Parser.project_rename,
    "extend": _Parser.extend,
    "summarize": _Parser.summarize,
    "count": _Parser.count,
    "distinct": _Parser.distinct,
    "take": _Parser.take,
    "limit": _Parser.take,
    "top": _Parser.top,
    "sort": _Parser.sort,
    "order": _Parser.sort,
    "union": _Parser.union_operator,
    "mv-expand": _Parser.mv_expand,
    "render": _Parser.render,
    "join": _Parser.join,
}

#: The tabular operators the parser accepts after a pipe.
TABULAR_OPERATORS = frozenset(_OPERATOR_PARSERS)


def parse(text: str) -> ast.Query:
    """Parse a KQL query into its syntax tree; raises :class:`KqlError` at the bad span."""
    return _Parser(text).query()
