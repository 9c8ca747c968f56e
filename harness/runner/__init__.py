"""Executing cases: a reusable worker process per run, crash isolation, resume, progress."""

from harness.runner.run import RunSummary, run_suite

__all__ = ["RunSummary", "run_suite"]
