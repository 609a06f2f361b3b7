"""Seeded randomness: every random choice of the simulator comes from a named, seeded stream.

A stream is keyed by the seed and by where it is used (a device, an hour slot, a scenario), so
generating one hour never shifts the choices of another, and the same key always gives the same
choices on every machine (``random.Random`` seeds a string through SHA-512, not ``hash()``).
"""

from __future__ import annotations

import random
import uuid
import zlib

__all__ = ["new_uuid", "rng_for", "stable_int"]


def rng_for(seed: int, *key: object) -> random.Random:
    """A random stream for ``key`` under ``seed``: the same arguments, the same stream."""
    text = "/".join(str(part) for part in (seed, *key))
    # Simulation data, not secrets: a reproducible stream is the point.
    return random.Random(text)  # noqa: S311


def new_uuid(rng: random.Random) -> str:
    """A version-4 UUID drawn from ``rng`` (reproducible, unlike ``uuid.uuid4``)."""
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def stable_int(*key: object) -> int:
    """A non-negative integer that depends only on ``key`` (CRC-32 of its text)."""
    return zlib.crc32("/".join(str(part) for part in key).encode("utf-8"))
