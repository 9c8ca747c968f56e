"""Hostile names and error texts (rich markup, ANSI escapes, other controls) on the terminal and in stored records:
shown as text, never read as markup or obeyed by the terminal (issue 19)."""

from __future__ import annotations

import dataclasses
import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
from rich.console import Console

from harness.cli import main
from harness.runner import run_suite
from harness.runner.tasks import CaseTask
from harness.store import ResultStore
from harness.suite import parse_suite
from harness.terminal import markup_text, visible_controls

#: A terminal query (the terminal types its answer into the input), which rich itself never writes.
DSR = "\x1b[6n"
#: A suite name with rich markup, an emoji code, HTML and an escape sequence.
EVIL_NAME = f"x[/bold]y <i>&:thumbs_up: {DSR}"


@pytest.mark.parametrize(("text", "shown"), [
    ("a\x1b[31mred", "a\\x1b[31mred"),
    ("cr\roverwrite", "cr\\x0doverwrite"),
    ("nul\x00 bel\x07 bs\x08 del\x7f", "nul\\x00 bel\\x07 bs\\x08 del\\x7f"),
    ("c1 csi\x9b6n", "c1 csi\\x9b6n"),
    ("bidi \u202eevil\u202c \u2066x\u2069", "bidi \\u202eevil\\u202c \\u2066x\\u2069"),
    ("kept: tab\tnewline\nünïcode ✓ [b]", "kept: tab\tnewline\nünïcode ✓ [b]"),
])
def test_visible_controls_writes_each_control_as_its_escape(text, shown):
    assert visible_controls(text) == shown


@pytest.mark.parametrize("text", ["x[/bold]y", "[red]not red[/red]", "trailing backslash\\", "\\[b] [@click]",
                                  f"esc {DSR} end"])
def test_markup_text_prints_the_text_itself(text):
    console = Console(file=io.StringIO(), width=200, emoji=False)
    console.print(f"<[bold]{markup_text(text)}[/]>", highlight=False, soft_wrap=True)  # a tag right after it
    assert console.file.getvalue() == f"<{visible_controls(text)}>\n"


class FakeExecutor:
    """Answers every case at once with ``outcome``, without a worker process."""

    name = "fake"

    def __init__(self, outcome: dict[str, Any]) -> None:
        self.outcome = outcome

    def start(self) -> dict[str, Any]:
        return {"env_hostname": "test"}

    def run(self, tasks: list[CaseTask]) -> Iterator[tuple[CaseTask, dict[str, Any]]]:
        for task in tasks:
            yield task, dict(self.outcome)

    def stop(self) -> None:
        pass


def test_run_suite_shows_names_and_errors_as_text_and_stores_errors_shown(tmp_path):
    suite = parse_suite("matrix:\n  model: [tiny_cnn]\n  resolution: [32]\nmetrics: [complexity]\n")
    suite = dataclasses.replace(suite, name=EVIL_NAME)
    error = f"RuntimeError: [/red]boom {DSR}\r\nTraceback tail \x1b]0;title\x07"
    outcome = {"status": "failed", "error": error, "failure_class": "exception", "values": {}, "duration_s": 0.1}
    console = Console(file=io.StringIO(), force_terminal=True, width=300)  # a terminal: the progress bar draws
    summary = run_suite(suite, tmp_path, console=console, executor=FakeExecutor(outcome), show_progress=True)
    assert summary.failed == 1
    shown = "RuntimeError: [/red]boom \\x1b[6n\\x0d\nTraceback tail \\x1b]0;title\\x07"
    assert ResultStore(tmp_path).read()["error"].tolist() == [shown]
    output = console.file.getvalue()
    assert DSR not in output and "\x1b]0;" not in output and "\r\n" not in output
    assert "tiny_cnn b1 32px cpu fp32" in output and "RuntimeError: [/red]boom \\x1b[6n\\x0d" in output
    assert f"{visible_controls(EVIL_NAME)}: 1 record(s) of run" in output
    assert f"{visible_controls(EVIL_NAME)}: tiny_cnn b1 32px cpu fp32" in output  # the progress bar's description


def test_cli_runs_a_suite_with_a_hostile_name_to_its_report(write_suite, tmp_path, capsys):
    name = json.dumps(EVIL_NAME)  # YAML's double-quoted scalar reads JSON's escapes (\u001b)
    path = write_suite(f"name: {name}\nmatrix:\n  model: [tiny_cnn]\n  resolution: [32]\nmetrics: [complexity]\n")
    assert main(["validate", str(path)]) == 0
    out = capsys.readouterr().out
    assert "ok — suite 'x[/bold]y <i>&:thumbs_up: \\x1b[6n', 1 case(s)" in out and DSR not in out
    reports = tmp_path / "reports"
    assert main(["run", str(path), "--results", str(tmp_path / "results"), "--report", str(reports)]) == 0
    captured = capsys.readouterr()
    assert DSR not in captured.out + captured.err and "👍" not in captured.out + captured.err
    assert f"{visible_controls(EVIL_NAME)}: 1 ok in" in captured.out
    assert f"report: {reports / 'index.html'}" in captured.out
    pages = [p.read_text(encoding="utf-8") for p in reports.glob("*.html")]
    assert (reports / "index.html").exists() and len(pages) >= 3  # leaderboard, the suite's page, the run's page
    assert any("x[/bold]y &lt;i&gt;&amp;:thumbs_up: \\x1b[6n" in page for page in pages if "tiny_cnn" in page)
    assert not any("\x1b" in page for page in pages)  # the escape is shown in the pages, not sent raw


def test_cli_errors_quote_the_users_text_literally(capsys):
    assert main(["list", "models", "[/nope]"]) == 2
    assert "no model matches '[/nope]'" in capsys.readouterr().err
    assert main(["bench", f"[/b]ad{DSR}"]) == 2
    err = capsys.readouterr().err
    assert "unknown model '[/b]ad\\x1b[6n'; see `harness list models`" in err and DSR not in err


def test_cli_env_shows_a_hostile_hostname_as_text(monkeypatch, capsys):
    monkeypatch.setattr("harness.env.capture", lambda: {"env_hostname": f"[bold]h[/] {DSR}:thumbs_up:"})
    assert main(["env"]) == 0
    assert capsys.readouterr().out == "        hostname: [bold]h[/] \\x1b[6n:thumbs_up:\n"
