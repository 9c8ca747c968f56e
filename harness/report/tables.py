"""pandas transforms from the results store to the tables the report renders. Torch-free.

Every transform works on whole columns (groupby, sort, drop_duplicates); Python loops only run over the rows
that end up on a page (the latest record per case, the failed records of a run), never over the whole store.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

from harness.report.columns import (
    CASE_HEADERS,
    DISPLAYS,
    LEADERBOARD_METRICS,
    PROTOCOL_HEADERS,
    VARIANT_FIELDS,
    Display,
)
from harness.store import is_missing
from harness.store_query import last_positions, latest_per_case, time_keys

#: Case fields by which rows are listed in a table, in order.
ROW_ORDER = ["model", "batch", "resolution", "device", "dtype"]
#: Each metric column's display rule.
DISPLAY_BY_COLUMN = {d.column: d for d in DISPLAYS}


@dataclass
class Cell:
    """One table cell: its text, whether it is the column's best, an optional note (tooltip), a CSS class
    (``kind``), and the raw number it shows (``value``), by which the column sorts."""

    text: str
    best: bool = False
    note: str = ""
    kind: str = ""
    value: float | None = None


@dataclass
class RecordTable:
    """A table of records, a row per record: headers, rows of cells, and the records that are not ok.

    ``numeric[i]`` says whether column ``i`` sorts as numbers (its cells carry ``value``); ``detail[i]`` whether it
    is collapsed until the reader asks for it (see :func:`detail_columns`).
    """

    headers: list[str]
    rows: list[list[Cell]]
    numeric: list[bool]
    detail: list[bool]
    problems: list[dict[str, str]] = field(default_factory=list)


@dataclass
class SuiteTable(RecordTable):
    """A suite's comparison table (a :class:`RecordTable` of its latest record per case), the runs and environment
    behind it and its extra views."""

    suite: str = ""
    runs: list[str] = field(default_factory=list)
    environment: dict[str, str] = field(default_factory=dict)
    views: list[ViewTable] = field(default_factory=list)


@dataclass
class ViewTable:
    """A second look at a suite's records (e.g. a pivot like a paper's table): title, headers, rows, caption."""

    title: str
    headers: list[str]
    rows: list[list[Cell]]
    caption: str


@dataclass
class LeaderboardRow:
    """One leaderboard row: its cells, the device and dtype it is filtered by, and the suites measuring it."""

    cells: list[Cell]
    device: str
    dtype: str
    suites: list[str]


@dataclass
class Leaderboard:
    """The leaderboard: a row per (variant, input, batch, device, dtype) with its latest ok values.

    ``keys`` are the columns' names (``data-key`` of the headers), ``numeric`` which sort as numbers, ``detail``
    which are collapsed until the reader asks for them (:func:`detail_columns`); ``unranked`` counts the cases
    that have no ok record in any suite (listed on their suite pages); ``counted_only`` names the suites whose cases
    are on the meta device (counted without weights, on no hardware: their own pages table them).
    """

    headers: list[str]
    keys: list[str]
    numeric: list[bool]
    rows: list[LeaderboardRow]
    devices: list[str]
    dtypes: list[str]
    unranked: int = 0
    detail: list[bool] = field(default_factory=list)
    counted_only: list[str] = field(default_factory=list)


@dataclass
class RunSummary:
    """One run as its page shows it: suites, time span, records per status, environment, problems."""

    run_id: str
    suites: list[str]
    started_utc: str
    ended_utc: str
    records: int
    counts: dict[str, int]
    environment: dict[str, str]
    problems: list[dict[str, str]] = field(default_factory=list)


def _number(value: Any) -> float | None:
    """Return ``value`` as a float when it is a number (not a bool, not missing), else None."""
    if isinstance(value, (bool, np.bool_)) or is_missing(value):
        return None
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    return None


def text(value: Any) -> str:
    """Return a cell's text for a case field: '–' when missing, whole floats without '.0'."""
    if is_missing(value):
        return "–"
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


@lru_cache(maxsize=4096)
def _parse_published(raw: str) -> dict[str, dict[str, Any]]:
    return {entry["metric"]: entry for entry in json.loads(raw)} if raw else {}


def _published(record: Any) -> dict[str, dict[str, Any]]:
    raw = record.get("published_json")
    if not isinstance(raw, str) or not raw:
        return {}
    return _parse_published(raw)


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


def _metric_cells(record: dict[str, Any], d: Display, best: dict[str, float], published: dict[str, Any]) -> list[Cell]:
    value = record.get(d.column)
    has_value = not is_missing(value)
    cells = [Cell(d.format(value) if has_value else "–", best=has_value and best.get(d.column) == value,
                  value=float(value) if has_value else None)]
    if d.column in published:
        pub = published[d.column]
        note = f"{pub['source']}" + (f"; convention: {pub['convention']}" if pub.get("convention") else "")
        comparable = pub.get("comparable", True)
        delta = f" ({(value - pub['value']) / pub['value']:+.1%})" if has_value and pub["value"] and comparable else ""
        if not comparable:
            note += "; another setting than ours: for reference, no Δ"
        cells[0].note = f"published {d.format(pub['value'])}{delta} — {note}"
        cells.append(Cell(d.format(pub["value"]) + delta, note=note, kind="published", value=float(pub["value"])))
    return cells


def _differs(value: Any, default: Any) -> bool:
    return not is_missing(value) and value != default


def _joined(values: pd.Series) -> str:
    return ", ".join(text(v) for v in sorted(values.dropna().unique(), key=str))


def _environment(records: pd.DataFrame) -> dict[str, str]:
    """Return the protocol caption of a suite's records: device, dtype, batch, input, threads, timer, environment."""
    last = records.sort_values("timestamp_utc", kind="stable").iloc[-1]
    environment: dict[str, str] = {}
    for column, name in (("device", "device"), ("dtype", "dtype"), ("batch", "batch"), ("resolution", "input (px)")):
        if column in records:
            environment[name] = _joined(records[column])
    for column in ("latency_threads", "env_torch_threads"):
        if column in records and records[column].notna().any():
            environment["threads"] = _joined(records[column])
            break
    timers = _joined(records["latency_timer"]) if "latency_timer" in records else ""
    if timers:
        environment["timer"] = timers
    env_keys = ["env_cpu", "env_torch_threads", "env_gpu", "env_torch", "env_timm", "env_python", "env_git_sha"]
    for key in env_keys:
        value = last.get(key, "")
        if not is_missing(value) and value != "":
            environment[key.removeprefix("env_")] = text(value)
    environment["measured_utc"] = str(last["timestamp_utc"])
    return environment


