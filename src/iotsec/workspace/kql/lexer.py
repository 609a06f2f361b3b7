"""The KQL lexer: text to a list of :class:`Token`, or a :class:`KqlError` at the bad span."""

from __future__ import annotations

from iotsec.workspace.kql.errors import KqlError, Span
from iotsec.workspace.kql.tokens import (
    DASHED_WORDS,
    NEGATED_WORDS,
    TIMESPAN_UNITS,
    Token,
    TokenKind,
)

__all__ = ["tokenize"]

_OPERATORS = (
    "..",
    "==",
    "!=",
    "<>",
    "<=",
    ">=",
    "=~",
    "!~",
    "|",
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    ",",
    ";",
    ".",
    "=",
    "<",
    ">",
    "+",
    "-",
    "*",
    "/",
    "%",
    "$",
    ":",
)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "'": "'", '"': '"', "0": "\0"}
_RAW_LITERALS = {"datetime": TokenKind.DATETIME, "dynamic": TokenKind.DYNAMIC}


def _digit(ch: str) -> bool:
    return len(ch) == 1 and "0" <= ch <= "9"


def _is_ident_start(ch: str) -> bool:
    return ch.isalpha() or ch == "_"


def _is_ident_char(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


class _Lexer:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.tokens: list[Token] = []

    def error(self, message: str, start: int, end: int) -> KqlError:
        return KqlError(message, self.text, Span(start, end))

    def peek(self, ahead: int = 0) -> str:
        i = self.pos + ahead
        return self.text[i] if i < len(self.text) else ""

    def emit(self, kind: TokenKind, value: str, start: int, number: float | None = None) -> None:
        self.tokens.append(Token(kind, value, Span(start, self.pos), number))

    def run(self) -> list[Token]:
        text = self.text
        while self.pos < len(text):
            ch = text[self.pos]
            if ch.isspace():
                self.pos += 1
            elif text.startswith("//", self.pos):
                end = text.find("\n", self.pos)
                self.pos = len(text) if end < 0 else end
            elif ch in "'\"":
                self.string(self.pos, ch, verbatim=False)
            elif ch in "@hH" and self.peek(1) in ("'", '"'):
                self.pos += 1
                self.string(self.pos - 1, self.peek(), verbatim=ch == "@")
            elif _digit(ch):
                self.number()
            elif _is_ident_start(ch):
                self.word()
            elif ch == "!" and _is_ident_start(self.peek(1)):
                self.negated()
            else:
                self.operator()
        self.emit(TokenKind.EOF, "", self.pos)
        return self.tokens

    def string(self, start: int, quote: str, *, verbatim: bool) -> None:
        self.pos += 1
        out: list[str] = []
        text = self.text
        while True:
            if self.pos >= len(text) or (not verbatim and text[self.pos] == "\n"):
                raise self.error("unterminated string literal", start, self.pos)
            ch = text[self.pos]
            if ch == quote:
                if verbatim and self.peek(1) == quote:
                    out.append(quote)
                    self.pos += 2
                    continue
                self.pos += 1
                break
            if ch == "\\" and not verbatim:
                esc = self.peek(1)
                if esc in _ESCAPES:
                    out.append(_ESCAPES[esc])
                    self.pos += 2
                    continue
                if (
                    esc == "u"
                    and all(
                        c in "0123456789abcdefABCDEF" for c in text[self.pos + 2 : self.pos + 6]
                    )
                    and len(text) >= self.pos + 6
                ):
                    out.append(chr(int(text[self.pos + 2 : self.pos + 6], 16)))
                    self.pos += 6
                    continue
                raise self.error(f"unknown escape sequence '\\{esc}'", self.pos, self.pos + 2)
            out.append(ch)
            self.pos += 1
        self.emit(TokenKind.STRING, "".join(out), start)

    def number(self) -> None:  # noqa: PLR0912 - hex, decimal, exponent, timespan
        start = self.pos
        text = self.text
        if text.startswith(("0x", "0X"), start):
            self.pos += 2
            while self.peek() and self.peek() in "0123456789abcdefABCDEF":
                self.pos += 1
            digits = text[start + 2 : self.pos]
            if not digits:
                raise self.error("malformed hexadecimal number", start, self.pos)
            self.emit(TokenKind.LONG, text[start : self.pos], start, int(digits, 16))
            return
        while _digit(self.peek()):
            self.pos += 1
        is_real = False
        if self.peek() == "." and _digit(self.peek(1)):
            is_real = True
            self.pos += 1
            while _digit(self.peek()):
                self.pos += 1
        if self.peek() in ("e", "E") and (
            _digit(self.peek(1)) or (self.peek(1) in "+-" and _digit(self.peek(2)))
        ):
            is_real = True
            self.pos += 2
            while _digit(self.peek()):
                self.pos += 1
        literal = text[start : self.pos]
        if _is_ident_start(self.peek()):
            unit_start = self.pos
            while _is_ident_char(self.peek()):
                self.pos += 1
            unit = text[unit_start : self.pos]
            if unit not in TIMESPAN_UNITS:
                raise self.error(f"unknown timespan unit '{unit}'", unit_start, self.pos)
            micros = round(float(literal) * TIMESPAN_UNITS[unit])
            self.emit(TokenKind.TIMESPAN, text[start : self.pos], start, micros)
            return
        if is_real:
            self.emit(TokenKind.REAL, literal, start, float(literal))
        else:
            self.emit(TokenKind.LONG, literal, start, int(literal))

    def word(self) -> None:
        start = self.pos
        text = self.text
        while _is_ident_char(self.peek()):
            self.pos += 1
        word = text[start : self.pos]
        if self.peek() == "-" and _is_ident_start(self.peek(1)):
            end = self.pos + 1
            while end < len(text) and _is_ident_char(text[end]):
                end += 1
            if text[start:end] in DASHED_WORDS:
                self.pos = end
                word = text[start:end]
        if word == "in" and self.peek() == "~":
            self.pos += 1
            self.emit(TokenKind.OP, "in~", start)
            return
        if word in _RAW_LITERALS and self.raw_literal(start, word):
            return
        self.emit(TokenKind.IDENT, word, start)

    def raw_literal(self, start: int, word: str) -> bool:
        """``datetime(...)`` and ``dynamic(...)``: the parenthesized text, kept raw."""
        i = self.pos
        while i < len(self.text) and self.text[i] in " \t":
            i += 1
        if i >= len(self.text) or self.text[i] != "(":
            return False
        depth = 0
        quote = ""
        j = i
        while j < len(self.text):
            ch = self.text[j]
            if quote:
                if ch == "\\":
                    j += 1
                elif ch == quote:
                    quote = ""
            elif ch in "'\"":
                quote = ch
            elif ch in "([{":
                depth += 1
            elif ch in ")]}":
                depth -= 1
                if depth == 0:
                    break
            j += 1
        if j >= len(self.text):
            raise self.error(f"unterminated {word}(...) literal", start, len(self.text))
        self.pos = j + 1
        self.tokens.append(
            Token(_RAW_LITERALS[word], self.text[i + 1 : j].strip(), Span(start, self.pos))
        )
        return True

    def negated(self) -> None:
        start = self.pos
        self.pos += 1
        while _is_ident_char(self.peek()):
            self.pos += 1
        word = self.text[start + 1 : self.pos]
        if word == "in" and self.peek() == "~":
            self.pos += 1
            word = "in~"
        if word not in NEGATED_WORDS:
            raise self.error(f"unknown operator '!{word}'", start, self.pos)
        self.emit(TokenKind.OP, "!" + word, start)

    def operator(self) -> None:
        start = self.pos
        for op in _OPERATORS:
            if self.text.startswith(op, start):
                self.pos += len(op)
                self.emit(TokenKind.OP, op, start)
                return
        raise self.error(f"unexpected character {self.text[start]!r}", start, start + 1)


def tokenize(text: str) -> list[Token]:
    """The tokens of ``text``, ending with an EOF token."""
    return _Lexer(text).run()
