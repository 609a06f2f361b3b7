"""Every kind of malformed or forbidden MQTT input the hub must refuse, with its exact reason."""

from __future__ import annotations

import tracemalloc

import pytest

from iotsec.hub.errors import PacketError
from iotsec.hub.mqtt.codec import _encode_length, decode_packet, encode
from iotsec.hub.mqtt.packets import (
    Connect,
    ConnectRefused,
    Packet,
    Pingreq,
    Publish,
    Pubrel,
    Subscribe,
)
from iotsec.hub.mqtt.reader import DEFAULT_MAX_PACKET_BYTES, PacketReader, check_client_packet


def packet(first: int, body: bytes) -> bytes:
    """A packet with the given first byte and body, the remaining length filled in."""
    return bytes([first]) + _encode_length(len(body)) + body


def string(raw: bytes) -> bytes:
    """A length-prefixed field holding ``raw`` as it is (valid UTF-8 or not)."""
    return len(raw).to_bytes(2, "big") + raw


def connect(
    payload: bytes = string(b"device-1"),
    *,
    name: bytes = b"MQTT",
    level: int = 4,
    flags: int = 0x02,
    keepalive: int = 60,
) -> bytes:
    return packet(
        0x10, string(name) + bytes([level, flags]) + keepalive.to_bytes(2, "big") + payload
    )


def refused(data: bytes) -> str:
    """The reason ``decode_packet`` gives for refusing ``data``."""
    with pytest.raises(PacketError) as caught:
        decode_packet(data)
    return caught.value.reason


# == the fixed header =========================================================================


def test_malformed_packet_of_a_reserved_type() -> None:
    assert refused(b"\x00\x00") == "packet type 0 is reserved"
    assert refused(b"\xf0\x00") == "packet type 15 (AUTH) is MQTT 5, not 3.1.1"


@pytest.mark.parametrize(
    ("first", "reason"),
    [
        (0x11, "reserved flags 0x1 on CONNECT must be 0x0"),
        (0x28, "reserved flags 0x8 on CONNACK must be 0x0"),
        (0x42, "reserved flags 0x2 on PUBACK must be 0x0"),
        (0x51, "reserved flags 0x1 on PUBREC must be 0x0"),
        (0x60, "reserved flags 0x0 on PUBREL must be 0x2"),
        (0x7F, "reserved flags 0xf on PUBCOMP must be 0x0"),
        (0x83, "reserved flags 0x3 on SUBSCRIBE must be 0x2"),
        (0x80, "reserved flags 0x0 on SUBSCRIBE must be 0x2"),
        (0x92, "reserved flags 0x2 on SUBACK must be 0x0"),
        (0xA0, "reserved flags 0x0 on UNSUBSCRIBE must be 0x2"),
        (0xB4, "reserved flags 0x4 on UNSUBACK must be 0x0"),
        (0xC1, "reserved flags 0x1 on PINGREQ must be 0x0"),
        (0xD2, "reserved flags 0x2 on PINGRESP must be 0x0"),
        (0xE8, "reserved flags 0x8 on DISCONNECT must be 0x0"),
    ],
)
def test_reserved_flags_in_the_fixed_header(first: int, reason: str) -> None:
    assert refused(bytes([first, 0x00])) == reason
    # The reader refuses it on the first byte, before any length or body.
    with pytest.raises(PacketError) as caught:
        PacketReader().feed(bytes([first]))
    assert caught.value.reason == reason


def test_publish_flags_qos_3_and_dup_at_qos_0() -> None:
    assert refused(b"\x36\x03\x00\x01t") == "PUBLISH QoS 3 is invalid; QoS is 0, 1 or 2"
    assert refused(b"\x38\x03\x00\x01t") == "QoS 0 PUBLISH must not set DUP"


