"""pandas transforms from the results store to the tables the report renders. Torch-free."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from harness.report.columns import CASE_HEADERS, DISPLAYS, PROTOCOL_HEADERS, Display


@dataclass
class Cell:
    """One table cell: its text, whether it is the column's best, and an optional note (tooltip)."""

    text: str
    best: bool = False
    note: str = ""
    kind: str = ""


@dataclass
class SuiteTable:
    """A suite's comparison table: headers, rows of cells, and the runs and environment behind it."""

    suite: str
    headers: list[str]
    rows: list[list[Cell]]
    runs: list[str]
    environment: dict[str, str]
    problems: list[dict[str, str]] = field(default_factory=list)
    views: list[ViewTable] = field(default_factory=list)


@dataclass
class ViewTable:
    """A second look at a suite's records (e.g. a pivot like a paper's table): title, headers, rows, caption."""

    title: str
    headers: list[str]
    rows: list[list[Cell]]
    caption: str


def latest_per_case(frame: pd.DataFrame) -> pd.DataFrame:
    """Return, per (suite, case_id), the most recent record, preferring ok records over others."""
    if frame.empty:
        return frame
    ranked = frame.assign(_ok=(frame["status"] == "ok").astype(int))
    ranked = ranked.sort_values(["_ok", "timestamp_utc"])
    return ranked.groupby(["suite", "case_id"], sort=False).tail(1).drop(columns="_ok")


def _published(record: pd.Series) -> dict[str, dict[str, Any]]:
    raw = record.get("published_json")
    if not isinstance(raw, str) or not raw:
        return {}
    return {entry["metric"]: entry for entry in json.loads(raw)}


def _shown_metrics(records: pd.DataFrame) -> list[Display]:
    return [d for d in DISPLAYS if d.column in records and records[d.column].notna().any()]


def _best_values(records: pd.DataFrame, shown: list[Display]) -> dict[str, float]:
    best: dict[str, float] = {}
    ok = records[records["status"] == "ok"]
    for d in shown:
        values = ok[d.column].dropna()
        if d.better and len(values) > 1:
            best[d.column] = values.min() if d.better == "lower" else values.max()
    return best


def _metric_cells(record: pd.Series, d: Display, best: dict[str, float], published: dict[str, Any]) -> list[Cell]:
    value = record.get(d.column)
    has_value = value is not None and not (isinstance(value, float) and math.isnan(value))
    cells = [Cell(d.format(value) if has_value else "–", best=has_value and best.get(d.column) == value)]
    if d.column in published:
        pub = published[d.column]
        note = f"{pub['source']}" + (f"; convention: {pub['convention']}" if pub.get("convention") else "")
        comparable = pub.get("comparable", True)
        delta = f" ({(value - pub['value']) / pub['value']:+.1%})" if has_value and pub["value"] and comparable else ""
        if not comparable:
            note += "; another setting than ours: for reference, no Δ"
        cells[0].note = f"published {d.format(pub['value'])}{delta} — {note}"
        cells.append(Cell(d.format(pub["value"]) + delta, note=note, kind="published"))
    return cells


def _differs(value: Any, default: Any) -> bool:
    missing = value is None or (isinstance(value, float) and math.isnan(value))
    return not missing and value != default


def suite_table(records: pd.DataFrame) -> SuiteTable:
    """Return the comparison table of one suite's latest records: a row per case, best per column bold.

    Columns with a published value anywhere in the suite get a ``published (Δ)`` column beside them.
    """
    records = records.sort_values(["model", "batch", "resolution", "device", "dtype"], kind="stable")
    shown = _shown_metrics(records)
    best = _best_values(records, shown)
    published_cols = {m for _, r in records.iterrows() for m in _published(r)}
    identity = list(CASE_HEADERS) + [
        (col, header) for col, header, default in PROTOCOL_HEADERS
        if col in records and any(_differs(v, default) for v in records[col])
    ]
    headers = [h for _, h in identity] + ["Status"]
    for d in shown:
        headers.append(d.header)
        if d.column in published_cols:
            headers.append(f"{d.header} published (Δ)")
    rows = []
    problems = []
    for _, record in records.iterrows():
        row = [Cell(str(record.get(col))) for col, _ in identity]
        row.append(Cell(record["status"], kind=f"status-{record['status']}"))
        published = _published(record)
        for d in shown:
            cells = _metric_cells(record, d, best, published)
            if d.column in published_cols and len(cells) == 1:
                cells.append(Cell("", kind="published"))
            row += cells
        rows.append(row)
        if record["status"] != "ok":
            problems.append({"label": record["label"], "status": record["status"], "error": record.get("error") or ""})
    last = records.sort_values("timestamp_utc").iloc[-1]
    timers = sorted({str(t) for t in records.get("latency_timer", pd.Series(dtype=str)).dropna()})
    env_keys = ["env_cpu", "env_torch_threads", "env_gpu", "env_torch", "env_timm", "env_python", "env_git_sha"]
    environment = {k.removeprefix("env_"): str(last.get(k, "")) for k in env_keys if last.get(k, "") not in ("", None)}
    if timers:
        environment["timer"] = ", ".join(timers)
    environment["measured_utc"] = str(last["timestamp_utc"])
    return SuiteTable(
        suite=str(last["suite"]),
        headers=headers,
        rows=rows,
        runs=sorted(records["run_id"].unique()),
        environment=environment,
        problems=problems,
        views=[view for make in SUITE_VIEWS if (view := make(records)) is not None],
    )


