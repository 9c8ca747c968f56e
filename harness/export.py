"""Stored results written out in other formats: CSV, JSON, Markdown tables, pytest-benchmark's JSON. Torch-free.

``export(frame, fmt)`` turns the records of the store (``ResultStore(root).read()``) into text; by default
only the latest record per (suite, case) (as the HTML report shows), with ``latest=False`` every record.

- ``csv``: one row per record, every column; list columns (``latency_ms_samples``: ms per batch) as a JSON
  array in the cell, timestamps ISO-8601 UTC; ``json.loads`` a cell to get the samples back. Safe to open in a
  spreadsheet (OWASP's advice on CSV injection): a text cell starting with ``=``, ``+``, ``-``, ``@``, tab or
  carriage return gets a leading ``'``, so it is read as text, not run as a formula (``'=1+1``); numbers,
  negative ones included, stay numbers. Control characters in text cells are written as their escapes
  (``\\x1b``, :func:`harness.terminal.visible_controls`), as on the terminal.
- ``json``: a JSON list of records (objects), every column; timestamps ISO-8601 UTC, NaN as null, samples
  as lists. ``*_json`` and ``*_kwargs`` columns stay the JSON text they are in the store. Control characters
  are ``\\uXXXX`` escapes (json.loads gives the stored text back).
- ``markdown``: a GitHub-flavoured table per suite: label, the case fields, protocol fields where rows
  differ, status, and every metric column with a value (headers with units, from
  ``harness.report.columns.DISPLAYS``); failed and skipped records listed under it with their errors. Every
  cell, heading and list line is one line of text: ``<``, ``>`` and ``&`` as HTML entities, ``|`` and ``\\``
  escaped, newlines as spaces, control characters as their escapes; where cases
  ran several seeds or the suite names a baseline, the report's accuracy-over-seeds table under it, with the same
  cells (``mean ± std (Δ)``, p-values, significant ones in bold).
- ``pytest-benchmark``: the document ``pytest --benchmark-json`` writes (pytest-benchmark 4/5 layout), one
  benchmark per ok record with latency samples, readable by ``pytest-benchmark compare``. Its stats are in
  **seconds per call**, where one call is one forward pass (or training step) of the whole batch: the
  harness's samples are ms per batch, each the mean of ``latency_block`` calls (pytest-benchmark's
  ``iterations``). ``ops`` is then calls per second; images per second are ``extra_info.batch`` × ops (or
  ``extra_info.throughput_samples_per_s``, from the median).

In CSV and JSON, a float column whose every value is a whole number (a count such as ``params`` or
``threads`` with nulls, which pandas holds as floats) is written as integers.
"""

from __future__ import annotations

import html
import io
import json
import re
import statistics
from bisect import bisect_left, bisect_right
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pandas as pd

from harness.case import CASE_COLUMNS, KWARGS_FIELDS
from harness.errors import HarnessError
from harness.report.columns import CASE_HEADERS, DISPLAYS, PROTOCOL_HEADERS
from harness.report.tables import seeds_table
from harness.store import is_missing, iso_utc, json_value
from harness.store_query import latest_per_case
from harness.terminal import CONTROL_CODES, visible_controls

#: The pytest-benchmark release whose ``--benchmark-json`` layout ``pytest-benchmark`` output reproduces.
PYTEST_BENCHMARK_FORMAT_VERSION = "5.3.1"

#: Order of the records in every format.
_ORDER = ["suite", "timestamp_utc", "label", "run_id"]


def select_records(frame: pd.DataFrame, latest: bool = True) -> pd.DataFrame:
    """Return the records to export: the latest per (suite, case_id) if ``latest``, else all; in a stable order."""
    if latest:
        frame = latest_per_case(frame)
    keys = [k for k in _ORDER if k in frame]
    return frame.sort_values(keys, kind="stable").reset_index(drop=True) if keys else frame.reset_index(drop=True)


# --- plain values -------------------------------------------------------------------------------------------


def _is_list_column(column: pd.Series) -> bool:
    return column.dtype == object and column.map(lambda v: isinstance(v, (np.ndarray, list, tuple))).any()


def _whole_numbers(column: pd.Series) -> bool:
    if not pd.api.types.is_float_dtype(column):
        return False
    values = column.dropna()
    return not values.empty and bool(np.isfinite(values).all() and (values == values.round()).all())


