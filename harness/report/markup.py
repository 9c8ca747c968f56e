"""HTML of table rows built in Python (a template loop per cell costs too much on big pages); every text and
attribute value goes through ``html.escape``, its control characters shown as escapes first
(:func:`harness.terminal.visible_controls`)."""

from __future__ import annotations

import html
from collections.abc import Sequence

from markupsafe import Markup

from harness.report.tables import Cell
from harness.terminal import visible_controls


def _e(value: object) -> str:
    return html.escape(visible_controls(str(value)), quote=True)


def shown_text(value: object) -> object:
    """Return a template value as the report shows it: text with its control characters as escapes (ESC as
    ``\\x1b``); markup built here, and other values, unchanged (the jinja environment's ``finalize``)."""
    return visible_controls(value) if isinstance(value, str) and not isinstance(value, Markup) else value


def cell_html(c: Cell) -> str:
    """Return the ``<td>`` of one cell: class (kind, ``best``), ``data-value`` (the number it sorts by) and
    ``title`` (its note)."""
    classes = " ".join(k for k in (c.kind, "best" if c.best else "") if k)
    attributes = f' class="{_e(classes)}"' if classes else ""
    if c.value is not None:
        attributes += f' data-value="{float(c.value)!r}"'
    if c.note:
        attributes += f' title="{_e(c.note)}"'
    return f"<td{attributes}>{_e(c.text)}</td>"


def cells_html(cells: Sequence[Cell]) -> Markup:
    """Return the ``<td>`` elements of a row of cells."""
    return Markup("".join(cell_html(c) for c in cells))


def header_html(headers: Sequence[str], numeric: Sequence[bool] = (), keys: Sequence[str] = ()) -> Markup:
    """Return a header row of sortable columns: ``<th class="sortable" data-sort="number|text" data-key=…
    aria-sort="none">`` with an empty ``.sort-arrow`` span the script fills (▲ ascending, ▼ descending)."""
    out = []
    for i, header in enumerate(headers):
        kind = "number" if i < len(numeric) and numeric[i] else "text"
        key = f' data-key="{_e(keys[i])}"' if i < len(keys) else ""
        out.append(f'<th scope="col" class="sortable" tabindex="0" aria-sort="none" data-sort="{kind}"{key}>'
                   f'{_e(header)}<span class="sort-arrow" aria-hidden="true"></span></th>')
    return Markup("<tr>" + "".join(out) + "</tr>")


def problems_html(problems: Sequence[dict[str, str]], suite_pages: dict[str, str] | None = None) -> Markup:
    """Return a ``<details class="problem">`` per failed or skipped case: status (with its failure class), label
    (and its suite's page when ``suite_pages`` is given), the error's first line as summary and the whole error
    inside."""
    out = []
    for p in problems:
        status, error, suite = _e(p["status"]), p.get("error") or "", p.get("suite", "")
        failure_class = p.get("failure_class") or ""
        shown = f"{status} ({_e(failure_class)})" if failure_class else status
        where = (f' (<a href="{_e(suite_pages[suite])}">{_e(suite)}</a>)'
                 if suite_pages and suite in suite_pages else "")
        first = error.splitlines()[0] if error.strip() else "no reason recorded"
        out.append(f'<details class="problem status-{status}"><summary><span class="status-{status}">{shown}</span>: '
                   f"{_e(p['label'])}{where} — {_e(first)}</summary><pre>{_e(error)}</pre></details>")
    return Markup("\n".join(out))
