"""The hub's MQTT 3.1.1 codec: the standard's byte examples, round trips, any split of the
stream, a fuzz of the decoder, and paho-mqtt's own bytes over loopback."""

from __future__ import annotations

import doctest
import importlib
import socket
import typing
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from paho.mqtt.client import Client, MQTTv311
from paho.mqtt.enums import CallbackAPIVersion

from iotsec.hub.errors import PacketError
from iotsec.hub.mqtt.codec import _encode_length, _read_length, decode_packet, encode
from iotsec.hub.mqtt.packets import (
    MAX_REMAINING_LENGTH,
    Connack,
    Connect,
    ConnectRefused,
    Disconnect,
    Packet,
    Pingreq,
    Pingresp,
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    Suback,
    Subscribe,
    Unsuback,
    Unsubscribe,
    Will,
)
from iotsec.hub.mqtt.reader import PacketReader, check_client_packet

# == strategies: every valid packet ===========================================================

# Any code point UTF-8 can encode (so no surrogates) but U+0000, which MQTT strings may not hold.
TEXT_CHARS = st.characters(codec="utf-8", exclude_characters="\x00")
LEVEL_CHARS = st.characters(codec="utf-8", exclude_characters="\x00/+#")

texts = st.text(TEXT_CHARS, max_size=24)
levels = st.text(LEVEL_CHARS, max_size=8)
topic_names = st.lists(levels, min_size=1, max_size=5).map("/".join).filter(bool)
topic_filters = st.builds(
    lambda parts, multi: "/".join([*parts, "#"] if multi else parts),
    st.lists(levels | st.just("+"), max_size=5),
    st.booleans(),
).filter(bool)
packet_ids = st.integers(1, 0xFFFF)
qoses = st.integers(0, 2)
payloads = st.binary(max_size=300)

wills = st.builds(Will, topic_names, st.binary(max_size=40), qoses, st.booleans())


@st.composite
def connects(draw: st.DrawFn) -> Connect:
    client_id = draw(texts)
    username = draw(st.none() | texts)
    password = draw(st.none() | st.binary(max_size=40)) if username is not None else None
    clean_session = draw(st.booleans()) if client_id else True
    keepalive = draw(st.integers(0, 0xFFFF))
    return Connect(client_id, username, password, keepalive, clean_session, draw(st.none() | wills))


publishes = st.one_of(
    st.builds(Publish, topic_names, payloads, st.just(0), st.booleans(), st.just(False)),
    st.builds(
        Publish,
        topic_names,
        payloads,
        st.integers(1, 2),
        st.booleans(),
        st.booleans(),
        packet_ids,
    ),
)
packets: st.SearchStrategy[Packet] = st.one_of(
    connects(),
    st.builds(Connack, st.just(False), st.integers(0, 5)),
    st.builds(Connack, st.just(True), st.just(0)),
    publishes,
    st.builds(Puback, packet_ids),
    st.builds(Pubrec, packet_ids),
    st.builds(Pubrel, packet_ids),
    st.builds(Pubcomp, packet_ids),
    st.builds(
        Subscribe, packet_ids, st.lists(st.tuples(topic_filters, qoses), min_size=1).map(tuple)
    ),
    st.builds(
        Suback, packet_ids, st.lists(st.sampled_from([0, 1, 2, 0x80]), min_size=1).map(tuple)
    ),
    st.builds(Unsubscribe, packet_ids, st.lists(topic_filters, min_size=1).map(tuple)),
    st.builds(Unsuback, packet_ids),
    st.just(Pingreq()),
    st.just(Pingresp()),
    st.just(Disconnect()),
)

# == the standard's examples, byte for byte ===================================================

