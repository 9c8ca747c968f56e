"""Rendering the results store into a static, self-contained HTML report. Reads the store only."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import jinja2

from harness.report.tables import suite_tables
from harness.store import ResultStore


def template_environment() -> jinja2.Environment:
    """Return the jinja2 environment of the report templates (autoescape on, strict undefined)."""
    return jinja2.Environment(
        loader=jinja2.PackageLoader("harness.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_report(results_dir: str | Path = "results", out_dir: str | Path = "reports") -> Path:
    """Render ``out_dir/index.html`` from every record under ``results_dir``; return the page's path."""
    frame = ResultStore(results_dir).read()
    tables = suite_tables(frame) if not frame.empty else []
    html = template_environment().get_template("index.html.j2").render(
        tables=tables,
        results_dir=str(results_dir),
        n_records=len(frame),
        rendered_utc=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    page = out / "index.html"
    tmp = page.with_name(".index.html.tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(page)
    return page
