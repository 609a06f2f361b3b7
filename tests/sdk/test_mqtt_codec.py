"""The loopback hub's MQTT codec: round trips, strictness, and no crash on arbitrary bytes."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.sdk.loopback_mqtt import (
    DISCONNECT,
    PINGREQ,
    ConnAck,
    Connect,
    Packet,
    PacketError,
    PubAck,
    Publish,
    Simple,
    SubAck,
    Subscribe,
    UnsubAck,
    Unsubscribe,
    decode,
    decode_varint,
    encode,
    encode_varint,
    split,
)

names = st.text(min_size=1, max_size=20).filter(lambda t: "\x00" not in t)
topics = names.filter(lambda t: "+" not in t and "#" not in t)
pids = st.integers(1, 0xFFFF)
publishes = st.one_of(
    st.builds(Publish, topics, st.binary(max_size=64), st.just(0), st.none(), st.booleans()),
    st.builds(
        Publish,
        topics,
        st.binary(max_size=64),
        st.integers(1, 2),
        pids,
        st.booleans(),
        st.booleans(),
    ),
)
packets: st.SearchStrategy[Packet] = st.one_of(
    st.builds(
        Connect,
        names,
        st.none() | names,
        st.none() | st.binary(max_size=40),
        st.integers(0, 0xFFFF),
        st.booleans(),
        st.none() | st.tuples(topics, st.binary(max_size=8), st.integers(0, 2), st.booleans()),
    ),
    st.builds(ConnAck, st.integers(0, 5), st.booleans()),
    publishes,
    st.builds(PubAck, pids),
    st.builds(
        Subscribe,
        pids,
        st.lists(st.tuples(names, st.integers(0, 2)), min_size=1, max_size=4).map(tuple),
    ),
    st.builds(
        SubAck, pids, st.lists(st.sampled_from([0, 1, 2, 0x80]), min_size=1, max_size=4).map(tuple)
    ),
    st.builds(Unsubscribe, pids, st.lists(names, min_size=1, max_size=4).map(tuple)),
    st.builds(UnsubAck, pids),
    st.sampled_from([Simple(PINGREQ), Simple(DISCONNECT)]),
)


@given(packets)
def test_round_trip(packet: Packet) -> None:
    if isinstance(packet, Connect) and packet.password is not None and packet.username is None:
        packet = Connect(packet.client_id, "user", packet.password, packet.keepalive)
    assert split(encode(packet) + b"rest") == (packet, b"rest")


@given(st.integers(0, 268_435_455))
def test_varint_round_trip(value: int) -> None:
    raw = encode_varint(value)
    assert len(raw) == 1 + (value >= 128) + (value >= 16384) + (value >= 2_097_152)
    assert decode_varint(b"x" + raw + b"tail", 1) == (value, len(raw))
    assert decode_varint(raw[:-1]) is None


@given(st.binary(max_size=64))
def test_arbitrary_bytes_raise_only_packet_error(data: bytes) -> None:
    with contextlib.suppress(PacketError):
        split(data)


@given(st.integers(0, 255), st.binary(max_size=64))
def test_arbitrary_bodies_raise_only_packet_error(first: int, body: bytes) -> None:
    with contextlib.suppress(PacketError):
        decode(first, body)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x80\x00", "flags"),  # SUBSCRIBE needs flags 0b0010
        (b"\x36\x03\x00\x01a", "QoS 3"),
        (b"\x30\x03\x00\x01#", "invalid topic"),
        (b"\x32\x05\x00\x01a\x00\x00", "packet id 0"),
        (b"\x10\x0c\x00\x04MQTT\x04\x01\x00\x3c\x00\x00", "reserved"),
        (b"\x10\x0c\x00\x04MQTT\x04\x40\x00\x3c\x00\x00", "password without user name"),
        (b"\xc0\x01\x00", "trailing"),
        (b"\xc0\x80\x80\x80\x80\x01", "four bytes"),
        (b"\x30\x03\x00\x01\xff", "UTF-8"),
        (b"\x82\x02\x00\x01", "without topic filters"),
    ],
)
def test_malformed_packets(data: bytes, reason: str) -> None:
    with pytest.raises(PacketError, match=reason):
        split(data)
