"""A simulated fleet: realistic benign security events, attack scenarios, and a hub runner.

Everything is deterministic: the same seed and start time give the same devices and the same
events, so tests can replay a benign day or an attack and expect exact results.

>>> from datetime import UTC, datetime
>>> from iotsec.simulate import benign_day, build_fleet, run_scenario
>>> fleet = build_fleet(3, seed=42)
>>> start = datetime(2024, 5, 6, tzinfo=UTC)
>>> day = benign_day(fleet, start, hours=1)              # device id -> events as sent
>>> attack = run_scenario("reverse-shell", fleet.devices[0], start, seed=42)
>>> sorted(attack.expected_alerts)
['IoT_ReverseShell']

``iotsec simulate`` (``iotsec.cli.simulate_cmd``) runs a fleet against a running hub.
"""

from iotsec.simulate.agent import (
    AGGREGATED_EVENTS,
    DEFAULT_AGGREGATION_INTERVAL,
    SimAgent,
    schedule,
)
from iotsec.simulate.benign import (
    HIGH_PRIORITY_EVENTS,
    BenignActivity,
    Cadence,
    benign_day,
    benign_events,
)
from iotsec.simulate.errors import NoDeviceConnected, SimulationError, UnknownScenario
from iotsec.simulate.events import TimedEvent
from iotsec.simulate.feed import THREAT_INTEL_ADDRESSES, scenario_indicators
from iotsec.simulate.fleet import SITES, Fleet, SimDevice, Site, build_fleet
from iotsec.simulate.kinds import (
    ADMIN_WORKSTATIONS,
    MANAGEMENT_SUBNET,
    PROFILES,
    PUBLIC_PEERS,
    SITE_SERVICES_SUBNET,
)
from iotsec.simulate.profile import DeviceProfile
from iotsec.simulate.runner import (
    Injection,
    InjectionResult,
    Registrar,
    Registration,
    SimClock,
    Simulation,
    SimulationConfig,
    Summary,
    plan_injections,
    register_fleet,
)
from iotsec.simulate.scenarios import (
    ALERT_BRUTEFORCE_FAIL,
    ALERT_BRUTEFORCE_SUCCESS,
    ALERT_CRYPTO_MINER,
    ALERT_DISABLE_FIREWALL,
    ALERT_DOWNLOAD_EXECUTE,
    ALERT_REVERSE_SHELL,
    ALERT_THREAT_INTEL_IP,
    ALERT_WEB_SHELL,
    BRUTEFORCE_FAILURES,
    SCENARIOS,
    Scenario,
    ScenarioRun,
    expand_scenarios,
    run_scenario,
)

__all__ = [
    "ADMIN_WORKSTATIONS",
    "AGGREGATED_EVENTS",
    "ALERT_BRUTEFORCE_FAIL",
    "ALERT_BRUTEFORCE_SUCCESS",
    "ALERT_CRYPTO_MINER",
    "ALERT_DISABLE_FIREWALL",
    "ALERT_DOWNLOAD_EXECUTE",
    "ALERT_REVERSE_SHELL",
    "ALERT_THREAT_INTEL_IP",
    "ALERT_WEB_SHELL",
    "BRUTEFORCE_FAILURES",
    "DEFAULT_AGGREGATION_INTERVAL",
    "HIGH_PRIORITY_EVENTS",
    "MANAGEMENT_SUBNET",
    "PROFILES",
    "PUBLIC_PEERS",
    "SCENARIOS",
    "SITES",
    "SITE_SERVICES_SUBNET",
    "THREAT_INTEL_ADDRESSES",
    "BenignActivity",
    "Cadence",
    "DeviceProfile",
    "Fleet",
    "Injection",
    "InjectionResult",
    "NoDeviceConnected",
    "Registrar",
    "Registration",
    "Scenario",
    "ScenarioRun",
    "SimAgent",
    "SimClock",
    "SimDevice",
    "Simulation",
    "SimulationConfig",
    "SimulationError",
    "Site",
    "Summary",
    "TimedEvent",
    "UnknownScenario",
    "benign_day",
    "benign_events",
    "build_fleet",
    "expand_scenarios",
    "plan_injections",
    "register_fleet",
    "run_scenario",
    "scenario_indicators",
    "schedule",
]