#: (packet, its bytes), from the non-normative examples of MQTT 3.1.1 where it has them.
FIXTURES = [
    # 3.1.2.10: protocol name, level 4, flags 0xCE (user name, password, will QoS 1, will,
    # clean session), keep alive 10; then the payload in the order of 3.1.3.
    (
        Connect("c1", "u", b"pw", 10, True, Will("w/t", b"bye", 1, False)),
        "10 1f 0004 4d515454 04 ce 000a 0002 6331 0003 772f74 0003 627965 0001 75 0002 7077",
    ),
    (Connect("", keepalive=0), "10 0c 0004 4d515454 04 02 0000 0000"),
    (Connack(True, 0), "20 02 01 00"),
    (Connack(False, 5), "20 02 00 05"),
    # 3.3.2.3: topic name "a/b", packet identifier 10.
    (Publish("a/b", b"", 1, packet_id=10), "32 07 0003 612f62 000a"),
    (Publish("a/b", b"hi", 0, retain=True), "31 07 0003 612f62 6869"),
    (Publish("a/b", b"", 2, dup=True, packet_id=1), "3c 07 0003 612f62 0001"),
    # 1.5.3: "A\U0002A6D4" is 0x41 then F0 AA 9B 94.
    (Publish("A\U0002a6d4", b""), "30 07 0005 41f0aa9b94"),
    (Puback(10), "40 02 000a"),
    (Pubrec(10), "50 02 000a"),
    (Pubrel(10), "62 02 000a"),
    (Pubcomp(10), "70 02 000a"),
    # 3.8.3.1: "a/b" at QoS 1 and "c/d" at QoS 2, packet identifier 10.
    (Subscribe(10, (("a/b", 1), ("c/d", 2))), "82 0e 000a 0003 612f62 01 0003 632f64 02"),
    # 3.9.3: maximum QoS 0, maximum QoS 2, failure.
    (Suback(10, (0, 2, 0x80)), "90 05 000a 00 02 80"),
    (Unsubscribe(10, ("a/b", "c/d")), "a2 0c 000a 0003 612f62 0003 632f64"),
    (Unsuback(10), "b0 02 000a"),
    (Pingreq(), "c0 00"),
    (Pingresp(), "d0 00"),
    (Disconnect(), "e0 00"),
]


@pytest.mark.parametrize(("packet", "wire"), FIXTURES, ids=lambda v: type(v).__name__)
def test_the_standards_examples_encode_and_decode_byte_for_byte(packet: Packet, wire: str) -> None:
    data = bytes.fromhex(wire)
    assert encode(packet) == data
    assert decode_packet(data) == packet


def test_every_packet_type_has_a_fixture() -> None:
    assert {type(p) for p, _ in FIXTURES} == set(typing.get_args(Packet))


#: Table 2.4: the smallest and largest value of each size of the remaining length.
LENGTHS = [
    (0, "00"),
    (127, "7f"),
    (128, "8001"),
    (16_383, "ff7f"),
    (16_384, "808001"),
    (2_097_151, "ffff7f"),
    (2_097_152, "80808001"),
    (268_435_455, "ffffff7f"),
    (321, "c102"),  # 2.2.3's worked example
]


@pytest.mark.parametrize(("value", "wire"), LENGTHS)
def test_remaining_length_encoding_follows_table_2_4(value: int, wire: str) -> None:
    data = bytes.fromhex(wire)
    assert _encode_length(value) == data
    assert _read_length(b"\x30" + data, 0, 1 + len(data)) == (value, 1 + len(data))


def test_a_payload_needing_a_three_byte_length_round_trips() -> None:
    packet = Publish("t", bytes(range(256)) * 70, 1, packet_id=3)
    data = encode(packet)
    assert data[1:4] == _encode_length(len(data) - 4)
    assert decode_packet(data) == packet


def test_remaining_length_past_the_protocol_maximum_cannot_be_encoded() -> None:
    with pytest.raises(PacketError) as caught:
        _encode_length(MAX_REMAINING_LENGTH + 1)
    assert caught.value.reason == "remaining length 268435456 is over MQTT's 268435455"


def test_a_byte_order_mark_is_kept_not_stripped() -> None:
    # MQTT-1.5.3-3: EF BB BF is U+FEFF wherever it is, and a receiver must not skip it.
    packet = decode_packet(bytes.fromhex("30 06 0004 efbbbf61"))
    assert packet == Publish("\ufeffa", b"")


def test_the_password_stays_out_of_the_repr() -> None:
    assert "s3cret" not in repr(Connect("d", "u", b"s3cret"))


# == round trips ==============================================================================


@settings(max_examples=400)
@given(packets)
def test_every_valid_packet_round_trips(packet: Packet) -> None:
    assert decode_packet(encode(packet)) == packet


