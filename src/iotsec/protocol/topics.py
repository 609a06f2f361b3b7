"""IoT Hub MQTT conventions without I/O: client id, username, topics and property bags.

Checked against Microsoft's "Communicate with an IoT hub using the MQTT protocol" and the
URL-encoding rules of azure-iot-sdk-python (wiki "URL Encoding (MQTT)"):

* client id ``{device}`` or ``{device}/{module}``; username
  ``{host}/{device}[/{module}]/?api-version=2021-04-12``; password a SAS token (none for X.509).
* device and module ids are never percent-encoded (they cannot contain ``/``, ``#`` or ``+``);
  property-bag keys and values are, and ``+`` means ``+``, never a space.
* D2C ``devices/{d}[/modules/{m}]/messages/events/{bag}``; C2D
  ``devices/{d}/messages/devicebound/{bag}``; twin requests ``$iothub/twin/GET/?$rid=``,
  ``$iothub/twin/PATCH/properties/reported/?$rid=``; responses
  ``$iothub/twin/res/{status}/?$rid=[&$version=]``; desired updates
  ``$iothub/twin/PATCH/properties/desired/?$version=``.

Every parser raises ``TopicError`` (never anything else) on a malformed input.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from urllib.parse import quote, unquote

from iotsec.protocol.errors import TopicError
from iotsec.protocol.message import Message

__all__ = [
    "API_VERSION",
    "TWIN_DESIRED_FILTER",
    "TWIN_RESPONSE_FILTER",
    "C2dTopic",
    "D2cTopic",
    "DesiredTopic",
    "PropertyBag",
    "TopicError",
    "TwinOp",
    "TwinRequest",
    "TwinResponse",
    "Username",
    "build_c2d_topic",
    "build_client_id",
    "build_d2c_topic",
    "build_username",
    "c2d_subscribe_filter",
    "parse_c2d_topic",
    "parse_client_id",
    "parse_d2c_topic",
    "parse_twin_desired",
    "parse_twin_request",
    "parse_twin_response",
    "parse_username",
    "twin_desired_topic",
    "twin_request_topic",
    "twin_response_topic",
]

#: The IoT Hub data-plane API version the MQTT docs ask devices to send in the username.
API_VERSION = "2021-04-12"
TWIN_RESPONSE_FILTER = "$iothub/twin/res/#"
TWIN_DESIRED_FILTER = "$iothub/twin/PATCH/properties/desired/#"

#: System properties a ``Message`` carries, by wire name, in the order they are written.
_MESSAGE_FIELDS = {
    "$.mid": "message_id",
    "$.cid": "correlation_id",
    "$.ct": "content_type",
    "$.ce": "content_encoding",
    "$.ifid": "interface_id",
}
# IoT Hub's identity rule: up to 128 ASCII alphanumerics plus - . % _ * ? ! ( ) , : = @ $ '
_ID = re.compile(r"[A-Za-z0-9\-.%_*?!(),:=@$']{1,128}")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_MAX_TOPIC_BYTES = 65535  # MQTT's length prefix is two bytes
_TWIN = "$iothub/twin/"
_RESPONSE_PREFIX = _TWIN + "res/"
_DESIRED_PREFIX = _TWIN + "PATCH/properties/desired/"


def _check_id(value: str, what: str, text: str) -> str:
    if not _ID.fullmatch(value):
        raise TopicError(text, f"invalid {what} {value!r}")
    return value


def _encode(value: str) -> str:
    # safe="" so that "/" is escaped too; never quote_plus, which turns " " into "+"
    return quote(value, safe="")


def _decode(value: str, text: str) -> str:
    if _BAD_ESCAPE.search(value):
        raise TopicError(text, f"bad percent-escape in {value!r}")
    try:
        return unquote(value, errors="strict")
    except UnicodeDecodeError as exc:
        raise TopicError(text, f"percent-escapes in {value!r} are not UTF-8") from exc


def _checked_topic(topic: str) -> str:
    if len(topic.encode("utf-8")) > _MAX_TOPIC_BYTES:
        raise TopicError(topic[:80] + "...", "topic longer than 65535 bytes")
    return topic


# -- identity ------------------------------------------------------------------------------


def build_client_id(device_id: str, module_id: str | None = None) -> str:
    """The MQTT client id: ``device`` or ``device/module``."""
    text = device_id if module_id is None else f"{device_id}/{module_id}"
    _check_id(device_id, "device id", text)
    if module_id is not None:
        _check_id(module_id, "module id", text)
    return text


def parse_client_id(text: str) -> tuple[str, str | None]:
    """``(device_id, module_id)`` from an MQTT client id."""
    device_id, sep, module_id = text.partition("/")
    _check_id(device_id, "device id", text)
    if not sep:
        return device_id, None
    return device_id, _check_id(module_id, "module id", text)


@dataclass(frozen=True, slots=True)
class Username:
    """A parsed MQTT username: hub host, identity and query parameters (``api-version``...)."""

    host: str
    device_id: str
    module_id: str | None
    params: dict[str, str] = field(default_factory=dict)

    @property
    def api_version(self) -> str | None:
        """The ``api-version`` parameter, if the device sent one."""
        return self.params.get("api-version")


def build_username(
    host: str,
    device_id: str,
    module_id: str | None = None,
    *,
    api_version: str = API_VERSION,
    client_type: str | None = None,
) -> str:
    """``{host}/{device}[/{module}]/?api-version=...[&DeviceClientType=...]``."""
    client_id = build_client_id(device_id, module_id)
    if not host or "/" in host:
        raise TopicError(host, "invalid host name")
    params = [("api-version", api_version)]
    if client_type is not None:
        params.append(("DeviceClientType", client_type))
    query = "&".join(f"{_encode(k)}={_encode(v)}" for k, v in params)
    return f"{host}/{client_id}/?{query}"


def parse_username(text: str) -> Username:
    """Parse ``{host}/{device}[/{module}]/?{params}``.

    As in Microsoft's own parser (IoT Edge's ``MqttUsernameParser``) the parameters are the last
    segment, the one that starts with ``?``; ids may contain ``?`` but never ``/``.
    """
    segments = text.split("/")
    if len(segments) not in (3, 4) or not segments[-1].startswith("?") or not segments[0]:
        raise TopicError(text, "username must be host/device[/module]/?params")
    device_id = _check_id(segments[1], "device id", text)
    module_id = _check_id(segments[2], "module id", text) if len(segments) == 4 else None
    query = segments[-1][1:]
    return Username(segments[0], device_id, module_id, _parse_pairs(query, text) if query else {})


# -- property bags ---------------------------------------------------------------------------


def _parse_pairs(bag: str, text: str) -> dict[str, str]:
    """``k=v&k2=v2`` with percent-decoding; a bare ``k`` (a null value) reads as ``""``."""
    pairs: dict[str, str] = {}
    for item in bag.split("&"):
        raw_key, _, raw_value = item.partition("=")
        key = _decode(raw_key, text)
        if not key:
            raise TopicError(text, "empty property name")
        if key in pairs:
            raise TopicError(text, f"property {key!r} given twice")
        pairs[key] = _decode(raw_value, text)
    return pairs


@dataclass(frozen=True, slots=True)
class PropertyBag:
    """The properties a topic carries: system (``$.``-prefixed names) and application."""

    system: dict[str, str] = field(default_factory=dict)
    application: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, message: Message) -> PropertyBag:
        """The bag that carries ``message``'s properties; refuses ``$``-prefixed app names."""
        for key in message.properties:
            if not key or key.startswith("$"):
                raise TopicError(
                    key, "application property names must be non-empty and must not start with '$'"
                )
        system = {
            wire: value
            for wire, attr in _MESSAGE_FIELDS.items()
            if (value := getattr(message, attr)) is not None
        }
        return cls(system, dict(message.properties))

    @classmethod
    def parse(cls, bag: str, text: str | None = None) -> PropertyBag:
        """Decode a property bag (a leading ``?`` is tolerated)."""
        bag = bag.removeprefix("?")
        if not bag:
            return cls()
        system: dict[str, str] = {}
        application: dict[str, str] = {}
        for key, value in _parse_pairs(bag, bag if text is None else text).items():
            (system if key.startswith("$") else application)[key] = value
        return cls(system, application)

    def encode(self) -> str:
        """``$.mid=...&...&app=...``; system names keep a literal ``$`` as in Microsoft's docs."""
        items = [f"{key}={_encode(value)}" for key, value in self.system.items()]
        items += [f"{_encode(key)}={_encode(value)}" for key, value in self.application.items()]
        return "&".join(items)

    def message(self, body: bytes) -> Message:
        """A ``Message`` with ``body`` and these properties (unmodelled system ones are dropped)."""
        fields = {
            attr: self.system[wire] for wire, attr in _MESSAGE_FIELDS.items() if wire in self.system
        }
        return Message(body, dict(self.application), **fields)


