"""The analytics pipeline: observations in, alerts and recommendations out."""

from iotsec.analytics.detection import Detection, Detector, Finding, Origin, Severity
from iotsec.analytics.errors import AnalyticsError, FeedError, OutputError, RuleError, StateError
from iotsec.analytics.observation import DeviceContext, Observation, Source

__all__ = [
    "AnalyticsError",
    "Detection",
    "Detector",
    "DeviceContext",
    "FeedError",
    "Finding",
    "Observation",
    "Origin",
    "OutputError",
    "RuleError",
    "Severity",
    "Source",
    "StateError",
]
