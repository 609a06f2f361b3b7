"""The package facade: its names, its examples, and TAXII loaded only when asked for."""

from __future__ import annotations

import doctest
import subprocess
import sys

import iotsec.analytics.intel as intel
from iotsec.analytics.intel import indicator as indicator_module


def test_doctests() -> None:
    assert doctest.testmod(intel).failed == 0
    assert doctest.testmod(indicator_module).failed == 0


def test_taxii_is_imported_only_when_asked_for() -> None:
    code = (
        "import sys, iotsec.analytics.intel as i; "
        "assert 'taxii2client' not in sys.modules and 'requests' not in sys.modules; "
        "assert i.TaxiiPoller.__name__ == 'TaxiiPoller'; assert 'taxii2client' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
