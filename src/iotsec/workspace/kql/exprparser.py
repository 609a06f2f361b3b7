"""The scalar half of the KQL parser: token helpers and the expression grammar.

Grammar (informally)::

    expr      := or ; or := and ('or' and)* ; and := cmp ('and' cmp)*
    cmp       := add (CMP_OP add | IN_OP '(' (pipeline | list) ')'
                      | 'between' '(' add '..' add ')')?
    add       := mul (('+'|'-') mul)* ; mul := unary (('*'|'/'|'%') unary)*
    unary     := ('-'|'+') unary | postfix ; postfix := primary ('.' NAME | '[' expr ']')*
    primary   := literal | TYPE '(' 'null' ')' | NAME | NAME '(' args ')' | '(' expr ')'

The tabular half (:mod:`iotsec.workspace.kql.parser`) extends :class:`ExprParser`; an ``in``
list that holds a tabular expression calls back into it through :meth:`ExprParser.pipeline`.
"""

from __future__ import annotations

from iotsec.workspace.kql import ast
from iotsec.workspace.kql.errors import KqlError, Span
from iotsec.workspace.kql.lexer import tokenize
from iotsec.workspace.kql.tokens import TYPE_NAMES, Token, TokenKind

__all__ = ["COMPARISON_OPERATORS", "ExprParser"]

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
# datetime(null) and dynamic(null) are raw literals of the lexer; these are the other typed nulls.
_TYPED_NULLS = frozenset(TYPE_NAMES) - {"datetime", "dynamic", "date"}


class ExprParser:
    """Token cursor and scalar expressions; subclasses supply :meth:`pipeline`."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.pos = 0

    # --- token helpers ------------------------------------------------------------------------

    @property
    def tok(self) -> Token:
        return self.tokens[self.pos]

    def ahead(self, n: int = 1) -> Token:
        return self.tokens[max(0, min(self.pos + n, len(self.tokens) - 1))]

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

    def option(self, *names: str) -> str | None:
        """``name=`` at the cursor (one of ``names``): consume it and return the name."""
        if self.tok.is_word(*names) and self.ahead().is_op("="):
            name = self.tok.value
            self.pos += 2
            return name
        return None

    def looks_tabular(self) -> bool:
        """Whether a tabular expression starts here (possibly inside parentheses)."""
        i = 0
        while self.ahead(i).is_op("("):
            i += 1
        tok, nxt = self.ahead(i), self.ahead(i + 1)
        if tok.is_word("union", "print"):
            return True
        if tok.is_word("datatable") and nxt.is_op("("):
            return True
        if (
            tok.is_word("range")
            and nxt.kind is TokenKind.IDENT
            and self.ahead(i + 2).is_word("from")
        ):
            return True
        return tok.kind is TokenKind.IDENT and nxt.is_op("|")

    def pipeline(self) -> ast.Pipeline:  # pragma: no cover - the tabular parser overrides it
        raise NotImplementedError

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
            items = [self.in_item()]
            while self.tok.is_op(","):
                self.advance()
                items.append(self.in_item())
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

    def in_item(self) -> ast.Expr:
        if self.looks_tabular():
            start = self.tok.span
            return ast.Subquery(self.pipeline(), self.span_from(start))
        return self.expr()

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
            if (
                isinstance(operand, ast.Literal)
                and operand.kind in ("long", "real", "timespan")
                and operand.value is not None
            ):
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
            elif self.tok.is_op("[") and (
                not isinstance(expr, ast.Literal) or expr.kind == "dynamic"
            ):
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
                if tok.value in _TYPED_NULLS and self.ahead(2).is_word("null"):
                    return self.typed_null()
                return self.call()
            self.advance()
            return ast.Name(tok.value, tok.span)
        if tok.is_op("[") and self.ahead().kind is TokenKind.STRING:
            return self.name()
        raise self.error(f"expected an expression, found {self.describe(tok)}")

    def typed_null(self) -> ast.Expr:
        start = self.advance()
        self.advance()  # '(' and 'null' were checked by the caller
        self.advance()
        end = self.expect_op(")")
        kind = TYPE_NAMES[start.value]
        assert kind not in ("datetime", "dynamic")  # raw literals of the lexer
        return ast.Literal(kind, None, start.span.to(end.span))

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
