"""Custom alerts' model: ASC's ARM shape, every rule type, precise errors, round trips."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from iotsec.analytics.custom import alert_type
from iotsec.analytics.customrules import (
    LIST_RULE_TYPES,
    RULE_TYPES,
    WINDOW_RULE_TYPES,
    CustomAlertInvalid,
    CustomAlertSet,
    ListRule,
    TimeWindowRule,
    format_duration,
    parse_duration,
)


def window(rule_type: str = "ActiveConnectionsNotInAllowedRange", **changes: Any) -> dict[str, Any]:
    rule = {
        "ruleType": rule_type,
        "isEnabled": True,
        "minThreshold": 0,
        "maxThreshold": 30,
        "timeWindowSize": "PT05M",
    }
    rule.update(changes)
    return rule


def issues(document: Any) -> list[str]:
    with pytest.raises(CustomAlertInvalid) as caught:
        CustomAlertSet.from_json(document)
    return [str(issue) for issue in caught.value.issues]


def test_asc_arm_example_parses() -> None:
    # The body of ASC's deviceSecurityGroups PUT example (reference 7.1).
    body = {
        "properties": {
            "timeWindowRules": [
                {
                    "ruleType": "ActiveConnectionsNotInAllowedRange",
                    "isEnabled": True,
                    "minThreshold": 0,
                    "maxThreshold": 30,
                    "timeWindowSize": "PT05M",
                }
            ]
        }
    }
    rules = CustomAlertSet.from_json(body)
    [rule] = rules.time_window_rules
    assert rule == TimeWindowRule(
        "ActiveConnectionsNotInAllowedRange", True, 0, 30, timedelta(minutes=5)
    )
    assert rules.to_json() == {
        "thresholdRules": [],
        "timeWindowRules": [
            {
                "ruleType": "ActiveConnectionsNotInAllowedRange",
                "isEnabled": True,
                "minThreshold": 0,
                "maxThreshold": 30,
                "timeWindowSize": "PT5M",
                "displayName": "Custom alert - number of active connections is outside the "
                "allowed range",
                "description": "Alert when the number of active connections of a device in the "
                "time window is outside the allowed range",
            }
        ],
        "allowlistRules": [],
        "denylistRules": [],
    }


def test_every_rule_type_has_its_family_name_and_alert_type() -> None:
    document = {
        "timeWindowRules": [window(t) for t in WINDOW_RULE_TYPES],
        "allowlistRules": [
            {
                "ruleType": "ConnectionToIpNotAllowed",
                "isEnabled": True,
                "allowlistValues": ["10.0.0.0/8"],
            },
            {"ruleType": "LocalUserNotAllowed", "isEnabled": True, "allowlistValues": ["pi"]},
            {"ruleType": "ProcessNotAllowed", "isEnabled": False, "allowlistValues": ["sshd"]},
        ],
        "denylistRules": [
            {
                "ruleType": t,
                "isEnabled": True,
                "denylistValues": ["192.0.2.1" if "Ip" in t else "x"],
            }
            for t in LIST_RULE_TYPES
        ],
    }
    rules = CustomAlertSet.from_json(document)
    assert rules.rule_count == len(WINDOW_RULE_TYPES) + 6
    assert len(RULE_TYPES) == 19
    for info in RULE_TYPES.values():
        assert info.display_name.startswith("Custom alert - ")
        assert alert_type(info.rule_type) == f"IoT_CA_{info.rule_type}"
    never = {t for t, info in RULE_TYPES.items() if info.never_fires}
    assert {t for t in never if t.startswith("Amqp")} == {
        "AmqpC2DMessagesNotInAllowedRange",
        "AmqpC2DRejectedMessagesNotInAllowedRange",
        "AmqpD2CMessagesNotInAllowedRange",
    }
    assert RULE_TYPES["ConnectionToIpNotAllowed"].value_type == "IpCidr"
    assert rules.denylist_rules[1].to_json()["valueType"] == "String"
    assert CustomAlertSet.from_json(rules.to_json()) == rules


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ([], ["must be a JSON object"]),
        (
            {"timeWindowRule": []},
            ["timeWindowRule: unknown rule family; did you mean 'timeWindowRules'?"],
        ),
        ({"timeWindowRules": {}}, ["timeWindowRules: must be a list"]),
        ({"timeWindowRules": [7]}, ["timeWindowRules[0]: must be a JSON object"]),
        (
            {"timeWindowRules": [window("ActiveConnectionsNotInAlowedRange")]},
            [
                "timeWindowRules[0].ruleType: unknown rule type "
                "'ActiveConnectionsNotInAlowedRange'; did you mean "
                "'ActiveConnectionsNotInAllowedRange'?"
            ],
        ),
        (
            {"timeWindowRules": [window("ProcessNotAllowed")]},
            [
                "timeWindowRules[0].ruleType: ProcessNotAllowed is not a timeWindowRules type; "
                "use allowlistRules"
            ],
        ),
        (
            {"thresholdRules": [window()]},
            [
                "thresholdRules[0].ruleType: ASC defines no threshold-only rule types; "
                "ActiveConnectionsNotInAllowedRange is a time-window rule: put it in "
                "timeWindowRules with a timeWindowSize"
            ],
        ),
        (
            {"timeWindowRules": [window(isEnabled="yes")]},
            ["timeWindowRules[0].isEnabled: is required: true or false"],
        ),
        (
            {"timeWindowRules": [window(minThreshold=10, maxThreshold=5)]},
            ["timeWindowRules[0].maxThreshold: must be at least minThreshold (10)"],
        ),
        (
            {"timeWindowRules": [window(minThreshold=-1, maxThreshold=1.5)]},
            [
                "timeWindowRules[0].minThreshold: must be between 0 and 2147483647",
                "timeWindowRules[0].maxThreshold: must be an integer, not float",
            ],
        ),
        (
            {"timeWindowRules": [window(timeWindowSize="P1M")]},
            [
                "timeWindowRules[0].timeWindowSize: 'P1M': years and months have no fixed "
                "length; use days (P30D)"
            ],
        ),
        (
            {"timeWindowRules": [window(timeWindowSize="PT30S")]},
            ["timeWindowRules[0].timeWindowSize: PT30S is outside PT1M..P7D"],
        ),
        (
            {"timeWindowRules": [window(), window(maxThreshold=3)]},
            [
                "timeWindowRules[1].ruleType: ActiveConnectionsNotInAllowedRange is already in "
                "timeWindowRules[0]; one rule per type"
            ],
        ),
        (
            {"timeWindowRules": [window(maxThreshhold=3)]},
            ["timeWindowRules[0].maxThreshhold: unknown key; did you mean 'maxThreshold'?"],
        ),
        (
            {
                "allowlistRules": [
                    {
                        "ruleType": "ConnectionToIpNotAllowed",
                        "isEnabled": True,
                        "allowlistValues": ["10.0.0.0/8", "10.0.0.300", "fe80::/10"],
                    }
                ]
            },
            [
                "allowlistRules[0].allowlistValues[1]: '10.0.0.300' is not an IPv4 or IPv6 "
                "address or CIDR block"
            ],
        ),
        (
            {
                "denylistRules": [
                    {
                        "ruleType": "LocalUserNotAllowed",
                        "isEnabled": True,
                        "denylistValues": ["root"],
                        "valueType": "IpCidr",
                    }
                ]
            },
            ["denylistRules[0].valueType: LocalUserNotAllowed takes String values, not 'IpCidr'"],
        ),
        (
            {
                "allowlistRules": [
                    {"ruleType": "ProcessNotAllowed", "isEnabled": True, "allowlistValues": "sshd"}
                ]
            },
            ["allowlistRules[0].allowlistValues: must be a list of strings"],
        ),
        (
            {
                "allowlistRules": [
                    {"ruleType": "ProcessNotAllowed", "isEnabled": True, "allowlistValues": ["", 3]}
                ]
            },
            [
                "allowlistRules[0].allowlistValues[0]: must be a non-empty string",
                "allowlistRules[0].allowlistValues[1]: must be a non-empty string",
            ],
        ),
        (
            {"properties": {"timeWindowRules": [window(timeWindowSize=5)]}, "etag": "x"},
            [
                "etag: unknown key next to properties",
                "properties.timeWindowRules[0].timeWindowSize: must be an ISO 8601 duration string",
            ],
        ),
    ],
)
def test_errors_name_the_path_and_the_reason(document: Any, expected: list[str]) -> None:
    assert issues(document) == expected


def test_every_problem_is_reported_at_once() -> None:
    found = issues(
        {
            "timeWindowRules": [window(timeWindowSize="soon"), window("Nope")],
            "denylistRules": [{"ruleType": "ProcessNotAllowed"}],
        }
    )
    assert len(found) == 4
    assert found[0].startswith("timeWindowRules[0].timeWindowSize")
    assert found[1].startswith("timeWindowRules[1].ruleType: unknown rule type 'Nope'")
    assert found[2] == "denylistRules[0].isEnabled: is required: true or false"
    assert found[3] == "denylistRules[0].denylistValues: is required (a list of strings)"


def test_durations() -> None:
    assert parse_duration("PT05M") == timedelta(minutes=5)
    assert parse_duration("P1W") == timedelta(days=7)
    assert parse_duration("P1DT2H3M4S") == timedelta(days=1, hours=2, minutes=3, seconds=4)
    assert format_duration(timedelta(minutes=90)) == "PT1H30M"
    assert format_duration(timedelta(days=2)) == "P2D"
    for bad in ("", "P", "PT", "P1DT", "5m", "PT1.5S", "-PT5M"):
        with pytest.raises(ValueError, match="ISO 8601"):
            parse_duration(bad)


def test_list_membership() -> None:
    ips = ListRule(
        "allowlistRules", "ConnectionToIpNotAllowed", True, ("10.0.0.0/8", "2001:db8::/32")
    )
    assert ips.listed("10.2.3.4") and ips.listed("::ffff:10.2.3.4") and ips.listed("2001:db8::1")
    assert not ips.listed("192.0.2.1") and not ips.listed("not-an-ip")
    assert ips.fires_on("192.0.2.1") and not ips.fires_on("10.9.9.9")
    processes = ListRule("denylistRules", "ProcessNotAllowed", True, ("nc", "/usr/bin/socat"))
    assert processes.fires_on("/bin/nc") and processes.fires_on("/usr/bin/socat")
    assert not processes.fires_on("/usr/local/bin/socat") and not processes.fires_on("/bin/ncat")


# -- properties --------------------------------------------------------------------------------

window_rules = st.builds(
    lambda t, enabled, low, span, minutes: window(
        t,
        isEnabled=enabled,
        minThreshold=low,
        maxThreshold=low + span,
        timeWindowSize=f"PT{minutes}M",
    ),
    st.sampled_from(WINDOW_RULE_TYPES),
    st.booleans(),
    st.integers(0, 1000),
    st.integers(0, 1000),
    st.integers(1, 7 * 24 * 60),
)
users = st.lists(st.text(min_size=1, max_size=20).filter(str.strip), max_size=5)


@given(
    windows=st.lists(window_rules, max_size=6, unique_by=lambda r: r["ruleType"]),
    allowed_users=st.none() | users,
    denied_users=st.none() | users,
)
def test_valid_documents_round_trip(
    windows: list[dict[str, Any]], allowed_users: list[str] | None, denied_users: list[str] | None
) -> None:
    document: dict[str, Any] = {"timeWindowRules": windows}
    if allowed_users is not None:
        document["allowlistRules"] = [
            {"ruleType": "LocalUserNotAllowed", "isEnabled": True, "allowlistValues": allowed_users}
        ]
    if denied_users is not None:
        document["denylistRules"] = [
            {"ruleType": "LocalUserNotAllowed", "isEnabled": True, "denylistValues": denied_users}
        ]
    rules = CustomAlertSet.from_json(document)
    again = CustomAlertSet.from_json(orjson.loads(orjson.dumps(rules.to_json())))
    assert again == rules


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=20), inner, max_size=4)
    ),
    max_leaves=20,
)
families = st.sampled_from(["thresholdRules", "timeWindowRules", "allowlistRules", "denylistRules"])


@given(
    st.dictionaries(
        families, st.lists(st.dictionaries(st.text(max_size=20), json_values)), max_size=4
    )
    | json_values
)
def test_arbitrary_json_gives_a_verdict_never_a_crash(document: Any) -> None:
    try:
        CustomAlertSet.from_json(document)
    except CustomAlertInvalid as exc:
        assert exc.issues and all(issue.reason for issue in exc.issues)