def test_remaining_length_over_the_cap_is_refused_before_anything_is_buffered() -> None:
    header = b"\x30" + _encode_length(200_000_000)  # a PUBLISH announcing 200 MB
    assert len(header) == 5
    reader = PacketReader()
    for at in range(4):
        assert reader.feed(header[at : at + 1]) == []
        assert reader.buffered == at + 1  # the header's own bytes, nothing more
    with pytest.raises(PacketError) as caught:
        reader.feed(header[4:])
    assert caught.value.reason == "remaining length 200000000 over the 263168-byte cap"
    assert reader.buffered == 0

    # Header and a megabyte of body in one read: refused with none of the body copied.
    data = header + bytes(1 << 20)
    reader = PacketReader()
    tracemalloc.start()
    try:
        with pytest.raises(PacketError) as caught:
            reader.feed(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert caught.value.reason == "remaining length 200000000 over the 263168-byte cap"
    assert peak < 64 * 1024
    assert reader.buffered == 0


def test_the_cap_is_the_largest_remaining_length_taken() -> None:
    cap = DEFAULT_MAX_PACKET_BYTES
    topic = string(b"t")
    at_cap = packet(0x30, topic + bytes(cap - len(topic)))
    assert PacketReader().feed(at_cap) == [Publish("t", bytes(cap - len(topic)))]
    with pytest.raises(PacketError) as caught:
        PacketReader().feed(packet(0x30, topic + bytes(cap + 1 - len(topic))))
    assert caught.value.reason == "remaining length 263169 over the 263168-byte cap"


def test_remaining_length_longer_than_four_bytes() -> None:
    assert refused(b"\x30\xff\xff\xff\xff\x01") == "remaining length is longer than 4 bytes"
    # The reader knows at the fourth length byte, without waiting for a fifth.
    with pytest.raises(PacketError) as caught:
        PacketReader(268_435_455).feed(b"\x30\xff\xff\xff\xff")
    assert caught.value.reason == "remaining length is longer than 4 bytes"


def test_remaining_length_padded_past_its_minimal_encoding() -> None:
    assert refused(b"\xc0\x80\x00") == "remaining length 0 is padded to 2 bytes"
    assert refused(b"\x30\x83\x80\x00" + bytes(3)) == "remaining length 3 is padded to 3 bytes"


def test_remaining_length_that_does_not_fit_the_packet_type() -> None:
    assert refused(b"\x40\x03\x00\x01\x00") == "PUBACK remaining length 3 must be 2"
    assert refused(b"\xc0\x01\x00") == "PINGREQ remaining length 1 must be 0"
    assert refused(b"\x20\x01\x00") == "CONNACK remaining length 1 must be 2"


# == lengths that do not match the content ====================================================


def test_trailing_garbage_after_a_packet() -> None:
    assert refused(encode(Pingreq()) + b"\x00") == "1 byte after the end of the PINGREQ"
    data = encode(Publish("a/b", b"x")) + b"junk"
    assert refused(data) == "4 bytes after the end of the PUBLISH"
    # Inside the packet: bytes the CONNECT flags do not account for.
    assert refused(connect(string(b"d") + b"\x00\x00")) == (
        "2 bytes left over after the CONNECT payload"
    )


def test_truncated_packets() -> None:
    data = encode(Publish("a/b", b"payload", 1, packet_id=5))
    assert refused(data[:-1]) == "PUBLISH is truncated: remaining length 14, 13 bytes follow"
    assert refused(b"\x30\x80") == "PUBLISH fixed header is cut short"
    assert refused(b"") == "no bytes: a packet is at least 2"
    # A field whose length prefix says more than the packet holds.
    assert refused(packet(0x30, b"\x00\x09a/b")) == (
        "PUBLISH topic of 9 bytes runs past the end of the packet"
    )
    assert refused(packet(0x32, b"\x00\x03a/b\x00")) == (
        "PUBLISH packet id runs past the end of the packet"
    )
    assert refused(packet(0x10, string(b"MQTT") + b"\x04")) == (
        "CONNECT variable header runs past the end of the packet"
    )
    assert refused(connect(b"\x00")) == "CONNECT client id length runs past the end of the packet"


def test_truncated_packets_complete_later() -> None:
    publish = Publish("devices/d/messages/events/", bytes(range(200)), 1, packet_id=9)
    data = encode(publish)
    reader = PacketReader(expect_connect=True)
    first = encode(Connect("d"))
    assert reader.feed(first[:3]) == []
    assert reader.feed(first[3:] + data[:1]) == [Connect("d")]
    assert reader.buffered == 1
    assert reader.feed(data[1:100]) == []
    assert reader.buffered == 100
    assert reader.feed(data[100:]) == [publish]
    assert reader.buffered == 0


# == the connection's order ===================================================================


def test_first_packet_not_connect() -> None:
    reader = PacketReader(expect_connect=True)
    with pytest.raises(PacketError) as caught:
        reader.feed(b"\x30")  # refused on its first byte
    assert caught.value.reason == "first packet must be CONNECT, not PUBLISH"
    with pytest.raises(PacketError) as again:
        reader.feed(encode(Connect("d")))
    assert again.value is caught.value  # the reader stays failed


def test_second_connect() -> None:
    reader = PacketReader(expect_connect=True)
    with pytest.raises(PacketError) as caught:
        reader.feed(encode(Connect("d")) + encode(Connect("d")))
    assert caught.value.reason == "second CONNECT on the connection"


# == UTF-8 strings ============================================================================


def test_invalid_utf8() -> None:
    assert refused(connect(string(b"dev\xff"))) == "invalid UTF-8 in CONNECT client id at byte 3"
    # An overlong encoding of '/' and a sequence cut short are not well-formed UTF-8 either.
    assert (
        refused(packet(0x30, string(b"a\xc0\xafb"))) == "invalid UTF-8 in PUBLISH topic at byte 1"
    )
    assert refused(packet(0x30, string(b"a\xe2\x82"))) == "invalid UTF-8 in PUBLISH topic at byte 1"
    user = connect(string(b"d") + string(b"\xfe"), flags=0x82)
    assert refused(user) == "invalid UTF-8 in CONNECT user name at byte 0"


def test_utf16_surrogate_encoded_in_utf8() -> None:
    assert refused(packet(0x30, string(b"a\xed\xa0\x80"))) == (
        "PUBLISH topic encodes a UTF-16 surrogate at byte 1"
    )
    body = b"\x00\x01" + string(b"\xed\xbf\xbf") + b"\x00"
    assert refused(packet(0x82, body)) == (
        "SUBSCRIBE topic filter encodes a UTF-16 surrogate at byte 0"
    )


def test_null_character_u0000() -> None:
    assert refused(packet(0x30, string(b"a\x00b"))) == "PUBLISH topic contains U+0000"
    assert refused(connect(string(b"d\x00"))) == "CONNECT client id contains U+0000"
    assert refused(packet(0xA2, b"\x00\x01" + string(b"\x00"))) == (
        "UNSUBSCRIBE topic filter contains U+0000"
    )


# == topics ===================================================================================


def test_wildcard_in_publish_topic() -> None:
    assert refused(packet(0x30, string(b"devices/+/x"))) == "PUBLISH topic contains a wildcard '+'"
    assert refused(packet(0x30, string(b"devices/#"))) == "PUBLISH topic contains a wildcard '#'"
    will = connect(string(b"d") + string(b"w/#") + string(b"bye"), flags=0x06)
    assert refused(will) == "CONNECT will topic contains a wildcard '#'"


def test_empty_publish_topic() -> None:
    assert refused(packet(0x30, string(b"") + b"payload")) == "PUBLISH topic is empty"


@pytest.mark.parametrize(
    ("topic_filter", "reason"),
    [
        (b"sport/tennis#", "SUBSCRIBE topic filter 'sport/tennis#' has '#' inside a level"),
        (
            b"sport/tennis/#/ranking",
            "SUBSCRIBE topic filter 'sport/tennis/#/ranking' has '#' before its end",
        ),
        (b"#/", "SUBSCRIBE topic filter '#/' has '#' before its end"),
        (b"sport+", "SUBSCRIBE topic filter 'sport+' has '+' inside a level"),
        (b"a/+b/c", "SUBSCRIBE topic filter 'a/+b/c' has '+' inside a level"),
        (b"++", "SUBSCRIBE topic filter '++' has '+' inside a level"),
        (b"", "SUBSCRIBE topic filter is empty"),
    ],
)
def test_bad_wildcard_placement_in_subscribe(topic_filter: bytes, reason: str) -> None:
    assert refused(packet(0x82, b"\x00\x01" + string(topic_filter) + b"\x01")) == reason


def test_bad_wildcard_placement_in_unsubscribe() -> None:
    assert refused(packet(0xA2, b"\x00\x01" + string(b"a/b#"))) == (
        "UNSUBSCRIBE topic filter 'a/b#' has '#' inside a level"
    )


# == SUBSCRIBE and UNSUBSCRIBE ================================================================


def test_subscribe_without_topic_filters() -> None:
    assert refused(b"\x82\x02\x00\x01") == "SUBSCRIBE has no topic filters"
    assert refused(b"\xa2\x02\x00\x01") == "UNSUBSCRIBE has no topic filters"


def test_subscribe_requested_qos_out_of_range() -> None:
    def subscribe(qos_byte: bytes) -> bytes:
        return packet(0x82, b"\x00\x01" + string(b"a/b") + qos_byte)

    assert refused(subscribe(b"\x03")) == ("SUBSCRIBE requested QoS 3 is invalid; QoS is 0, 1 or 2")
    assert refused(subscribe(b"\x41")) == ("reserved bits set in SUBSCRIBE requested QoS byte 0x41")
    assert refused(subscribe(b"")) == "SUBSCRIBE topic filter has no requested QoS byte"


def test_packet_id_zero() -> None:
    assert refused(b"\x40\x02\x00\x00") == "packet id 0 on PUBACK is invalid; ids are 1..65535"
    assert refused(packet(0x32, string(b"t") + b"\x00\x00")) == (
        "packet id 0 on PUBLISH is invalid; ids are 1..65535"
    )
    assert refused(packet(0x82, b"\x00\x00" + string(b"t") + b"\x00")) == (
        "packet id 0 on SUBSCRIBE is invalid; ids are 1..65535"
    )


# == QoS 2 ====================================================================================


def test_qos_2_publish_is_recognised_and_refused_by_the_hub() -> None:
    publish = decode_packet(packet(0x34, string(b"devices/d/messages/events/") + b"\x00\x07hi"))
    assert publish == Publish("devices/d/messages/events/", b"hi", 2, packet_id=7)
    with pytest.raises(PacketError) as caught:
        check_client_packet(publish)
    assert caught.value.reason == "QoS 2 PUBLISH is not supported; the hub takes QoS 0 and 1"


def test_qos_2_flow_packets_are_recognised_and_refused_by_the_hub() -> None:
    pubrel = decode_packet(b"\x62\x02\x00\x07")
    assert pubrel == Pubrel(7)
    with pytest.raises(PacketError) as caught:
        check_client_packet(pubrel)
    assert caught.value.reason == "PUBREL is part of a QoS 2 flow, which the hub refuses"


def test_a_qos_2_subscription_is_not_malformed() -> None:
    subscribe = decode_packet(packet(0x82, b"\x00\x01" + string(b"a") + b"\x02"))
    assert subscribe == Subscribe(1, (("a", 2),))
    check_client_packet(subscribe)


# == CONNECT ==================================================================================


def test_connect_protocol_name_that_is_not_mqtt() -> None:
    assert refused(connect(name=b"HTTP")) == "CONNECT protocol name 'HTTP' is not 'MQTT'"


@pytest.mark.parametrize(
    ("name", "level", "reason"),
    [
        (
            b"MQIsdp",
            3,
            "CONNECT protocol 'MQIsdp' level 3 (MQTT 3.1) is not supported; "
            "the hub speaks MQTT 3.1.1 ('MQTT' level 4)",
        ),
        (
            b"MQTT",
            5,
            "CONNECT protocol 'MQTT' level 5 (MQTT 5) is not supported; "
            "the hub speaks MQTT 3.1.1 ('MQTT' level 4)",
        ),
        (
            b"MQTT",
            3,
            "CONNECT protocol 'MQTT' level 3 (an unknown version) is not supported; "
            "the hub speaks MQTT 3.1.1 ('MQTT' level 4)",
        ),
    ],
)
def test_connect_protocol_version_other_than_3_1_1_is_a_connack_1_refusal(
    name: bytes, level: int, reason: str
) -> None:
    # MQTT 5 lays out the rest differently: the refusal comes before any of it is read.
    with pytest.raises(ConnectRefused) as caught:
        decode_packet(connect(b"\x00", name=name, level=level))
    assert caught.value.reason == reason
    assert caught.value.return_code == 1


def test_connect_reserved_flag() -> None:
    assert refused(connect(flags=0x03)) == "reserved CONNECT flag (bit 0) is set"


def test_connect_password_without_user_name() -> None:
    data = connect(string(b"d") + string(b"secret"), flags=0x42)
    assert refused(data) == "CONNECT password flag set without the user name flag"


@pytest.mark.parametrize("flags", [0x0A, 0x12, 0x22])
def test_connect_will_qos_or_retain_without_the_will_flag(flags: int) -> None:
    assert refused(connect(flags=flags)) == (
        "CONNECT will QoS or will retain set without the will flag"
    )


def test_connect_will_qos_3() -> None:
    data = connect(string(b"d") + string(b"w") + string(b"x"), flags=0x1E)
    assert refused(data) == "CONNECT will QoS 3 is invalid; QoS is 0, 1 or 2"


def test_connect_will_flag_without_will_fields() -> None:
    data = connect(string(b"d"), flags=0x06)
    assert refused(data) == "CONNECT will topic length runs past the end of the packet"


def test_connect_empty_client_id_without_clean_session_is_a_connack_2_refusal() -> None:
    with pytest.raises(ConnectRefused) as caught:
        decode_packet(connect(string(b""), flags=0x00))
    assert caught.value.reason == "CONNECT with an empty client id must set clean session"
    assert caught.value.return_code == 2
    assert decode_packet(connect(string(b""), flags=0x02)) == Connect("", clean_session=True)


# == acknowledgements =========================================================================


def test_connack_reserved_acknowledge_flags() -> None:
    assert refused(b"\x20\x02\x02\x00") == "reserved CONNACK acknowledge flags 0x02 must be 0"


def test_suback_reserved_return_code() -> None:
    assert refused(b"\x90\x03\x00\x01\x03") == "SUBACK return code 0x03 is reserved"


def test_packets_decoded_before_a_malformed_one_in_the_same_read_are_dropped() -> None:
    # The connection closes on the first malformed packet; nothing after it is processed.
    reader = PacketReader()
    good: list[Packet] = [Pingreq()]
    with pytest.raises(PacketError):
        reader.feed(b"".join(map(encode, good)) + b"\xc1\x00")
    assert reader.buffered == 0
