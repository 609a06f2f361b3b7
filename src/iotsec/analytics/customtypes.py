"""The vocabulary of ASC's custom alerts: rule families, rule types, and ISO 8601 durations.

Each rule type (ASC section 5.5) has a data source, ASC's alert name and description, and for
list rules the value type. Types this hub can never see (AMQP, direct methods, file uploads,
queue purges, MQTT rejections) say why in ``never_fires``.

>>> RULE_TYPES["ProcessNotAllowed"].display_name
'Custom alert - execution of a process that is not allowed'
>>> format_duration(parse_duration("PT05M"))
'PT5M'
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal, get_args

__all__ = [
    "FAMILIES",
    "LIST_RULE_TYPES",
    "RULE_TYPES",
    "WINDOW_RULE_TYPES",
    "DataSource",
    "Family",
    "ListFamily",
    "ListRuleType",
    "RuleTypeInfo",
    "ValueType",
    "WindowRuleType",
    "format_duration",
    "parse_duration",
]

Family = Literal["thresholdRules", "timeWindowRules", "allowlistRules", "denylistRules"]
ListFamily = Literal["allowlistRules", "denylistRules"]
FAMILIES: tuple[Family, ...] = get_args(Family)
ValueType = Literal["IpCidr", "String"]
DataSource = Literal["Agent", "IoT Hub"]

WindowRuleType = Literal[
    "ActiveConnectionsNotInAllowedRange",
    "FailedLocalLoginsNotInAllowedRange",
    "AmqpC2DMessagesNotInAllowedRange",
    "MqttC2DMessagesNotInAllowedRange",
    "HttpC2DMessagesNotInAllowedRange",
    "AmqpC2DRejectedMessagesNotInAllowedRange",
    "MqttC2DRejectedMessagesNotInAllowedRange",
    "HttpC2DRejectedMessagesNotInAllowedRange",
    "AmqpD2CMessagesNotInAllowedRange",
    "MqttD2CMessagesNotInAllowedRange",
    "HttpD2CMessagesNotInAllowedRange",
    "DirectMethodInvokesNotInAllowedRange",
    "FileUploadsNotInAllowedRange",
    "QueuePurgesNotInAllowedRange",
    "TwinUpdatesNotInAllowedRange",
    "UnauthorizedOperationsNotInAllowedRange",
]
ListRuleType = Literal["ConnectionToIpNotAllowed", "LocalUserNotAllowed", "ProcessNotAllowed"]
WINDOW_RULE_TYPES: tuple[WindowRuleType, ...] = get_args(WindowRuleType)
LIST_RULE_TYPES: tuple[ListRuleType, ...] = get_args(ListRuleType)


@dataclass(frozen=True, slots=True)
class RuleTypeInfo:
    """What a rule type watches, where the data comes from, and how its alert is named."""

    rule_type: str
    data_source: DataSource
    #: "Custom alert - ..." (ASC's 2020 wording).
    display_name: str
    description: str
    #: What a time-window rule counts, in words ("active connections"); "" for lists.
    activity: str = ""
    value_type: ValueType | None = None
    #: Why this hub can never fire it (no AMQP endpoint, ...), or None.
    never_fires: str | None = None


def _window(
    rule_type: str, source: DataSource, what: str, never: str | None = None
) -> RuleTypeInfo:
    return RuleTypeInfo(
        rule_type,
        source,
        f"Custom alert - number of {what} is outside the allowed range",
        f"Alert when the number of {what} of a device in the time window is outside the "
        "allowed range",
        activity=what,
        never_fires=never,
    )


_NO_AMQP = "the hub has no AMQP endpoint (devices use MQTT or HTTPS)"
RULE_TYPES: Mapping[str, RuleTypeInfo] = {
    info.rule_type: info
    for info in (
        _window("ActiveConnectionsNotInAllowedRange", "Agent", "active connections"),
        _window("FailedLocalLoginsNotInAllowedRange", "Agent", "failed local logins"),
        _window(
            "AmqpC2DMessagesNotInAllowedRange",
            "IoT Hub",
            "cloud to device messages in AMQP protocol",
            _NO_AMQP,
        ),
        _window(
            "MqttC2DMessagesNotInAllowedRange",
            "IoT Hub",
            "cloud to device messages in MQTT protocol",
        ),
        _window(
            "HttpC2DMessagesNotInAllowedRange",
            "IoT Hub",
            "cloud to device messages in HTTP protocol",
        ),
        _window(
            "AmqpC2DRejectedMessagesNotInAllowedRange",
            "IoT Hub",
            "rejected cloud to device messages in AMQP protocol",
            _NO_AMQP,
        ),
        _window(
            "MqttC2DRejectedMessagesNotInAllowedRange",
            "IoT Hub",
            "rejected cloud to device messages in MQTT protocol",
            "MQTT has no way for a device to reject a cloud-to-device message",
        ),
        _window(
            "HttpC2DRejectedMessagesNotInAllowedRange",
            "IoT Hub",
            "rejected cloud to device messages in HTTP protocol",
        ),
        _window(
            "AmqpD2CMessagesNotInAllowedRange",
            "IoT Hub",
            "device to cloud messages in AMQP protocol",
            _NO_AMQP,
        ),
        _window(
            "MqttD2CMessagesNotInAllowedRange",
            "IoT Hub",
            "device to cloud messages in MQTT protocol",
        ),
        _window(
            "HttpD2CMessagesNotInAllowedRange",
            "IoT Hub",
            "device to cloud messages in HTTP protocol",
        ),
        _window(
            "DirectMethodInvokesNotInAllowedRange",
            "IoT Hub",
            "direct method invokes",
            "the hub does not implement direct methods",
        ),
        _window(
            "FileUploadsNotInAllowedRange",
            "IoT Hub",
            "file uploads",
            "the hub does not implement file uploads",
        ),
        _window(
            "QueuePurgesNotInAllowedRange",
            "IoT Hub",
            "command queue purges",
            "the hub does not implement purging a device's command queue",
        ),
        _window("TwinUpdatesNotInAllowedRange", "IoT Hub", "module twin updates"),
        _window("UnauthorizedOperationsNotInAllowedRange", "IoT Hub", "unauthorized operations"),
        RuleTypeInfo(
            "ConnectionToIpNotAllowed",
            "Agent",
            "Custom alert - outbound connection to an IP that isn't allowed was created",
            "Alert when a device makes an outbound connection to an IP address the rule's list "
            "does not allow (allow list) or names (deny list)",
            value_type="IpCidr",
        ),
        RuleTypeInfo(
            "LocalUserNotAllowed",
            "Agent",
            "Custom alert - login of a user that is not allowed",
            "Alert when a local user the rule's list does not allow (allow list) or names (deny "
            "list) logs in to a device",
            value_type="String",
        ),
        RuleTypeInfo(
            "ProcessNotAllowed",
            "Agent",
            "Custom alert - execution of a process that is not allowed",
            "Alert when a device runs a process the rule's list does not allow (allow list) or "
            "names (deny list)",
            value_type="String",
        ),
    )
}


# -- durations ---------------------------------------------------------------------------------

_DURATION = re.compile(
    r"P(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+)S)?)?",
    re.ASCII,
)


def parse_duration(text: str) -> timedelta:
    """An ISO 8601 duration of weeks, days, hours, minutes and whole seconds.

    >>> parse_duration("PT05M"), parse_duration("P1DT12H")
    (datetime.timedelta(seconds=300), datetime.timedelta(days=1, seconds=43200))

    Raises:
        ValueError: not such a duration (years and months have no fixed length).
    """
    upper = text.strip().upper()
    match = _DURATION.fullmatch(upper)
    if match is None or upper in ("P", "PT") or upper.endswith("T"):
        if upper.startswith("P") and re.search(r"\d[YM]", upper.partition("T")[0]):
            raise ValueError(f"{text!r}: years and months have no fixed length; use days (P30D)")
        raise ValueError(f"{text!r} is not an ISO 8601 duration such as PT5M or P1D")
    parts = {name: int(value) for name, value in match.groupdict().items() if value is not None}
    try:
        return timedelta(**parts)
    except OverflowError:
        raise ValueError(f"{text!r} is too long a duration") from None


def format_duration(value: timedelta) -> str:
    """The shortest ISO 8601 form of ``value`` (whole seconds): ``PT5M``, ``P1DT12H``."""
    seconds = int(value.total_seconds())
    days, seconds = divmod(seconds, 86_400)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    date = f"{days}D" if days else ""
    time = "".join(f"{n}{unit}" for n, unit in ((hours, "H"), (minutes, "M"), (seconds, "S")) if n)
    if not date and not time:
        return "PT0S"
    return f"P{date}" + (f"T{time}" if time else "")
