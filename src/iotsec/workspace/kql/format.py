"""A KQL pretty-printer: ``parse(format_query(parse(q))) == parse(q)`` for every query."""

from __future__ import annotations

import json
import re

from iotsec.workspace.kql import ast
from iotsec.workspace.kql.tokens import TIMESPAN_UNITS

__all__ = ["format_expr", "format_query"]

_UNITS = (("d", TIMESPAN_UNITS["d"]), ("h", TIMESPAN_UNITS["h"]), ("m", TIMESPAN_UNITS["m"]),
          ("s", TIMESPAN_UNITS["s"]), ("ms", TIMESPAN_UNITS["ms"]))  # fmt: skip


# A table wildcard (``Security*``) prints bare; a name that merely contains ``*`` is bracketed.
_PATTERN = re.compile(r"(?:[A-Za-z_]\w*)?(?:\*(?:[A-Za-z_]\w*)?)+", re.ASCII)


def _string(value: str) -> str:
    # json.dumps escapes quotes, backslashes and control characters the way KQL reads them.
    return json.dumps(value, ensure_ascii=False)


def _name(name: str) -> str:
    if name.isidentifier() and name.isascii():
        return name
    return f"[{_string(name)}]"


def _timespan(micros: int) -> str:
    for unit, size in _UNITS:
        if micros % size == 0:
            return f"{micros // size}{unit}"
    return f"{micros}microseconds"


def _literal(node: ast.Literal) -> str:  # noqa: PLR0911 - one return per kind
    value = node.value
    if value is None:
        return f"{node.kind}(null)"
    if node.kind == "string":
        assert isinstance(value, str)
        return _string(value)
    if node.kind == "bool":
        return "true" if value else "false"
    if node.kind == "timespan":
        assert isinstance(value, int)
        return _timespan(value)
    if node.kind == "datetime":
        return f"datetime({value})"
    if node.kind == "dynamic":
        return f"dynamic({value})"
    return repr(value)


def format_expr(node: ast.Expr) -> str:  # noqa: PLR0911 - one return per node type
    """One scalar expression, fully parenthesized where precedence could matter."""
    match node:
        case ast.Literal():
            text = _literal(node)
            return f"({text})" if text.startswith("-") else text
        case ast.Name(name=name):
            return _name(name)
        case ast.Member(obj=obj, name=name):
            return f"{format_expr(obj)}.{name}"
        case ast.Index(obj=obj, index=index):
            return f"{format_expr(obj)}[{format_expr(index)}]"
        case ast.Star():
            return "*"
        case ast.Call(name=name, args=args):
            return f"{name}({', '.join(format_expr(a) for a in args)})"
        case ast.Unary(op=op, operand=operand):
            return f"{op}({format_expr(operand)})"
        case ast.Binary(op=op, left=left, right=right):
            return f"({format_expr(left)} {op} {format_expr(right)})"
        case ast.InList(op=op, left=left, items=items):
            return f"({format_expr(left)} {op} ({', '.join(format_expr(i) for i in items)}))"
        case ast.Subquery(pipeline=pipeline):
            return f"({_pipeline(pipeline)})"
        case ast.Between(negated=negated, left=left, low=low, high=high):
            op = "!between" if negated else "between"
            return f"({format_expr(left)} {op} ({format_expr(low)} .. {format_expr(high)}))"
    raise AssertionError(node)  # pragma: no cover - the match is exhaustive


def _assignment(item: ast.Assignment) -> str:
    expr = format_expr(item.expr)
    return expr if item.name is None else f"{_name(item.name)} = {expr}"


def _assignments(items: tuple[ast.Assignment, ...]) -> str:
    return ", ".join(_assignment(i) for i in items)


def _sort_keys(keys: tuple[ast.SortKey, ...]) -> str:
    parts = []
    for key in keys:
        text = f"{format_expr(key.expr)} {'desc' if key.descending else 'asc'}"
        if key.nulls_first is not None:
            text += " nulls first" if key.nulls_first else " nulls last"
        parts.append(text)
    return ", ".join(parts)


