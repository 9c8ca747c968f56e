"""Queries over the store's records (a DataFrame as :meth:`harness.store.ResultStore.read` returns), torch-free:
which record is each case's latest. The report, export, compare and the run's claims all read records through them."""

from __future__ import annotations

import numpy as np
import pandas as pd


def time_keys(values: pd.Series) -> np.ndarray:
    """Return ``values`` (timestamps) as int64 keys that sort like them (NaT first)."""
    return pd.DatetimeIndex(values).asi8


def last_positions(codes: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Return, for each distinct code, the position (an element of ``order``) of its last occurrence when the
    rows are taken in ``order``; the positions come in ``order``'s order."""
    if order.size == 0:
        return order
    ordered = codes[order]
    _, first_from_end = np.unique(ordered[::-1], return_index=True)
    return np.sort(order.size - 1 - first_from_end)


def positions_by(values: pd.Series, keep: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Return, per distinct value of ``values`` (as text), the positions of its rows in row order; only the rows
    where the boolean array ``keep`` is true, when given. Slicing a frame by these positions one key at a time keeps
    one key's rows in memory, not every key's."""
    chosen = np.flatnonzero(keep) if keep is not None else np.arange(len(values))
    codes, names = pd.factorize(values.iloc[chosen], use_na_sentinel=False)
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(names) + 1))
    return {str(name): chosen[order[bounds[i]:bounds[i + 1]]] for i, name in enumerate(names)}


def latest_per_case(frame: pd.DataFrame) -> pd.DataFrame:
    """Return, per (suite, case_id), the most recent record, preferring ok records over others (rows ordered
    by status ok last, then time)."""
    if frame.empty:
        return frame
    suites, _ = pd.factorize(frame["suite"], use_na_sentinel=False)
    cases, case_names = pd.factorize(frame["case_id"], use_na_sentinel=False)
    key = suites.astype(np.int64) * max(len(case_names), 1) + cases
    ok = (frame["status"] == "ok").to_numpy(dtype=bool, na_value=False)
    order = np.lexsort((time_keys(frame["timestamp_utc"]), ok))  # by ok, then time; stable
    return frame.iloc[order[last_positions(key, order)]]