@given(st.lists(packets, max_size=8), st.data())
def test_the_reader_gives_the_same_packets_however_the_stream_is_cut(
    stream_packets: list[Packet], data: st.DataObject
) -> None:
    stream = b"".join(map(encode, stream_packets))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=12)))
    reader = PacketReader()
    decoded = []
    for start, stop in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        decoded += reader.feed(stream[start:stop])
    assert decoded == stream_packets
    assert reader.buffered == 0


@given(connects(), st.lists(packets.filter(lambda p: not isinstance(p, Connect)), max_size=6))
def test_a_server_reader_takes_a_connect_then_anything_else(
    connect: Connect, rest: list[Packet]
) -> None:
    stream = b"".join(map(encode, [connect, *rest]))
    reader = PacketReader(expect_connect=True)
    assert [p for i in range(len(stream)) for p in reader.feed(stream[i : i + 1])] == [
        connect,
        *rest,
    ]


def test_one_read_can_complete_a_packet_and_hold_the_start_of_the_next() -> None:
    first, second = encode(Puback(1)), encode(Publish("t", b"x" * 200, 1, packet_id=2))
    reader = PacketReader()
    assert reader.feed(first + second[:2]) == [Puback(1)]
    assert reader.buffered == 2
    assert reader.feed(second[2:50]) == []
    assert reader.buffered == 50
    assert reader.feed(second[50:] + encode(Pingreq())) == [
        Publish("t", b"x" * 200, 1, packet_id=2),
        Pingreq(),
    ]
    assert reader.buffered == 0


def test_decode_takes_bytearray_and_memoryview() -> None:
    data = encode(Publish("a/b", b"xyz"))
    assert (
        decode_packet(bytearray(data))
        == decode_packet(memoryview(data)[0:])
        == Publish("a/b", b"xyz")
    )


def test_a_reader_cap_above_the_protocol_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="outside"):
        PacketReader(MAX_REMAINING_LENGTH + 1)


# == the values refuse what the wire may not carry ============================================


@pytest.mark.parametrize(
    ("build", "reason"),
    [
        (lambda: Publish("", b""), "PUBLISH topic is empty"),
        (lambda: Publish("a/#", b""), "PUBLISH topic contains a wildcard '#'"),
        (lambda: Publish("a\x00b", b""), "PUBLISH topic contains U+0000"),
        (lambda: Publish("a\ud800", b""), "PUBLISH topic contains the surrogate U+D800"),
        (
            lambda: Publish("é" * 40_000, b""),
            "PUBLISH topic is 80000 bytes of UTF-8, over the 65535-byte limit",
        ),
        (lambda: Publish("t", b"", 3, packet_id=1), "PUBLISH QoS 3 is invalid; QoS is 0, 1 or 2"),
        (lambda: Publish("t", b"", 0, packet_id=1), "QoS 0 PUBLISH must not carry a packet id"),
        (lambda: Publish("t", b"", 0, dup=True), "QoS 0 PUBLISH must not set DUP"),
        (lambda: Publish("t", b"", 1), "QoS 1 PUBLISH needs a packet id"),
        (
            lambda: Publish("t", b"", 1, packet_id=0),
            "packet id 0 on PUBLISH is invalid; ids are 1..65535",
        ),
        (lambda: Puback(65_536), "packet id 65536 on PUBACK is invalid; ids are 1..65535"),
        (lambda: Connack(False, 6), "CONNACK return code 6 is reserved"),
        (lambda: Connack(True, 4), "CONNACK refusing a connection must not set session present"),
        (lambda: Connect("d", None, b"pw"), "CONNECT has a password but no user name"),
        (lambda: Connect("d", keepalive=70_000), "CONNECT keep alive 70000 is outside 0..65535"),
        (
            lambda: Connect("d", "u", b"p" * 70_000),
            "CONNECT password is 70000 bytes, over the 65535-byte limit",
        ),
        (lambda: Will("w/+", b""), "CONNECT will topic contains a wildcard '+'"),
        (lambda: Will("w", b"", 3), "CONNECT will QoS 3 is invalid; QoS is 0, 1 or 2"),
        (lambda: Subscribe(1, ()), "SUBSCRIBE has no topic filters"),
        (
            lambda: Subscribe(1, (("a", 3),)),
            "SUBSCRIBE requested QoS 3 is invalid; QoS is 0, 1 or 2",
        ),
        (lambda: Subscribe(1, (("", 0),)), "SUBSCRIBE topic filter is empty"),
        (lambda: Unsubscribe(1, ()), "UNSUBSCRIBE has no topic filters"),
        (lambda: Unsubscribe(1, ("a+",)), "UNSUBSCRIBE topic filter 'a+' has '+' inside a level"),
        (lambda: Suback(1, ()), "SUBACK has no return codes"),
        (lambda: Suback(1, (3,)), "SUBACK return code 0x03 is reserved"),
    ],
)
def test_a_value_the_wire_may_not_carry_cannot_be_built(build: object, reason: str) -> None:
    with pytest.raises(PacketError) as caught:
        build()  # type: ignore[operator]  # each case is a zero-argument lambda
    assert caught.value.reason == reason


