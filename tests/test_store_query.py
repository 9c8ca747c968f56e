"""Queries over the store's records (harness/store_query.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from harness.store_query import positions_by


def test_positions_by_gives_each_values_rows_in_order_and_only_the_kept_ones():
    values = pd.Series(["b", "a", "b", "c", "a", "b"])
    found = positions_by(values)
    assert {k: v.tolist() for k, v in found.items()} == {"b": [0, 2, 5], "a": [1, 4], "c": [3]}
    kept = positions_by(values, np.array([True, False, False, True, True, True]))
    assert {k: v.tolist() for k, v in kept.items()} == {"b": [0, 5], "c": [3], "a": [4]}
    assert positions_by(values, np.zeros(6, dtype=bool)) == {}
