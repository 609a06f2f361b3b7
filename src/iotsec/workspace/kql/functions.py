"""The function registry: KQL scalar functions and aggregates, each with arity and lowering.

``FUNCTIONS`` and ``AGGREGATES`` are plain dicts (name -> spec). A spec's ``lower`` takes the
compilation context, the already-lowered arguments and the call node (for error spans) and
returns the :class:`~iotsec.workspace.kql.types.Typed` SQL. ``arg_max``/``arg_min`` and
``percentiles`` produce several columns; the summarize lowering handles them.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from sqlglot import exp

from iotsec.workspace.kql import ast
from iotsec.workspace.kql.errors import KqlError
from iotsec.workspace.kql.semantic import Context
from iotsec.workspace.kql.types import (
    NUMERIC,
    Typed,
    as_bool,
    as_number,
    as_string,
    call,
    json_pointer,
    timestamp,
)
from iotsec.workspace.tables import KqlType

__all__ = ["AGGREGATES", "FUNCTIONS", "Aggregate", "Function", "parse_json_path"]

Lowering = Callable[[Context, list[Typed], ast.Call], Typed]
_S = exp.Literal.string
_N = exp.Literal.number


@dataclass(frozen=True, slots=True)
class Function:
    """A scalar function: arity bounds (``max_args`` None: variadic) and its lowering."""

    min_args: int
    max_args: int | None
    lower: Lowering


@dataclass(frozen=True, slots=True)
class Aggregate:
    """An aggregate: arity, the prefix of its default column name, and its lowering."""

    min_args: int
    max_args: int | None
    prefix: str
    lower: Lowering | None


def _const(ctx: Context, node: ast.Call, args: list[Typed], i: int, kind: type) -> object:
    value = args[i].const
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ctx.error(f"{node.name}(): argument {i + 1} must be a constant", node.args[i])
    return value


def _now(ctx: Context, args: list[Typed], node: ast.Call) -> Typed:
    offset = _const(ctx, node, args, 0, timedelta) if args else timedelta(0)
    assert isinstance(offset, timedelta)
    return timestamp(ctx.now + offset)


def _ago(ctx: Context, args: list[Typed], node: ast.Call) -> Typed:
    span = _const(ctx, node, args, 0, timedelta)
    assert isinstance(span, timedelta)
    return timestamp(ctx.now - span)


def _utc(sql: exp.Expression) -> exp.Expression:
    return exp.AtTimeZone(this=sql, zone=_S("UTC"))


def _bin(ctx: Context, args: list[Typed], node: ast.Call) -> Typed:
    value, size = args
    if value.type == "datetime":
        width = _const(ctx, node, args, 1, timedelta)
        assert isinstance(width, timedelta)
        micros = width // timedelta(microseconds=1)
        if micros <= 0:
            raise ctx.error("bin(): the bin size must be positive", node.args[1])
        # Floor on epoch microseconds: exact, and independent of the session time zone.
        us = call("epoch_us", value.sql)
        floored = exp.Mul(
            this=exp.Paren(this=exp.IntDiv(this=us, expression=_N(str(micros)))),
            expression=_N(str(micros)),
        )
        # make_timestamptz(micros) is an instant: no per-row time-zone conversion (4x faster).
        return Typed(call("make_timestamptz", floored), "datetime")
    if value.type in NUMERIC and size.type in NUMERIC:
        floor = call("floor", exp.Div(this=value.sql, expression=size.sql))
        kind: KqlType = "long" if value.type == size.type == "long" else "real"
        return Typed(
            exp.cast(
                exp.Mul(this=floor, expression=size.sql), "BIGINT" if kind == "long" else "DOUBLE"
            ),
            kind,
        )
    raise ctx.error(f"bin(): cannot bin a {value.type} by a {size.type}", node)


def _todatetime(ctx: Context, args: list[Typed], node: ast.Call) -> Typed:
    (value,) = args
    if value.type == "datetime":
        return value
    text = as_string(value)
    # An explicit offset is honoured; a bare date-time is UTC, whatever the session zone.
    has_zone = exp.RegexpLike(this=text, expression=_S(r"(Z|z|[+-]\d\d:?\d\d)$"))
    naive = _utc(exp.TryCast(this=text, to=exp.DataType.build("TIMESTAMP")))
    zoned = exp.TryCast(this=text, to=exp.DataType.build("TIMESTAMPTZ"))
    return Typed(exp.If(this=has_zone, true=zoned, false=naive), "datetime")


def _startofday(ctx: Context, args: list[Typed], node: ast.Call) -> Typed:
    day = call("date_trunc", _S("day"), _utc(args[0].sql))
    return Typed(_utc(day), "datetime")


_DATETIME_FORMATS = [
    ("yyyy", "%Y"), ("yy", "%y"), ("MM", "%m"), ("dd", "%d"), ("HH", "%H"), ("hh", "%I"),
    ("mm", "%M"), ("ss", "%S"), ("ffffff", "%f"), ("fff", "%g"), ("tt", "%p"), ("%", "%%"),
]  # fmt: skip


def _format_datetime(ctx: Context, args: list[Typed], node: ast.Call) -> Typed:
    fmt = _const(ctx, node, args, 1, str)
    assert isinstance(fmt, str)
    out, i = [], 0
    while i < len(fmt):
        for kql, strf in _DATETIME_FORMATS:
            if fmt.startswith(kql, i):
                out.append(strf)
                i += len(kql)
                break
        else:
            out.append(fmt[i])
            i += 1
    sql = call("strftime", _utc(args[0].sql), _S("".join(out)))
    return Typed(exp.Coalesce(this=sql, expressions=[_S("")]), "string")


def _cast(target: KqlType, sql_type: str) -> Lowering:
    def lower(ctx: Context, args: list[Typed], node: ast.Call) -> Typed:
        (value,) = args
        if value.type == target:
            return value
        if target == "long" and value.type == "real":
            return Typed(
                exp.TryCast(this=call("trunc", value.sql), to=exp.DataType.build(sql_type)), target
            )
        if target == "bool":
            return Typed(as_bool(value), target)
        if value.type in {"dynamic", "string"}:
            return Typed(
                as_number(value, sql_type)
                if target in NUMERIC
                else exp.TryCast(this=as_string(value), to=exp.DataType.build(sql_type)),
                target,
            )
        return Typed(exp.TryCast(this=value.sql, to=exp.DataType.build(sql_type)), target)

    return lower


def _tostring(ctx: Context, args: list[Typed], node: ast.Call) -> Typed:
    return Typed(as_string(args[0]), "string")


def _string_fn(name: str, kind: KqlType = "string") -> Lowering:
    def lower(ctx: Context, args: list[Typed], node: ast.Call) -> Typed:
        return Typed(call(name, *(as_string(a) for a in args)), kind)

    return lower


def _substring(ctx: Context, args: list[Typed], node: ast.Call) -> Typed:
    start = exp.Add(this=as_number(args[1], "BIGINT"), expression=_N("1"))
    rest = [as_number(args[2], "BIGINT")] if len(args) > 2 else []
    return Typed(call("substr", as_string(args[0]), start, *rest), "string")


def _strcat(ctx: Context, args: list[Typed], node: ast.Call) -> Typed:
    return Typed(call("concat", *(as_string(a) for a in args)), "string")


def _split(ctx: Context, args: list[Typed], node: ast.Call) -> Typed:
    parts = call("string_split", as_string(args[0]), as_string(args[1]))
    if len(args) == 3:
        index = exp.Add(this=as_number(args[2], "BIGINT"), expression=_N("1"))
        element = call("list_extract", parts, index)
        return Typed(call("to_json", call("list_value", element)), "dynamic")
    return Typed(call("to_json", parts), "dynamic")


def _extract(ctx: Context, args: list[Typed], node: ast.Call) -> Typed:
    group = as_number(args[1], "BIGINT")
    return Typed(call("regexp_extract", as_string(args[2]), as_string(args[0]), group), "string")


_PATH_STEP = re.compile(r"""\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]|\['([^']*)'\]|\["([^"]*)"\]""")


