"""Recommendations: hardening findings from device snapshots, agent reports and hub state.

``Recommendations`` keeps each device's latest snapshots and the hub state, and ``evaluate``
returns every ``Finding`` that holds now; ``RecommendationTracker`` turns successive
evaluations into Discovered, Updated and Resolved changes for the SecurityRecommendation rows.
"""

from iotsec.analytics.recommendations.agent import AgentRecommendations
from iotsec.analytics.recommendations.device import DeviceRecommendations, is_loopback
from iotsec.analytics.recommendations.engine import Recommendations
from iotsec.analytics.recommendations.hub import (
    FilterAction,
    HubDevice,
    HubState,
    IpFilterRule,
    credential_fingerprint,
    hub_findings,
    tls_version,
)
from iotsec.analytics.recommendations.kinds import (
    KINDS,
    RecommendationConfig,
    RecommendationKind,
    Side,
)
from iotsec.analytics.recommendations.snapshots import Snapshot, SnapshotBook
from iotsec.analytics.recommendations.tracker import (
    ChangeKind,
    RecommendationChange,
    RecommendationState,
    RecommendationTracker,
    TrackedRecommendation,
    recommendation_id,
)

__all__ = [
    "KINDS",
    "AgentRecommendations",
    "ChangeKind",
    "DeviceRecommendations",
    "FilterAction",
    "HubDevice",
    "HubState",
    "IpFilterRule",
    "RecommendationChange",
    "RecommendationConfig",
    "RecommendationKind",
    "RecommendationState",
    "RecommendationTracker",
    "Recommendations",
    "Side",
    "Snapshot",
    "SnapshotBook",
    "TrackedRecommendation",
    "credential_fingerprint",
    "hub_findings",
    "is_loopback",
    "recommendation_id",
    "tls_version",
]
