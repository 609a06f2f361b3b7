"""Lowering of scalar expressions to typed sqlglot expressions, with KQL's semantics.

KQL semantics kept where SQL differs (each is tested in the golden file):

* ``==``/``!=``/``in`` on strings are case-sensitive; ``=~``/``!~``/``in~`` compare lower-cased.
* ``contains``/``startswith``/``endswith``/``has`` ignore case; their ``_cs`` forms do not.
* ``has`` matches a whole term: the term (escaped character by character as ``\\x{..}``) must be
  bounded by the start/end of the text or by a non-alphanumeric character.
* Strings are never null: a null string column reads as ``""`` wherever a string is compared,
  measured or converted, so ``x != "a"`` is true and ``isempty(x)`` is true for a null ``x``.
* Comparisons with null are false: a null comparison filters the row out, and ``not()`` of it is
  true (``not`` coalesces its operand to false first).
* ``long / long`` divides as integers (truncating), as KQL does.
* A dynamic operand compared with a string, number or bool is first converted to that type.
* ``in (dynamic array)`` tests the array's elements; ``in (tabular expression)`` (a subquery or
  a tabular ``let`` name, the only item then) tests the values of its first column.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import UTC, datetime

from sqlglot import exp

from iotsec.workspace.kql import ast
from iotsec.workspace.kql.errors import did_you_mean
from iotsec.workspace.kql.functions import AGGREGATES, FUNCTIONS, check_arity
from iotsec.workspace.kql.semantic import Context, Schema
from iotsec.workspace.kql.types import (
    NUMERIC,
    Typed,
    as_bool,
    as_number,
    as_string,
    call,
    col,
    interval,
    json_items,
    json_pointer,
    string,
    timestamp,
)
from iotsec.workspace.tables import KqlType

__all__ = ["has_pattern", "lower_expr", "parse_datetime"]

_S = exp.Literal.string


def parse_datetime(text: str) -> datetime | None:
    """A ``datetime(...)`` literal's value in UTC; naive times are UTC."""
    value = datetime.fromisoformat(text.strip().replace(" ", "T", 1) if " " in text else text)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def has_pattern(term: str) -> str:
    """An RE2 pattern matching ``term`` as a whole term; every non-alphanumeric is escaped."""
    escaped = "".join(ch if ch.isascii() and ch.isalnum() else f"\\x{{{ord(ch):x}}}" for ch in term)
    return f"(^|[^[:alnum:]]){escaped}($|[^[:alnum:]])"


def lower_expr(ctx: Context, schema: Schema, node: ast.Expr) -> Typed:  # noqa: PLR0911, PLR0912
    """Lower one scalar expression against ``schema``."""
    match node:
        case ast.Literal():
            return _literal(ctx, node)
        case ast.Name(name=name):
            kind = schema.type_of(name)
            if kind is not None:
                return Typed(col(name), kind)
            if name in ctx.scalars:
                return ctx.scalars[name]
            raise ctx.error(did_you_mean("column", name, [*schema.names, *ctx.scalars]), node)
        case ast.Member() | ast.Index():
            return _access(ctx, schema, node)
        case ast.Star():
            raise ctx.error("'*' is only allowed as an argument of arg_max/arg_min", node)
        case ast.Subquery():
            raise ctx.error("a tabular expression is only allowed inside 'in (...)'", node)
        case ast.Call():
            return _call(ctx, schema, node)
        case ast.Unary(op=op, operand=operand):
            value = lower_expr(ctx, schema, operand)
            if value.type not in (*NUMERIC, "timespan"):
                raise ctx.error(f"unary '{op}' needs a number, got {value.type}", node)
            return Typed(exp.Neg(this=value.sql) if op == "-" else value.sql, value.type)
        case ast.Binary():
            return _binary(ctx, schema, node)
        case ast.InList():
            return _in(ctx, schema, node)
        case ast.Between(negated=negated, left=left, low=low, high=high):
            value = lower_expr(ctx, schema, left)
            lo = lower_expr(ctx, schema, low)
            hi = lower_expr(ctx, schema, high)
            if value.type == "datetime" and hi.type == "timespan":
                hi = Typed(exp.Add(this=lo.sql, expression=hi.sql), "datetime")
            sql: exp.Expression = exp.Between(
                this=_scalar(value, lo.type), low=lo.sql, high=_scalar(hi, value.type)
            )
            return Typed(exp.Not(this=exp.Paren(this=sql)) if negated else sql, "bool")
    raise AssertionError(node)  # pragma: no cover - the match is exhaustive


_NULL_TYPES: dict[KqlType, str] = {
    "string": "VARCHAR",
    "long": "BIGINT",
    "real": "DOUBLE",
    "bool": "BOOLEAN",
    "timespan": "INTERVAL",
    "datetime": "TIMESTAMPTZ",
    "dynamic": "JSON",
}