def parse_json_path(path: str) -> list[str | int] | None:
    """``$.a.b[0]['c']`` as steps, or None for a path outside that subset."""
    if not path.startswith("$"):
        return None
    steps: list[str | int] = []
    i = 1
    while i < len(path):
        match = _PATH_STEP.match(path, i)
        if match is None:
            return None
        name, index, single, double = match.groups()
        steps.append(int(index) if index is not None else name or single or double or "")
        i = match.end()
    return steps


def _extractjson(ctx: Context, args: list[Typed], node: ast.Call) -> Typed:
    path = _const(ctx, node, args, 0, str)
    assert isinstance(path, str)
    steps = parse_json_path(path)
    if steps is None:
        raise ctx.error(f"extractjson(): unsupported JSON path {path!r}", node.args[0])
    source = args[1].sql if args[1].type == "dynamic" else as_string(args[1])
    sql = call("json_extract_string", source, _S(json_pointer(steps)))
    return Typed(sql, "string")


def _isempty(negate: bool) -> Lowering:
    def lower(ctx: Context, args: list[Typed], node: ast.Call) -> Typed:
        (value,) = args
        test: exp.Expression = exp.Is(this=value.sql, expression=exp.Null())
        if value.type == "string":
            test = exp.EQ(this=as_string(value), expression=_S(""))
        elif value.type == "dynamic":
            test = exp.Or(this=test, expression=exp.EQ(this=as_string(value), expression=_S("")))
        return Typed(exp.Not(this=exp.Paren(this=test)) if negate else test, "bool")

    return lower