#: Metric columns a contended timing window makes doubtful: their cells are marked ``contended`` on the page.
TIMED_COLUMNS = frozenset({"latency_ms_median", "throughput_samples_per_s"})
#: Metric columns that say how a value was measured rather than what was measured: collapsed by default.
PROTOCOL_METRICS = frozenset({"latency_ms_iqr", "latency_repeats", "complexity_coverage"})
#: Case fields that say how a case was measured rather than which case it is: collapsed by default.
PROTOCOL_FIELDS = frozenset({"threads"})
#: Case fields holding options (JSON objects): their cells may wrap.
OPTION_FIELDS = frozenset({"model_kwargs", "norm_kwargs", "compress_kwargs"})


def detail_columns(rows: list[list[Cell]], protocol: list[bool], fields: list[bool]) -> list[bool]:
    """Return, per column, whether a page collapses it until the reader asks for it (report.js): a protocol column
    (``protocol``), or a case field (``fields``) whose text is the same in every row of a table of two rows or
    more (the table's caption or heading says it once). The first column is never collapsed."""
    same = [len(rows) > 1 and all(row[i].text == rows[0][i].text for row in rows) for i in range(len(fields))]
    return [i > 0 and (p or (f and s)) for i, (p, f, s) in enumerate(zip(protocol, fields, same, strict=True))]


def record_table(records: pd.DataFrame) -> RecordTable:
    """Return the table of ``records`` (a suite's, each case once): a row per record in :data:`ROW_ORDER`, the
    best value of each column bold, its case fields (protocol fields only where some row is not at the default),
    status and metrics; columns with a published value in any row get a ``published (Δ)`` column beside them."""
    records = records.sort_values([c for c in ROW_ORDER if c in records], kind="stable")
    shown = _shown_metrics(records)
    best = _best_values(records, shown)
    published_texts = records["published_json"].dropna().unique() if "published_json" in records else []
    published_cols = {m for raw in published_texts if isinstance(raw, str) for m in _parse_published(raw)}
    identity = [(col, header) for col, header in CASE_HEADERS if col in records] + [
        (col, header) for col, header, default in PROTOCOL_HEADERS
        if col in records and any(_differs(v, default) for v in records[col].unique())
    ]
    headers = [h for _, h in identity] + ["Status"]
    numeric = [pd.api.types.is_numeric_dtype(records[col]) and records[col].dtype != bool for col, _ in identity]
    numeric.append(False)
    protocol = [col in PROTOCOL_FIELDS for col, _ in identity] + [False]
    for d in shown:
        headers.append(d.header)
        numeric.append(True)
        protocol.append(d.column in PROTOCOL_METRICS)
        if d.column in published_cols:
            headers.append(f"{d.header} published (Δ)")
            numeric.append(True)
            protocol.append(d.column in PROTOCOL_METRICS)
    needed = [c for c, _ in identity] + [d.column for d in shown] + ["status", "published_json", "label", "error",
                                                                    "failure_class", "latency_contended",
                                                                    "latency_noisy_reason"]
    kinds = ["wrap" if col in OPTION_FIELDS else "text" if i and not numeric[i] else ""  # words to the left
             for i, (col, _) in enumerate(identity)]
    rows = []
    problems = []
    for record in records[[c for c in dict.fromkeys(needed) if c in records]].to_dict("records"):
        row = [Cell(text(record.get(col)), value=_number(record.get(col)), kind=kinds[i])
               for i, (col, _) in enumerate(identity)]
        row.append(Cell(record["status"], kind=f"status-{record['status']}"))
        published = _published(record)
        for d in shown:
            cells = _metric_cells(record, d, best, published)
            contended = record.get("latency_contended")
            if d.column in TIMED_COLUMNS and not is_missing(contended) and contended and cells[0].value is not None:
                cells[0].kind = "contended"  # the page marks it; the note says why
                cells[0].note = "; ".join(n for n in (record.get("latency_noisy_reason"), cells[0].note) if n)
            if d.column in published_cols and len(cells) == 1:
                cells.append(Cell("", kind="published"))
            row += cells
        rows.append(row)
        if record["status"] != "ok":
            error = record.get("error")
            problems.append({"label": record["label"], "status": record["status"],
                             "failure_class": _or_empty(record.get("failure_class")),
                             "error": _or_empty(error)})
    fields = [True] * (len(identity) + 1) + [False] * (len(headers) - len(identity) - 1)  # the status is a field too
    return RecordTable(headers=headers, rows=rows, numeric=numeric, detail=detail_columns(rows, protocol, fields),
                       problems=problems)


def suite_table(records: pd.DataFrame) -> SuiteTable:
    """Return the comparison table of one suite's latest records (:func:`record_table`: a row per case, best per
    column bold) with the runs and environment behind it and the suite's extra views (:data:`SUITE_VIEWS`)."""
    return SuiteTable(
        **vars(record_table(records)),
        suite=str(records["suite"].iloc[0]),
        runs=sorted(records["run_id"].unique()),
        environment=_environment(records),
        views=[view for make in SUITE_VIEWS if (view := make(records)) is not None],
    )


def tabled_runs(runs: Sequence[RunSummary], per_suite: int | None) -> set[str]:
    """Return the ids of the runs whose page tables their records: the ``per_suite`` most recent runs of each suite
    (``runs`` newest first, as :func:`run_summaries` gives them); every run when ``per_suite`` is None."""
    if per_suite is None:
        return {run.run_id for run in runs}
    taken: dict[str, int] = {}
    chosen = set()
    for run in runs:
        for suite in run.suites:
            if taken.get(suite, 0) < per_suite:
                taken[suite] = taken.get(suite, 0) + 1
                chosen.add(run.run_id)
    return chosen


