"""``python -m harness.cli``: the ``harness`` command."""

import sys

from harness.cli import console_main

sys.exit(console_main())