def _literal(ctx: Context, node: ast.Literal) -> Typed:  # noqa: PLR0911 - one return per kind
    value = node.value
    if value is None:
        return Typed(exp.cast(exp.Null(), _NULL_TYPES[node.kind]), node.kind)
    if node.kind == "string":
        assert isinstance(value, str)
        return string(value)
    if node.kind == "bool":
        return Typed(exp.true() if value else exp.false(), "bool", bool(value))
    if node.kind == "long":
        assert isinstance(value, int)
        return Typed(exp.Literal.number(str(value)), "long", value)
    if node.kind == "real":
        assert isinstance(value, float)
        if not math.isfinite(value):
            raise ctx.error("the number is out of range", node)
        return Typed(exp.cast(exp.Literal.number(repr(value)), "DOUBLE"), "real", value)
    if node.kind == "timespan":
        assert isinstance(value, int)
        return interval(value)
    assert isinstance(value, str)
    if node.kind == "datetime":
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        if value == "null":
            return Typed(exp.cast(exp.Null(), "TIMESTAMPTZ"), "datetime")
        try:
            parsed = parse_datetime(value)
        except (ValueError, OverflowError) as exc:
            raise ctx.error(f"malformed datetime literal {value!r}", node) from exc
        assert parsed is not None
        return timestamp(parsed)
    try:
        parsed_json = json.loads(_dynamic_json(value))
    except (ValueError, RecursionError) as exc:
        raise ctx.error("malformed dynamic literal (expected JSON)", node) from exc
    text = json.dumps(parsed_json, ensure_ascii=False, separators=(",", ":"))
    return Typed(exp.cast(_S(text), "JSON"), "dynamic")


_UNESCAPE = {"n": "\n", "t": "\t", "r": "\r", "0": "\0"}


def _dynamic_json(text: str) -> str:
    """A ``dynamic(...)`` literal's text as JSON: KQL also quotes strings with ``'``."""
    out: list[str] = []
    i = 0
    while i < len(text):
        quote = text[i]
        if quote not in "'\"":
            out.append(quote)
            i += 1
            continue
        j, chars = i + 1, []
        while j < len(text) and text[j] != quote:
            if text[j] == "\\" and j + 1 < len(text):
                chars.append(_UNESCAPE.get(text[j + 1], text[j + 1]))
                j += 2
            else:
                chars.append(text[j])
                j += 1
        if j >= len(text):
            return text  # unterminated: let the JSON parser report it
        out.append(json.dumps("".join(chars)) if quote == "'" else text[i : j + 1])
        i = j + 1
    return "".join(out)


def _access(ctx: Context, schema: Schema, node: ast.Member | ast.Index) -> Typed:
    steps: list[str | int] = []
    root: ast.Expr = node
    while isinstance(root, ast.Member | ast.Index):
        if isinstance(root, ast.Member):
            steps.append(root.name)
        else:
            key = lower_expr(ctx, schema, root.index)
            if not isinstance(key.const, str | int) or isinstance(key.const, bool):
                raise ctx.error("a dynamic index must be a constant string or long", root.index)
            if isinstance(key.const, int) and key.const < 0:
                raise ctx.error("negative array indexes are not supported", root.index)
            steps.append(key.const)
        root = root.obj
    base = lower_expr(ctx, schema, root)
    if base.type != "dynamic":
        raise ctx.error(f"property access needs a dynamic value, got {base.type}", root)
    pointer = json_pointer(list(reversed(steps)))
    return Typed(call("json_extract", base.sql, _S(pointer)), "dynamic")


def _call(ctx: Context, schema: Schema, node: ast.Call) -> Typed:
    spec = FUNCTIONS.get(node.name)
    if spec is None:
        if node.name in AGGREGATES:
            raise ctx.error(f"aggregate {node.name}() is only allowed in summarize", node)
        raise ctx.error(did_you_mean("function", node.name, [*FUNCTIONS, *AGGREGATES]), node)
    check_arity(ctx, node, spec.min_args, spec.max_args)
    args = [lower_expr(ctx, schema, a) for a in node.args]
    return spec.lower(ctx, args, node)


def _scalar(value: Typed, other: KqlType) -> exp.Expression:
    """``value`` ready to compare with a value of type ``other``."""
    if value.type == "string" or (value.type == "dynamic" and other == "string"):
        return as_string(value)
    if value.type == "dynamic" and other in NUMERIC:
        return as_number(value)
    if value.type == "dynamic" and other == "bool":
        return as_bool(value)
    return value.sql


