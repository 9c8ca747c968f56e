"""The regressions page: a comparison (``harness.compare.compare``) rendered as one self-contained HTML file."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from harness.compare import ALPHA, IMPROVED, MIN_EFFECT, REGRESSED, VERDICTS, comparison_records, verdict_counts
from harness.report import template_environment
from harness.report.series_plot import series_plot
from harness.store import write_text_atomically

#: Order of the page's sections: what needs attention first (regressed, improved, ..., unchanged last).
SECTION_ORDER: tuple[str, ...] = VERDICTS


def _number(value: Any, fmt: str) -> str:
    return "" if value is None else fmt.format(value)


def _percent(value: Any) -> str:
    return "" if value is None else f"{value * 100:+.1f}"


def _p_value(value: Any) -> str:
    if value is None:
        return ""
    return f"{value:.1e}" if value < 1e-3 else f"{value:.3f}"


def _metric_value(value: Any) -> str:
    if value is None:
        return "n/a"
    return f"{value:.4g}" if isinstance(value, (int, float)) else str(value)


#: Verdicts whose cases judged by the history get a plot of it.
PLOTTED: tuple[str, ...] = (REGRESSED, IMPROVED)


def _history_caption(history: dict[str, Any]) -> str:
    """Return what a history plot shows in words: the rule, the levels, where the change starts, the commits."""
    nights = history["nights"]
    before, after = history["level_before_ms"], history["level_after_ms"]
    text = (f"{before:.4g} → {after:.4g} ms ({_percent(history['delta_rel'])}%), "
            f"noise σ {history['noise_rel'] * 100:.1f}%")
    if history["change_at"] is None:
        return f"One-night excursion: tonight against the recent level, {text}."
    at = nights[history["change_at"]]["run_id"]
    old, new = history["commit_before"][:12], history["commit_after"][:12]
    commits = f"; commits {old or '?'}..{new or '?'}" if old or new else ""
    return f"Change point at run {at}: level {text}{commits}."


def _rows(comparison: pd.DataFrame) -> list[dict[str, Any]]:
    rows = []
    for index, record in enumerate(comparison_records(comparison)):
        history = record.get("history")
        plotted = history is not None and record["verdict"] in PLOTTED
        ci = "" if record["ci_low"] is None else f"{_percent(record['ci_low'])} to {_percent(record['ci_high'])}"
        others = [f"{m['metric']}: {_metric_value(m['baseline'])} → {_metric_value(m['candidate'])}"
                  + (f" ({_percent(m['delta_rel'])}%)" if m["delta_rel"] is not None else "")
                  + (f", {m['verdict']}" if m["verdict"] != "reference" else "")
                  for m in record["metrics"] if m["verdict"] != "unchanged"]
        rows.append({
            "suite": record["suite"], "label": record["label"], "case_id": record["case_id"],
            "verdict": record["verdict"], "reason": record["reason"],
            "baseline_ms": _number(record["baseline_ms"], "{:.3f}"),
            "candidate_ms": _number(record["candidate_ms"], "{:.3f}"),
            "delta": _percent(record["delta_rel"]), "ci": ci, "p": _p_value(record["p_value"]),
            "n": f"{record['n_baseline']} / {record['n_candidate']}" if record["n_baseline"] or record["n_candidate"]
            else "",
            "others": others,
            "plot": series_plot(f"history-{index}", record["label"], history) if plotted else None,
            "caption": _history_caption(history) if plotted else "",
        })
    return rows


def render_regressions(comparison: pd.DataFrame, out_file: str | Path, baseline_name: str, candidate_name: str,
                       *, alpha: float | None = None, min_effect: float | None = None) -> Path:
    """Write the regressions page of ``comparison`` to ``out_file`` (atomically) and return its path.

    Sections by verdict: regressed first, then improved, changed, inconclusive, not comparable, missing,
    reference, unchanged. ``alpha`` and ``min_effect`` default to those ``compare`` kept in ``.attrs``.
    """
    alpha = alpha if alpha is not None else comparison.attrs.get("alpha", ALPHA)
    min_effect = min_effect if min_effect is not None else comparison.attrs.get("min_effect", MIN_EFFECT)
    rows = _rows(comparison)
    sections = [{"verdict": v, "slug": v.replace(" ", "-"), "rows": [r for r in rows if r["verdict"] == v]}
                for v in SECTION_ORDER]
    counts = {v: n for v, n in verdict_counts(comparison).items() if n}
    html = template_environment().get_template("regressions.html.j2").render(
        sections=[s for s in sections if s["rows"]],
        counts=counts,
        n_cases=len(rows),
        baseline=baseline_name,
        candidate=candidate_name,
        alpha=f"{alpha:g}",
        min_effect=f"{min_effect * 100:g}",
        env_keys=", ".join(comparison.attrs.get("env_keys", [])),
        published=bool(comparison.attrs.get("published", False)),
        history=bool(comparison.attrs.get("history", False)),
        rendered_utc=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    )
    return write_text_atomically(out_file, html)
