from __future__ import annotations

import random

import pytest

from iotsec.sdk import (
    AuthError,
    ClientClosedError,
    ConnectionStringError,
    NotSupportedError,
    RejectedError,
    RetryPolicy,
    SasTokenError,
    SdkError,
    ThrottledError,
    TransportError,
    is_retryable,
)


def test_transport_errors_back_off_exponentially_with_full_jitter() -> None:
    policy = RetryPolicy(
        initial_delay=1.0, max_delay=10.0, multiplier=2.0, max_attempts=7, rng=random.Random(7)
    )
    delays = [policy.next_delay(n, TransportError("reset")) for n in range(1, 7)]
    mirror = random.Random(7)
    assert delays == [mirror.uniform(0.0, ceiling) for ceiling in (1.0, 2.0, 4.0, 8.0, 10.0, 10.0)]
    assert policy.next_delay(7, TransportError("reset")) is None


def test_without_jitter_the_delays_are_the_ceilings() -> None:
    policy = RetryPolicy(
        initial_delay=0.5, max_delay=3.0, multiplier=3.0, jitter=False, max_attempts=None
    )
    assert [policy.next_delay(n, TransportError("x")) for n in (1, 2, 3, 4)] == [0.5, 1.5, 3.0, 3.0]
    assert policy.next_delay(10_000, TransportError("x")) == 3.0  # no overflow


@pytest.mark.parametrize(
    "error",
    [
        AuthError("bad key", status=401),
        RejectedError("too big", status=413),
        ConnectionStringError("missing key HostName"),
        SasTokenError("bad token"),
        NotSupportedError("use MQTT"),
        ClientClosedError("closed"),
        SdkError("something else"),
    ],
)
def test_errors_that_waiting_cannot_fix_are_never_retried(error: SdkError) -> None:
    assert not is_retryable(error)
    assert RetryPolicy(max_attempts=None).next_delay(1, error) is None


def test_throttling_waits_at_least_retry_after() -> None:
    policy = RetryPolicy(initial_delay=1.0, max_delay=2.0, rng=random.Random(1))
    assert policy.next_delay(1, ThrottledError("slow down", retry_after=7.0)) == 7.0
    mirror = random.Random(1)
    mirror.uniform(0, 1.0)
    # Without a hint, throttling backs off like a transport error.
    assert policy.next_delay(2, ThrottledError("slow down")) == mirror.uniform(0, 2.0)


def test_deadline_gives_up_when_the_next_wait_would_pass_it() -> None:
    policy = RetryPolicy(
        initial_delay=4.0, max_delay=4.0, jitter=False, max_attempts=None, deadline=10.0
    )
    assert policy.next_delay(1, TransportError("x"), elapsed=6.0) == 4.0
    assert policy.next_delay(2, TransportError("x"), elapsed=6.1) is None
    assert policy.next_delay(1, ThrottledError("x", retry_after=30), elapsed=0.0) is None


def test_never_retries_nothing() -> None:
    assert RetryPolicy.never().next_delay(1, TransportError("x")) is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"initial_delay": -1},
        {"initial_delay": 5, "max_delay": 1},
        {"multiplier": 0.5},
        {"max_attempts": 0},
        {"deadline": 0},
    ],
)
def test_rejects_nonsense_configuration(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must be"):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_policies_compare_by_configuration_not_by_rng() -> None:
    assert RetryPolicy(rng=random.Random(1)) == RetryPolicy(rng=random.Random(2))
    assert RetryPolicy(max_attempts=3) != RetryPolicy(max_attempts=4)
