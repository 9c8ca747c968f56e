"""Small statistics helpers."""

from __future__ import annotations

import numpy as np
import pytest

from harness.stats import row_medians


@pytest.mark.parametrize("columns", [1, 2, 19, 20])
def test_row_medians_equal_numpys_median_of_each_row(columns):
    matrix = np.random.default_rng(columns).lognormal(size=(500, columns))
    assert np.array_equal(row_medians(matrix), np.median(matrix, axis=1))