# -- device-to-cloud and cloud-to-device -------------------------------------------------------


def _identity_base(device_id: str, module_id: str | None, text: str) -> str:
    _check_id(device_id, "device id", text)
    if module_id is None:
        return f"devices/{device_id}"
    return f"devices/{device_id}/modules/{_check_id(module_id, 'module id', text)}"


@dataclass(frozen=True, slots=True)
class D2cTopic:
    """A parsed device-to-cloud topic: who sent it and the properties it carries."""

    device_id: str
    module_id: str | None
    properties: PropertyBag

    def message(self, body: bytes) -> Message:
        """The ``Message`` this topic and ``body`` make up."""
        return self.properties.message(body)


def build_d2c_topic(device_id: str, module_id: str | None, message: Message) -> str:
    """``devices/{d}[/modules/{m}]/messages/events/{bag}`` for ``message``."""
    base = _identity_base(device_id, module_id, device_id)
    return _checked_topic(f"{base}/messages/events/{PropertyBag.of(message).encode()}")


def parse_d2c_topic(topic: str) -> D2cTopic:
    """The inverse of ``build_d2c_topic`` (also reads ``%24.mid`` and a ``?`` before the bag)."""
    parts = topic.split("/", 6)
    if len(parts) >= 5 and parts[0] == "devices" and parts[2:4] == ["messages", "events"]:
        device_id, module_id, bag = parts[1], None, "/".join(parts[4:])
    elif (
        len(parts) >= 7
        and parts[0] == "devices"
        and parts[2] == "modules"
        and parts[4:6] == ["messages", "events"]
    ):
        device_id, module_id, bag = parts[1], parts[3], parts[6]
    else:
        raise TopicError(topic, "not a device-to-cloud topic")
    _identity_base(device_id, module_id, topic)
    return D2cTopic(device_id, module_id, PropertyBag.parse(bag, topic))


