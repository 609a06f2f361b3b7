"""Collectors: each reads one aspect of the host and returns ASC security events."""

from iotsec.agent.collectors.base import Collector, CollectorFactory, CollectorSpec, Priority

__all__ = ["Collector", "CollectorFactory", "CollectorSpec", "Priority"]
