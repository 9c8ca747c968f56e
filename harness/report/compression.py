"""The compression survey from a suite's latest records: a row per (model, method, level) beside its dense twin.

A compression suite measures cost (params, MACs, latency: usually at the model's real input size, one seed) and
accuracy (a short training at a small input size, several seeds) in different cases; this module joins them by
what names a compressed model — :data:`KEY`, every case field but the input size, batch and seed — and puts the
dense twin's values (``compress: none``, the same other key fields) beside each row, so the ratios are computed
here, from measured values, never stored:

- ``speedup`` = dense latency / latency (×; above 1 is faster); ``compression_ratio`` = dense ``model_bytes`` / the
  row's storage (``compress_storage_bytes`` where the method has its own encoding, weight sharing's indices and
  codebooks, else ``model_bytes``); ``param_ratio`` = params / dense params;
- ``top1_*``: top-1 over the seeds (:func:`harness.seed_stats.seed_groups`), ``delta_top1`` = mean − the dense
  mean (fraction; the report shows points), ``p_value`` / ``p_test`` the suite baseline's test (paired t-test
  over the seeds when the suite's ``baseline`` is the dense row, ``{compress: none}``).

The cost values are those of the key's ok record at the largest input size that counted params (the latest); the
accuracy those of its seed group with the most seeds. Torch-free.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pandas as pd

from harness.seed_stats import against_baseline, seed_groups
from harness.store import is_missing

#: Case fields that name a compressed model across its cost and accuracy cases.
KEY: tuple[str, ...] = ("model", "model_kwargs", "device", "dtype", "quant", "norm", "norm_kwargs", "compress",
                        "compress_kwargs")
#: Cost columns taken from the cost record.
COST_COLUMNS: tuple[str, ...] = ("params", "macs", "macs_nonzero", "mac_bytes", "model_bytes", "latency_ms_median",
                                 "compress_storage_bytes", "compress_sparsity", "compress_param_ratio", "resolution")
#: ``compress_kwargs`` keys that are the protocol rather than the level (left out of the level's text).
PROTOCOL_OPTIONS = ("finetune_fraction",)


def level_text(compress_kwargs: Any) -> str:
    """Return a compression's level as shown: its options but the protocol's, ``k=v`` joined by commas ('' when
    none)."""
    options = json.loads(compress_kwargs) if isinstance(compress_kwargs, str) and compress_kwargs else {}
    return ", ".join(f"{k}={v}" for k, v in sorted(options.items()) if k not in PROTOCOL_OPTIONS)


def _key(record: dict[str, Any]) -> tuple[str, ...]:
    return tuple("" if is_missing(record.get(c)) else str(record.get(c)) for c in KEY)


def _dense_key(key: tuple[str, ...]) -> tuple[str, ...]:
    fields = dict(zip(KEY, key, strict=True))
    return tuple({**fields, "compress": "none", "compress_kwargs": "{}"}[c] for c in KEY)


def _costs(ok: pd.DataFrame) -> dict[tuple[str, ...], dict[str, Any]]:
    """Return the cost values per key: its ok record at the largest resolution with params counted (latest)."""
    if "params" not in ok:
        return {}
    counted = ok[ok["params"].notna()].sort_values(["resolution", "timestamp_utc"], kind="stable")
    out: dict[tuple[str, ...], dict[str, Any]] = {}
    for record in counted.to_dict("records"):
        out[_key(record)] = {c: record.get(c) for c in COST_COLUMNS}
    return out


def _accuracies(records: pd.DataFrame) -> dict[tuple[str, ...], dict[str, Any]]:
    """Return top-1 over the seeds per key: mean, std, n, the baseline test's p-value (its group with most seeds)."""
    groups = seed_groups(records)
    if groups.empty or "acc_top1_n" not in groups:
        return {}
    groups = against_baseline(groups).sort_values("acc_top1_n", kind="stable")
    out: dict[tuple[str, ...], dict[str, Any]] = {}
    for group in groups[groups["acc_top1_n"].notna()].to_dict("records"):
        judgement = group.get("acc_top1_judgement")
        out[_key(group)] = {
            "top1_mean": group["acc_top1_mean"], "top1_std": group["acc_top1_std"], "top1_n": int(group["acc_top1_n"]),
            "accuracy_resolution": group.get("resolution"),
            "p_value": None if judgement is None else judgement.p_value,
            "p_test": "" if judgement is None else judgement.test or judgement.reason,
        }
    return out


def _ratio(numerator: Any, denominator: Any) -> float:
    if is_missing(numerator) or is_missing(denominator) or not float(denominator):
        return math.nan
    return float(numerator) / float(denominator)


def compression_rows(records: pd.DataFrame) -> pd.DataFrame:
    """Return a row per compressed model and level of ``records`` (one suite's latest record per case) with its
    dense twin first in each model's rows: the key fields, ``level``, the cost columns, ``top1_*``, ``p_value``,
    ``p_test`` and the ratios of the module doc (NaN where a side was not measured). Empty when no record has a
    ``compress`` other than ``none``."""
    if "compress" not in records or not (records["compress"].fillna("none") != "none").any():
        return pd.DataFrame()
    ok = records[(records["status"] == "ok").to_numpy(dtype=bool, na_value=False)]
    ok = ok.assign(**{c: ok[c] if c in ok else None for c in KEY})
    costs, accuracies = _costs(ok), _accuracies(ok)
    rows = []
    for key in dict.fromkeys([*costs, *accuracies]):
        cost, accuracy = costs.get(key, {}), accuracies.get(key, {})
        dense_cost, dense_accuracy = costs.get(_dense_key(key), {}), accuracies.get(_dense_key(key), {})
        storage = cost.get("compress_storage_bytes")
        row = dict(zip(KEY, key, strict=True)) | {"level": level_text(key[KEY.index("compress_kwargs")])}
        row |= {c: cost.get(c) for c in COST_COLUMNS} | {c: accuracy.get(c) for c in (
            "top1_mean", "top1_std", "top1_n", "accuracy_resolution", "p_value", "p_test")}
        row |= {
            "speedup": _ratio(dense_cost.get("latency_ms_median"), cost.get("latency_ms_median")),
            "param_ratio": _ratio(cost.get("params"), dense_cost.get("params")),
            "compression_ratio": _ratio(dense_cost.get("model_bytes"),
                                        storage if not is_missing(storage) else cost.get("model_bytes")),
            "delta_top1": _ratio(accuracy.get("top1_mean"), 1.0) - _ratio(dense_accuracy.get("top1_mean"), 1.0),
            "is_dense": row["compress"] == "none",
        }
        rows.append(row)
    frame = pd.DataFrame(rows)
    frame["_not_dense"] = ~frame["is_dense"]
    order = [c for c in KEY if c not in ("compress", "compress_kwargs")]
    return frame.sort_values([*order, "_not_dense", "compress", "level"], kind="stable").drop(columns="_not_dense") \
        .reset_index(drop=True)
