"""harness: declarative benchmark suites for deep-learning architectures, results kept in Parquet.

Public API: ``load_suite``, ``run_suite``, ``read_results``, ``render_report``.
"""

from harness.report import render_report
from harness.runner import run_suite
from harness.store import read_results
from harness.suite import load_suite

__all__ = ["load_suite", "read_results", "render_report", "run_suite"]