def run_tables(records: pd.DataFrame) -> dict[str, RecordTable]:
    """Return ``{suite: table}`` for one run's ``records``: the :func:`record_table` of each suite's records (a case's
    latest record in the run, an ok one first, when it has several), suites in name order."""
    return {str(suite): record_table(latest_per_case(group))
            for suite, group in records.groupby("suite", sort=True, observed=True)}


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
    headers = ["Model", "Norm", "Processes", *(f"batch {b}" for b in batches), f"Δ batch {batches[-1]} − {batches[0]}"]
    rows: list[list[Cell]] = []
    for (model, name, world), errors in error_by_batch_series(ok).items():
        rows.append([Cell(model), Cell(name), Cell(str(world)), *_error_cells(errors, batches)])
    for (model, name, source), errors in sorted(published_error_by_batch(ok).items()):
        cells = [Cell(model, kind="published"), Cell(f"{name} (published)", note=source, kind="published"), Cell("")]
        rows.append(cells + [Cell(c.text, note=source, kind="published") for c in _error_cells(errors, batches)])
    caption = ("Top-1 error (%) = 100 × (1 − top-1 accuracy) on the suite's dataset after its short training, by "
               "images per process (mean ± std where a case ran several seeds); the last column is the mean error at "
               "the smallest batch minus at the largest. "
               "Published rows are the papers' (ImageNet, ResNet-50, full schedules): their trend, not their "
               "values, is comparable to ours.")
    return ViewTable("Top-1 error (%) by batch size per normalization", headers, rows, caption)


def _norm_name(norm: Any, norm_kwargs: Any) -> str:
    return str(norm) if is_missing(norm_kwargs) or norm_kwargs in ("{}", "") else f"{norm} {norm_kwargs}"


@dataclass(frozen=True)
class SeedSpread:
    """A value over a case's seeds: mean, sample standard deviation (NaN for one seed) and number of seeds."""

    mean: float
    std: float
    n: int


def error_by_batch_series(ok: pd.DataFrame) -> dict[tuple[str, str, int], dict[int, SeedSpread]]:
    """Return ``{(model, norm name, processes): {batch: top-1 error % over the seeds}}`` of ok records with
    ``acc_top1``, in key order (the series of the error-by-batch table and plot); a case's seeds (records that
    differ only in ``seed``) give one mean ± std."""
    keys = [c for c in ("model", "norm", "norm_kwargs", "world_size") if c in ok]
    frame = ok.assign(_error=_error_pct(ok["acc_top1"]))
    grouped: dict[tuple[str, str, int], dict[int, list[float]]] = {}
    for record in frame.sort_values(keys, kind="stable")[[*keys, "batch", "_error"]].to_dict("records"):
        key = (str(record["model"]), _norm_name(record.get("norm"), record.get("norm_kwargs")),
               int(record.get("world_size") or 1))
        grouped.setdefault(key, {}).setdefault(int(record["batch"]), []).append(float(record["_error"]))
    return {key: {batch: SeedSpread(float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else math.nan, len(v))
                  for batch, v in batches.items()} for key, batches in grouped.items()}


def published_error_by_batch(ok: pd.DataFrame) -> dict[tuple[str, str, str], dict[int, float]]:
    """Return ``{(model, norm name, source): {batch: published top-1 error %}}`` from the records'
    published ``acc_top1`` values."""
    out: dict[tuple[str, str, str], dict[int, float]] = {}
    if "published_json" not in ok:
        return out
    columns = [c for c in ("model", "norm", "norm_kwargs", "batch", "published_json") if c in ok]
    for record in ok[columns].to_dict("records"):
        pub = _published(record).get("acc_top1")
        if pub is not None:
            name = _norm_name(record.get("norm"), record.get("norm_kwargs"))
            out.setdefault((str(record["model"]), name, pub["source"]), {})[int(record["batch"])] = (
                _error_pct(pub["value"]))
    return out


def _error_cells(errors: dict[int, SeedSpread] | dict[int, float], batches: list[int]) -> list[Cell]:
    """Return the error cells of one row (``mean ± std`` over seeds, n in the tooltip), then the difference of
    the means at the smallest and the largest batch."""
    spreads = {b: e if isinstance(e, SeedSpread) else SeedSpread(e, math.nan, 1) for b, e in errors.items()}
    cells = []
    for b in batches:
        e = spreads.get(b)
        if e is None:
            cells.append(Cell("–"))
        elif e.n > 1:
            cells.append(Cell(f"{e.mean:.1f} ± {e.std:.1f}", value=e.mean, note=f"mean ± std over {e.n} seeds"))
        else:
            cells.append(Cell(f"{e.mean:.1f}", value=e.mean))
    ends = (batches[-1], batches[0])
    spread = spreads[ends[0]].mean - spreads[ends[1]].mean if all(b in spreads for b in ends) else None
    return [*cells, Cell("–" if spread is None else f"{spread:+.1f}", value=spread)]


#: Columns of the seeds view: column, header, scale (accuracy fractions shown in %), judged against the baseline.
SEED_VIEW_COLUMNS: tuple[tuple[str, str, float, bool], ...] = (
    ("acc_top1", "Top-1 (%)", 100.0, True), ("acc_top5", "Top-5 (%)", 100.0, True), ("acc_ap", "AP (%)", 100.0, True),
    ("acc_ap50", "AP50 (%)", 100.0, True), ("acc_ap75", "AP75 (%)", 100.0, True), ("acc_aps", "APs (%)", 100.0, False),
    ("acc_train_loss_last", "Train loss (last)", 1.0, False),
    ("det_train_loss_last", "Train loss (last)", 1.0, False),
)


def p_text(p_value: float) -> str:
    """Return a p-value as the notes' tables print it: ``< 10⁻³`` below 0.001, else three decimals."""
    return "< 10⁻³" if p_value < 1e-3 else f"{p_value:.3f}"


def _mean_std_text(mean: float, std: float, scale: float) -> str:
    digits = 1 if scale != 1.0 else 3
    return f"{mean * scale:.{digits}f}" + ("" if math.isnan(std) else f" ± {std * scale:.{digits}f}")


