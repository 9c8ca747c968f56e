"""Statistics of timing samples: order statistics with their own spread. Torch-free (numpy only)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

Z_95 = 1.959963984540054


def median_ci(samples: Sequence[float], z: float = Z_95) -> tuple[float, float]:
    """Return the distribution-free ~95% confidence interval of the median (order statistics), in sample units.

    Uses the binomial normal approximation: ranks n/2 ± z·√n/2. With fewer than 3 samples the
    interval is the sample range.
    """
    values = np.sort(np.asarray(samples, dtype=float))
    n = len(values)
    if n < 3:
        return float(values[0]), float(values[-1])
    half = z * math.sqrt(n) / 2
    lo = max(0, math.floor(n / 2 - half))
    hi = min(n - 1, math.ceil(n / 2 + half) - 1)
    return float(values[lo]), float(values[hi])


def relative_ci_half_width(samples: Sequence[float]) -> float:
    """Return the half-width of the median's confidence interval divided by the median (0.02 = ±2%)."""
    lo, hi = median_ci(samples)
    med = float(np.median(samples))
    return (hi - lo) / 2 / med if med > 0 else math.inf


def summarize(samples: Sequence[float]) -> dict[str, float]:
    """Return median, mean, std, iqr, p5, p95, p99, ci_low, ci_high and n of ``samples`` (same unit)."""
    values = np.asarray(samples, dtype=float)
    if values.size == 0:
        raise ValueError("no samples to summarize")
    p5, q1, med, q3, p95, p99 = np.percentile(values, [5, 25, 50, 75, 95, 99])
    lo, hi = median_ci(values)
    return {
        "median": float(med),
        "mean": float(values.mean()),
        "std": float(values.std(ddof=1)) if values.size > 1 else 0.0,
        "iqr": float(q3 - q1),
        "p5": float(p5),
        "p95": float(p95),
        "p99": float(p99),
        "ci_low": lo,
        "ci_high": hi,
        "n": float(values.size),
    }


def row_medians(matrix: np.ndarray) -> np.ndarray:
    """Return the median of each row of the 2-D ``matrix`` (same unit): the values of ``numpy.median(axis=1)``,
    taken by sorting the rows, which is ~5x faster on the short rows of a bootstrap."""
    ordered = np.sort(matrix, axis=1)
    n = ordered.shape[1]
    return (ordered[:, (n - 1) // 2] + ordered[:, n // 2]) / 2
