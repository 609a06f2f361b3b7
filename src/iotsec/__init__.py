"""iotsec: a self-hosted IoT device security platform."""

from iotsec.errors import IotsecError

__all__ = ["IotsecError", "__version__"]

__version__ = "0.1.0"