def _seed_cells(group: dict[str, Any], column: str, scale: float, judged: bool, alpha: float) -> list[Cell]:
    """Return the cells of one column of one seed group: ``mean ± std`` (with Δ against the baseline row), then
    (judged columns) the p-value, bold when significant at ``alpha``."""
    n = group.get(f"{column}_n")
    if is_missing(n):
        return [Cell("–"), *([Cell("–")] if judged else [])]
    mean, std = group[f"{column}_mean"], group[f"{column}_std"]
    seeds = ", ".join(str(s) for s in sorted(group[f"{column}_by_seed"]))
    low, high = group[f"{column}_min"] * scale, group[f"{column}_max"] * scale
    note = f"{int(n)} seed(s): {seeds}; min {low:.4g}, max {high:.4g}"
    if not math.isnan(group[f"{column}_ci_low"]):
        note += f"; 95% t-interval of the mean [{group[f'{column}_ci_low'] * scale:.4g}, " \
                f"{group[f'{column}_ci_high'] * scale:.4g}]"
    judgement = group.get(f"{column}_judgement")
    text = _mean_std_text(mean, std, scale)
    if judgement is not None and judgement.delta_rel is not None:
        text += f" ({judgement.delta_rel:+.1%})"
    cells = [Cell(text, note=note, value=float(mean * scale))]
    if not judged:
        return cells
    if group.get("is_baseline"):
        cells.append(Cell("baseline", kind="text"))
    elif judgement is None:
        cells.append(Cell("n/a", note=group.get("baseline_reason") or "the suite names no baseline", kind="text"))
    elif judgement.p_value is None:
        cells.append(Cell("n/a", note=f"{judgement.test}: {judgement.reason}" if judgement.test else judgement.reason,
                          kind="text"))
    else:
        significant = judgement.p_value < alpha
        verdict = f"significant at α = {alpha:g}" if significant else f"not significant at α = {alpha:g}"
        cells.append(Cell(p_text(judgement.p_value), best=significant, value=judgement.p_value,
                          note=f"two-sided {judgement.test} over the seeds; {verdict}"))
    return cells


def _seed_published_row(group: dict[str, Any], n_identity: int,
                        columns: list[tuple[str, str, float, bool]]) -> list[Cell] | None:
    """Return the published row shown beneath a seed group (its values in the group's columns, the source in the
    tooltip), or None when the suite publishes none of those columns for it."""
    published = _published(group)
    if not any(c in published for c, *_ in columns):
        return None
    sources = "; ".join(sorted({f"{e['source']} {e.get('convention') or ''}".strip() for e in published.values()}))
    row = [Cell(f"{text(group['model'])} (published)", note=sources, kind="published"),
           *(Cell("", kind="published") for _ in range(n_identity - 1))]
    for column, _, scale, judged in columns:
        entry = published.get(column)
        row.append(Cell("" if entry is None else f"{entry['value'] * scale:.{1 if scale != 1.0 else 3}f}",
                        kind="published", note=sources, value=None if entry is None else entry["value"] * scale))
        if judged:
            row.append(Cell("", kind="published"))
    return row


def seeds_table(records: pd.DataFrame) -> ViewTable | None:
    """Return the accuracy of each case over its seeds as the notes' tables show it — ``68.9 ± 1.5`` for the baseline
    row, ``61.8 ± 2.1 (−10.3%)`` and a p-value for the others — a row per case (its seeds aggregated by
    :func:`harness.seed_stats.seed_groups`); None unless some case ran several seeds or the suite names a
    baseline."""
    from harness.seed_stats import against_baseline, seed_groups

    groups = seed_groups(records)
    if groups.empty or not (groups["n_seeds"].max() > 1 or (groups["baseline_json"] != "").any()):
        return None
    groups = against_baseline(groups)
    columns = [(c, h, k, j) for c, h, k, j in SEED_VIEW_COLUMNS
               if f"{c}_n" in groups and groups[f"{c}_n"].notna().any()]
    identity = [(c, h) for c, h in CASE_HEADERS if c in groups and (c == "model" or groups[c].nunique() > 1)]
    identity += [(c, h) for c, h, _ in PROTOCOL_HEADERS if c in groups and groups[c].astype(str).nunique() > 1]
    fields = {f for raw in groups["baseline_json"] if raw for f in json.loads(raw)}
    order = [c for c, _ in identity if c not in fields]
    groups = groups.assign(is_baseline=groups["is_baseline"].astype(bool), _not_baseline=~groups["is_baseline"])
    groups = groups.sort_values([*order, "_not_baseline", *(c for c, _ in identity if c in fields)], kind="stable")
    alpha = float(groups["alpha"].iloc[0])
    headers = [h for _, h in identity] + ["Seeds"]
    for _, header, _, judged in columns:
        headers += [header, *([f"p ({header.split(' ')[0]})"] if judged else [])]
    rows = []
    for group in groups.to_dict("records"):
        row = [Cell(text(group[c]), kind="text" if i else "") for i, (c, _) in enumerate(identity)]
        row.append(Cell(str(group["n_seeds"]), value=float(group["n_seeds"]),
                        note="seeds " + ", ".join(map(str, group["seeds"]))))
        for column, _, scale, judged in columns:
            row += _seed_cells(group, column, scale, judged, alpha)
        rows.append(row)
        published_row = _seed_published_row(group, len(identity) + 1, columns)
        if published_row:
            rows.append(published_row)
    named = sorted({b for b in groups["baseline"] if b})
    caption = ("Mean ± sample standard deviation over the seeds of each case (the Seeds column; the seed fixes the "
               "weights' initialisation and the training's data order); the tooltip gives the seeds, min, max and the "
               "95% t-interval of the mean.")
    if named:
        caption += (f" Baseline: the row with {' / '.join(named)} among the cases that differ only in those fields; "
                    "Δ = (mean − baseline mean) / baseline mean; p = two-sided paired t-test over the seeds both rows "
                    "ran on the same data (Welch's t-test otherwise; the tooltip says which); bold: significant at "
                    f"α = {alpha:g}; n/a: not testable (one seed, no baseline row: the tooltip says why).")
    else:
        caption += " The suite names no baseline (`baseline:`), so no row is tested against another."
    if any(_published(g) for g in groups.to_dict("records")):
        caption += " Shaded rows: the values a paper publishes for the case above them (the tooltip gives the source)."
    return ViewTable("Accuracy over seeds (mean ± std, Δ and p against the baseline)", headers, rows, caption)


#: The detector table's metric columns: column, header, scale (COCO stats are fractions, shown in %).
DETECTOR_COLUMNS: tuple[tuple[str, str, float], ...] = (
    ("det_fps", "FPS", 1.0), ("acc_ap", "AP", 100.0), ("acc_aps", "APs", 100.0), ("acc_apm", "APm", 100.0),
    ("acc_apl", "APl", 100.0),
)


def _detector_cell(value: Any, scale: float, best: float | None, kind: str = "", note: str = "") -> Cell:
    if is_missing(value) or value < 0:  # COCOeval's -1: no object of that size
        return Cell("–", kind=kind, note=note)
    shown = float(value) * scale
    return Cell(f"{shown:.1f}", best=best is not None and float(value) == best, kind=kind, note=note, value=shown)


