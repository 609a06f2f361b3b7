"""Description and remediation templates: ``{Field}`` placeholders, filled in safely.

A template is parsed once into literal text and placeholder names; rendering only looks
values up and inserts them as text. Nothing is formatted with ``str.format`` or evaluated, so
a value such as ``{0.__class__}`` seen in a command line is just text.

>>> from iotsec.analytics.rules.model import SourceLocation
>>> t = parse_template("{Executable} ran {{twice}}", SourceLocation("x.yaml", 1, 1))
>>> t.names
('Executable',)
>>> render(t, {"Executable": "/bin/nc\\n-e"}.get)
'/bin/nc\\\\n-e ran {twice}'
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from iotsec.analytics.rules.model import SourceLocation, Template

__all__ = ["MAX_VALUE_CHARS", "MISSING", "TemplateSyntaxError", "parse_template", "render", "text"]

#: What a placeholder renders as when the observation has no such field.
MISSING = "(unknown)"
#: A value longer than this is cut (command lines can be kilobytes), ending with "...".
MAX_VALUE_CHARS = 1024

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[^{}\s.]+)*")
# Control characters would let a value forge lines in syslog or a console; show them escaped.
_ESCAPES = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F)} | {
    ord("\n"): "\\n",
    ord("\r"): "\\r",
    ord("\t"): "\\t",
}


class TemplateSyntaxError(ValueError):
    """A template that does not parse; ``offset`` is the 0-based index in its text.

    Internal to the loader, which turns it into a ``RuleError`` at the file position.
    """

    def __init__(self, reason: str, offset: int) -> None:
        super().__init__(f"{reason} at character {offset + 1}")
        self.reason = reason
        self.offset = offset


def parse_template(source: str, location: SourceLocation) -> Template:
    """Split ``source`` into literal text and placeholder names.

    Raises:
        TemplateSyntaxError: an unclosed ``{``, a stray ``}``, or a bad placeholder name.
    """
    parts: list[str] = []
    literal: list[str] = []
    i, n = 0, len(source)
    while i < n:
        char = source[i]
        if char == "{":
            if source.startswith("{{", i):
                literal.append("{")
                i += 2
                continue
            end = source.find("}", i + 1)
            if end < 0:
                raise TemplateSyntaxError("unclosed '{' (write '{{' for a literal brace)", i)
            name = source[i + 1 : end].strip()
            if not _NAME.fullmatch(name):
                raise TemplateSyntaxError(f"bad placeholder {{{source[i + 1 : end]}}}", i)
            parts.extend(("".join(literal), name))
            literal.clear()
            i = end + 1
        elif char == "}":
            if not source.startswith("}}", i):
                raise TemplateSyntaxError("unmatched '}' (write '}}' for a literal brace)", i)
            literal.append("}")
            i += 2
        else:
            stop = min((j for j in (source.find("{", i), source.find("}", i)) if j >= 0), default=n)
            literal.append(source[i:stop])
            i = stop
    parts.append("".join(literal))
    return Template(source, tuple(parts), location)


def text(value: object) -> str:
    """``value`` as template text: escaped control characters, cut at ``MAX_VALUE_CHARS``."""
    if value is None:
        return MISSING
    if isinstance(value, str):
        raw = value
    elif isinstance(value, bool):
        raw = "true" if value else "false"
    elif isinstance(value, (int, float)):
        raw = str(value)
    elif isinstance(value, Mapping):
        raw = ", ".join(f"{text(k)}={text(v)}" for k, v in value.items())
    elif isinstance(value, (list, tuple)):
        raw = ", ".join(text(v) for v in value)
    else:
        raw = f"<{type(value).__name__}>"
    if len(raw) > MAX_VALUE_CHARS:
        raw = raw[: MAX_VALUE_CHARS - 3] + "..."
    return raw.translate(_ESCAPES)


def render(template: Template, lookup: Callable[[str], object]) -> str:
    """``template`` with each placeholder replaced by ``text(lookup(name))``."""
    parts = template.parts
    if len(parts) == 1:
        return parts[0]
    out = [parts[0]]
    for index in range(1, len(parts), 2):
        out.append(text(lookup(parts[index])))
        out.append(parts[index + 1])
    return "".join(out)