_Builder = Callable[..., exp.Expression]
_COMPARE: dict[str, _Builder] = {
    "==": exp.EQ,
    "!=": exp.NEQ,
    "<>": exp.NEQ,
    "<": exp.LT,
    "<=": exp.LTE,
    ">": exp.GT,
    ">=": exp.GTE,
}
_ARITH: dict[str, _Builder] = {"+": exp.Add, "-": exp.Sub, "*": exp.Mul, "%": exp.Mod}


def _binary(ctx: Context, schema: Schema, node: ast.Binary) -> Typed:
    op = node.op
    left = lower_expr(ctx, schema, node.left)
    right = lower_expr(ctx, schema, node.right)
    if op in ("and", "or"):
        cls: _Builder = exp.And if op == "and" else exp.Or
        return Typed(cls(this=as_bool(left), expression=as_bool(right)), "bool")
    if op in _COMPARE:
        _check_comparable(ctx, node, left, right)
        lhs, rhs = _scalar(left, right.type), _scalar(right, left.type)
        if op == "==" and left.type == "string" and isinstance(right.const, str) and right.const:
            lhs = left.sql  # null never equals a non-empty string: keep the plain column
        return Typed(_COMPARE[op](this=lhs, expression=rhs), "bool")
    if op in ("=~", "!~"):
        lowered: list[exp.Expression] = [exp.Lower(this=as_string(v)) for v in (left, right)]
        cls_eq: _Builder = exp.EQ if op == "=~" else exp.NEQ
        return Typed(cls_eq(this=lowered[0], expression=lowered[1]), "bool")
    if op in ("+", "-", "*", "/", "%"):
        return _arith(ctx, node, left, right)
    negated = op.startswith("!")
    base = op.lstrip("!")
    text, term = as_string(left), as_string(right)
    if base == "matches regex":
        sql: exp.Expression = exp.RegexpLike(this=text, expression=term)
    elif base in ("has", "has_cs"):
        if not isinstance(right.const, str):
            raise ctx.error(f"the right side of '{op}' must be a constant string", node.right)
        flags = [_S("i")] if base == "has" else []
        sql = call("regexp_matches", text, _S(has_pattern(right.const)), *flags)
    else:
        cased = base.endswith("_cs")
        if not cased:
            text, term = exp.Lower(this=text), exp.Lower(this=term)
        name = {"contains": "contains", "startswith": "starts_with", "endswith": "suffix"}
        sql = call(name[base.removesuffix("_cs")], text, term)
    return Typed(exp.Not(this=exp.Paren(this=sql)) if negated else sql, "bool")


def _check_comparable(ctx: Context, node: ast.Binary, left: Typed, right: Typed) -> None:
    kinds = {left.type, right.type}
    if len(kinds) == 1 or "dynamic" in kinds or kinds <= NUMERIC:
        return
    raise ctx.error(f"cannot compare {left.type} with {right.type} using '{node.op}'", node)


def _arith(ctx: Context, node: ast.Binary, left: Typed, right: Typed) -> Typed:
    op = node.op
    kinds = (left.type, right.type)
    if left.type == "dynamic" or right.type == "dynamic":
        left = Typed(as_number(left), "real")
        right = Typed(as_number(right), "real")
        kinds = ("real", "real")
    if kinds[0] in NUMERIC and kinds[1] in NUMERIC:
        if op == "/":
            if kinds == ("long", "long"):
                return Typed(exp.IntDiv(this=left.sql, expression=right.sql), "long")
            return Typed(exp.Div(this=left.sql, expression=right.sql), "real")
        kind: KqlType = "long" if kinds == ("long", "long") else "real"
        return Typed(_ARITH[op](this=left.sql, expression=right.sql), kind)
    results: dict[tuple[str, str, str], KqlType] = {
        ("datetime", "datetime", "-"): "timespan",
        ("datetime", "timespan", "+"): "datetime",
        ("datetime", "timespan", "-"): "datetime",
        ("timespan", "datetime", "+"): "datetime",
        ("timespan", "timespan", "+"): "timespan",
        ("timespan", "timespan", "-"): "timespan",
        ("timespan", "timespan", "/"): "real",
        ("timespan", "long", "*"): "timespan",
        ("long", "timespan", "*"): "timespan",
    }
    result = results.get((kinds[0], kinds[1], op))
    if result is None:
        raise ctx.error(f"cannot apply '{op}' to {kinds[0]} and {kinds[1]}", node)
    if op == "/":
        ratio = exp.Div(this=call("epoch", left.sql), expression=call("epoch", right.sql))
        return Typed(ratio, result)
    return Typed(_ARITH[op](this=left.sql, expression=right.sql), result)