def detectors_table(records: pd.DataFrame) -> ViewTable | None:
    """Return the notes' detector table — Methods | Backbone | FPS | AP | APs | APm | APl — a row per ok record
    with split timing (``det_fps``), its published row (FPS and AP as the paper gives them) beneath it, the best
    measured value per column in bold; None when the suite timed no detector."""
    if "det_fps" not in records:
        return None
    ok = records[(records["status"] == "ok") & records["det_fps"].notna()]
    if ok.empty:
        return None
    ok = ok.sort_values([c for c in ROW_ORDER if c in ok], kind="stable")
    columns = [(c, h, k) for c, h, k in DETECTOR_COLUMNS if c in ok]
    best = {c: float(ok.loc[ok[c] >= 0, c].max()) for c, _, _ in columns if (ok[c] >= 0).any()}
    headers = ["Methods", "Backbone", "Input (px)", "Device", "Batch", "Post-processing", *(h for _, h, _ in columns)]
    rows: list[list[Cell]] = []
    for record in ok.to_dict("records"):
        ident = [Cell(text(record.get("det_method"))), Cell(text(record.get("det_backbone")), kind="text"),
                 Cell(text(record["resolution"]), value=float(record["resolution"])),
                 Cell(text(record["device"]), kind="text"), Cell(text(record["batch"]), value=float(record["batch"])),
                 Cell(text(record.get("det_postprocess")), kind="text")]
        rows.append(ident + [_detector_cell(record.get(c), k, best.get(c)) for c, _, k in columns])
        published = _published(record)
        if any(c in published for c, _, _ in columns):
            sources = sorted({published[c]["source"] for c, _, _ in columns if c in published})
            note = "; ".join(sources)
            cells = [Cell(f"{text(record.get('det_method'))} (published)", note=note, kind="published"),
                     *(Cell("", kind="published") for _ in range(5))]
            for c, _, k in columns:
                entry = published.get(c) or {}
                where = f"{entry.get('source', '')} {entry.get('convention', '')}".strip()
                cells.append(_detector_cell(entry.get("value"), k, None, "published", where))
            rows.append(cells)
    caption = ("FPS = images per second of the whole pipeline (pre-processing, network, post-processing) on the "
               "suite's real images, batch as shown; AP, APs, APm, APl = COCO box AP@[.5:.95] overall and for small, "
               "medium and large objects (%), on the suite's dataset. Published rows are the papers' (COCO "
               "test-dev, their GPUs and trained weights): beside ours, not comparable to them number for number.")
    return ViewTable("Detectors (Methods | Backbone | FPS | AP | APs | APm | APl)", headers, rows, caption)


def _scaled_cell(value: Any, scale: float, fmt: str, note: str = "") -> Cell:
    if is_missing(value) or (isinstance(value, float) and math.isnan(value)):
        return Cell("–", note=note)
    return Cell(fmt.format(float(value) * scale), note=note, value=float(value) * scale)


#: The compression table's cost columns: column of :func:`harness.report.compression.compression_rows`, header,
#: scale, format.
COMPRESSION_COLUMNS: tuple[tuple[str, str, float, str], ...] = (
    ("params", "Params (M)", 1e-6, "{:.2f}"), ("macs", "MACs (G)", 1e-9, "{:.3f}"),
    ("macs_nonzero", "Nonzero MACs (G)", 1e-9, "{:.3f}"), ("mac_bytes", "Mem. access (MB)", 1e-6, "{:.1f}"),
    ("compression_ratio", "Compression (×)", 1.0, "{:.2f}"), ("latency_ms_median", "Latency (ms)", 1.0, "{:.2f}"),
    ("speedup", "Speed-up (×)", 1.0, "{:.2f}"),
)


def compression_table(records: pd.DataFrame) -> ViewTable | None:
    """Return the compression survey's table — Method | Level | Params | MACs | MAC bytes | Latency | Speed-up |
    Top-1 | Δ top-1 vs dense — a row per model, method and level with its dense twin first
    (:func:`harness.report.compression.compression_rows`); None when the suite compressed nothing."""
    from harness.report.compression import compression_rows

    rows_frame = compression_rows(records)
    if rows_frame.empty:
        return None
    headers = ["Model", "Method", "Level", *(h for _, h, _, _ in COMPRESSION_COLUMNS), "Top-1 (%)",
               "Δ top-1 (points)", "p (top-1)"]
    rows = []
    for row in rows_frame.to_dict("records"):
        cells = [Cell(text(row["model"])), Cell(text(row["compress"]), kind="text"),
                 Cell(row["level"] or "–", kind="text")]
        cost_note = f"cost at {text(row['resolution'])} px" if not is_missing(row["resolution"]) else ""
        cells += [_scaled_cell(row[c], k, f, cost_note) for c, _, k, f in COMPRESSION_COLUMNS]
        if is_missing(row["top1_mean"]):
            cells += [Cell("–"), Cell("–"), Cell("–")]
        else:
            std = row["top1_std"] if not is_missing(row["top1_std"]) else math.nan
            note = f"{int(row['top1_n'])} seed(s), trained and scored at {text(row['accuracy_resolution'])} px"
            cells.append(Cell(_mean_std_text(row["top1_mean"], std, 100.0), note=note,
                              value=100.0 * row["top1_mean"]))
            if row["is_dense"]:
                cells += [Cell("dense", kind="text"), Cell("baseline", kind="text")]
            else:
                cells.append(_scaled_cell(row["delta_top1"], 100.0, "{:+.1f}"))
                p = row["p_value"]
                cells.append(Cell("n/a", note=row["p_test"] or "no dense row to test against", kind="text")
                             if is_missing(p) else Cell(p_text(p), value=p, note=row["p_test"]))
        rows.append(cells)
    caption = ("Each compression beside its dense twin (the same model, compress: none). Cost columns come from the "
               "suite's cost case (the largest input size measured, random weights compressed, the tooltip gives it): "
               "Nonzero MACs count only MACs whose weight is nonzero (what a sparse kernel could skip; dense kernels "
               "run all MACs); Compression = dense model bytes / the compressed model's storage (weight sharing: its "
               "indices and codebooks); Speed-up = dense latency / latency. Top-1: mean ± std over the seeds after the "
               "same seeded training (dense training, compression, fine-tuning to the same total steps), Δ in points "
               "against the dense mean, p from the suite's baseline test (paired t-test over the seeds).")
    return ViewTable("Compression (Method | Level | Params | MACs | MAC bytes | Latency | Speed-up | Top-1 | Δ top-1)",
                     headers, rows, caption)


