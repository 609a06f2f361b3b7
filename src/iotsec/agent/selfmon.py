"""The agent watching itself: its CPU share and resident memory against a budget.

A security agent that eats the device it protects gets uninstalled. The :class:`SelfMonitor`
samples the process's CPU time and RSS; while either is over the :class:`Budget`,
``backoff_factor()`` says how much longer collectors should wait between polls (the
overshoot ratio, capped), and ``as_extra_details()`` puts the figures into a Diagnostic or
MessageStatistics event. The readers and the clock are injected, so tests are exact.

>>> cpu = iter([0.0, 0.1]).__next__
>>> wall = iter([0.0, 1.0]).__next__
>>> monitor = SelfMonitor(Budget(cpu_percent=2.0), clock=wall, cpu_seconds=cpu,
...                       rss_bytes=lambda: 10_000_000)
>>> monitor.sample().cpu_percent, monitor.over_budget(), monitor.backoff_factor()
(10.0, True, 5.0)
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass

from iotsec.agent.errors import HostReadError

__all__ = [
    "Budget",
    "SelfMonitor",
    "Usage",
    "process_cpu_seconds",
    "process_rss_bytes",
]

_STATM = "/proc/self/statm"


def process_cpu_seconds() -> float:
    """CPU time (user + system, all threads) this process has used, in seconds."""
    times = os.times()
    return times.user + times.system


def process_rss_bytes() -> int:
    """This process's resident set size now, in bytes.

    Reads ``/proc/self/statm``; where there is no /proc, falls back to the peak RSS that
    ``getrusage`` reports, which can only overstate.

    Raises:
        HostReadError: /proc/self/statm exists but does not read as expected.
    """
    try:
        with open(_STATM, encoding="ascii") as statm:
            fields = statm.read().split()
    except FileNotFoundError:
        # Linux reports ru_maxrss in KiB (macOS in bytes, but the agent targets Linux).
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    except (OSError, UnicodeDecodeError) as exc:
        raise HostReadError(_STATM, str(exc)) from None
    if len(fields) < 2 or not fields[1].isdigit():
        raise HostReadError(_STATM, f"unexpected content {' '.join(fields[:3])!r}")
    return int(fields[1]) * os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True, slots=True)
class Budget:
    """What the agent may use: a share of one core, in percent, and resident bytes."""

    cpu_percent: float = 2.0
    rss_bytes: int = 40 * 1024 * 1024

    def __post_init__(self) -> None:
        if self.cpu_percent <= 0 or self.rss_bytes <= 0:
            raise ValueError(f"a budget is positive, got {self}")


@dataclass(frozen=True, slots=True)
class Usage:
    """The agent's use over one sampling span: CPU share of one core, and RSS at its end."""

    cpu_percent: float
    rss_bytes: int
    span_seconds: float


class SelfMonitor:
    """Samples the agent's CPU and memory and compares them with a budget.

    Args:
        budget: the limits.
        clock: monotonic seconds; the span between samples is measured with it.
        cpu_seconds: the process's CPU time so far.
        rss_bytes: the process's resident size now.
        max_factor: the largest ``backoff_factor``.
    """

    def __init__(
        self,
        budget: Budget | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        cpu_seconds: Callable[[], float] = process_cpu_seconds,
        rss_bytes: Callable[[], int] = process_rss_bytes,
        max_factor: float = 8.0,
    ) -> None:
        if max_factor < 1:
            raise ValueError(f"max_factor must be at least 1, got {max_factor}")
        self.budget = budget or Budget()
        self._clock = clock
        self._cpu_seconds = cpu_seconds
        self._rss_bytes = rss_bytes
        self._max_factor = max_factor
        self._since = (clock(), cpu_seconds())
        self._last: Usage | None = None

    @property
    def last(self) -> Usage | None:
        """The latest sample, or None before the first."""
        return self._last

    def sample(self) -> Usage:
        """Measure use since the previous sample (or since construction) and remember it.

        A span of zero (two samples at the same instant) repeats the previous CPU figure.
        """
        wall, cpu = self._clock(), self._cpu_seconds()
        then_wall, then_cpu = self._since
        span = wall - then_wall
        if span > 0:
            percent = max(0.0, (cpu - then_cpu) / span * 100.0)
            self._since = (wall, cpu)
        else:
            percent = self._last.cpu_percent if self._last else 0.0
        self._last = Usage(cpu_percent=percent, rss_bytes=self._rss_bytes(), span_seconds=span)
        return self._last

    def _ratio(self) -> float:
        if self._last is None:
            return 0.0
        return max(
            self._last.cpu_percent / self.budget.cpu_percent,
            self._last.rss_bytes / self.budget.rss_bytes,
        )

    def over_budget(self) -> bool:
        """True when the latest sample exceeds the CPU or the memory budget."""
        return self._ratio() > 1.0

    def backoff_factor(self) -> float:
        """What to multiply polling intervals by: 1.0 within budget, else the overshoot.

        Three times over budget gives 3.0, capped at ``max_factor``.
        """
        ratio = self._ratio()
        return 1.0 if ratio <= 1.0 else min(ratio, self._max_factor)

    def as_extra_details(self) -> dict[str, str]:
        """The latest sample and the budget, as ExtraDetails (string to string)."""
        details = {
            "AgentCpuBudgetPercent": f"{self.budget.cpu_percent:g}",
            "AgentRssBudgetBytes": str(self.budget.rss_bytes),
        }
        if self._last is not None:
            details["AgentCpuPercent"] = f"{self._last.cpu_percent:.2f}"
            details["AgentRssBytes"] = str(self._last.rss_bytes)
            details["AgentBackoffFactor"] = f"{self.backoff_factor():g}"
        return details
