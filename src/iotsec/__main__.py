"""``python -m iotsec`` runs the CLI."""

import sys

from iotsec.cli import main

sys.exit(main())
