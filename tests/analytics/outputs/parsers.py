"""Independent parsers for what the syslog output sends: RFC 5424 and CEF (written for tests)."""

from __future__ import annotations

import re
from dataclasses import dataclass

_HEADER = re.compile(rb"<(\d{1,3})>(\d{1,2}) (\S+) (\S+) (\S+) (\S+) (\S+) ")


@dataclass
class Syslog:
    pri: int
    version: int
    timestamp: str
    hostname: str
    app_name: str
    procid: str
    msgid: str
    sd: dict[str, dict[str, str]]
    msg: bytes


def _sd_element(data: bytes, pos: int) -> tuple[str, dict[str, str], int]:
    """One ``[id name="value" ...]`` from ``pos`` (at the ``[``); returns the position after."""
    assert data[pos : pos + 1] == b"["
    pos += 1
    end = pos
    while data[end : end + 1] not in (b" ", b"]"):
        end += 1
    sd_id = data[pos:end].decode("ascii")
    params: dict[str, str] = {}
    pos = end
    while data[pos : pos + 1] == b" ":
        eq = data.index(b"=", pos)
        name = data[pos + 1 : eq].decode("ascii")
        assert data[eq + 1 : eq + 2] == b'"', data[eq:]
        pos = eq + 2
        value = bytearray()
        while True:
            char = data[pos : pos + 1]
            if char == b"\\" and data[pos + 1 : pos + 2] in (b'"', b"\\", b"]"):
                value += data[pos + 1 : pos + 2]
                pos += 2
            elif char == b'"':
                pos += 1
                break
            elif char == b"]":
                raise AssertionError(f"unescaped ] inside a value at {pos}")
            elif not char:
                raise AssertionError("unterminated value")
            else:
                value += char
                pos += 1
        params[name] = value.decode("utf-8")
    assert data[pos : pos + 1] == b"]", data[pos:]
    return sd_id, params, pos + 1


def parse_rfc5424(data: bytes) -> Syslog:
    """Parse one RFC 5424 message (unframed)."""
    match = _HEADER.match(data)
    assert match is not None, data[:100]
    fields = [g.decode("ascii") for g in match.groups()]
    rest = data[match.end() :]
    sd: dict[str, dict[str, str]] = {}
    if rest.startswith(b"-"):
        pos = 1
    else:
        pos = 0
        while rest[pos : pos + 1] == b"[":
            sd_id, params, pos = _sd_element(rest, pos)
            sd[sd_id] = params
    msg = b""
    if pos < len(rest):
        assert rest[pos : pos + 1] == b" "
        msg = rest[pos + 1 :]
    return Syslog(
        int(fields[0]),
        int(fields[1]),
        *fields[2:7],
        sd=sd,
        msg=msg,  # type: ignore[arg-type]
    )


_UNESCAPE = {"\\": "\\", "=": "=", "n": "\n", "r": "\r"}


def _cef_value(text: str) -> str:
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text) and text[i + 1] in _UNESCAPE:
            out.append(_UNESCAPE[text[i + 1]])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def parse_cef(text: str) -> tuple[list[str], dict[str, str]]:
    """The seven header fields and the extension of one ``CEF:`` record."""
    start = text.index("CEF:")
    fields: list[str] = []
    current: list[str] = []
    i = start
    while len(fields) < 7:
        char = text[i]
        if char == "\\" and text[i + 1] in "|\\":
            current.append(text[i + 1])
            i += 2
        elif char == "|":
            fields.append("".join(current))
            current = []
            i += 1
        else:
            assert char not in "\r\n", "a line break in the header"
            current.append(char)
            i += 1
    extension = text[i:]
    separators = []
    j = 0
    while j < len(extension):
        if extension[j] == "\\":
            j += 2
            continue
        if extension[j] == "=":
            key_start = extension.rfind(" ", 0, j) + 1
            separators.append((key_start, j))
        j += 1
    values: dict[str, str] = {}
    for n, (key_start, eq) in enumerate(separators):
        end = separators[n + 1][0] - 1 if n + 1 < len(separators) else len(extension)
        values[extension[key_start:eq]] = _cef_value(extension[eq + 1 : end])
    return fields, values
