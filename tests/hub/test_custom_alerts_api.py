"""Custom alerts per security group on the service API: stored with the hub configuration."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import httpx
import pytest

from iotsec.hub.customalerts import CustomAlertsInvalid, check_shape
from iotsec.hub.http import build_app
from iotsec.hub.registry import SqliteRegistry
from tests.hub.conftest import HttpHub

RULES = {
    "timeWindowRules": [
        {
            "ruleType": "ActiveConnectionsNotInAllowedRange",
            "isEnabled": True,
            "minThreshold": 0,
            "maxThreshold": 30,
            "timeWindowSize": "PT05M",
        }
    ],
    "allowlistRules": [
        {"ruleType": "ProcessNotAllowed", "isEnabled": True, "allowlistValues": ["sshd"]}
    ],
}
EMPTY = {"thresholdRules": [], "timeWindowRules": [], "allowlistRules": [], "denylistRules": []}


async def test_put_get_list_and_delete(http_hub: HttpHub, http_client: httpx.AsyncClient) -> None:
    owner = http_hub.service()
    url = "/securityGroups/Cameras/customAlerts"
    assert (await http_client.get(url, headers=owner)).json() == EMPTY
    stored = await http_client.put(url, json=RULES, headers=owner, params={"api-version": "x"})
    assert stored.status_code == 200
    assert stored.json() == {**EMPTY, **RULES}
    # Group names are case-insensitive; the spelling of the last write is kept.
    fetched = await http_client.get("/securityGroups/cameras/customAlerts", headers=owner)
    assert fetched.json() == {**EMPTY, **RULES}
    listed = (await http_client.get("/securityGroups", headers=owner)).json()
    assert listed == [{"name": "Cameras", "customAlerts": {**EMPTY, **RULES}}]
    removed = await http_client.delete(url, headers=owner)
    assert removed.status_code == 200 and removed.json() == {"name": "Cameras", "deleted": True}
    again = await http_client.delete(url, headers=owner)
    assert again.status_code == 204
    assert (await http_client.get("/securityGroups", headers=owner)).json() == []


async def test_changes_are_in_the_operation_log(
    http_hub: HttpHub, http_client: httpx.AsyncClient
) -> None:
    owner = http_hub.service()
    await http_client.get("/securityGroups/lab/customAlerts", headers=owner)
    await http_client.put("/securityGroups/lab/customAlerts", json=RULES, headers=owner)
    await http_client.delete("/securityGroups/lab/customAlerts", headers=owner)
    entries = [e for e in await http_hub.oplog() if e.category == "Configurations"]
    assert [e.operation for e in entries] == ["setCustomAlerts", "deleteCustomAlerts"]
    assert entries[0].properties["group"] == "lab"
    assert entries[0].properties["timeWindowRules"] == "1"
    assert entries[0].properties["policy"] == "iothubowner"
    assert entries[1].properties["removed"] == "true"


async def test_the_shape_is_checked_with_paths(
    http_hub: HttpHub, http_client: httpx.AsyncClient
) -> None:
    owner = http_hub.service()
    bad = {"timeWindowRules": [{"ruleType": 5}], "allowList": []}
    answer = await http_client.put("/securityGroups/lab/customAlerts", json=bad, headers=owner)
    assert answer.status_code == 400
    body = answer.json()
    assert body["Message"].startswith("ErrorCode:ArgumentInvalid;")
    assert body["issues"] == [
        {
            "path": "allowList",
            "reason": "unknown rule family; expected thresholdRules, timeWindowRules, "
            "allowlistRules or denylistRules",
        },
        {"path": "timeWindowRules[0].ruleType", "reason": "is required (a string)"},
        {"path": "timeWindowRules[0].isEnabled", "reason": "is required: true or false"},
    ]
    assert http_hub.registry.custom_alerts("lab") is None
    failed = [e for e in await http_hub.oplog() if e.operation == "setCustomAlerts"]
    assert failed[0].result == "Failure"


async def test_the_injected_validator_decides_and_normalizes(http_hub: HttpHub) -> None:
    seen: list[Any] = []

    def validator(document: Any) -> dict[str, Any]:
        seen.append(document)
        shaped = check_shape(document)
        for index, rule in enumerate(shaped["timeWindowRules"]):
            if rule.get("timeWindowSize") == "soon":
                raise CustomAlertsInvalid(
                    [(f"timeWindowRules[{index}].timeWindowSize", "not a duration")]
                )
        return {**shaped, "normalized": True}

    context = dataclasses.replace(http_hub.context, validate_custom_alerts=validator)
    transport = httpx.ASGITransport(app=build_app(context))
    async with httpx.AsyncClient(transport=transport, base_url="https://localhost") as client:
        owner = http_hub.service()
        url = "/securityGroups/lab/customAlerts"
        ok = await client.put(url, json=RULES, headers=owner)
        assert ok.json()["normalized"] is True
        assert http_hub.registry.custom_alerts("LAB") == ok.json()
        bad = {"timeWindowRules": [{**RULES["timeWindowRules"][0], "timeWindowSize": "soon"}]}
        refused = await client.put(url, json=bad, headers=owner)
        assert refused.status_code == 400
        assert refused.json()["issues"] == [
            {"path": "timeWindowRules[0].timeWindowSize", "reason": "not a duration"}
        ]
    await context.oplog.drain()
    assert len(seen) == 2
    assert http_hub.registry.custom_alerts("lab") == ok.json()  # the refused one changed nothing


async def test_reading_needs_registry_read_and_changing_needs_registry_write(
    http_hub: HttpHub, http_client: httpx.AsyncClient
) -> None:
    url = "/securityGroups/lab/customAlerts"
    reader = http_hub.service("registryRead")
    assert (await http_client.get(url, headers=reader)).status_code == 200
    refused = await http_client.put(url, json=RULES, headers=reader)
    assert refused.status_code == 403
    assert (await http_client.delete(url, headers=reader)).status_code == 403
    assert (await http_client.get(url, headers=http_hub.service("service"))).status_code == 403
    assert (await http_client.get(url)).status_code == 401
    writer = http_hub.service("registryReadWrite")
    assert (await http_client.put(url, json=RULES, headers=writer)).status_code == 200


async def test_bad_group_names_and_bodies(
    http_hub: HttpHub, http_client: httpx.AsyncClient
) -> None:
    owner = http_hub.service()
    bad_name = await http_client.get("/securityGroups/a b/customAlerts", headers=owner)
    assert bad_name.status_code == 400 and "invalid group" in bad_name.json()["Message"]
    not_json = await http_client.put(
        "/securityGroups/lab/customAlerts", content=b"{", headers=owner
    )
    assert not_json.status_code == 400


def test_documents_survive_a_restart(tmp_path: Path) -> None:
    with SqliteRegistry(tmp_path / "registry.db") as registry:
        registry.set_custom_alerts("Cameras", {**EMPTY, **RULES})
        registry.set_custom_alerts("gateways", EMPTY)
        registry.set_custom_alerts("CAMERAS", {**EMPTY, **RULES, "denylistRules": []})
    with SqliteRegistry(tmp_path / "registry.db") as registry:
        assert registry.custom_alert_groups() == {
            "CAMERAS": {**EMPTY, **RULES},
            "gateways": EMPTY,
        }
        assert registry.custom_alerts("cameras") == {**EMPTY, **RULES}
        assert registry.hub_configuration().min_tls_version == "1.2"  # untouched
        assert registry.delete_custom_alerts("Gateways") is True
        assert registry.delete_custom_alerts("gateways") is False


@pytest.mark.parametrize(
    "document",
    [{"properties": RULES}, RULES],
)
def test_check_shape_accepts_the_arm_wrapper(document: dict[str, Any]) -> None:
    assert check_shape(document) == {**EMPTY, **RULES}