def _plain_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Return a copy with counts held as floats back to integers and timestamps as ISO-8601 UTC text."""
    out = frame.copy()
    for name in out.columns:
        column = out[name]
        if _whole_numbers(column):
            out[name] = column.astype("Int64")
        elif pd.api.types.is_datetime64_any_dtype(column):
            out[name] = column.map(iso_utc).astype(object)
    return out


# --- formats ------------------------------------------------------------------------------------------------


#: First characters that make a spreadsheet read a cell as a formula (OWASP, CSV injection).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_text_cell(text: str) -> str:
    """Return a text cell safe to open in a spreadsheet: controls shown as escapes, then a leading ``'`` if it
    starts like a formula (``=``, ``+``, ``-``, ``@``, tab, carriage return)."""
    text = visible_controls(text)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def to_csv(frame: pd.DataFrame) -> str:
    """Return CSV text: a row per record, every column; list cells (samples) as JSON arrays; text cells that
    start like a formula prefixed with ``'`` (:func:`csv_text_cell`), numbers as they are."""
    out = _plain_frame(frame)
    for name in out.columns:
        if _is_list_column(out[name]):
            out[name] = out[name].map(lambda v: None if is_missing(v) else json.dumps(json_value(v)))
        if pd.api.types.is_object_dtype(out[name]) or pd.api.types.is_string_dtype(out[name]):
            out[name] = out[name].map(lambda v: csv_text_cell(v) if isinstance(v, str) else v)
    buffer = io.StringIO()
    out.to_csv(buffer, index=False, lineterminator="\n")
    return buffer.getvalue()


#: ``str.translate`` table: the controls ``json.dumps`` leaves raw (DEL, C1, bidirectional) -> JSON escapes.
_JSON_ESCAPES = {code: f"\\u{code:04x}" for code in CONTROL_CODES}


def to_json(frame: pd.DataFrame) -> str:
    """Return a JSON list of records: every column, timestamps ISO-8601 UTC, NaN as null, samples as lists;
    every control character a ``\\uXXXX`` escape (the same text to a JSON reader, nothing raw on a terminal)."""
    out = _plain_frame(frame)
    records = [{name: json_value(value) for name, value in row.items()} for row in out.to_dict(orient="records")]
    return json.dumps(records, indent=2, ensure_ascii=False, allow_nan=False).translate(_JSON_ESCAPES) + "\n"


def _md_cell(value: Any) -> str:
    """Return ``value`` as one line of Markdown text (a table cell, heading or list item): HTML's ``<``, ``>``,
    ``&`` as entities, ``|`` and backslashes escaped, newlines as spaces, other controls as escapes."""
    text = "" if is_missing(value) else str(value)
    text = re.sub(r"\s*[\r\n]+\s*", " ", text).strip()
    text = html.escape(visible_controls(text), quote=False)
    return text.replace("\\", "\\\\").replace("|", "\\|")


def _md_row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _differs(value: Any, default: Any) -> bool:
    return not is_missing(value) and value != default


def _suite_markdown(suite: str, records: pd.DataFrame) -> str:
    records = records.sort_values([c for c, _ in CASE_HEADERS if c in records] + ["timestamp_utc"], kind="stable")
    identity = [(c, h) for c, h in CASE_HEADERS if c in records]
    identity += [(c, h) for c, h, default in PROTOCOL_HEADERS
                 if c in records and any(_differs(v, default) for v in records[c])]
    several_runs = records.duplicated("case_id").any()  # every record (--all): say which run each row is from
    shown = [d for d in DISPLAYS if d.column in records and records[d.column].notna().any()]
    headers = ["Label", *(h for _, h in identity), *(["Run"] if several_runs else []), "Status",
               *(d.header for d in shown)]
    lines = [f"## {_md_cell(suite)}", "", _md_row([_md_cell(h) for h in headers]),
             _md_row(["---"] * (1 + len(identity) + several_runs + 1) + ["---:"] * len(shown))]
    problems = []
    for _, record in records.iterrows():
        cells = [record["label"], *(record[c] for c, _ in identity), *([record["run_id"]] if several_runs else []),
                 record["status"]]
        cells += [d.format(record[d.column]) if not is_missing(record[d.column]) else "–" for d in shown]
        lines.append(_md_row([_md_cell(c) for c in cells]))
        if record["status"] != "ok":
            first = next(iter(_text(record.get("error")).strip().splitlines()), "")
            problems.append(f"- {_md_cell(record['label'])} — {record['status']}"
                            + (f": {_md_cell(first)}" if first else ""))
    if problems:
        lines += ["", *problems]
    seeds = seeds_table(latest_per_case(records))
    if seeds is not None:
        lines += ["", f"### {_md_cell(seeds.title)}", "", _md_row([_md_cell(h) for h in seeds.headers]),
                  _md_row(["---"] * len(seeds.headers))]
        lines += [_md_row([_md_cell(f"**{c.text}**" if c.best else c.text) for c in row]) for row in seeds.rows]
        lines += ["", _md_cell(seeds.caption)]
    return "\n".join(lines) + "\n"