def _isnull(negate: bool) -> Lowering:
    def lower(ctx: Context, args: list[Typed], node: ast.Call) -> Typed:
        (value,) = args
        if value.type == "string":  # KQL strings are never null
            return Typed(exp.true() if negate else exp.false(), "bool")
        test = exp.Is(this=value.sql, expression=exp.Null())
        return Typed(exp.Not(this=test) if negate else test, "bool")

    return lower


def _unify(
    ctx: Context, node: ast.Call, values: list[Typed]
) -> tuple[KqlType, list[exp.Expression]]:
    kinds = {v.type for v in values if not isinstance(v.sql, exp.Null)}
    if kinds <= NUMERIC and len(kinds) > 1:
        return "real", [v.sql for v in values]
    if len(kinds) > 1:
        raise ctx.error(
            f"{node.name}(): branches have different types: {', '.join(sorted(kinds))}", node
        )
    kind: KqlType = kinds.pop() if kinds else "string"
    return kind, [as_string(v) if kind == "string" else v.sql for v in values]


def _iff(ctx: Context, args: list[Typed], node: ast.Call) -> Typed:
    kind, (then, other) = _unify(ctx, node, args[1:])
    return Typed(exp.If(this=as_bool(args[0]), true=then, false=other), kind)


def _case(ctx: Context, args: list[Typed], node: ast.Call) -> Typed:
    if len(args) % 2 == 0:
        raise ctx.error("case(): expected predicate/value pairs and a final else value", node)
    kind, values = _unify(ctx, node, [*args[1::2], args[-1]])
    sql = exp.Case(
        ifs=[exp.If(this=as_bool(p), true=v) for p, v in zip(args[:-1:2], values, strict=False)],
        default=values[-1],
    )
    return Typed(sql, kind)


def _coalesce(ctx: Context, args: list[Typed], node: ast.Call) -> Typed:
    kind, values = _unify(ctx, node, args)
    if kind == "string":  # KQL's coalesce skips empty strings as well as nulls
        values = [exp.Nullif(this=v, expression=_S("")) for v in values] + [_S("")]
    return Typed(exp.Coalesce(this=values[0], expressions=values[1:]), kind)


def _parse_json(ctx: Context, args: list[Typed], node: ast.Call) -> Typed:
    (value,) = args
    if value.type == "dynamic":
        return value
    if value.type != "string":
        return Typed(call("to_json", value.sql), "dynamic")
    text = as_string(value)
    valid = exp.cast(text, "JSON")
    sql = exp.If(this=call("json_valid", text), true=valid, false=call("to_json", text))
    return Typed(sql, "dynamic")


