"""When to try again, and after how long: an I/O-free retry policy.

Only failures that waiting can fix are retried: ``TransportError`` (the network or TLS) with
exponential backoff and full jitter, and ``ThrottledError`` (the hub asked us to slow down), for
at least the hub's ``retry_after``. Everything else, notably ``AuthError``, ``RejectedError`` and
``ConnectionStringError``, fails at once: retrying cannot fix it.

>>> policy = RetryPolicy(initial_delay=1.0, jitter=False)
>>> [policy.next_delay(n, TransportError("reset")) for n in (1, 2, 3)]
[1.0, 2.0, 4.0]
>>> from iotsec.sdk.errors import AuthError
>>> policy.next_delay(1, AuthError("bad key")) is None
True
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from iotsec.sdk.errors import SdkError, ThrottledError, TransportError

__all__ = ["RetryPolicy", "is_retryable"]

# Past this many doublings every realistic policy sits at max_delay; avoids float overflow.
_MAX_EXPONENT = 64


def is_retryable(error: SdkError) -> bool:
    """True for the failures that waiting can fix: TransportError and ThrottledError."""
    return isinstance(error, TransportError | ThrottledError)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with full jitter, bounded by attempts and an optional deadline.

    ``max_attempts`` counts every attempt, the first included (1 means never retry);
    ``deadline`` is in seconds since the first attempt began. ``rng`` is the source of jitter:
    pass ``random.Random(seed)`` for exact delays in tests.
    """

    initial_delay: float = 0.5
    max_delay: float = 30.0
    multiplier: float = 2.0
    max_attempts: int | None = 6
    deadline: float | None = None
    jitter: bool = True
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.initial_delay < 0:
            raise ValueError(f"initial_delay must be >= 0, not {self.initial_delay}")
        if self.max_delay < self.initial_delay:
            raise ValueError(
                f"max_delay ({self.max_delay}) must be >= initial_delay ({self.initial_delay})"
            )
        if self.multiplier < 1:
            raise ValueError(f"multiplier must be >= 1, not {self.multiplier}")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, not {self.max_attempts}")
        if self.deadline is not None and self.deadline <= 0:
            raise ValueError(f"deadline must be > 0, not {self.deadline}")

    @classmethod
    def never(cls) -> RetryPolicy:
        """A policy that never retries."""
        return cls(max_attempts=1)

    def backoff(self, attempt: int) -> float:
        """The ceiling of the delay after failed attempt number ``attempt`` (1-based)."""
        exponent = min(max(attempt - 1, 0), _MAX_EXPONENT)
        return min(self.max_delay, self.initial_delay * self.multiplier**exponent)

    def next_delay(self, attempt: int, error: SdkError, *, elapsed: float = 0.0) -> float | None:
        """Seconds to wait before the next attempt, or None to give up.

        ``attempt`` is the number of attempts made so far (1 after the first failure);
        ``elapsed`` is the time since the first attempt began, checked against ``deadline``.
        """
        if not is_retryable(error):
            return None
        if self.max_attempts is not None and attempt >= self.max_attempts:
            return None
        ceiling = self.backoff(attempt)
        delay = self.rng.uniform(0.0, ceiling) if self.jitter else ceiling
        if isinstance(error, ThrottledError) and error.retry_after is not None:
            delay = max(delay, error.retry_after)
        if self.deadline is not None and elapsed + delay > self.deadline:
            return None
        return delay