#: Extra views of a suite's records, each rendered under its table when it applies (returns a ViewTable).
SUITE_VIEWS: tuple[Callable[[pd.DataFrame], ViewTable | None], ...] = (seeds_table, compression_table,
                                                                       error_by_batch_per_norm, detectors_table)


def suite_tables(frame: pd.DataFrame) -> list[SuiteTable]:
    """Return one comparison table per suite in the store, suites in name order."""
    latest = latest_per_case(frame)
    return [suite_table(group) for _, group in sorted(latest.groupby("suite"), key=lambda kv: kv[0])]


# --- the leaderboard -------------------------------------------------------------------------------------


def _column(frame: pd.DataFrame, name: str, fill: Any = "") -> pd.Series:
    return frame[name] if name in frame else pd.Series(fill, index=frame.index)


def variant_names(records: pd.DataFrame) -> pd.Series:
    """Return each record's model *variant*: the model name, plus every case field that is not at its default
    (besides resolution, batch, device and dtype), e.g. ``resnet50 int8 norm=gn {"groups": 16}``."""
    names = records["model"].astype(str)
    for column, fmt, default in VARIANT_FIELDS:
        if column not in records:
            continue
        values = records[column]
        present = values.notna()
        differs = present if default is None else present & (values.astype(object) != default)
        if differs.any():
            parts = values[differs].map(lambda v, fmt=fmt: " " + fmt.format(text(v)))
            names = names.where(~differs, names + parts.reindex(names.index, fill_value=""))
    return names


def hardware_names(records: pd.DataFrame) -> pd.Series:
    """Return the hardware of each record: the (first) GPU's name for CUDA cases, the CPU model otherwise."""
    gpu = _column(records, "env_gpu").fillna("").astype(str).str.split(";").str[0].str.strip()
    cpu = _column(records, "env_cpu").fillna("").astype(str)
    device = _column(records, "device").fillna("").astype(str)
    return pd.Series(np.where(device.str.startswith("cuda") & (gpu != ""), gpu, cpu), index=records.index)


#: Leaderboard identity columns: key in the page, header, source column.
LEADERBOARD_IDENTITY: tuple[tuple[str, str], ...] = (
    ("variant", "Model"), ("resolution", "Input (px)"), ("batch", "Batch"), ("device", "Device"),
    ("hardware", "Hardware"), ("dtype", "Dtype"),
)


