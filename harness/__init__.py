"""harness: declarative benchmark suites for deep-learning architectures, results kept in Parquet.

Public API: ``load_suite``, ``run_suite``, ``read_results``, ``render_report``. Each loads its module on first use,
so a worker process or ``harness --help`` does not import pandas, the store and the report on the way to
``harness.zoo`` or the CLI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.lazy import lazy_exports

if TYPE_CHECKING:
    from harness.report import render_report
    from harness.runner import run_suite
    from harness.store import read_results
    from harness.suite import load_suite

__all__ = ["load_suite", "read_results", "render_report", "run_suite"]
__getattr__ = lazy_exports(__name__, {"load_suite": "harness.suite", "read_results": "harness.store",
                                      "render_report": "harness.report", "run_suite": "harness.runner"})