def _array_length(ctx: Context, args: list[Typed], node: ast.Call) -> Typed:
    (value,) = args
    if value.type != "dynamic":
        raise ctx.error(f"array_length(): expected a dynamic array, got {value.type}", node.args[0])
    is_array = exp.EQ(this=call("json_type", value.sql), expression=_S("ARRAY"))
    return Typed(exp.If(this=is_array, true=call("json_array_length", value.sql)), "long")


def _pack(ctx: Context, args: list[Typed], node: ast.Call) -> Typed:
    if len(args) % 2:
        raise ctx.error(f"{node.name}(): expected key/value pairs", node)
    parts: list[exp.Expression] = []
    for i in range(0, len(args), 2):
        key = _const(ctx, node, args, i, str)
        assert isinstance(key, str)
        parts += [_S(key), args[i + 1].sql]
    return Typed(call("json_object", *parts), "dynamic")


def _pack_array(ctx: Context, args: list[Typed], node: ast.Call) -> Typed:
    # Datetimes go into JSON as their ISO text, as KQL writes them.
    values = [as_string(a) if a.type == "datetime" else a.sql for a in args]
    return Typed(call("json_array", *values), "dynamic")


def _ip_number(text: exp.Expression) -> exp.Expression:
    octets = [
        exp.TryCast(
            this=call("split_part", text, _S("."), _N(str(i))), to=exp.DataType.build("BIGINT")
        )
        for i in (1, 2, 3, 4)
    ]
    total: exp.Expression = octets[3]
    for shift, octet in ((8, octets[2]), (16, octets[1]), (24, octets[0])):
        total = exp.Add(this=total, expression=exp.Mul(this=octet, expression=_N(str(1 << shift))))
    return total


def _ipv4_is_in_range(ctx: Context, args: list[Typed], node: ast.Call) -> Typed:
    text = _const(ctx, node, args, 1, str)
    assert isinstance(text, str)
    try:
        network = ipaddress.IPv4Network(text, strict=False)
    except ValueError as exc:
        raise ctx.error(f"ipv4_is_in_range(): bad IPv4 range {text!r}", node.args[1]) from exc
    ip = as_string(args[0])
    well_formed = exp.RegexpLike(this=ip, expression=_S(r"^\d{1,3}(\.\d{1,3}){3}$"))
    number = _ip_number(ip)
    low, high = int(network.network_address), int(network.broadcast_address)
    inside = exp.Between(this=number, low=_N(str(low)), high=_N(str(high)))
    return Typed(exp.If(this=well_formed, true=inside), "bool")


def _not(ctx: Context, args: list[Typed], node: ast.Call) -> Typed:
    # Comparisons with null are false in KQL, so not() of one is true, never null.
    inner = exp.Coalesce(this=as_bool(args[0]), expressions=[exp.false()])
    return Typed(exp.Not(this=inner), "bool")


def _datetime_fn(ctx: Context, args: list[Typed], node: ast.Call) -> Typed:
    return _todatetime(ctx, args, node)


def _strlen(ctx: Context, args: list[Typed], node: ast.Call) -> Typed:
    return Typed(call("length", as_string(args[0])), "long")


def _number(ctx: Context, node: ast.Call, value: Typed) -> Typed:
    if value.type in NUMERIC:
        return value
    if value.type in ("dynamic", "string"):
        return Typed(as_number(value), "real")
    raise ctx.error(f"{node.name}(): expected a number, got {value.type}", node.args[0])


def _round(ctx: Context, args: list[Typed], node: ast.Call) -> Typed:
    value = _number(ctx, node, args[0])
    digits = _const(ctx, node, args, 1, int) if len(args) > 1 else 0
    assert isinstance(digits, int)
    return Typed(call("round", value.sql, _N(str(digits))), value.type)