def to_markdown(frame: pd.DataFrame) -> str:
    """Return a GitHub-flavoured Markdown table per suite (suites in name order), metric headers with units."""
    if frame.empty:
        return "No results.\n"
    return "\n".join(_suite_markdown(str(suite), group) for suite, group in sorted(frame.groupby("suite")))


def benchmark_stats(data: list[float]) -> dict[str, Any]:
    """Return pytest-benchmark's ``stats`` of ``data`` (its Stats class, field for field, same formulas)."""
    if not data:
        raise ValueError("no samples")
    ordered = sorted(data)
    n = len(data)
    mean = statistics.mean(data)
    stddev = statistics.stdev(data) if n > 1 else 0
    if n == 1:
        q1 = q3 = ordered[0]
    elif n % 2:  # pytest-benchmark's quartiles: Wikipedia's method 3 for odd counts, method 2 for even
        k, r = n // 4, n % 4
        q1 = 0.25 * ordered[k - 1] + 0.75 * ordered[k] if r == 1 else 0.75 * ordered[k] + 0.25 * ordered[k + 1]
        q3 = (0.75 * ordered[3 * k] + 0.25 * ordered[3 * k + 1] if r == 1
              else 0.25 * ordered[3 * k + 1] + 0.75 * ordered[3 * k + 2])
    else:
        q1, q3 = statistics.median(ordered[: n // 2]), statistics.median(ordered[n // 2:])
    iqr = q3 - q1
    low, high = q1 - 1.5 * iqr, q3 + 1.5 * iqr
    stddev_outliers = sum(1 for v in data if v < mean - stddev or v > mean + stddev)
    iqr_outliers = sum(1 for v in data if v < low or v > high)
    total = sum(data)
    return {
        "min": ordered[0],
        "max": ordered[-1],
        "mean": mean,
        "stddev": stddev,
        "rounds": n,
        "median": statistics.median(data),
        "iqr": iqr,
        "q1": q1,
        "q3": q3,
        "iqr_outliers": iqr_outliers,
        "stddev_outliers": stddev_outliers,
        "outliers": f"{stddev_outliers};{iqr_outliers}",
        "ld15iqr": ordered[0] if n == 1 else ordered[bisect_left(ordered, low)],
        "hd15iqr": ordered[0] if n == 1 else ordered[bisect_right(ordered, high) - 1],
        "ops": n / total if total else 0,
        "total": total,
    }


def _text(value: Any) -> str:
    return "" if is_missing(value) else str(value)


_ARCHES = r"x86_64|amd64|AMD64|i[3-6]86|aarch64|arm64|armv\w+|ppc64le|ppc64|s390x|riscv64"


def _machine_info(env: pd.Series) -> dict[str, Any]:
    """Return pytest-benchmark's ``machine_info`` from a record's ``env_*`` columns ('' where not recorded)."""
    platform_text = _text(env.get("env_platform"))  # platform.platform(): System-release-machine-...
    found = re.match(rf"^([^-]+)-(.*)-({_ARCHES})(?:-|$)", platform_text)  # the last arch-like part
    system, release, machine = found.groups() if found else (platform_text.split("-")[0], "", "")
    python = _text(env.get("env_python"))
    count = env.get("env_cpu_count")
    cpu = {"python_version": python, "brand_raw": _text(env.get("env_cpu")), "arch_string_raw": machine,
           "count": None if is_missing(count) else int(count)}
    return {
        "node": _text(env.get("env_hostname")),
        "processor": _text(env.get("env_cpu")),
        "machine": machine,
        "python_compiler": "",
        "python_implementation": "",
        "python_implementation_version": python,
        "python_version": python,
        "python_build": ["", ""],
        "release": release,
        "system": system,
        "cpu": cpu,
        # added keys (as a pytest_benchmark_update_machine_info hook would): the rest of the harness's capture
        "harness_env": {k.removeprefix("env_"): json_value(v) for k, v in env.items() if k.startswith("env_")},
    }


def _commit_info(sha: Any) -> dict[str, Any]:
    sha = _text(sha)
    return {"id": sha.removesuffix("+dirty") or "unversioned", "time": None, "author_time": None,
            "dirty": sha.endswith("+dirty"), "project": "harness", "branch": "(unknown)"}


def _latency_options(record: pd.Series) -> dict[str, Any]:
    raw = record.get("protocol_json")
    try:
        return dict(json.loads(raw).get("latency") or {}) if isinstance(raw, str) and raw else {}
    except (ValueError, AttributeError):
        return {}


def _benchmark(record: pd.Series, name: str) -> dict[str, Any]:
    samples_s = [float(ms) / 1e3 for ms in record["latency_ms_samples"]]
    block = record.get("latency_block")
    iterations = 1 if is_missing(block) else int(block)
    latency = _latency_options(record)
    warmup = record.get("latency_warmup_iters")
    params = {c: json_value(record.get(c)) for c in CASE_COLUMNS if c in record}
    for name_ in KWARGS_FIELDS:
        if isinstance(params.get(name_), str):
            params[name_] = json.loads(params[name_])
    block_min_ms = latency.get("block_min_ms")
    return {
        "group": str(record["suite"]),
        "name": name,
        "fullname": f"{record['suite']}::{name}",
        "params": params,
        "param": str(record["case_id"]),
        "extra_info": {
            "unit": "stats in seconds per call: one forward pass (or training step) of a batch of `batch` images; "
                    "each round is the mean of `iterations` calls",
            "batch": json_value(record.get("batch")),
            "world_size": json_value(record.get("world_size")),
            "throughput_samples_per_s": json_value(record.get("throughput_samples_per_s")),
            "latency_ms_median": json_value(record.get("latency_ms_median")),
            "suite": str(record["suite"]),
            "label": str(record["label"]),
            "case_id": str(record["case_id"]),
            "run_id": str(record["run_id"]),
            "timestamp_utc": iso_utc(record.get("timestamp_utc")),
            "git_sha": _text(record.get("env_git_sha")),
            "node": _text(record.get("env_hostname")),
        },
        "options": {
            "disable_gc": False,
            "timer": _text(record.get("latency_timer")),
            "min_rounds": latency.get("min_repeats"),
            "max_time": latency.get("max_time_s"),
            "min_time": None if block_min_ms is None else block_min_ms / 1e3,
            "precision": None,
            "confidence": None,
            "warmup": None if is_missing(warmup) else int(warmup) > 0,
            "harness_latency": latency,
        },
        "stats": {**benchmark_stats(samples_s), "data": samples_s, "iterations": iterations},
    }


def _has_samples(value: Any) -> bool:
    return isinstance(value, (np.ndarray, list, tuple)) and len(value) > 0


def to_pytest_benchmark(frame: pd.DataFrame) -> str:
    """Return the JSON document ``pytest --benchmark-json`` writes: a benchmark per ok record with samples.

    ``machine_info`` and ``commit_info`` come from the newest of those records (each benchmark's
    ``extra_info`` names its own host and git sha); ``datetime`` is when that record was measured.
    """
    has = frame["latency_ms_samples"].map(_has_samples) if "latency_ms_samples" in frame else False
    timed = frame[(frame["status"] == "ok") & has] if not frame.empty else frame
    if timed.empty:
        raise HarnessError("pytest-benchmark: no ok record with latency samples to export "
                           "(take the `latency` metric in the suite)")
    names: dict[tuple[str, str], int] = {}
    for _, record in timed.iterrows():
        key = (str(record["suite"]), str(record["label"]))
        names[key] = names.get(key, 0) + 1
    benchmarks = []
    for _, record in timed.iterrows():
        name = str(record["label"])
        if names[(str(record["suite"]), name)] > 1:  # every record (--all), or two cases with one label
            name += f" [{record['case_id']} @{record['run_id']}]"
        benchmarks.append(_benchmark(record, name))
    newest = timed.sort_values("timestamp_utc", kind="stable").iloc[-1]
    document = {
        "machine_info": _machine_info(newest),
        "commit_info": _commit_info(newest.get("env_git_sha")),
        "benchmarks": benchmarks,
        "datetime": iso_utc(newest["timestamp_utc"]) or datetime.now(timezone.utc).isoformat(),
        "version": PYTEST_BENCHMARK_FORMAT_VERSION,
    }
    return json.dumps(document, indent=4, ensure_ascii=True, allow_nan=False) + "\n"


#: Export formats: name -> function from the selected records to text.
FORMATS: dict[str, Callable[[pd.DataFrame], str]] = {
    "csv": to_csv,
    "json": to_json,
    "markdown": to_markdown,
    "pytest-benchmark": to_pytest_benchmark,
}


def export(frame: pd.DataFrame, fmt: str, latest: bool = True) -> str:
    """Return the records of ``frame`` (a ``ResultStore.read()``) as text in format ``fmt`` (see ``FORMATS``).

    ``latest``: only the latest record per (suite, case_id), ok records preferred (as the report); else all.
    """
    if fmt not in FORMATS:
        raise HarnessError(f"unknown export format {fmt!r}; formats: {', '.join(FORMATS)}")
    return FORMATS[fmt](select_records(frame, latest))


