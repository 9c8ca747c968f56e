"""Executing cases: a reusable worker process per run, crash isolation, resume, progress.

``run_suite`` and ``RunSummary`` load :mod:`harness.runner.run` (the store, pandas) on first use: the worker
process imports this package for its own module and needs neither.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.lazy import lazy_exports

if TYPE_CHECKING:
    from harness.runner.run import RunSummary, run_suite

__all__ = ["RunSummary", "run_suite"]
__getattr__ = lazy_exports(__name__, {"RunSummary": "harness.runner.run", "run_suite": "harness.runner.run"})