def _abs(ctx: Context, args: list[Typed], node: ast.Call) -> Typed:
    if args[0].type == "timespan":  # DuckDB has no abs(INTERVAL)
        span = args[0].sql
        negative = exp.LT(this=span, expression=exp.Interval(this=_S("0"), unit=exp.var("SECOND")))
        return Typed(exp.If(this=negative, true=exp.Neg(this=span), false=span), "timespan")
    value = _number(ctx, node, args[0])
    return Typed(call("abs", value.sql), value.type)


FUNCTIONS: dict[str, Function] = {
    "ago": Function(1, 1, _ago),
    "now": Function(0, 1, _now),
    "bin": Function(2, 2, _bin),
    "floor": Function(2, 2, _bin),
    "todatetime": Function(1, 1, _todatetime),
    "datetime": Function(1, 1, _datetime_fn),
    "tostring": Function(1, 1, _tostring),
    "toint": Function(1, 1, _cast("long", "BIGINT")),
    "tolong": Function(1, 1, _cast("long", "BIGINT")),
    "todouble": Function(1, 1, _cast("real", "DOUBLE")),
    "toreal": Function(1, 1, _cast("real", "DOUBLE")),
    "tobool": Function(1, 1, _cast("bool", "BOOLEAN")),
    "toboolean": Function(1, 1, _cast("bool", "BOOLEAN")),
    "tolower": Function(1, 1, _string_fn("lower")),
    "toupper": Function(1, 1, _string_fn("upper")),
    "strlen": Function(1, 1, _strlen),
    "round": Function(1, 2, _round),
    "abs": Function(1, 1, _abs),
    "substring": Function(2, 3, _substring),
    "strcat": Function(1, 64, _strcat),
    "split": Function(2, 3, _split),
    "extract": Function(3, 3, _extract),
    "extractjson": Function(2, 2, _extractjson),
    "extract_json": Function(2, 2, _extractjson),
    "isempty": Function(1, 1, _isempty(negate=False)),
    "isnotempty": Function(1, 1, _isempty(negate=True)),
    "isnull": Function(1, 1, _isnull(negate=False)),
    "isnotnull": Function(1, 1, _isnull(negate=True)),
    "iff": Function(3, 3, _iff),
    "iif": Function(3, 3, _iff),
    "case": Function(3, None, _case),
    "coalesce": Function(2, 64, _coalesce),
    "format_datetime": Function(2, 2, _format_datetime),
    "startofday": Function(1, 1, _startofday),
    "array_length": Function(1, 1, _array_length),
    "parse_json": Function(1, 1, _parse_json),
    "todynamic": Function(1, 1, _parse_json),
    "pack": Function(2, 64, _pack),
    "bag_pack": Function(2, 64, _pack),
    "pack_array": Function(1, 64, _pack_array),
    "ipv4_is_in_range": Function(2, 2, _ipv4_is_in_range),
    "not": Function(1, 1, _not),
}


# --- aggregates --------------------------------------------------------------------------------


def _agg(
    name: str, kind: KqlType | None = None, *, numeric: bool = False, zero: bool = False
) -> Lowering:
    """An aggregate of one value; ``zero``: 0 over no (non-null) values, as KQL's default."""

    def lower(ctx: Context, args: list[Typed], node: ast.Call) -> Typed:
        (value,) = args
        sql = as_number(value) if numeric and value.type not in NUMERIC else value.sql
        if numeric and value.type not in NUMERIC:
            result: KqlType = "real"
        else:
            result = kind or value.type
        agg = call(name, sql)
        if zero:
            agg = exp.Coalesce(this=agg, expressions=[_N("0")])
        return Typed(agg, result)

    return lower


def _count(ctx: Context, args: list[Typed], node: ast.Call) -> Typed:
    return Typed(exp.Count(this=exp.Star()), "long")


def _countif(ctx: Context, args: list[Typed], node: ast.Call) -> Typed:
    # DuckDB's count_if is null over no rows or only null predicates; KQL's countif is 0.
    counted = call("count_if", as_bool(args[0]))
    return Typed(exp.Coalesce(this=counted, expressions=[_N("0")]), "long")


def _dcount(ctx: Context, args: list[Typed], node: ast.Call) -> Typed:
    # Exact, where KQL estimates (HyperLogLog); exact is within any estimate's error.
    return Typed(exp.Count(this=exp.Distinct(expressions=[args[0].sql])), "long")