def c2d_subscribe_filter(device_id: str) -> str:
    """The filter a device subscribes to for cloud-to-device messages."""
    return f"{_identity_base(device_id, None, device_id)}/messages/devicebound/#"


@dataclass(frozen=True, slots=True)
class C2dTopic:
    """A parsed cloud-to-device topic; ``properties.system`` keeps ``$.to`` and the like."""

    device_id: str
    properties: PropertyBag

    def message(self, body: bytes) -> Message:
        """The ``Message`` this topic and ``body`` make up."""
        return self.properties.message(body)


def build_c2d_topic(
    device_id: str, message: Message, *, extra_system: Iterable[tuple[str, str]] = ()
) -> str:
    """``devices/{d}/messages/devicebound/{bag}`` (the hub's side of C2D)."""
    bag = PropertyBag.of(message)
    bag = PropertyBag({**bag.system, **dict(extra_system)}, bag.application)
    base = _identity_base(device_id, None, device_id)
    return _checked_topic(f"{base}/messages/devicebound/{bag.encode()}")


def parse_c2d_topic(topic: str) -> C2dTopic:
    """Parse ``devices/{d}/messages/devicebound/{bag}``."""
    parts = topic.split("/", 4)
    if len(parts) != 5 or parts[0] != "devices" or parts[2:4] != ["messages", "devicebound"]:
        raise TopicError(topic, "not a cloud-to-device topic")
    _identity_base(parts[1], None, topic)
    return C2dTopic(parts[1], PropertyBag.parse(parts[4], topic))


