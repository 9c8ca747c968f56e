"""Judging tonight against each case's history of nights (harness.history) and its use by compare and the page."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from harness.case import Case
from harness.cli import main
from harness.compare import compare
from harness.history import Night, case_series, change_points, judge_history, judge_series, noise_of
from harness.history_calibration import replay, simulate_detection, simulate_false_alarms
from harness.report.regressions import render_regressions
from harness.store import ResultStore
from tests.records import COLUMNS, make_record

HISTORY_COLUMNS = COLUMNS | {"latency_ms_ci_low": "float64", "latency_ms_ci_high": "float64",
                             "latency_contended": "bool", "latency_noisy": "bool"}


def _nights(values_ms, noise_rel: float = 0.005, left_out: dict[int, str] | None = None) -> list[Night]:
    left_out = left_out or {}
    return [Night(f"run{i:02d}", "", f"sha{i:02d}", float(v), noise_rel, left_out.get(i, ""))
            for i, v in enumerate(values_ms)]


def _noisy(n: int, seed: int = 0, sigma: float = 0.01, level: float = 10.0) -> np.ndarray:
    return level * np.exp(np.random.default_rng(seed).normal(0.0, sigma, n))


# ------------------------------------------------------------------------------------------------ the rules


@pytest.mark.parametrize("seed", range(20))
def test_a_steady_series_is_unchanged(seed):
    judgement = judge_series(_nights(_noisy(20, seed)))
    assert judgement is not None and judgement.verdict == "unchanged", judgement


def test_a_step_that_held_two_nights_is_a_change_point_with_its_levels_and_commits():
    values = np.concatenate([_noisy(12, 1), _noisy(2, 2, level=11.5)])  # +15% for the last two nights
    judgement = judge_series(_nights(values))
    assert judgement.verdict == "regressed" and judgement.rule == "change point"
    assert judgement.change_at == 12
    assert judgement.delta_rel == pytest.approx(0.15, abs=0.03)
    assert judgement.level_before_ms == pytest.approx(10.0, rel=0.02)
    assert judgement.commit_range() == ("sha11", "sha12")
    assert "held 2 nights" in judgement.reason


def test_a_one_night_jump_is_an_excursion_and_an_old_change_is_not_flagged_again():
    jump = judge_series(_nights(np.append(_noisy(12, 3), 13.0)))
    assert jump.verdict == "regressed" and jump.rule == "excursion" and jump.change_at is None
    faster = judge_series(_nights(np.append(_noisy(12, 3), 7.0)))
    assert faster.verdict == "improved"
    settled = judge_series(_nights(np.concatenate([_noisy(10, 4), _noisy(8, 5, level=12.0)])))
    assert settled.verdict == "unchanged"  # the step is 8 nights old: tonight is judged against the new level
    assert settled.level_before_ms == pytest.approx(12.0, rel=0.02)


def test_a_change_smaller_than_the_minimum_effect_is_not_flagged():
    values = np.concatenate([np.full(10, 10.0), np.full(3, 10.3)])  # +3%, as clear as can be
    judgement = judge_series(_nights(values, noise_rel=0.001))
    assert judgement.verdict == "unchanged"
    assert judge_series(_nights(values, noise_rel=0.001), min_effect=0.02).verdict == "regressed"


def test_the_noise_floor_is_the_largest_of_between_within_and_the_floor():
    flat = np.zeros(10)
    assert noise_of(flat, np.full(10, np.nan)) == pytest.approx(0.005)
    assert noise_of(flat, np.full(10, 0.03)) == pytest.approx(0.03)
    wobbly = np.log(_noisy(200, 6, sigma=0.04))
    assert noise_of(wobbly, np.full(200, 0.001)) == pytest.approx(0.04, rel=0.15)


def test_change_points_need_two_nights_a_side():
    assert change_points(np.array([0.0, 0.0, 0.0]), 0.01) == []
    assert change_points(np.array([0.0, 0.0, 0.0, 1.0]), 0.01) == [2]  # one high night makes a segment of two
    assert change_points(np.array([0.0, 0.0, 0.0, 1.0, 1.0]), 0.01) == [3]
    assert judge_series(_nights([10.0] * 8 + [13.0])).rule == "excursion"  # that segment is no level


def test_too_short_a_history_or_tonight_left_out_gives_no_judgement():
    assert judge_series(_nights(_noisy(6))) is None  # 5 nights before tonight, 6 needed
    assert judge_series(_nights(_noisy(7))) is not None
    assert judge_series(_nights(_noisy(12), left_out={11: "contended"})) is None
    busy = judge_series(_nights(np.append(_noisy(12, 7), [30.0, 10.0]), left_out={12: "contended"}))
    assert busy.verdict == "unchanged" and 12 not in busy.used


# ------------------------------------------------------------------------------------------- from records


def _record(case: Case, night: int, median_ms: float, **values) -> dict:
    samples = list(median_ms * np.exp(np.random.default_rng(night).normal(0, 0.01, 20)))
    values.setdefault("minutes", 60 * night)
    return make_record(case, suite="nightly", run_id=f"20261101T{night:02d}0000Z-aaaaaa",
                       latency_ms_samples=samples, latency_ms_median=median_ms, latency_ms_ci_low=median_ms * 0.99,
                       latency_ms_ci_high=median_ms * 1.01, env_git_sha=f"sha{night:02d}", **values)


def _history_store(root, slow_from: int = 99, nights: int = 12) -> ResultStore:
    store = ResultStore(root)
    for night in range(nights):
        for i, model in enumerate(("resnet18", "resnet50")):
            level = 10.0 * (i + 1) * (1.12 if model == "resnet18" and night >= slow_from else 1.0)
            store.append(_record(Case(model), night, float(_noisy(1, 100 * night + i, level=level)[0])),
                         HISTORY_COLUMNS)
    return store


def test_case_series_leaves_out_contended_nights_and_other_environments():
    r18 = Case("resnet18")
    records = pd.DataFrame([_record(r18, 0, 10.0), _record(r18, 1, 10.0, latency_contended=True),
                            _record(r18, 2, 10.0, env_torch="1.0"), _record(r18, 3, 10.0),
                            _record(r18, 3, 11.0, minutes=181)])  # measured again that night: the latest counts
    runs = sorted(records["run_id"].unique())
    nights = case_series(records, runs, ["env_torch"])[("nightly", r18.case_id)]
    assert [n.left_out for n in nights] == ["", "contended", "env_torch differs", ""]
    assert nights[-1].value_ms == 11.0 and nights[0].noise_rel == pytest.approx(0.01 / 1.96, rel=1e-3)
    assert case_series(records, [*runs[:3], "other"], ["env_torch"]) == {}  # not measured tonight


def test_compare_takes_the_history_verdict_and_the_page_plots_it(tmp_path):
    store = _history_store(tmp_path / "results", slow_from=10)
    from harness.history import read_history

    runs, records = read_history(str(store.root), "nightly", sorted(records_runs(store))[-1], 30)
    assert len(runs) == 12
    history = judge_history(records, runs, ["env_cpu"])
    tonight, last_night = (store.read(suite="nightly", run_id=r) for r in (runs[-1], runs[-2]))
    comparison = compare(last_night, tonight, history=history)
    by_model = {row["label"].split()[0]: row for _, row in comparison.iterrows()}
    slow, same = by_model["resnet18"], by_model["resnet50"]
    assert slow["verdict"] == "regressed" and slow["history"]["change_at"] == 10
    assert "history of 12 nights" in slow["reason"] and "the previous run alone: unchanged" in slow["reason"]
    assert same["verdict"] == "unchanged" and same["history"]["rule"] == ""
    page = render_regressions(comparison, tmp_path / "regressions.html", runs[-2], runs[-1]).read_text()
    assert page.count('class="history"') == 1 and "Change point at run " + runs[10] in page
    assert "commits sha09..sha10" in page and "<svg" in page


def records_runs(store: ResultStore) -> set[str]:
    return set(store.read()["run_id"])


def test_a_short_history_keeps_the_two_run_verdict_and_says_so(tmp_path):
    store = _history_store(tmp_path / "results", nights=3)
    code = main(["compare", "latest~1", "latest", "--results", str(store.root), "--suite", "nightly", "--history",
                 "--json"])
    assert code == 0


def test_cli_history_fails_tonight_on_a_change_that_held_two_nights(tmp_path, capsys):
    store = _history_store(tmp_path / "results", slow_from=10)
    args = ["compare", "latest~1", "latest", "--results", str(store.root), "--suite", "nightly", "--fail-on",
            "regressed"]
    assert main(args) == 0  # against last night alone: both slow, no change
    assert main([*args, "--history", "30"]) == 1
    out = capsys.readouterr().out
    assert "history of 12 nights" in out and "slower since 20261101T100000Z-aaaaaa" in out
    assert main([*args, "--history", "1"]) == 2
    assert "N ≥ 2" in capsys.readouterr().err


def test_cli_history_needs_the_candidate_to_be_one_run(tmp_path, capsys):
    store = _history_store(tmp_path / "results", nights=6)
    assert main(["compare", str(store.root), str(store.root), "--history"]) == 2
    assert "judges one run" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- calibration


def test_replay_judges_each_night_from_the_nights_before_it(tmp_path):
    store = _history_store(tmp_path / "results", slow_from=12, nights=14)
    records = store.read()
    runs = sorted(set(records["run_id"]))
    result = replay(records, runs, ["env_cpu"])
    judged = result.verdicts[result.verdicts["verdict"] != ""]
    assert judged["night"].min() == 6  # six nights before the first judged
    assert result.rates(runs[:12]).regressed == 0
    caught = result.detected_within(runs[12:])
    assert (caught.judged, caught.regressed) == (2, 1)  # resnet18 slowed, resnet50 did not


def test_synthetic_rates_are_counted():
    quiet = simulate_false_alarms(series=3, nights=12, sigma=0.01, drift=0.0, within=0.005)
    assert quiet.judged == 3 * 6 and quiet.regressed <= 1
    step = simulate_detection(0.3, series=4, history=10, sigma=0.01, drift=0.0, within=0.005)
    assert step.judged == 4 and step.regressed == 4 and math.isclose(step.regressed_rate, 1.0)


def test_the_calibration_tool_replays_a_store(tmp_path):
    import subprocess
    import sys

    store = _history_store(tmp_path / "results", slow_from=12, nights=14)
    done = subprocess.run([sys.executable, "tools/calibrate_nightly.py", "replay", "--results", str(store.root),
                           "--slow", "2"], capture_output=True, text=True, check=True)
    assert "12 A/A nights, 2 slowed nights" in done.stdout
    assert "A/A case-nights judged: 12; regressed: 0" in done.stdout
    assert "flagged regressed within 2 nights: 1 (50%)" in done.stdout