def test_an_empty_client_id_without_clean_session_is_a_connack_2_refusal() -> None:
    with pytest.raises(ConnectRefused) as caught:
        Connect("", clean_session=False)
    assert caught.value.return_code == 2
    assert caught.value.reason == "CONNECT with an empty client id must set clean session"


@pytest.mark.parametrize(
    "topic_filter", ["#", "+", "/", "a/#", "+/+", "/+", "+/tennis/#", "sport/+/player1", "$SYS/#"]
)
def test_the_standards_valid_topic_filters_are_taken(topic_filter: str) -> None:
    assert Subscribe(1, ((topic_filter, 0),)).filters[0][0] == topic_filter


# == the hub's refusals on a device's packets =================================================


@pytest.mark.parametrize(
    ("packet", "reason"),
    [
        (
            Publish("t", b"", 2, packet_id=1),
            "QoS 2 PUBLISH is not supported; the hub takes QoS 0 and 1",
        ),
        (Pubrec(1), "PUBREC is part of a QoS 2 flow, which the hub refuses"),
        (Pubrel(1), "PUBREL is part of a QoS 2 flow, which the hub refuses"),
        (Pubcomp(1), "PUBCOMP is part of a QoS 2 flow, which the hub refuses"),
        (Connack(False, 0), "CONNACK is sent by servers, not clients"),
        (Suback(1, (0,)), "SUBACK is sent by servers, not clients"),
        (Unsuback(1), "UNSUBACK is sent by servers, not clients"),
        (Pingresp(), "PINGRESP is sent by servers, not clients"),
    ],
)
def test_the_hub_refuses_qos_2_and_server_packets_from_a_device(
    packet: Packet, reason: str
) -> None:
    with pytest.raises(PacketError) as caught:
        check_client_packet(packet)
    assert caught.value.reason == reason


@pytest.mark.parametrize(
    "packet",
    [
        Connect("d"),
        Publish("t", b"", 1, packet_id=1),
        Puback(1),
        Subscribe(1, (("t", 2),)),  # granted QoS 1 by the server; not an error
        Unsubscribe(1, ("t",)),
        Pingreq(),
        Disconnect(),
    ],
)
def test_the_hub_takes_what_a_device_may_send(packet: Packet) -> None:
    check_client_packet(packet)


# == fuzz: only PacketError, and nothing but canonical bytes is taken =========================

FUZZ = settings(
    max_examples=500, deadline=timedelta(seconds=1), suppress_health_check=[HealthCheck.too_slow]
)
FIRST_BYTES = st.sampled_from([t << 4 | f for t in range(16) for f in range(16)])


def _decodes_canonically_or_refuses(data: bytes) -> None:
    try:
        packet = decode_packet(data)
    except PacketError:
        return
    # Every field of a packet is pinned by the standard, so a packet taken must be the one
    # encoding of its value: nothing the decoder accepts is lost by re-encoding.
    assert encode(packet) == data


@FUZZ
@given(st.binary(max_size=300))
@example(b"")
@example(b"\x30")
@example(b"\x30\xff\xff\xff\xff\x7f")
@example(b"\x10\x80\x00")
def test_arbitrary_bytes_raise_only_packet_error(data: bytes) -> None:
    _decodes_canonically_or_refuses(data)


@FUZZ
@given(FIRST_BYTES, st.binary(max_size=120))
def test_arbitrary_bodies_behind_every_first_byte_raise_only_packet_error(
    first: int, body: bytes
) -> None:
    _decodes_canonically_or_refuses(bytes([first]) + _encode_length(len(body)) + body)