def _error_pct(accuracy: float) -> float:
    return 100.0 * (1.0 - accuracy)


def error_by_batch_per_norm(records: pd.DataFrame) -> ViewTable | None:
    """Return top-1 error (%) by per-process batch size, a row per (model, norm, processes), as in the Group
    Normalization paper's Table 2, with the published rows beside; None unless the suite varies the batch
    and has top-1 accuracy for more than one norm."""
    if not {"norm", "acc_top1", "batch"} <= set(records):
        return None
    ok = records[(records["status"] == "ok") & records["acc_top1"].notna()]
    if ok["norm"].nunique() < 2 or ok["batch"].nunique() < 2:
        return None
    batches = sorted(ok["batch"].unique(), reverse=True)
    keys = ["model", "norm", "norm_kwargs", "world_size"]
    headers = ["Model", "Norm", "Processes", *(f"batch {b}" for b in batches), f"Δ batch {batches[-1]} − {batches[0]}"]
    rows: list[list[Cell]] = []
    published: dict[tuple[str, str, str], dict[int, float]] = {}
    for (model, norm, norm_kwargs, world), group in ok.groupby(keys, sort=True):
        errors = {int(r["batch"]): _error_pct(r["acc_top1"]) for _, r in group.iterrows()}
        name = norm if norm_kwargs in ("{}", None) else f"{norm} {norm_kwargs}"
        rows.append([Cell(str(model)), Cell(name), Cell(str(world)), *_error_cells(errors, batches)])
        for _, record in group.iterrows():
            pub = _published(record).get("acc_top1")
            if pub is not None:
                row = published.setdefault((str(model), name, pub["source"]), {})
                row[int(record["batch"])] = _error_pct(pub["value"])
    for (model, name, source), errors in sorted(published.items()):
        cells = [Cell(model, kind="published"), Cell(f"{name} (published)", note=source, kind="published"), Cell("")]
        rows.append(cells + [Cell(c.text, note=source, kind="published") for c in _error_cells(errors, batches)])
    caption = ("Top-1 error (%) = 100 × (1 − top-1 accuracy) on the suite's dataset after its short training, by "
               "images per process; the last column is the error at the smallest batch minus at the largest. "
               "Published rows are the papers' (ImageNet, ResNet-50, full schedules): their trend, not their "
               "values, is comparable to ours.")
    return ViewTable("Top-1 error (%) by batch size per normalization", headers, rows, caption)


def _error_cells(errors: dict[int, float], batches: list[int]) -> list[Cell]:
    cells = [Cell(f"{errors[b]:.1f}" if b in errors else "–") for b in batches]
    ends = (batches[-1], batches[0])
    spread = f"{errors[ends[0]] - errors[ends[1]]:+.1f}" if all(b in errors for b in ends) else "–"
    return [*cells, Cell(spread)]


#: Extra views of a suite's records, each rendered under its table when it applies (returns a ViewTable).
SUITE_VIEWS: tuple[Callable[[pd.DataFrame], ViewTable | None], ...] = (error_by_batch_per_norm,)


def suite_tables(frame: pd.DataFrame) -> list[SuiteTable]:
    """Return one comparison table per suite in the store, suites in name order."""
    latest = latest_per_case(frame)
    return [suite_table(group) for _, group in sorted(latest.groupby("suite"), key=lambda kv: kv[0])]

