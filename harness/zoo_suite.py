"""The timm zoo as a suite: a case per architecture ``timm.list_models()`` names, at the input size of its pretrained
config, counted on the meta device (no weights: the largest models count in seconds and in little memory).

``harness zoo`` runs it through the ordinary runner (:func:`harness.runner.run_suite`), so its records land in the
store as suite :data:`ZOO_SUITE` beside every other run and the report draws its page from them.
"""

from __future__ import annotations

import fnmatch
from typing import Any

from harness.case import Case
from harness.suite import Suite

#: The name of the zoo suite in the store and the report.
ZOO_SUITE = "timm_zoo"
#: Seconds one architecture may take to build and count before it is recorded as failed (timeout); the slowest
#: of timm 1.0.31's took 1.5 s on the development VM.
ZOO_TIMEOUT_S = 600.0
#: The most worker processes ``harness zoo`` starts by default, whatever the cores: each holds its own torch and timm.
MAX_DEFAULT_JOBS = 8


def default_input(name: str) -> tuple[int, int, int]:
    """Return ``(channels, height, width)`` in pixels of timm architecture ``name``'s default pretrained config
    (224 x 224 RGB for an architecture without one)."""
    import timm

    cfg = timm.get_pretrained_cfg(name)
    size = getattr(cfg, "input_size", None) if cfg is not None else None
    return tuple(size) if size else (3, 224, 224)  # type: ignore[return-value]


def zoo_case(name: str, dtype: str = "fp32") -> Case:
    """Return the case counting timm architecture ``name`` at its default input, batch 1, on the meta device;
    ``dtype`` sets the element size of its memory access cost."""
    channels, height, width = default_input(name)
    return Case(model=name, resolution=height, width=width if width != height else None, channels=channels,
                device="meta", dtype=dtype)


def zoo_suite(pattern: str = "*", dtype: str = "fp32") -> Suite:
    """Return the zoo suite: a :func:`zoo_case` per timm architecture matching the fnmatch ``pattern``, in name
    order, taking the complexity metric with its breakdown per ATen op (what a comparison with another counter
    reads)."""
    import timm

    from harness.metrics.complexity import Options

    names = [n for n in timm.list_models() if fnmatch.fnmatchcase(n, pattern)]
    return Suite(name=ZOO_SUITE, path=f"timm {timm.__version__} list_models({pattern!r})",
                 description=f"Every timm architecture ({len(names)} matching {pattern!r} in timm {timm.__version__}) "
                 "at its pretrained config's input size, batch 1, counted on the meta device: parameters, MACs, "
                 "FLOPs, memory access cost, activations and op coverage.",
                 cases=tuple(zoo_case(n, dtype) for n in names), metrics={"complexity": Options(by="op")},
                 timeout_s=ZOO_TIMEOUT_S, published=(), oom_min_batch=None)


def coverage_summary(records: list[dict[str, Any]]) -> str:
    """Return the coverage distribution of ok ``records`` as text: how many at coverage 1.0, in [0.99, 1), below."""
    values = [r["complexity_coverage"] for r in records
              if r["status"] == "ok" and r.get("complexity_coverage") is not None]
    full = sum(v >= 1.0 for v in values)
    near = sum(0.99 <= v < 1.0 for v in values)
    return f"coverage 1.0: {full}, 0.99–1: {near}, below 0.99: {len(values) - full - near}"
