"""The KQL parser: recursive descent from tokens to the :mod:`~iotsec.workspace.kql.ast` tree.

Grammar (informally; scalar expressions are in :mod:`iotsec.workspace.kql.exprparser`)::

    query     := (let ';')* pipeline ';'?
    let       := 'let' NAME '=' (pipeline | expr)
    pipeline  := source ('|' operator)*
    source    := NAME | '(' pipeline ')' | 'union' ... | 'print' items
               | 'datatable' '(' NAME ':' TYPE, ... ')' '[' values ']'
               | 'range' NAME 'from' expr 'to' expr 'step' expr
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from iotsec.workspace.kql import ast
from iotsec.workspace.kql.errors import KqlError, Span, did_you_mean
from iotsec.workspace.kql.exprparser import COMPARISON_OPERATORS, ExprParser
from iotsec.workspace.kql.tokens import TYPE_NAMES, TokenKind
from iotsec.workspace.tables import KqlType

__all__ = ["COMPARISON_OPERATORS", "JOIN_KINDS", "TABULAR_OPERATORS", "parse"]

JOIN_KINDS = frozenset(
    {"inner", "innerunique", "leftouter", "rightouter", "fullouter", "leftanti", "leftsemi"}
)
_REORDER: dict[str, ast.ReorderOrder] = {
    "asc": "asc",
    "desc": "desc",
    "granny-asc": "granny-asc",
    "granny-desc": "granny-desc",
}
_T = TypeVar("_T")


class _Parser(ExprParser):
    def comma_list(self, item: Callable[[], _T]) -> tuple[_T, ...]:
        items = [item()]
        while self.tok.is_op(","):
            self.advance()
            items.append(item())
        return tuple(items)

    def pattern_text(self) -> str | None:
        """Adjacent name and ``*`` tokens (``Remote*``, ``*Id``), or None if none start here."""
        first = self.tok
        if not (first.kind is TokenKind.IDENT or first.is_op("*")):
            return None
        parts = [self.advance()]
        while (
            self.tok.kind in (TokenKind.IDENT, TokenKind.LONG) or self.tok.is_op("*")
        ) and self.tok.span.start == parts[-1].span.end:
            parts.append(self.advance())
        return "".join(self.text[p.span.start : p.span.end] for p in parts)

    def column_or_pattern(self) -> ast.Name | ast.ColumnPattern:
        start = self.tok.span
        text = self.pattern_text()
        if text is None:
            return self.name("a column name or pattern")
        if "*" in text:
            return ast.ColumnPattern(text, self.span_from(start))
        return ast.Name(text, self.span_from(start))

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

    def pipeline(self) -> ast.Pipeline:
        start = self.tok.span
        source: ast.Source
        operators: list[ast.Operator] = []
        if self.tok.is_op("("):
            self.advance()
            inner = self.pipeline()
            self.expect_op(")")
            source, operators = inner.source, list(inner.operators)
        else:
            source = self.source()
        while self.tok.is_op("|"):
            self.advance()
            operators.append(self.operator())
        return ast.Pipeline(source, tuple(operators), self.span_from(start))

    def source(self) -> ast.Source:
        tok = self.tok
        if tok.is_word("union"):
            return self.union(self.advance().span)
        if tok.is_word("print"):
            self.advance()
            return ast.Print(self.comma_list(self.assignment), self.span_from(tok.span))
        if tok.is_word("datatable") and self.ahead().is_op("("):
            return self.datatable()
        if tok.is_word("range") and self.ahead(2).is_word("from"):
            return self.range()
        name = self.name("a table name")
        return ast.TableRef(name.name, name.span)

    def datatable(self) -> ast.DataTable:
        start = self.advance().span
        self.expect_op("(")
        columns = self.comma_list(self.column_spec)
        self.expect_op(")")
        self.expect_op("[")
        values: list[ast.Expr] = []
        while not self.tok.is_op("]"):
            values.append(self.expr())
            if not self.tok.is_op(","):
                break
            self.advance()  # KQL allows a trailing comma
        self.expect_op("]")
        return ast.DataTable(columns, tuple(values), self.span_from(start))

    def column_spec(self) -> tuple[str, KqlType]:
        name = self.name("a column name")
        self.expect_op(":")
        return name.name, self.type_name()

    def type_name(self) -> KqlType:
        token = self.tok
        if token.kind is not TokenKind.IDENT:
            raise self.error(f"expected a type name, found {self.describe(token)}")
        if token.value not in TYPE_NAMES:
            raise self.error(did_you_mean("type", token.value, TYPE_NAMES))
        self.advance()
        return TYPE_NAMES[token.value]

    def range(self) -> ast.Range:
        start = self.advance().span
        name = self.name("a column name after 'range'")
        self.expect_word("from")
        low = self.expr()
        self.expect_word("to")
        high = self.expr()
        self.expect_word("step")
        step = self.expr()
        return ast.Range(name.name, low, high, step, self.span_from(start))

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
        return ast.ProjectAway(self.comma_list(self.column_or_pattern), self.span_from(start))

    def project_keep(self, start: Span) -> ast.Operator:
        return ast.ProjectKeep(self.comma_list(self.column_or_pattern), self.span_from(start))

    def project_reorder(self, start: Span) -> ast.Operator:
        return ast.ProjectReorder(self.comma_list(self.reorder_key), self.span_from(start))

    def reorder_key(self) -> ast.ReorderKey:
        begin = self.tok.span
        column = self.column_or_pattern()
        order = _REORDER[self.advance().value] if self.tok.is_word(*_REORDER) else None
        return ast.ReorderKey(column, order, self.span_from(begin))

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
        return ast.Distinct(self.comma_list(self.expr), self.span_from(start))

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
        kind: str = "bag"
        index: str | None = None
        while (option := self.option("kind", "bagexpansion", "with_itemindex")) is not None:
            if option == "with_itemindex":
                index = self.name("an index column name").name
            else:
                kind = self.expect_word("bag", "array").value
        items = self.comma_list(self.expand_item)
        limit: ast.Expr | None = None
        if self.tok.is_word("limit"):
            self.advance()
            limit = self.expr()
        return ast.MvExpand(
            items, "array" if kind == "array" else "bag", index, limit, self.span_from(start)
        )

    def expand_item(self) -> ast.ExpandItem:
        begin = self.tok.span
        item = self.assignment()
        to_type: KqlType | None = None
        if self.tok.is_word("to"):
            self.advance()
            self.expect_word("typeof")
            self.expect_op("(")
            to_type = self.type_name()
            self.expect_op(")")
        return ast.ExpandItem(item.name, item.expr, to_type, self.span_from(begin))

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

    def union(self, start: Span) -> ast.Union:
        kind = "outer"
        withsource: str | None = None
        while (option := self.option("kind", "withsource")) is not None:
            if option == "kind":
                kind = self.expect_word("inner", "outer").value
            else:
                withsource = self.name("a column name after 'withsource='").name
        sources = self.comma_list(self.union_source)
        return ast.Union(kind, sources, withsource, self.span_from(start))

    def union_source(self) -> ast.Pipeline:
        start = self.tok.span
        if self.tok.is_op("("):
            self.advance()
            inner = self.pipeline()
            self.expect_op(")")
            return inner
        if self.tok.is_word("datatable") and self.ahead().is_op("("):
            return ast.Pipeline(self.datatable(), (), self.span_from(start))
        text = self.pattern_text()
        if text is None:
            name = self.name("a table name")
            return ast.Pipeline(ast.TableRef(name.name, name.span), (), name.span)
        span = self.span_from(start)
        return ast.Pipeline(ast.TableRef(text, span), (), span)

    def union_operator(self, start: Span) -> ast.Operator:
        return self.union(start)

    def join(self, start: Span) -> ast.Operator:
        kind = "innerunique"
        if self.option("kind") is not None:
            token = self.tok
            kind = self.name("a join kind").name
            if kind not in JOIN_KINDS:
                raise self.error(did_you_mean("join kind", kind, sorted(JOIN_KINDS)), token)
        right = self.union_source()
        self.expect_word("on")
        keys = self.comma_list(self.join_key)
        return ast.Join(kind, right, keys, self.span_from(start))

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


_OPERATOR_PARSERS: dict[str, Callable[[_Parser, Span], ast.Operator]] = {
    "where": _Parser.where,
    "filter": _Parser.where,
    "project": _Parser.project,
    "project-away": _Parser.project_away,
    "project-keep": _Parser.project_keep,
    "project-rename": _Parser.project_rename,
    "project-reorder": _Parser.project_reorder,
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
