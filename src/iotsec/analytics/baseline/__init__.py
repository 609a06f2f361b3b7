"""Behaviour baselines: novelty per device and group, robust rate bands, the outlier model.

Each is a ``Detector`` (``observe`` and ``tick``) that learns a device for a period of its own
observation time before judging it, explains what was expected and what was seen, and keeps
its state as data that ``StateStore`` saves to an SQLite file and loads after a restart.
"""

from iotsec.analytics.baseline.learning import BaselineStatus, LearningPolicy
from iotsec.analytics.baseline.novelty import FEATURES, Feature, NoveltyConfig, NoveltyDetector
from iotsec.analytics.baseline.outlier import FEATURES as OUTLIER_FEATURES
from iotsec.analytics.baseline.outlier import OutlierConfig, OutlierDetector
from iotsec.analytics.baseline.rates import METRICS, Metric, RateBand, RateConfig, RateDetector
from iotsec.analytics.baseline.state import Stateful, StateStore

__all__ = [
    "FEATURES",
    "METRICS",
    "OUTLIER_FEATURES",
    "BaselineStatus",
    "Feature",
    "LearningPolicy",
    "Metric",
    "NoveltyConfig",
    "NoveltyDetector",
    "OutlierConfig",
    "OutlierDetector",
    "RateBand",
    "RateConfig",
    "RateDetector",
    "StateStore",
    "Stateful",
]