# -- twins -----------------------------------------------------------------------------------


class TwinOp(StrEnum):
    """The twin requests a device can make, by their topic path."""

    GET = "GET/"
    PATCH_REPORTED = "PATCH/properties/reported/"


@dataclass(frozen=True, slots=True)
class TwinRequest:
    """A device's twin request: the operation and its request id."""

    op: TwinOp
    rid: str


@dataclass(frozen=True, slots=True)
class TwinResponse:
    """The hub's answer to a twin request."""

    status: int
    rid: str
    version: int | None = None


@dataclass(frozen=True, slots=True)
class DesiredTopic:
    """A desired-properties notification; ``version`` is also in the body as ``$version``."""

    version: int | None


def _check_rid(rid: str) -> str:
    if not rid:
        raise TopicError(rid, "empty request id")
    return rid


def _parse_version(value: str | None, text: str) -> int | None:
    if value is None:
        return None
    if not value.isascii() or not value.isdigit():
        raise TopicError(text, f"$version {value!r} is not a non-negative integer")
    return int(value)


def twin_request_topic(op: TwinOp, rid: str) -> str:
    """``$iothub/twin/GET/?$rid=...`` or ``$iothub/twin/PATCH/properties/reported/?$rid=...``."""
    return f"{_TWIN}{op.value}?$rid={_encode(_check_rid(rid))}"


def parse_twin_request(topic: str) -> TwinRequest:
    """Parse a device's twin request topic (the hub's side)."""
    for op in TwinOp:
        prefix = f"{_TWIN}{op.value}?"
        if topic.startswith(prefix):
            props = _parse_pairs(topic[len(prefix) :], topic)
            if "$rid" not in props:
                raise TopicError(topic, "twin request without $rid")
            return TwinRequest(op, _check_rid(props["$rid"]))
    raise TopicError(topic, "not a twin request topic")


def twin_response_topic(status: int, rid: str, version: int | None = None) -> str:
    """``$iothub/twin/res/{status}/?$rid={rid}[&$version={v}]``."""
    if not 100 <= status <= 999:
        raise TopicError(str(status), "status must be a three-digit code")
    topic = f"{_RESPONSE_PREFIX}{status}/?$rid={_encode(_check_rid(rid))}"
    return topic if version is None else f"{topic}&$version={version}"


def parse_twin_response(topic: str) -> TwinResponse:
    """Parse ``$iothub/twin/res/{status}/?$rid=...[&$version=...]``."""
    status, sep, query = topic.removeprefix(_RESPONSE_PREFIX).partition("/?")
    if not topic.startswith(_RESPONSE_PREFIX) or not sep:
        raise TopicError(topic, "not a twin response topic")
    if not (len(status) == 3 and status.isascii() and status.isdigit()):
        raise TopicError(topic, f"twin status {status!r} is not a three-digit code")
    props = _parse_pairs(query, topic)
    if "$rid" not in props:
        raise TopicError(topic, "twin response without $rid")
    return TwinResponse(
        int(status), _check_rid(props["$rid"]), _parse_version(props.get("$version"), topic)
    )


def twin_desired_topic(version: int) -> str:
    """``$iothub/twin/PATCH/properties/desired/?$version={v}``."""
    return f"{_DESIRED_PREFIX}?$version={version}"


def parse_twin_desired(topic: str) -> DesiredTopic:
    """Parse a desired-properties notification topic."""
    if not topic.startswith(_DESIRED_PREFIX):
        raise TopicError(topic, "not a desired-properties topic")
    query = topic[len(_DESIRED_PREFIX) :]
    if query and not query.startswith("?"):
        raise TopicError(topic, "not a desired-properties topic")
    props = _parse_pairs(query[1:], topic) if len(query) > 1 else {}
    return DesiredTopic(_parse_version(props.get("$version"), topic))
