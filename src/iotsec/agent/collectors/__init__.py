"""Collectors: each reads one aspect of the host and returns ASC security events.

:data:`COLLECTORS` is the one registry of host collectors, keyed by the event name each emits;
the agent starts those whose ``eventPriority*`` is not Off. :data:`OPERATIONAL` declares the
events the agent produces about itself (no host collector behind them), so that every event
the agent can send has a spec.

>>> sorted(COLLECTORS)[:3], COLLECTORS["Login"] is LoginCollector
(['ConnectionCreate', 'FirewallConfiguration', 'ListeningPorts'], True)
>>> spec_of("MessageStatistics").event_type
'Operational'
"""

from iotsec.agent.collectors.base import Collector, CollectorFactory, CollectorSpec, Priority
from iotsec.agent.collectors.baseline import BASELINE_SPEC, BaselineCollector
from iotsec.agent.collectors.connections import (
    CONNECTION_CREATE_SPEC,
    connection_create_collector,
)
from iotsec.agent.collectors.firewall import FIREWALL_SPEC, FirewallCollector
from iotsec.agent.collectors.listening import LISTENING_PORTS_SPEC, listening_ports_collector
from iotsec.agent.collectors.login import LOGIN_SPEC, LoginCollector
from iotsec.agent.collectors.process import (
    PROCESS_CREATE_SPEC,
    PROCESS_TERMINATE_SPEC,
    process_create_collector,
    process_terminate_collector,
)
from iotsec.agent.collectors.sysinfo import SYSINFO_SPEC, SystemInformationCollector
from iotsec.agent.collectors.users import USERS_SPEC, UsersCollector

__all__ = [
    "COLLECTORS",
    "OPERATIONAL",
    "SPECS",
    "Collector",
    "CollectorFactory",
    "CollectorSpec",
    "Priority",
    "spec_of",
]

#: Every host collector, by the event name it emits.
COLLECTORS: dict[str, CollectorFactory] = {
    "ProcessCreate": process_create_collector,
    "ProcessTerminate": process_terminate_collector,
    "ConnectionCreate": connection_create_collector,
    "Login": LoginCollector,
    "ListeningPorts": listening_ports_collector,
    "FirewallConfiguration": FirewallCollector,
    "LocalUsers": UsersCollector,
    "SystemInformation": SystemInformationCollector,
    "OSBaseline": BaselineCollector,
}

#: The events the agent produces about itself, by name (reference §1.4, "Operational").
OPERATIONAL: dict[str, CollectorSpec] = {
    "ConfigurationError": CollectorSpec(
        name="ConfigurationError",
        event_type="Operational",
        category="Triggered",
        default_priority="Low",
        description="Twin or local configuration the agent could not use as given.",
    ),
    "DroppedEventsStatistics": CollectorSpec(
        name="DroppedEventsStatistics",
        event_type="Operational",
        category="Periodic",
        default_priority="Low",
        description="Events collected and dropped per queue, every snapshot period.",
    ),
    "MessageStatistics": CollectorSpec(
        name="MessageStatistics",
        event_type="Operational",
        category="Periodic",
        default_priority="Low",
        description="Messages sent and failed, and the agent's own CPU and memory: "
        "the heartbeat, every highPriorityMessageFrequency.",
    ),
    "Diagnostic": CollectorSpec(
        name="Diagnostic",
        event_type="Diagnostic",
        category="Triggered",
        default_priority="Low",
        description="Problems the agent met: collectors that cannot read the host, "
        "messages the hub refused, an identity that competes with the device's app.",
    ),
}

#: The spec of every event the agent emits: the host collectors', then the operational ones.
SPECS: dict[str, CollectorSpec] = {
    **{
        spec.name: spec
        for spec in (
            PROCESS_CREATE_SPEC,
            PROCESS_TERMINATE_SPEC,
            CONNECTION_CREATE_SPEC,
            LOGIN_SPEC,
            LISTENING_PORTS_SPEC,
            FIREWALL_SPEC,
            USERS_SPEC,
            SYSINFO_SPEC,
            BASELINE_SPEC,
        )
    },
    **OPERATIONAL,
}


def spec_of(event_name: str) -> CollectorSpec:
    """The spec of ``event_name``.

    Raises:
        KeyError: the agent emits no event of that name (the message suggests one it does).
    """
    try:
        return SPECS[event_name]
    except KeyError:
        import difflib  # noqa: PLC0415  # only on the error path

        close = difflib.get_close_matches(event_name, list(SPECS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise KeyError(f"no collector emits {event_name!r}{hint}") from None
