"""What detectors produce: ``Detection`` (a coming alert) and ``Finding`` (a recommendation).

Every detector family (rules, custom alerts, threat intelligence, baselines, the outlier model)
implements the two-method ``Detector`` protocol, so the pipeline runs them alike and one
conformance suite checks them all. The alert lifecycle (dedup, status, risk) turns detections
into alerts; recommendation evaluators report the findings that hold now, and the lifecycle
marks the ones that stopped holding as resolved.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Literal, Protocol

from iotsec.analytics.observation import DeviceContext, Observation

__all__ = ["Detection", "Detector", "Finding", "Origin", "Severity"]

Severity = Literal["High", "Medium", "Low", "Informational"]
Origin = Literal["rule", "custom", "intel", "baseline", "model", "hub"]

_NONE: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Detection:
    """A detector's finding about one device: what fired, why, and the evidence.

    ``dedup_key`` identifies "the same alert": detections with equal keys within the rule's
    dedup window become one alert with a count. ``description`` is rendered, and says what was
    seen (an operator can check it against ``evidence``, the ``<event id>:<row>`` ids).
    """

    rule_id: str
    display_name: str
    severity: Severity
    device: DeviceContext
    time: datetime
    description: str
    evidence: tuple[str, ...]
    dedup_key: str
    origin: Origin = "rule"
    first_time: datetime | None = None
    remediation: tuple[str, ...] = ()
    tactics: tuple[str, ...] = ()
    techniques: tuple[str, ...] = ()
    #: Evidence worth a column of its own (ASC's ExtendedProperties: "Remote Address", ...).
    properties: Mapping[str, str] = field(default_factory=lambda: _NONE)
    #: Seconds within which a repeat is folded into the same alert.
    dedup_seconds: float = 3600.0


@dataclass(frozen=True, slots=True)
class Finding:
    """A recommendation that holds now for a device (or for the hub, device id ``$hub``)."""

    kind: str
    display_name: str
    severity: Severity
    device: DeviceContext
    time: datetime
    description: str
    #: Identifies this finding among the kind's findings for the device (e.g. the port).
    key: str = ""
    additional_data: Mapping[str, object] = field(default_factory=lambda: MappingProxyType({}))
    remediation: tuple[str, ...] = ()


class Detector(Protocol):
    """Sees observations one by one, and the clock; returns what fired."""

    def observe(self, observation: Observation) -> Sequence[Detection]:
        """Detections caused by ``observation`` (often none)."""
        ...

    def tick(self, now: datetime) -> Sequence[Detection]:
        """Detections due at ``now`` without a new observation (silence, expired windows)."""
        ...
