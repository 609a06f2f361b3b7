"""``iotsec alerts custom ...`` against a real hub on loopback, validated by the analytics model."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from iotsec.analytics import DeviceContext, Observation
from iotsec.analytics.custom import CustomAlertDetector, DocumentSource
from iotsec.cli import main
from iotsec.cli.alerts_cmd import validate_for_hub
from iotsec.cli.service_client import CliError, ServiceClient
from iotsec.cli.system import System
from iotsec.hub.customalerts import CustomAlertsInvalid
from iotsec.hub.server import HubServer
from iotsec.hub.settings import HubSettings

# ServiceClient passes its CA file to httpx as a string, which httpx 0.28 deprecates; the CLI
# runs in-process here, so the warning would fail the test (reported to the CLI's owner).

RULES = {
    "timeWindowRules": [
        {
            "ruleType": "FailedLocalLoginsNotInAllowedRange",
            "isEnabled": True,
            "minThreshold": 0,
            "maxThreshold": 5,
            "timeWindowSize": "PT10M",
        }
    ],
    "denylistRules": [
        {"ruleType": "ProcessNotAllowed", "isEnabled": True, "denylistValues": ["nc", "xmrig"]}
    ],
}
BAD = {"timeWindowRules": [{**RULES["timeWindowRules"][0], "timeWindowSize": "ten minutes"}]}


def settings(data_dir: Path) -> HubSettings:
    return HubSettings(
        data_dir=data_dir, hub_name="alerts-hub", mqtt_port=0, https_port=0, local_agent=False
    )


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[HubServer]:
    """A hub on loopback with the analytics model as its custom-alert validator."""
    server = HubServer(settings(tmp_path / "data"), custom_alert_validator=validate_for_hub)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def iotsec(hub: HubServer, *args: str) -> int:
    """Run the CLI in a thread (its client is synchronous; the hub serves on this loop)."""
    argv = [*args, "--data-dir", str(hub.settings.data_dir)]
    return await asyncio.to_thread(main, argv)


def write(tmp_path: Path, name: str, document: object) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(document))
    return str(path)


async def test_set_show_list_delete(
    hub: HubServer, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    rules = write(tmp_path, "rules.json", RULES)
    assert await iotsec(hub, "alerts", "custom", "set", "Cameras", rules) == 0
    stored = json.loads(capfd.readouterr().out)
    assert stored["timeWindowRules"][0]["timeWindowSize"] == "PT10M"
    assert stored["denylistRules"][0]["valueType"] == "String"
    assert stored["thresholdRules"] == [] and stored["allowlistRules"] == []

    assert await iotsec(hub, "alerts", "custom", "show", "cameras") == 0
    assert json.loads(capfd.readouterr().out) == stored

    assert await iotsec(hub, "alerts", "custom", "list") == 0
    lines = capfd.readouterr().out.splitlines()
    assert lines[0].split() == ["GROUP", "TIME-WINDOW", "ALLOW", "DENY", "ENABLED"]
    assert lines[1].split() == ["Cameras", "1", "0", "1", "2"]
    assert await iotsec(hub, "alerts", "custom", "list", "--format", "json") == 0
    assert json.loads(capfd.readouterr().out) == [{"name": "Cameras", "customAlerts": stored}]

    assert await iotsec(hub, "alerts", "custom", "delete", "CAMERAS") == 0
    assert "removed the custom alerts of security group CAMERAS" in capfd.readouterr().out
    assert await iotsec(hub, "alerts", "custom", "delete", "cameras") == 0
    assert "had no custom alerts" in capfd.readouterr().out
    assert await iotsec(hub, "alerts", "custom", "list") == 0
    assert "no security group has custom alerts" in capfd.readouterr().out

    await hub.oplog.drain()
    assert hub.registry.custom_alert_groups() == {}


async def test_an_invalid_file_is_refused_before_it_is_sent(
    hub: HubServer, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    bad = write(tmp_path, "bad.json", BAD)
    assert await iotsec(hub, "alerts", "custom", "set", "lab", bad) == 2
    err = capfd.readouterr().err
    assert f"{bad}: invalid custom alerts" in err
    assert "  timeWindowRules[0].timeWindowSize: 'ten minutes' is not an ISO 8601 duration" in err
    assert hub.registry.custom_alerts("lab") is None


async def test_the_hub_validates_with_the_analytics_model(hub: HubServer) -> None:
    def put(document: object) -> object:
        with ServiceClient(hub.settings.data_dir) as client:
            return client.request("PUT", "/securityGroups/lab/customAlerts", body=document)

    with pytest.raises(CliError, match=r"400 ErrorCode:ArgumentInvalid;timeWindowRules\[0\]"):
        await asyncio.to_thread(put, BAD)
    stored = await asyncio.to_thread(put, RULES)
    assert isinstance(stored, dict) and stored["timeWindowRules"][0]["displayName"].startswith(
        "Custom alert - number of failed local logins"
    )


async def test_stored_alerts_reach_the_detector(hub: HubServer, tmp_path: Path) -> None:
    assert (
        await iotsec(hub, "alerts", "custom", "set", "cameras", write(tmp_path, "r.json", RULES))
        == 0
    )
    detector = CustomAlertDetector()
    # The composition root's wiring: the registry's documents through the analytics model.
    detector.reload(DocumentSource(hub.registry.custom_alert_groups))
    observation = Observation(
        source="agent",
        name="ProcessCreate",
        time=datetime(2025, 3, 1, tzinfo=UTC),
        device=DeviceContext("cam-7", group="Cameras"),
        fields={"Executable": "/tmp/xmrig", "CommandLine": "/tmp/xmrig -o pool"},
        event_id="e1",
    )
    [found] = detector.observe(observation)
    assert found.rule_id == "IoT_CA_ProcessNotAllowed"


def test_check_needs_no_hub(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["alerts", "custom", "check", write(tmp_path, "ok.json", RULES)]) == 0
    assert "valid (2 rules)" in capsys.readouterr().out
    assert main(["alerts", "custom", "check", write(tmp_path, "bad.json", BAD)]) == 2
    assert "timeWindowSize" in capsys.readouterr().err
    (tmp_path / "junk.json").write_text("{")
    assert main(["alerts", "custom", "check", str(tmp_path / "junk.json")]) == 2
    assert "is not JSON" in capsys.readouterr().err


def test_without_a_hub_the_cli_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["alerts", "custom", "list", "--data-dir", str(tmp_path)]) == 1
    assert "no hub has run with data dir" in capsys.readouterr().err


def test_the_validator_translates_to_the_hubs_error() -> None:
    with pytest.raises(CustomAlertsInvalid) as caught:
        validate_for_hub(BAD)
    assert caught.value.issues == (
        (
            "timeWindowRules[0].timeWindowSize",
            "'ten minutes' is not an ISO 8601 duration such as PT5M or P1D",
        ),
    )


def test_iotsec_up_wires_the_validator(tmp_path: Path) -> None:
    system = System(settings(tmp_path / "data"), on_progress=lambda _: None, workspace=False)
    assert system.hub._validate_custom_alerts is validate_for_hub
