"""Fixtures shared by every test package."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import settings

from tests.tls import LoopbackPki

# CI shares two cores with servers the suite starts: a property test's example may take longer
# than Hypothesis's default 200 ms deadline without anything being wrong, so there is none.
settings.register_profile("iotsec", deadline=None)
settings.load_profile("iotsec")

#: Microsoft's published schemas and samples, read in place (never copied into the project).
SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SECURITY_MESSAGE_DIR = SHARED / "reference" / "azure-iot-security" / "security_message"


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> LoopbackPki:
    """A CA, a server certificate for 127.0.0.1/localhost, and a factory for device certs."""
    return LoopbackPki.create(tmp_path_factory.mktemp("pki"))