def _in(ctx: Context, schema: Schema, node: ast.InList) -> Typed:
    op = node.op
    value = lower_expr(ctx, schema, node.left)
    tabular = _tabular_item(ctx, schema, node)
    if tabular is not None:
        sql = _in_subquery(ctx, node, value, tabular)
    else:
        values = [lower_expr(ctx, schema, i) for i in node.items]
        if any(v.type == "dynamic" for v in values):
            sql = _in_arrays(ctx, node, value, values)
        else:
            sql = _in_list(node, value, values)
    if op.startswith("!"):
        sql = exp.Not(this=exp.Paren(this=exp.Coalesce(this=sql, expressions=[exp.false()])))
    return Typed(sql, "bool")


def _in_list(node: ast.InList, value: Typed, values: list[Typed]) -> exp.Expression:
    if node.op.endswith("~"):
        subject: exp.Expression = exp.Lower(this=as_string(value))
        return exp.In(this=subject, expressions=[exp.Lower(this=as_string(v)) for v in values])
    subject = _scalar(value, values[0].type)
    if (
        node.op == "in"
        and value.type == "string"
        and all(isinstance(v.const, str) and v.const for v in values)
    ):
        subject = value.sql  # null is in no list of non-empty strings: keep the plain column
    return exp.In(this=subject, expressions=[_scalar(v, value.type) for v in values])


def _comparable(ctx: Context, node: ast.InList, left: KqlType, right: KqlType) -> None:
    kinds = {left, right}
    if len(kinds) == 1 or "dynamic" in kinds or kinds <= NUMERIC or node.op.endswith("~"):
        return
    raise ctx.error(f"cannot compare {left} with {right} using '{node.op}'", node)


def _in_arrays(ctx: Context, node: ast.InList, value: Typed, values: list[Typed]) -> exp.Expression:
    """``x in (dynamic([...]), "a")``: membership in the arrays' elements and the scalars."""
    insensitive = node.op.endswith("~")
    target: KqlType = "string" if value.type == "dynamic" or insensitive else value.type

    def convert(item: Typed) -> exp.Expression:
        if target == "datetime" and item.type == "dynamic":
            return FUNCTIONS["todatetime"].lower(ctx, [item], ast.Call("todatetime", ())).sql
        converted = as_string(item) if target == "string" else _scalar(item, target)
        return exp.Lower(this=converted) if insensitive else converted

    lists: list[exp.Expression] = []
    for item in values:
        if item.type != "dynamic":
            _comparable(ctx, node, target, item.type)
            lists.append(call("list_value", convert(item)))
            continue
        element = ctx.fresh("__e")
        lam = exp.Lambda(
            this=convert(Typed(exp.column(element, quoted=True), "dynamic")),
            expressions=[exp.to_identifier(element, quoted=True)],
        )
        lists.append(call("list_transform", json_items(item.sql), lam))
    choices = call("flatten", call("list_value", *lists))
    return call("list_contains", choices, convert(value))


def _tabular_item(ctx: Context, schema: Schema, node: ast.InList) -> ast.Pipeline | None:
    """The tabular expression in ``x in (...)``, if the list holds one."""
    found: list[ast.Subquery | ast.Name] = []
    for item in node.items:
        if isinstance(item, ast.Subquery) or (
            isinstance(item, ast.Name)
            and schema.type_of(item.name) is None
            and item.name not in ctx.scalars
            and (item.name in ctx.tabular or item.name in ctx.catalog)
        ):
            found.append(item)
    if not found:
        return None
    if len(node.items) > 1:
        raise ctx.error("a tabular expression must be the only value inside 'in (...)'", found[0])
    item = found[0]
    if isinstance(item, ast.Subquery):
        return item.pipeline
    return ast.Pipeline(ast.TableRef(item.name, item.span), (), item.span)


def _in_subquery(
    ctx: Context, node: ast.InList, value: Typed, pipeline: ast.Pipeline
) -> exp.Expression:
    if ctx.subquery is None:  # pragma: no cover - compile_kql always provides it
        raise ctx.error("internal error: subqueries cannot be lowered here", node)
    query, sub_schema = ctx.subquery(ctx, pipeline)
    if not sub_schema.columns:
        raise ctx.error("the subquery in 'in (...)' has no columns", node)
    first, kind = sub_schema.columns[0]
    element = Typed(exp.column(first, quoted=True), kind)
    if node.op.endswith("~"):
        subject: exp.Expression = exp.Lower(this=as_string(value))
        picked: exp.Expression = exp.Lower(this=as_string(element))
    else:
        _comparable(ctx, node, value.type, kind)
        subject, picked = _scalar(value, kind), _scalar(element, value.type)
    sub = exp.Subquery(this=query, alias=exp.TableAlias(this=exp.to_identifier(ctx.fresh())))
    picks = exp.Select(expressions=[picked]).from_(sub, copy=False)
    return exp.In(this=subject, query=exp.Subquery(this=picks))