def leaderboard(records: pd.DataFrame) -> Leaderboard:
    """Return the leaderboard of ``records`` (every record of the store, or the latest per case): a row per
    (variant, resolution, batch, device, dtype) from its ok records across suites and runs, each value the
    latest one measured (so an ok record beats a later failed one, and a run that took only some metrics
    leaves the others as they were), the suites that measured it listed; cases with no ok record are left
    out (counted in ``unranked``), and so are the cases on the meta device (counted without weights: no hardware
    measured them), their suites named in ``counted_only``."""
    meta = (records["device"] == "meta").to_numpy(dtype=bool, na_value=False) if len(records) else np.zeros(0, bool)
    counted_only = sorted(records["suite"][meta].astype(str).unique()) if meta.any() else []
    records = records[~meta] if meta.any() else records
    metrics = [d for d in DISPLAYS if d.column in LEADERBOARD_METRICS and d.column in records]
    ok = (records["status"] == "ok").to_numpy(dtype=bool, na_value=False) if len(records) else np.zeros(0, bool)
    metrics = [d for d in metrics if records[d.column].notna().to_numpy()[ok].any()]
    headers = [h for _, h in LEADERBOARD_IDENTITY] + [d.header for d in metrics] + ["Measured (UTC)", "Suites"]
    keys = [k for k, _ in LEADERBOARD_IDENTITY] + [d.column for d in metrics] + ["timestamp_utc", "suites"]
    numeric = [k in ("resolution", "batch") for k, _ in LEADERBOARD_IDENTITY] + [True] * len(metrics) + [False] * 2
    fields = [True] * len(LEADERBOARD_IDENTITY) + [False] * (len(metrics) + 1)
    protocol = [False] * (len(LEADERBOARD_IDENTITY) + len(metrics)) + [True]  # the time it was measured

    def detail(rows: list[LeaderboardRow]) -> list[bool]:
        return [*detail_columns([row.cells for row in rows], protocol, fields), False]  # the suites are not cells

    if not ok.any():
        unranked = int(records["case_id"].nunique()) if len(records) else 0
        return Leaderboard(headers, keys, numeric, [], [], [], unranked, detail([]), counted_only)
    cases, case_names = pd.factorize(records["case_id"], use_na_sentinel=False)
    has_ok = np.bincount(cases[ok], minlength=len(case_names)) > 0
    unranked = int((~has_ok).sum())
    positions = np.flatnonzero(ok)
    order = positions[np.argsort(time_keys(records["timestamp_utc"])[positions], kind="stable")]
    latest = order[last_positions(cases, order)]  # the latest ok record of each case, in time order
    identity = ["model", "resolution", "batch", "device", "dtype", *(c for c, _, _ in VARIANT_FIELDS),
                "env_gpu", "env_cpu", "timestamp_utc"]
    per_case = records.iloc[latest][[c for c in dict.fromkeys(identity) if c in records]].reset_index(drop=True)
    row_of_case = np.full(len(case_names), -1)
    row_of_case[cases[latest]] = np.arange(latest.size)
    for d in metrics:  # the latest non-null value of each metric
        values = records[d.column].to_numpy(dtype=float, na_value=np.nan)
        measured = order[~np.isnan(values[order])]
        last = measured[last_positions(cases, measured)]
        column = np.full(latest.size, np.nan)
        column[row_of_case[cases[last]]] = values[last]
        per_case[d.column] = column
    per_case = per_case.assign(variant=variant_names(per_case), hardware=hardware_names(per_case))
    group_keys = ["variant", "resolution", "batch", "device", "dtype"]
    groups = per_case.groupby(group_keys, sort=False, dropna=False).ngroup().to_numpy()
    suite_codes, suite_names = pd.factorize(records["suite"], use_na_sentinel=False)
    pairs = np.unique(groups[row_of_case[cases[positions]]].astype(np.int64) * len(suite_names)
                      + suite_codes[positions])
    suites: dict[int, list[str]] = {}
    for pair in pairs.tolist():
        suites.setdefault(pair // len(suite_names), []).append(str(suite_names[pair % len(suite_names)]))
    per_case["_group"] = groups
    best = per_case.groupby("_group", sort=False).last().reset_index()  # rows are in time order: the latest
    best = best.sort_values(["variant", "resolution", "batch", "device", "dtype"], kind="stable")
    columns = [*group_keys, "hardware", "timestamp_utc", "_group", *(d.column for d in metrics)]
    rows = []
    for record in best[columns].to_dict("records"):
        cells = [Cell(text(record[k]), value=_number(record[k]) if k in ("resolution", "batch") else None,
                      kind="wrap" if k == "hardware" else "") for k, _ in LEADERBOARD_IDENTITY]
        for d in metrics:
            value = record[d.column]
            cells.append(Cell("–") if is_missing(value) else Cell(d.format(value), value=float(value)))
        stamp = record["timestamp_utc"]
        cells.append(Cell("–" if is_missing(stamp) else pd.Timestamp(stamp).strftime("%Y-%m-%d %H:%M")))
        rows.append(LeaderboardRow(cells, text(record["device"]), text(record["dtype"]),
                                   sorted(suites[record["_group"]])))
    return Leaderboard(headers, keys, numeric, rows, sorted(best["device"].dropna().astype(str).unique()),
                       sorted(best["dtype"].dropna().astype(str).unique()), unranked, detail(rows), counted_only)


# --- runs ------------------------------------------------------------------------------------------------


def _or_empty(value: Any) -> str:
    return "" if is_missing(value) else str(value)


def _stamp(value: Any) -> str:
    return "–" if is_missing(value) else pd.Timestamp(value).strftime("%Y-%m-%d %H:%M:%S UTC")


def run_summaries(frame: pd.DataFrame) -> list[RunSummary]:
    """Return a summary per run in the store (newest first): its suites, first and last record times,
    records per status, environment (``env_*`` of its records; values that differ within the run joined
    by ' | '), and its failed and skipped records with their errors."""
    if frame.empty:
        return []
    runs, run_names = pd.factorize(frame["run_id"], use_na_sentinel=False)
    n_runs = len(run_names)
    times = frame["timestamp_utc"].groupby(runs)
    started, ended = times.min(), times.max()
    statuses, status_names = pd.factorize(frame["status"], use_na_sentinel=False)
    counts = np.bincount(runs.astype(np.int64) * len(status_names) + statuses,
                         minlength=n_runs * len(status_names)).reshape(n_runs, len(status_names))

    def values_per_run(column: pd.Series) -> dict[int, list[str]]:
        codes, names = pd.factorize(column, use_na_sentinel=True)
        pairs = runs.astype(np.int64) * (len(names) + 1) + codes + 1
        pairs = pd.unique(pairs[np.flatnonzero(np.diff(pairs, prepend=-1))])  # records of a run mostly agree
        out: dict[int, list[str]] = {}
        for pair in np.sort(pairs).tolist():
            run, code = divmod(pair, len(names) + 1)
            if code and text(names[code - 1]) != "":
                out.setdefault(run, []).append(text(names[code - 1]))
        return out

    suites = values_per_run(frame["suite"])
    environments: dict[int, dict[str, str]] = {}
    for column in sorted(c for c in frame if c.startswith("env_")):
        for run, values in values_per_run(frame[column]).items():
            environments.setdefault(run, {})[column.removeprefix("env_")] = " | ".join(values)
    problems: dict[str, list[dict[str, str]]] = {}
    bad = frame.iloc[np.flatnonzero((frame["status"] != "ok").to_numpy(dtype=bool, na_value=True))]
    bad = bad[["run_id", "suite", "label", "status", "timestamp_utc",
               *[c for c in ("error", "failure_class") if c in bad]]]
    for record in bad.sort_values("timestamp_utc", kind="stable").to_dict("records"):
        error = record.get("error")
        problems.setdefault(record["run_id"], []).append({
            "suite": str(record["suite"]), "label": str(record["label"]), "status": str(record["status"]),
            "failure_class": _or_empty(record.get("failure_class")), "error": _or_empty(error)})
    start_keys = time_keys(started.reindex(range(n_runs))).astype(float)
    summaries = []
    for run in sorted(range(n_runs), key=lambda r: (-start_keys[r], str(run_names[r]))):
        run_id = str(run_names[run])
        run_counts = {str(status_names[i]): int(n) for i, n in enumerate(counts[run]) if n}
        summaries.append(RunSummary(
            run_id=run_id, suites=sorted(suites.get(run, [])), started_utc=_stamp(started[run]),
            ended_utc=_stamp(ended[run]), records=int(counts[run].sum()), counts=dict(sorted(run_counts.items())),
            environment=environments.get(run, {}), problems=problems.get(run_id, [])))
    return summaries


# --- the box-regression simulation (Zheng et al. 2020, Distance-IoU) -------------------------------------

#: Iterations (1-based) at which the box-regression simulation's view shows the error, besides the last.
BOXSIM_ITERATIONS = (10, 40, 100)
#: The simulation's losses in the paper's order.
BOXSIM_LOSSES = ("iou", "giou", "diou", "ciou")


def boxsim_errors(value: Any) -> np.ndarray:
    """Return a record's ``boxsim_error_per_iter`` as a float array (empty when missing)."""
    if value is None or (not isinstance(value, (list, tuple, np.ndarray)) and is_missing(value)):
        return np.zeros(0)
    return np.asarray(value, dtype=float).reshape(-1)


def boxsim_records(records: pd.DataFrame) -> pd.DataFrame:
    """Return the ok records with a box-regression simulation result, in the paper's loss order then seed."""
    if "boxsim_error_final" not in records or records.empty:
        return records.iloc[0:0]
    ok = records[(records["status"] == "ok") & records["boxsim_error_final"].notna()]
    if ok.empty:
        return ok
    losses = _column(ok, "boxsim_loss").fillna("").astype(str)
    order = losses.map({name: i for i, name in enumerate(BOXSIM_LOSSES)}).fillna(len(BOXSIM_LOSSES))
    keys = [order, losses] + ([ok["seed"].fillna(0)] if "seed" in ok else [])
    return ok.iloc[np.lexsort([k.to_numpy() for k in reversed(keys)])]


def _boxsim_cell(value: float | None, best: float | None = None, kind: str = "", note: str = "") -> Cell:
    if value is None or not math.isfinite(value):
        return Cell("–", kind=kind, note=note)
    return Cell(f"{value:.4g}", best=best is not None and value == best, kind=kind, note=note, value=value)


def box_simulation_table(records: pd.DataFrame) -> ViewTable | None:
    """Return the DIoU paper's simulation as a table — Loss | total error at iterations 10, 40, 100 and the last |
    published final error | mean final IoU | seconds — a row per ok record, the lowest error per column in bold;
    None when the suite ran no box-regression simulation."""
    ok = boxsim_records(records)
    if ok.empty:
        return None
    rows_data = []
    for record in ok.to_dict("records"):
        errors = boxsim_errors(record.get("boxsim_error_per_iter"))
        at = [float(errors[i - 1]) if len(errors) >= i else None for i in BOXSIM_ITERATIONS]
        rows_data.append((record, at, float(record["boxsim_error_final"])))
    best_at = [min((a[i] for _, a, _ in rows_data if a[i] is not None), default=None)
               for i in range(len(BOXSIM_ITERATIONS))]
    best_final = min(f for _, _, f in rows_data) if len(rows_data) > 1 else None
    headers = ["Loss", "Seed", "Cases", "Iterations", *(f"Error @ {i}" for i in BOXSIM_ITERATIONS), "Final error",
               "Published final", "Mean IoU (final)", "Time (s)"]
    rows: list[list[Cell]] = []
    for record, at, final in rows_data:
        published = _published(record).get("boxsim_error_final")
        if published:
            note = published["source"] + (f"; {published['convention']}" if published.get("convention") else "")
            comparable = published.get("comparable", True) and published["value"]
            delta = f" ({(final - published['value']) / published['value']:+.0%})" if comparable else ""
            pub_cell = Cell(f"{published['value']:.4g}{delta}", note=note, kind="published",
                            value=float(published["value"]))
        else:
            pub_cell = Cell("–", kind="published")
        best_cells = [_boxsim_cell(a, b) for a, b in zip(at, best_at, strict=True)]
        rows.append([Cell(str(record.get("boxsim_loss") or record.get("box_loss")).upper(), kind="text"),
                     Cell(text(record.get("seed", 0)), value=_number(record.get("seed", 0))),
                     Cell(text(record.get("boxsim_cases")), value=_number(record.get("boxsim_cases"))),
                     Cell(text(record.get("boxsim_iterations")), value=_number(record.get("boxsim_iterations"))),
                     *best_cells, _boxsim_cell(final, best_final), pub_cell,
                     _boxsim_cell(_number(record.get("boxsim_iou_final_mean"))),
                     _boxsim_cell(_number(record.get("boxsim_s")))])
    caption = ("Box-regression simulation of Zheng et al. 2020 (Distance-IoU, AAAI; Algorithm 1): anchors regressed "
               "onto 7 unit targets by gradient descent on each loss. Error = the l1 distance between every box and "
               "its target in (x, y, w, h), summed over all regression cases, after the given iteration; lowest per "
               "column in bold. Published: the final error read off the authors' curves (their hand-written "
               "gradients: for reference, no Δ when marked not comparable).")
    return ViewTable("Box-regression simulation (Zheng et al. 2020)", headers, rows, caption)


#: CSS class of each claim verdict's cell (the report's status colours).
VERDICT_KINDS = {"holds": "status-ok", "fails": "status-failed", "within noise": "status-skipped",
                 "not measured": "status-skipped", "reported": "text"}


def _claim_value_cell(value: float | None, metric: str) -> Cell:
    if value is None or pd.isna(value):
        return Cell("–")
    display = DISPLAY_BY_COLUMN.get(metric)
    return Cell(display.format(value) if display else f"{value:.4g}", note=display.header if display else metric,
                value=float(value))


def claims_table(records: pd.DataFrame) -> ViewTable | None:
    """Return the suite's claims judged on its records (:func:`harness.claims.claim_rows`) — Claim | Candidate |
    Baseline | Metric | the two values | Ratio | Expected | Verdict — a row per claim, case pair and metric; None
    when the suite states no claim."""
    from harness.claims import claim_rows

    rows_frame = claim_rows(records)
    if rows_frame.empty:
        return None
    headers = ["Claim", "Candidate", "Baseline", "Metric", "Candidate value", "Baseline value", "Ratio", "Expected",
               "Verdict"]
    rows = []
    for row in rows_frame.to_dict("records"):
        ratio = row["ratio"]
        interval = "" if pd.isna(row["ratio_low"]) else f"interval {row['ratio_low']:.3f}–{row['ratio_high']:.3f}"
        ratio_cell = Cell("–") if ratio is None or pd.isna(ratio) else Cell(f"{ratio:.3f}", note=interval,
                                                                            value=float(ratio))
        display = DISPLAY_BY_COLUMN.get(row["metric"])
        rows.append([Cell(row["claim"], note=row["source"], kind="text"), Cell(row["candidate"], kind="text"),
                     Cell(row["baseline"], kind="text"),
                     Cell(display.header if display else row["metric"], note=row["metric"], kind="text"),
                     _claim_value_cell(row["candidate_value"], row["metric"]),
                     _claim_value_cell(row["baseline_value"], row["metric"]), ratio_cell,
                     Cell(row["expected"], kind="text"),
                     Cell(row["verdict"], note=row["why"], kind=VERDICT_KINDS[row["verdict"]])])
    caption = ("Each claim of the suite on its latest records: Ratio = candidate / baseline (the baseline is the "
               "candidate case with the claim's baseline fields replaced, so each device is judged on its own). "
               "holds / fails: the ratio is inside / outside the expected range; within noise: the ratio's interval "
               "(from both medians' confidence intervals, in the tooltip) crosses a bound, so one run cannot tell; "
               "reported: no range is claimed; not measured: a case has no value (the tooltip says why). The claim's "
               "source is in its tooltip.")
    return ViewTable("Claims (candidate / baseline, measured here)", headers, rows, caption)


SUITE_VIEWS = (claims_table, *SUITE_VIEWS, box_simulation_table)
