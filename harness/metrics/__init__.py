"""HOW things are measured: one module per metric family, found through the table below.

Every metric module defines:

- ``NAME``: the name suites use under ``metrics:``;
- ``Options``: a pydantic model (``extra="forbid"``) of the options a suite may give it;
- ``COLUMNS``: ``{column: type}`` of what it writes into a record, the unit in each column's name;
  types are ``int64``, ``float64``, ``bool``, ``string`` or ``list<float64>``;
- ``measure(model, inputs, case, options) -> dict``: the measured values, keyed by column.

Adding a metric = one module plus one line in ``METRIC_MODULES``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

METRIC_MODULES: dict[str, str] = {
    "accuracy": "harness.metrics.accuracy",
    "detection": "harness.metrics.detection",
    "complexity": "harness.metrics.complexity",
    "compression": "harness.metrics.compression",
    "energy": "harness.metrics.energy",
    "latency": "harness.metrics.latency",
    "memory": "harness.metrics.memory",
    "box_simulation": "harness.metrics.box_simulation",
}


def metric_names() -> list[str]:
    """Return the names of all metric families, sorted."""
    return sorted(METRIC_MODULES)


def get_metric(name: str) -> ModuleType:
    """Return the metric module registered as ``name``; KeyError when there is none."""
    return importlib.import_module(METRIC_MODULES[name])


def metric_columns() -> dict[str, str]:
    """Return ``{column: type}`` of every column any metric family writes, in table order."""
    columns: dict[str, str] = {}
    for name in METRIC_MODULES:
        columns.update(get_metric(name).COLUMNS)
    return columns