def _dcountif(ctx: Context, args: list[Typed], node: ast.Call) -> Typed:
    value = exp.If(this=as_bool(args[1]), true=args[0].sql)
    return Typed(exp.Count(this=exp.Distinct(expressions=[value])), "long")


def _sumif(ctx: Context, args: list[Typed], node: ast.Call) -> Typed:
    value = exp.If(this=as_bool(args[1]), true=as_number(args[0]))
    total = exp.Coalesce(this=call("sum", value), expressions=[_N("0")])
    return Typed(total, args[0].type if args[0].type in NUMERIC else "real")


def _make(distinct: bool) -> Lowering:
    def lower(ctx: Context, args: list[Typed], node: ast.Call) -> Typed:
        value = args[0].sql
        not_null = exp.Where(this=exp.Not(this=exp.Is(this=value, expression=exp.Null())))
        arg = exp.Distinct(expressions=[value]) if distinct else value
        agg: exp.Expression = exp.Filter(this=call("list", arg), expression=not_null)
        if distinct:  # sorted, so a set reads the same on every run
            agg = call("list_sort", agg)
        if len(args) > 1:
            size = _const(ctx, node, args, 1, int)
            agg = call("list_slice", agg, _N("1"), _N(str(size)))
        empty = exp.cast(_S("[]"), "JSON")
        return Typed(exp.Coalesce(this=call("to_json", agg), expressions=[empty]), "dynamic")

    return lower


def _percentile(ctx: Context, args: list[Typed], node: ast.Call) -> Typed:
    p = args[1].const
    if not isinstance(p, int | float) or isinstance(p, bool) or not 0 <= p <= 100:
        raise ctx.error(
            "percentile(): the percentile must be a constant from 0 to 100", node.args[1]
        )
    sql = call("quantile_disc", as_number(args[0]), _N(repr(p / 100)))
    return Typed(sql, args[0].type if args[0].type in NUMERIC else "real")


AGGREGATES: dict[str, Aggregate] = {
    "count": Aggregate(0, 0, "count", _count),
    "countif": Aggregate(1, 1, "countif", _countif),
    "dcount": Aggregate(1, 2, "dcount", _dcount),
    "dcountif": Aggregate(2, 3, "dcountif", _dcountif),
    "sum": Aggregate(1, 1, "sum", _agg("sum", numeric=True, zero=True)),
    "sumif": Aggregate(2, 2, "sumif", _sumif),
    "avg": Aggregate(1, 1, "avg", _agg("avg", "real", numeric=True)),
    "min": Aggregate(1, 1, "min", _agg("min")),
    "max": Aggregate(1, 1, "max", _agg("max")),
    "any": Aggregate(1, 1, "any", _agg("any_value")),
    "take_any": Aggregate(1, 1, "any", _agg("any_value")),
    "stdev": Aggregate(1, 1, "stdev", _agg("stddev_samp", "real", numeric=True, zero=True)),
    "make_set": Aggregate(1, 2, "set", _make(distinct=True)),
    "makeset": Aggregate(1, 2, "set", _make(distinct=True)),
    "make_list": Aggregate(1, 2, "list", _make(distinct=False)),
    "makelist": Aggregate(1, 2, "list", _make(distinct=False)),
    "percentile": Aggregate(2, 2, "percentile", _percentile),
    "percentiles": Aggregate(2, None, "percentile", None),
    "arg_max": Aggregate(1, None, "max", None),
    "arg_min": Aggregate(1, None, "min", None),
}


def check_arity(ctx: Context, node: ast.Call, low: int, high: int | None) -> None:
    """Raise when ``node`` has too few or too many arguments."""
    n = len(node.args)
    if n < low or (high is not None and n > high):
        expected = str(low) if low == high else f"{low} to {high}" if high else f"at least {low}"
        raise KqlError(
            f"{node.name}() expects {expected} argument{'s' if expected != '1' else ''}, got {n}",
            ctx.text,
            node.span,
        )
