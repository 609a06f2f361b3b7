"""Templates: parsed once, rendered by lookup only, never formatted or evaluated."""

from __future__ import annotations

import doctest

import pytest

from iotsec.analytics.rules import templates as templates_module
from iotsec.analytics.rules.model import SourceLocation
from iotsec.analytics.rules.templates import (
    MAX_VALUE_CHARS,
    MISSING,
    TemplateSyntaxError,
    parse_template,
    render,
    text,
)

HERE = SourceLocation("t.yaml", 3, 5)


def test_doctests() -> None:
    assert doctest.testmod(templates_module).failed == 0


@pytest.mark.parametrize(
    ("source", "parts"),
    [
        ("plain", ("plain",)),
        ("{A}", ("", "A", "")),
        ("a {B} c {D.e-f}", ("a ", "B", " c ", "D.e-f", "")),
        ("{{literal}} {X}}}", ("{literal} ", "X", "}")),
        ("{ Spaced }", ("", "Spaced", "")),
        ("", ("",)),
    ],
)
def test_parse(source: str, parts: tuple[str, ...]) -> None:
    assert parse_template(source, HERE).parts == parts


@pytest.mark.parametrize(
    ("source", "offset", "reason"),
    [
        ("abc {X", 4, "unclosed '{'"),
        ("a } b", 2, "unmatched '}'"),
        ("x {} y", 2, "bad placeholder {}"),
        ("x {0.__class__}", 2, "bad placeholder {0.__class__}"),
        ("x {a b}", 2, "bad placeholder {a b}"),
        ("x {a{b}", 2, "bad placeholder {a{b}"),
    ],
)
def test_syntax_errors_carry_their_offset(source: str, offset: int, reason: str) -> None:
    with pytest.raises(TemplateSyntaxError) as caught:
        parse_template(source, HERE)
    assert caught.value.offset == offset
    assert caught.value.reason.startswith(reason)


def test_render_inserts_values_as_text_only() -> None:
    template = parse_template("{A} / {B} / {C} / {D} / {E} / {F}", HERE)
    values: dict[str, object] = {
        "A": "{B} {0.__class__} %s",
        "B": 7,
        "C": True,
        "D": {"k": "v", "n": 1},
        "E": ["x", None],
    }
    assert render(template, values.get) == (
        f"{{B}} {{0.__class__}} %s / 7 / true / k=v, n=1 / x, {MISSING} / {MISSING}"
    )


def test_control_characters_are_escaped_and_long_values_cut() -> None:
    assert text("a\nb\rc\td\x1b[31m\x7f") == "a\\nb\\rc\\td\\x1b[31m\\x7f"
    long = text("x" * (MAX_VALUE_CHARS * 2))
    assert len(long) == MAX_VALUE_CHARS and long.endswith("...")
    assert text(object()) == "<object>"
    assert text(1.5) == "1.5"
