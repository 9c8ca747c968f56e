"""The claims view of a suite page: each claim of the suite judged on its latest records (:mod:`harness.claims`)."""

from __future__ import annotations

import pandas as pd

from harness.claims import claim_rows
from harness.report.columns import DISPLAYS
from harness.report.tables import Cell, ViewTable

#: CSS class of each verdict's cell (the report's status colours).
VERDICT_KINDS = {"holds": "status-ok", "fails": "status-failed", "within noise": "status-skipped",
                 "not measured": "status-skipped", "reported": "text"}
_DISPLAY = {d.column: d for d in DISPLAYS}


def _value_cell(value: float | None, metric: str) -> Cell:
    if value is None or pd.isna(value):
        return Cell("–")
    display = _DISPLAY.get(metric)
    shown = display.format(value) if display else f"{value:.4g}"
    unit = display.header if display else metric
    return Cell(shown, note=unit, value=float(value))


def claims_view(records: pd.DataFrame) -> ViewTable | None:
    """Return the suite's claims as a table — Claim | Candidate | Baseline | Metric | the two values | Ratio | Expected
    | Verdict — a row per claim, case pair and metric; None when the suite states no claim."""
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
        display = _DISPLAY.get(row["metric"])
        rows.append([Cell(row["claim"], note=row["source"], kind="text"), Cell(row["candidate"], kind="text"),
                     Cell(row["baseline"], kind="text"),
                     Cell(display.header if display else row["metric"], note=row["metric"], kind="text"),
                     _value_cell(row["candidate_value"], row["metric"]),
                     _value_cell(row["baseline_value"], row["metric"]), ratio_cell,
                     Cell(row["expected"], kind="text"),
                     Cell(row["verdict"], note=row["why"], kind=VERDICT_KINDS[row["verdict"]])])
    caption = ("Each claim of the suite on its latest records: Ratio = candidate / baseline (the baseline is the "
               "candidate case with the claim's baseline fields replaced, so each device is judged on its own). "
               "holds / fails: the ratio is inside / outside the expected range; within noise: the ratio's interval "
               "(from both medians' confidence intervals, in the tooltip) crosses a bound, so one run cannot tell; "
               "reported: no range is claimed; not measured: a case has no value (the tooltip says why). The claim's "
               "source is in its tooltip.")
    return ViewTable("Claims (candidate / baseline, measured here)", headers, rows, caption)