@FUZZ
@given(packets, st.data())
def test_mutated_valid_packets_raise_only_packet_error(packet: Packet, data: st.DataObject) -> None:
    wire = bytearray(encode(packet))
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(wire)))
        match data.draw(st.sampled_from(["flip", "set", "insert", "delete"])):
            case "flip" if at < len(wire):
                wire[at] ^= 1 << data.draw(st.integers(0, 7))
            case "set" if at < len(wire):
                wire[at] = data.draw(st.integers(0, 255))
            case "insert":
                wire[at:at] = data.draw(st.binary(min_size=1, max_size=4))
            case "delete":
                del wire[at : at + data.draw(st.integers(1, 4))]
    _decodes_canonically_or_refuses(bytes(wire))


@FUZZ
@given(st.lists(st.binary(max_size=64), max_size=8), st.booleans())
def test_the_reader_raises_only_packet_error_and_stays_failed(
    chunks: list[bytes], expect_connect: bool
) -> None:
    reader = PacketReader(1000, expect_connect=expect_connect)
    for chunk in chunks:
        try:
            reader.feed(chunk)
        except PacketError as failure:
            with pytest.raises(PacketError) as again:
                reader.feed(b"\xc0\x00")
            assert again.value is failure
            return
        assert reader.buffered <= 1005


@FUZZ
@given(st.binary(max_size=200))
def test_the_reader_takes_what_decode_packet_takes(data: bytes) -> None:
    try:
        packet = decode_packet(data)
    except PacketError:
        return
    assert PacketReader(MAX_REMAINING_LENGTH).feed(data) == [packet]


# == paho-mqtt's bytes ========================================================================


def test_paho_mqtt_packets_decode_and_match_our_encoding() -> None:
    """A real paho-mqtt 2.x client on loopback: what it sends decodes, and is what we encode."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = Client(CallbackAPIVersion.VERSION2, client_id="device-1", protocol=MQTTv311)
        client.username_pw_set("hub/device-1/?api-version=2021-04-12", "SharedAccessSignature x")
        client.will_set("devices/device-1/messages/events/", b"gone", qos=1, retain=False)
        client.connect("127.0.0.1", server.getsockname()[1], keepalive=30)
        connection, _ = server.accept()
        with connection:
            connection.settimeout(5)
            reader = PacketReader(expect_connect=True)

            def receive() -> tuple[Packet, bytes]:
                raw = b""
                while True:
                    chunk = connection.recv(65_536)
                    assert chunk, "paho closed the connection"
                    raw += chunk
                    if got := reader.feed(chunk):
                        assert len(got) == 1
                        return got[0], raw

            connect, raw = receive()
            assert connect == Connect(
                "device-1",
                "hub/device-1/?api-version=2021-04-12",
                b"SharedAccessSignature x",
                30,
                True,
                Will("devices/device-1/messages/events/", b"gone", 1, False),
            )
            assert encode(connect) == raw
            connection.sendall(encode(Connack(False, 0)))
            client.loop(timeout=2)
            assert client.is_connected()

            payload = bytes(range(256)) * 20
            client.publish("devices/device-1/messages/events/%24.ct=application%2Fjson", payload, 1)
            publish, raw = receive()
            assert isinstance(publish, Publish)
            assert (publish.topic, publish.payload, publish.qos) == (
                "devices/device-1/messages/events/%24.ct=application%2Fjson",
                payload,
                1,
            )
            assert encode(publish) == raw

            client.subscribe(
                [("devices/device-1/messages/devicebound/#", 1), ("$iothub/twin/res/#", 0)]
            )
            subscribe, raw = receive()
            assert isinstance(subscribe, Subscribe)
            assert subscribe.filters == (
                ("devices/device-1/messages/devicebound/#", 1),
                ("$iothub/twin/res/#", 0),
            )
            assert encode(subscribe) == raw

            client.disconnect()
            assert receive() == (Disconnect(), b"\xe0\x00")


# == the docstring examples run ===============================================================


@pytest.mark.parametrize(
    "name", ["iotsec.hub.mqtt.packets", "iotsec.hub.mqtt.codec", "iotsec.hub.mqtt.reader"]
)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
