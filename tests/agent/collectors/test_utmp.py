"""utmp/wtmp/btmp records: glibc's layout, the writer round-trip, and arbitrary bytes."""

from __future__ import annotations

import contextlib
import doctest
import ipaddress
import struct
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iotsec.agent.collectors.utmp import (
    RECORD_SIZE,
    UtmpRecord,
    UtmpType,
    encode_utmp,
    parse_utmp,
)
from iotsec.agent.errors import ParseError

# glibc's struct utmp on x86_64/aarch64, by byte offset, written out independently of the
# module's struct format so a layout mistake shows here.
OFFSETS = {
    "ut_type": 0,
    "ut_pid": 4,
    "ut_line": 8,
    "ut_id": 40,
    "ut_user": 44,
    "ut_host": 76,
    "e_termination": 332,
    "e_exit": 334,
    "ut_session": 336,
    "tv_sec": 340,
    "tv_usec": 344,
    "ut_addr_v6": 348,
    "reserved": 364,
}


def sample() -> UtmpRecord:
    return UtmpRecord(
        type=UtmpType.LOGIN_PROCESS,
        pid=1234,
        line="ssh:notty",
        id="",
        user="admin",
        host="203.0.113.50",
        session=7,
        seconds=1_709_460_903,
        microseconds=910_552,
        address="203.0.113.50",
    )


def test_a_record_is_384_bytes_in_glibc_layout() -> None:
    raw = encode_utmp([sample()])
    assert RECORD_SIZE == 384 == len(raw)
    assert struct.unpack_from("<h", raw, OFFSETS["ut_type"]) == (6,)
    assert struct.unpack_from("<i", raw, OFFSETS["ut_pid"]) == (1234,)
    assert raw[OFFSETS["ut_line"] : OFFSETS["ut_line"] + 10] == b"ssh:notty\0"
    assert raw[OFFSETS["ut_user"] : OFFSETS["ut_user"] + 6] == b"admin\0"
    assert raw[OFFSETS["ut_host"] : OFFSETS["ut_host"] + 12] == b"203.0.113.50"
    assert struct.unpack_from("<i", raw, OFFSETS["ut_session"]) == (7,)
    assert struct.unpack_from("<iI", raw, OFFSETS["tv_sec"]) == (1_709_460_903, 910_552)
    assert raw[OFFSETS["ut_addr_v6"] : OFFSETS["ut_addr_v6"] + 16] == bytes(
        [203, 0, 113, 50] + [0] * 12
    )
    assert raw[OFFSETS["reserved"] :] == bytes(20)


def test_records_parse_back_with_time_and_address() -> None:
    record = sample()
    parsed = parse_utmp(encode_utmp([record, record]), source="/var/log/btmp")
    assert parsed.records == (record, record)
    assert (parsed.consumed, parsed.tail) == (768, 0)
    assert record.time == datetime(2024, 3, 3, 10, 15, 3, 910_552, tzinfo=UTC)


def test_ipv6_and_mapped_addresses() -> None:
    v6 = UtmpRecord(UtmpType.USER_PROCESS, user="pi", address="2001:db8::7")
    mapped = UtmpRecord(UtmpType.USER_PROCESS, user="pi", address="::ffff:10.0.0.7")
    parsed = parse_utmp(encode_utmp([v6, mapped]), source="wtmp").records
    assert [r.address for r in parsed] == ["2001:db8::7", "10.0.0.7"]


def test_a_truncated_tail_record_is_reported_not_parsed() -> None:
    raw = encode_utmp([sample()])
    parsed = parse_utmp(raw + raw[:100], source="/var/log/btmp")
    assert len(parsed.records) == 1
    assert (parsed.consumed, parsed.tail) == (384, 100)
    assert parse_utmp(raw[:383], source="btmp").records == ()


def test_an_unknown_type_names_the_record_position() -> None:
    raw = bytearray(encode_utmp([sample(), sample()]))
    raw[384] = 42
    with pytest.raises(ParseError, match=r"record at byte 4224: unknown ut_type 42") as caught:
        parse_utmp(bytes(raw), source="/var/log/wtmp", offset=3840)
    assert caught.value.source == "/var/log/wtmp"


def test_undecodable_names_are_replaced_not_raised() -> None:
    raw = bytearray(encode_utmp([sample()]))
    raw[OFFSETS["ut_user"] : OFFSETS["ut_user"] + 3] = b"\xff\xfeA"
    (record,) = parse_utmp(bytes(raw), source="btmp").records
    assert record.user == "\ufffd\ufffdAin"


def test_the_writer_refuses_fields_that_do_not_fit() -> None:
    with pytest.raises(ValueError, match="user"):
        encode_utmp([UtmpRecord(UtmpType.USER_PROCESS, user="x" * 33)])
    with pytest.raises(ValueError, match="line"):
        encode_utmp([UtmpRecord(UtmpType.USER_PROCESS, line="a\0b")])


@settings(max_examples=300)
@given(st.binary(max_size=4 * RECORD_SIZE + 50), st.integers(0, 2**40))
def test_arbitrary_bytes_give_records_or_parse_error(data: bytes, offset: int) -> None:
    with contextlib.suppress(ParseError):
        parsed = parse_utmp(data, source="fuzz", offset=offset)
        assert parsed.consumed + parsed.tail == len(data)
        assert len(parsed.records) == len(data) // RECORD_SIZE


def _fits(size: int) -> st.SearchStrategy[str]:
    text = st.text(st.characters(codec="utf-8", exclude_characters="\0"))
    return text.filter(lambda s: len(s.encode()) <= size)


def _distinct_v6(ip: ipaddress.IPv6Address) -> bool:
    # glibc's format cannot tell an IPv6 address whose last 12 bytes are zero from IPv4.
    return any(ip.packed[4:]) and ip.ipv4_mapped is None


_addresses = (
    st.none()
    | st.integers(1, 2**32 - 1).map(lambda n: str(ipaddress.IPv4Address(n)))
    | st.integers(1, 2**128 - 1).map(ipaddress.IPv6Address).filter(_distinct_v6).map(str)
)


@settings(max_examples=200)
@given(
    st.builds(
        UtmpRecord,
        type=st.sampled_from(UtmpType),
        pid=st.integers(-(2**31), 2**31 - 1),
        line=_fits(32),
        id=_fits(4),
        user=_fits(32),
        host=_fits(256),
        exit_termination=st.integers(-(2**15), 2**15 - 1),
        exit_status=st.integers(-(2**15), 2**15 - 1),
        session=st.integers(-(2**31), 2**31 - 1),
        seconds=st.integers(0, 2**32 - 1),
        microseconds=st.integers(0, 999_999),
        address=_addresses,
    )
)
def test_parse_of_encode_is_identity(record: UtmpRecord) -> None:
    (parsed,) = parse_utmp(encode_utmp([record]), source="roundtrip").records
    assert parsed == record
    if record.address is not None:
        assert ipaddress.ip_address(parsed.address or "") == ipaddress.ip_address(record.address)


def test_the_module_examples_run() -> None:
    import iotsec.agent.collectors.utmp as module  # noqa: PLC0415  # the module under doctest

    failed, attempted = doctest.testmod(module)
    assert (failed, attempted > 0) == (0, True)
