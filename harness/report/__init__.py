"""Rendering the results store into a static, self-contained HTML site. Reads the store only.

``render_report(results_dir, out_dir)`` writes the leaderboard (``index.html``), a page per suite
(``suite-<name>.html``) and per run (``run-<run_id>.html``), and the CSS and JS they share (``assets/``); see
:mod:`harness.report.site` for the layout, :mod:`harness.report.tables` for the tables and
:mod:`harness.report.plots` for the inline SVG plots.
"""

from __future__ import annotations

from pathlib import Path

import jinja2

#: How many of each suite's most recent runs have their records tabled on their run page by default (a table per
#: run costs the report time in proportion to its records: a store of years of nightlies holds thousands of runs).
RUN_TABLES = 20


def template_environment() -> jinja2.Environment:
    """Return the jinja2 environment of the report templates (autoescape on, control characters of every text shown
    as escapes, strict undefined), with the
    filter ``cells`` (a row of :class:`~harness.report.tables.Cell` as ``<td>`` elements) and the function
    ``header_row(headers, numeric, keys)`` (a row of sortable ``<th>``) and ``problems(items, suite_pages)`` (failed
    and skipped cases in ``<details>``)."""
    from harness.report.markup import cells_html, header_html, problems_html, shown_text

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("harness.report", "templates"),
        autoescape=True,
        finalize=shown_text,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["cells"] = cells_html
    env.globals["header_row"] = header_html
    env.globals["problems"] = problems_html
    return env


def render_report(results_dir: str | Path = "results", out_dir: str | Path = "reports", *,
                  run_tables_per_suite: int | None = RUN_TABLES) -> Path:
    """Render the site of every record under ``results_dir`` into ``out_dir``; return ``index.html``'s path. The
    pages of each suite's ``run_tables_per_suite`` most recent runs table their records (every run's when None)."""
    from harness.report.site import render_site

    return render_site(results_dir, out_dir, run_tables_per_suite=run_tables_per_suite)