def _operator(op: ast.Operator) -> str:  # noqa: PLR0911, PLR0912 - one return per operator
    match op:
        case ast.Where(predicate=predicate):
            return f"where {format_expr(predicate)}"
        case ast.Project(items=items):
            return f"project {_assignments(items)}"
        case ast.ProjectAway(names=names):
            return f"project-away {_columns(names)}"
        case ast.ProjectKeep(names=names):
            return f"project-keep {_columns(names)}"
        case ast.ProjectReorder(keys=keys):
            return "project-reorder " + ", ".join(
                _columns((k.column,)) + (f" {k.order}" if k.order else "") for k in keys
            )
        case ast.ProjectRename(pairs=pairs):
            return "project-rename " + ", ".join(
                f"{_name(new.name)} = {_name(old.name)}" for new, old in pairs
            )
        case ast.Extend(items=items):
            return f"extend {_assignments(items)}"
        case ast.Summarize(aggregates=aggregates, by=by):
            text = "summarize"
            if aggregates:
                text += f" {_assignments(aggregates)}"
            return text + (f" by {_assignments(by)}" if by else "")
        case ast.Count():
            return "count"
        case ast.Distinct(items=items):
            return "distinct " + (", ".join(format_expr(i) for i in items) if items else "*")
        case ast.Take(count=count):
            return f"take {format_expr(count)}"
        case ast.Top(count=count, keys=keys):
            return f"top {format_expr(count)} by {_sort_keys(keys)}"
        case ast.Sort(keys=keys):
            return f"sort by {_sort_keys(keys)}"
        case ast.MvExpand():
            return _mv_expand(op)
        case ast.Render(kind=kind, properties=properties):
            text = f"render {kind}"
            if properties:
                props = ", ".join(f"{k} = {format_expr(v)}" for k, v in properties)
                text += f" with ({props})"
            return text
        case ast.Join(kind=kind, right=right, keys=keys):
            on = ", ".join(
                _name(k.left.name)
                if k.left.name == k.right.name
                else f"$left.{_name(k.left.name)} == $right.{_name(k.right.name)}"
                for k in keys
            )
            return f"join kind={kind} {_operand(right)} on {on}"
        case ast.Union(kind=kind, sources=sources, withsource=withsource):
            source = f" withsource={_name(withsource)}" if withsource is not None else ""
            return f"union kind={kind}{source} {', '.join(_operand(s) for s in sources)}"
    raise AssertionError(op)  # pragma: no cover - the match is exhaustive


def _columns(names: tuple[ast.Name | ast.ColumnPattern, ...]) -> str:
    return ", ".join(
        n.pattern if isinstance(n, ast.ColumnPattern) else _name(n.name) for n in names
    )


def _mv_expand(op: ast.MvExpand) -> str:
    parts = ["mv-expand"]
    if op.kind != "bag":
        parts.append(f"kind={op.kind}")
    if op.index is not None:
        parts.append(f"with_itemindex={_name(op.index)}")
    items = []
    for item in op.items:
        text = _assignment(ast.Assignment(item.name, item.expr))
        items.append(text + (f" to typeof({item.to_type})" if item.to_type else ""))
    parts.append(", ".join(items))
    if op.limit is not None:
        parts.append(f"limit {format_expr(op.limit)}")
    return " ".join(parts)


def _source(node: ast.Source) -> str:
    match node:
        case ast.TableRef(name=name):
            return name if _PATTERN.fullmatch(name) else _name(name)
        case ast.Union():
            return _operator(node)
        case ast.Print(items=items):
            return f"print {_assignments(items)}"
        case ast.DataTable(columns=columns, values=values):
            spec = ", ".join(f"{_name(n)}:{t}" for n, t in columns)
            return f"datatable({spec}) [{', '.join(format_expr(v) for v in values)}]"
        case ast.Range(name=name, start=start, stop=stop, step=step):
            bounds = f"from {format_expr(start)} to {format_expr(stop)} step {format_expr(step)}"
            return f"range {_name(name)} {bounds}"
    raise AssertionError(node)  # pragma: no cover - the match is exhaustive


def _operand(node: ast.Pipeline) -> str:
    if isinstance(node.source, ast.TableRef) and not node.operators:
        return _source(node.source)
    return f"({_pipeline(node)})"


def _pipeline(node: ast.Pipeline) -> str:
    return "\n| ".join([_source(node.source), *(_operator(op) for op in node.operators)])


def format_query(node: ast.Query) -> str:
    """The query as KQL text: one let per line, one operator per line."""
    lines = []
    for let in node.lets:
        value = let.value
        text = _pipeline(value) if isinstance(value, ast.Pipeline) else format_expr(value)
        lines.append(f"let {_name(let.name)} = {text};")
    lines.append(_pipeline(node.body))
    return "\n".join(lines)
