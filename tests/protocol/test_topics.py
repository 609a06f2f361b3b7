"""IoT Hub MQTT topic conventions: builders, parsers and their round trips."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from iotsec.protocol.errors import ProtocolError
from iotsec.protocol.message import Message
from iotsec.protocol.topics import (
    API_VERSION,
    TWIN_DESIRED_FILTER,
    TWIN_RESPONSE_FILTER,
    DesiredTopic,
    PropertyBag,
    TopicError,
    TwinOp,
    TwinRequest,
    TwinResponse,
    build_c2d_topic,
    build_client_id,
    build_d2c_topic,
    build_username,
    c2d_subscribe_filter,
    parse_c2d_topic,
    parse_client_id,
    parse_d2c_topic,
    parse_twin_desired,
    parse_twin_request,
    parse_twin_response,
    parse_username,
    twin_desired_topic,
    twin_request_topic,
    twin_response_topic,
)
from iotsec.schema import SECURITY_INTERFACE_ID

ID_CHARS = "abcXYZ019-.%_*?!(),:=@$'"
ids = st.text(alphabet=ID_CHARS, min_size=1, max_size=20)
optional = st.none() | st.text(max_size=20)
app_keys = st.text(min_size=1, max_size=12).filter(lambda k: not k.startswith("$"))
messages = st.builds(
    Message,
    body=st.binary(max_size=32),
    properties=st.dictionaries(app_keys, st.text(max_size=12), max_size=4),
    message_id=optional,
    correlation_id=optional,
    content_type=optional,
    content_encoding=optional,
    interface_id=optional,
)


# -- the documented wire forms ----------------------------------------------------------------


def test_client_id_and_username_follow_the_docs() -> None:
    assert build_client_id("dev1") == "dev1"
    assert build_client_id("dev1", "mod1") == "dev1/mod1"
    assert build_username("hub.example.net", "MyDevice01") == (
        "hub.example.net/MyDevice01/?api-version=2021-04-12"
    )
    assert build_username("hub.example.net", "d", "m", client_type="iotsec/0.1") == (
        "hub.example.net/d/m/?api-version=2021-04-12&DeviceClientType=iotsec%2F0.1"
    )


def test_security_message_topic_carries_ifid_encoded_as_the_reference_shows() -> None:
    message = Message(
        b"{}",
        {"MessagePriority": "High"},
        message_id="m 1",
        content_type="application/json",
        content_encoding="utf-8",
        interface_id=SECURITY_INTERFACE_ID,
    )
    topic = build_d2c_topic("dev1", "asc", message)
    assert topic == (
        "devices/dev1/modules/asc/messages/events/"
        "$.mid=m%201&$.ct=application%2Fjson&$.ce=utf-8"
        "&$.ifid=urn%3Aazureiot%3ASecurity%3ASecurityAgent%3A1&MessagePriority=High"
    )


def test_plain_device_topic_without_properties() -> None:
    assert build_d2c_topic("dev1", None, Message(b"x")) == "devices/dev1/messages/events/"


def test_parse_d2c_reads_what_other_sdks_send() -> None:
    # azure-iot-device percent-encodes the '$' of system names; some clients put a '?' first.
    parsed = parse_d2c_topic("devices/d/messages/events/?%24.mid=1&%24.ifid=x&a%2Bb=c+d")
    assert (parsed.device_id, parsed.module_id) == ("d", None)
    assert parsed.properties == PropertyBag({"$.mid": "1", "$.ifid": "x"}, {"a+b": "c+d"})
    assert parsed.message(b"b") == Message(b"b", {"a+b": "c+d"}, message_id="1", interface_id="x")


def test_c2d_topic_parse_keeps_hub_system_properties() -> None:
    topic = (
        "devices/dev1/messages/devicebound/%24.mid=42&%24.to=%2Fdevices%2Fdev1%2Fmessages"
        "%2FdeviceBound&iothub-ack=full&null&empty="
    )
    parsed = parse_c2d_topic(topic)
    assert parsed.device_id == "dev1"
    assert parsed.properties.system == {"$.mid": "42", "$.to": "/devices/dev1/messages/deviceBound"}
    message = parsed.message(b"hi")
    assert message.message_id == "42"
    assert message.properties == {"iothub-ack": "full", "null": "", "empty": ""}
    assert c2d_subscribe_filter("dev1") == "devices/dev1/messages/devicebound/#"


def test_twin_topics() -> None:
    assert TWIN_RESPONSE_FILTER == "$iothub/twin/res/#"
    assert TWIN_DESIRED_FILTER == "$iothub/twin/PATCH/properties/desired/#"
    assert twin_request_topic(TwinOp.GET, "7") == "$iothub/twin/GET/?$rid=7"
    assert twin_request_topic(TwinOp.PATCH_REPORTED, "8") == (
        "$iothub/twin/PATCH/properties/reported/?$rid=8"
    )
    assert parse_twin_response("$iothub/twin/res/204/?$rid=1&$version=6") == (
        TwinResponse(204, "1", 6)
    )
    assert parse_twin_response("$iothub/twin/res/200/?$rid=abc") == TwinResponse(200, "abc")
    assert parse_twin_desired("$iothub/twin/PATCH/properties/desired/?$version=8") == (
        DesiredTopic(8)
    )
    assert twin_desired_topic(8) == "$iothub/twin/PATCH/properties/desired/?$version=8"
    assert parse_twin_request("$iothub/twin/GET/?$rid=7") == TwinRequest(TwinOp.GET, "7")


@pytest.mark.parametrize(
    "topic",
    [
        "devices/dev1/messages/events",  # no trailing slash
        "devices//messages/events/",  # empty device id
        "devices/a#b/messages/events/",  # '#' is not allowed in ids
        "devices/d/modules/m/messages/devicebound/",  # not D2C
        "devices/d/messages/events/a=1&a=2",  # duplicate property
        "devices/d/messages/events/=1",  # empty name
        "devices/d/messages/events/a=%zz",  # bad escape
        "devices/d/messages/events/a=%ff",  # not UTF-8
        "other/d/messages/events/",
    ],
)
def test_parse_d2c_rejects_malformed_topics(topic: str) -> None:
    with pytest.raises(TopicError) as info:
        parse_d2c_topic(topic)
    assert info.value.text == topic
    assert isinstance(info.value, ProtocolError)


@pytest.mark.parametrize(
    ("parser", "topic"),
    [
        (parse_twin_response, "$iothub/twin/res/2000/?$rid=1"),
        (parse_twin_response, "$iothub/twin/res/200/?$version=1"),
        (parse_twin_response, "$iothub/twin/res/200/?$rid=1&$version=-1"),
        (parse_twin_response, "$iothub/twin/res/200"),
        (parse_twin_desired, "$iothub/twin/PATCH/properties/desired/?$version=x"),
        (parse_twin_desired, "$iothub/twin/PATCH/properties/reported/?$version=1"),
        (parse_twin_request, "$iothub/twin/DELETE/?$rid=1"),
        (parse_twin_request, "$iothub/twin/GET/?$rid="),
        (parse_c2d_topic, "devices/d/messages/devicebound"),
        (parse_username, "hub/dev1"),
        (parse_username, "hub/dev1/mod/extra/?api-version=1"),
        (parse_client_id, "dev/mod/x"),
    ],
)
def test_parsers_raise_only_topic_error(parser: object, topic: str) -> None:
    with pytest.raises(TopicError):
        parser(topic)  # type: ignore[operator]


def test_builders_refuse_reserved_or_invalid_input() -> None:
    with pytest.raises(TopicError, match="must not start with"):
        build_d2c_topic("d", None, Message(b"", {"$.mid": "x"}))
    with pytest.raises(TopicError, match="device id"):
        build_d2c_topic("a/b", None, Message(b""))
    with pytest.raises(TopicError, match="65535"):
        build_d2c_topic("d", None, Message(b"", {"k": "v" * 70000}))
    with pytest.raises(TopicError):
        twin_response_topic(42, "1")


def test_username_ids_may_contain_question_marks() -> None:
    parsed = parse_username("hub.example.net/?dev/mod?/?api-version=2021-04-12&x=%2F")
    assert (parsed.host, parsed.device_id, parsed.module_id) == ("hub.example.net", "?dev", "mod?")
    assert parsed.api_version == API_VERSION
    assert parsed.params["x"] == "/"


# -- properties -----------------------------------------------------------------------------


@given(ids, st.none() | ids, messages)
def test_d2c_round_trip(device_id: str, module_id: str | None, message: Message) -> None:
    parsed = parse_d2c_topic(build_d2c_topic(device_id, module_id, message))
    assert (parsed.device_id, parsed.module_id) == (device_id, module_id)
    assert parsed.message(message.body) == message


@given(ids, messages)
def test_c2d_round_trip(device_id: str, message: Message) -> None:
    parsed = parse_c2d_topic(build_c2d_topic(device_id, message, extra_system=[("$.to", "/x")]))
    assert parsed.device_id == device_id
    assert parsed.message(message.body) == message
    assert parsed.properties.system["$.to"] == "/x"


@given(st.sampled_from(list(TwinOp)), st.text(min_size=1, max_size=20))
def test_twin_request_round_trip(op: TwinOp, rid: str) -> None:
    assert parse_twin_request(twin_request_topic(op, rid)) == TwinRequest(op, rid)


@given(st.integers(100, 999), st.text(min_size=1, max_size=20), st.none() | st.integers(0, 2**40))
def test_twin_response_round_trip(status: int, rid: str, version: int | None) -> None:
    assert parse_twin_response(twin_response_topic(status, rid, version)) == (
        TwinResponse(status, rid, version)
    )


@given(ids, st.none() | ids, st.text(max_size=20))
def test_username_round_trip(device_id: str, module_id: str | None, client_type: str) -> None:
    parsed = parse_username(
        build_username("hub.example.net", device_id, module_id, client_type=client_type)
    )
    assert (parsed.device_id, parsed.module_id) == (device_id, module_id)
    assert parsed.params == {"api-version": API_VERSION, "DeviceClientType": client_type}
    assert parse_client_id(build_client_id(device_id, module_id)) == (device_id, module_id)


@given(st.text(max_size=80))
def test_parsers_never_crash_on_arbitrary_text(text: str) -> None:
    for parser in (
        parse_d2c_topic,
        parse_c2d_topic,
        parse_twin_request,
        parse_twin_response,
        parse_twin_desired,
        parse_username,
        parse_client_id,
    ):
        with contextlib.suppress(TopicError):
            parser(text)


@given(st.text(alphabet="devices/abmoduletvnsgbund?$.=&%23F", max_size=60))
def test_parsers_never_crash_on_topic_like_text(text: str) -> None:
    for parser in (parse_d2c_topic, parse_c2d_topic, parse_twin_response, parse_twin_desired):
        with contextlib.suppress(TopicError):
            parser("devices/" + text)
        with contextlib.suppress(TopicError):
            parser(text)
