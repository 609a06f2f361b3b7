"""The agent's own CPU and memory against its budget, on injected clocks and readers."""

from __future__ import annotations

import doctest
import os
import time

import pytest

from iotsec.agent import selfmon as selfmon_module
from iotsec.agent.selfmon import (
    Budget,
    SelfMonitor,
    Usage,
    process_cpu_seconds,
    process_rss_bytes,
)

MB = 1024 * 1024


class Readings:
    """A scripted process: set ``wall``, ``cpu`` and ``rss`` between samples."""

    def __init__(self) -> None:
        self.wall = 100.0
        self.cpu = 5.0
        self.rss = 10 * MB

    def monitor(self, budget: Budget | None = None, **kwargs: float) -> SelfMonitor:
        return SelfMonitor(
            budget,
            clock=lambda: self.wall,
            cpu_seconds=lambda: self.cpu,
            rss_bytes=lambda: self.rss,
            **kwargs,
        )


def test_doctests() -> None:
    assert doctest.testmod(selfmon_module).failed == 0


def test_cpu_share_is_cpu_time_over_wall_time_since_the_last_sample() -> None:
    r = Readings()
    monitor = r.monitor()
    assert monitor.last is None
    assert (monitor.over_budget(), monitor.backoff_factor()) == (False, 1.0)
    r.wall, r.cpu = 110.0, 5.1  # 0.1 s of CPU in 10 s: 1% of a core
    assert monitor.sample() == Usage(
        cpu_percent=pytest.approx(1.0), rss_bytes=10 * MB, span_seconds=10.0
    )
    r.wall, r.cpu = 120.0, 5.5  # 0.4 s in the next 10 s: 4%
    assert monitor.sample().cpu_percent == pytest.approx(4.0)
    assert monitor.last is not None
    assert monitor.last.cpu_percent == pytest.approx(4.0)


def test_within_budget_the_factor_is_one() -> None:
    r = Readings()
    monitor = r.monitor(Budget(cpu_percent=2.0, rss_bytes=40 * MB))
    r.wall, r.cpu, r.rss = 200.0, 6.0, 40 * MB  # exactly 1% and exactly the memory budget
    monitor.sample()
    assert not monitor.over_budget()
    assert monitor.backoff_factor() == 1.0


def test_over_the_cpu_budget_polling_slows_by_the_overshoot() -> None:
    r = Readings()
    monitor = r.monitor(Budget(cpu_percent=2.0))
    r.wall, r.cpu = 200.0, 11.0  # 6 s in 100 s: 6%, three times the budget
    monitor.sample()
    assert monitor.over_budget()
    assert monitor.backoff_factor() == pytest.approx(3.0)
    r.wall, r.cpu = 300.0, 11.5  # back to 0.5%
    monitor.sample()
    assert monitor.backoff_factor() == 1.0


def test_over_the_memory_budget_and_the_cap() -> None:
    r = Readings()
    monitor = r.monitor(Budget(rss_bytes=10 * MB), max_factor=4.0)
    r.wall, r.rss = 101.0, 15 * MB
    monitor.sample()
    assert monitor.backoff_factor() == pytest.approx(1.5)
    r.wall, r.rss = 102.0, 500 * MB
    monitor.sample()
    assert monitor.backoff_factor() == 4.0


def test_a_zero_span_repeats_the_previous_cpu_figure() -> None:
    r = Readings()
    monitor = r.monitor()
    assert monitor.sample().cpu_percent == 0.0  # nothing measured yet
    r.wall, r.cpu = 110.0, 5.5
    assert monitor.sample().cpu_percent == pytest.approx(5.0)
    r.cpu = 9.0  # the clock did not move
    assert monitor.sample().cpu_percent == pytest.approx(5.0)
    r.wall = 120.0  # the CPU used meanwhile is counted over the next real span
    assert monitor.sample().cpu_percent == pytest.approx(35.0)  # 3.5 s over 10 s


def test_extra_details_are_strings() -> None:
    r = Readings()
    monitor = r.monitor(Budget(cpu_percent=2.0, rss_bytes=40 * MB))
    assert monitor.as_extra_details() == {
        "AgentCpuBudgetPercent": "2",
        "AgentRssBudgetBytes": str(40 * MB),
    }
    r.wall, r.cpu = 104.0, 5.1
    monitor.sample()
    assert monitor.as_extra_details() == {
        "AgentCpuBudgetPercent": "2",
        "AgentRssBudgetBytes": str(40 * MB),
        "AgentCpuPercent": "2.50",
        "AgentRssBytes": str(10 * MB),
        "AgentBackoffFactor": "1.25",
    }


def test_budgets_and_factors_must_make_sense() -> None:
    with pytest.raises(ValueError, match="positive"):
        Budget(cpu_percent=0)
    with pytest.raises(ValueError, match="positive"):
        Budget(rss_bytes=-1)
    with pytest.raises(ValueError, match="max_factor"):
        Readings().monitor(max_factor=0.5)


def test_the_default_budget_is_two_percent_and_forty_megabytes() -> None:
    assert Budget() == Budget(cpu_percent=2.0, rss_bytes=40 * MB)


def test_the_real_readers_measure_this_process() -> None:
    rss = process_rss_bytes()
    assert 1 * MB < rss < 4096 * MB
    before = process_cpu_seconds()
    end = time.process_time() + 0.1
    while time.process_time() < end:
        pass
    # The kernel counts in clock ticks (10 ms), and the difference of two such floats can
    # fall a hair under a whole number of them.
    assert process_cpu_seconds() - before >= 0.08 - 1e-9
    monitor = SelfMonitor()
    usage = monitor.sample()
    assert usage.rss_bytes > 0
    assert usage.span_seconds >= 0


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc")
def test_rss_matches_proc_status() -> None:
    with open("/proc/self/status", encoding="ascii") as status:
        vm_rss = next(line for line in status if line.startswith("VmRSS:"))
    kib = int(vm_rss.split()[1])
    assert abs(process_rss_bytes() - kib * 1024) < 8 * MB
