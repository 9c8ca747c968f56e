"""`harness compare`: the statistical rule (A/A trials, shifts), pairing, specs, the CLI and the regressions page."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from harness.case import Case
from harness.cli import build_parser, main
from harness.compare import (
    CHANGED,
    IMPROVED,
    INCONCLUSIVE,
    MISSING_IN_BASELINE,
    MISSING_IN_CANDIDATE,
    NOT_COMPARABLE,
    REFERENCE,
    REGRESSED,
    TOO_NOISY,
    UNCHANGED,
    VERDICTS,
    cases_with,
    compare,
    judge_latency,
    load_side,
    parse_verdicts,
    verdict_counts,
)
from harness.errors import HarnessError
from harness.report.regressions import render_regressions
from harness.store import ResultStore
from tests.records import COLUMNS, make_record

STORE_COLUMNS = COLUMNS | {"acc_top1": "float64"}


def _samples(seed: int, median_ms: float = 10.0, noise: float = 0.01, n: int = 30) -> list[float]:
    """Lognormal latency samples (ms) around ``median_ms`` with relative spread ``noise``."""
    rng = np.random.default_rng(seed)
    return list(median_ms * np.exp(rng.normal(0.0, noise, n)))


def _rec(case: Case, samples: list[float] | None, **values) -> dict:
    if samples is not None:
        values |= {"latency_ms_samples": samples, "latency_ms_median": float(np.median(samples))}
    return make_record(case, **values)


def _frames(pairs, **values):
    """Return (baseline, candidate) frames, one case per (baseline samples, candidate samples) pair."""
    base, cand = [], []
    for i, (b, c) in enumerate(pairs):
        case = Case("resnet18", batch=i + 1)
        base.append(_rec(case, b, run_id="base", **values))
        cand.append(_rec(case, c, run_id="cand", minutes=1, **values))
    return pd.DataFrame(base), pd.DataFrame(cand)


# ---------------------------------------------------------------------------------------- the rule


def test_a_a_trials_are_not_flagged():
    # 100 A/A trials: both sides from the same lognormal around 10 ms, noise 1% .. 5%, 30 samples each.
    pairs = []
    for seed in range(100):
        noise = 0.01 + 0.04 * seed / 99
        rng = np.random.default_rng(seed)
        pairs.append((list(10 * np.exp(rng.normal(0, noise, 30))), list(10 * np.exp(rng.normal(0, noise, 30)))))
    result = compare(*_frames(pairs))
    counts = Counter(result["verdict"])
    print(f"A/A verdicts over 100 trials: {dict(counts)}")
    assert len(result) == 100
    assert counts[UNCHANGED] + counts[INCONCLUSIVE] >= 95
    assert counts[UNCHANGED] >= 80  # and mostly a confident "no change", not a shrug


@pytest.mark.parametrize(("shift", "verdict"), [(1.10, REGRESSED), (0.90, IMPROVED)])
def test_a_ten_percent_shift_is_detected_every_time(shift, verdict):
    pairs = [(_samples(seed), _samples(1000 + seed, median_ms=10.0 * shift)) for seed in range(20)]
    result = compare(*_frames(pairs))
    print(f"{shift - 1:+.0%} shift: {dict(Counter(result['verdict']))}")
    assert (result["verdict"] == verdict).all()
    assert np.allclose(result["delta_rel"], shift - 1, atol=0.01)
    assert (result["p_value"] < 0.01).all() and (result["n_baseline"] == 30).all()
    low, high = sorted([shift - 1, 0.0])
    assert ((result["ci_low"] > low - 0.02) & (result["ci_high"] < high + 0.02)).all()


def test_small_significant_change_is_unchanged_and_noise_is_inconclusive():
    precise = judge_latency(_samples(1, noise=0.002, n=200), _samples(2, median_ms=10.2, noise=0.002, n=200))
    assert precise.verdict == UNCHANGED and precise.p_value < 0.01 and "within ±5%" in precise.reason
    noisy = judge_latency(_samples(3, noise=0.15), _samples(4, noise=0.15))
    assert noisy.verdict == INCONCLUSIVE and "too noisy" in noisy.reason
    few = judge_latency([10.0, 10.1, 9.9], _samples(5))
    assert few.verdict == INCONCLUSIVE and "too few samples (3 baseline, 30 candidate" in few.reason
    assert few.baseline_ms == pytest.approx(10.0) and few.p_value is None


@pytest.mark.parametrize("side", ["baseline", "candidate"])
def test_a_noisy_record_is_too_noisy_to_judge_even_when_the_test_would_flag_it(side):
    base, cand = _frames([(_samples(1), _samples(2, median_ms=40.0))])  # 4x slower: the test says regressed
    assert compare(base, cand)["verdict"].tolist() == [REGRESSED]
    noisy = {"latency_noisy": True, "latency_noisy_reason": "3 samples < min_repeats 10"}
    if side == "baseline":
        base = base.assign(**noisy)
    else:
        cand = cand.assign(**noisy)
    row = compare(base, cand).iloc[0]
    assert row["verdict"] == TOO_NOISY
    assert row["reason"].startswith(f"too noisy to judge: the {side}'s timing is noisy (3 samples < min_repeats 10)")
    assert "slower" in row["reason"] and row["delta_rel"] == pytest.approx(3.0, rel=0.1)  # the change is still shown
    quiet = compare(base.assign(latency_noisy=False), cand.assign(latency_noisy=False))
    assert quiet["verdict"].tolist() == [REGRESSED]
    assert parse_verdicts("too-noisy") == [TOO_NOISY]


def test_verdict_is_reproducible_and_counts_cover_every_verdict():
    b, c = _samples(7, noise=0.04), _samples(8, median_ms=10.3, noise=0.04)
    assert judge_latency(b, c) == judge_latency(b, c)
    counts = verdict_counts(compare(*_frames([(b, c)])))
    assert tuple(counts) == VERDICTS and sum(counts.values()) == 1


# ---------------------------------------------------------------------------------------- pairing


def test_different_protocol_or_environment_is_not_comparable():
    case = Case("resnet18")
    base = pd.DataFrame([_rec(case, _samples(0), protocol_json=json.dumps({"latency": {"min_time_s": 1.0}}))])
    cand = pd.DataFrame([_rec(case, _samples(1), protocol_json=json.dumps({"latency": {"min_time_s": 2.0}}),
                              minutes=1)])
    (row,) = compare(base, cand).to_dict(orient="records")
    assert row["verdict"] == NOT_COMPARABLE and "latency protocol differs: min_time_s 1.0 → 2.0" in row["reason"]
    assert row["baseline_ms"] == pytest.approx(10.0, rel=0.02) and row["n_candidate"] == 30  # shown all the same

    cand = pd.DataFrame([_rec(case, _samples(1), env_torch="2.y", minutes=1)])
    base = pd.DataFrame([_rec(case, _samples(0))])
    (row,) = compare(base, cand).to_dict(orient="records")
    assert row["verdict"] == NOT_COMPARABLE and row["reason"] == "env_torch differs: 2.x → 2.y"
    (row,) = compare(base, cand, env_keys=["env_cpu", "env_gpu"]).to_dict(orient="records")
    assert row["verdict"] == UNCHANGED


def test_missing_and_failed_cases_are_listed():
    a, b, c = Case("resnet18"), Case("resnet50"), Case("mobilenetv2_100")
    base = pd.DataFrame([_rec(a, _samples(0)), _rec(b, _samples(1))])
    cand = pd.DataFrame([_rec(b, _samples(2), run_id="r2", minutes=1), _rec(c, _samples(3), run_id="r2", minutes=1),
                         _rec(a, None, run_id="r2", minutes=1, status="failed", error="RuntimeError: oom\ntrace")])
    result = compare(base, cand).set_index("label")
    assert result.loc[c.label, "verdict"] == MISSING_IN_BASELINE
    assert result.loc[c.label, "reason"] == "no record of this case in the baseline"
    assert result.loc[a.label, "verdict"] == MISSING_IN_CANDIDATE
    assert result.loc[a.label, "reason"] == "no ok record in the candidate (latest: failed — RuntimeError: oom)"
    assert result.loc[b.label, "verdict"] == UNCHANGED


def test_latest_ok_record_per_side_is_compared():
    case = Case("resnet18")
    base = pd.DataFrame([_rec(case, _samples(0, median_ms=20.0), run_id="old"), _rec(case, _samples(1), minutes=5)])
    cand = pd.DataFrame([_rec(case, _samples(2, median_ms=11.0), minutes=9),
                         _rec(case, None, minutes=10, status="failed", error="boom")])
    (row,) = compare(base, cand).to_dict(orient="records")
    assert row["verdict"] == REGRESSED and row["baseline_run_id"] == "run-a"


def test_counts_are_compared_exactly():
    case = Case("resnet18")
    base = pd.DataFrame([make_record(case, params=11_689_512, macs=1_814_083_944)])
    cand = pd.DataFrame([make_record(case, params=11_689_512, macs=1_900_000_000, minutes=1)])
    (row,) = compare(base, cand).to_dict(orient="records")
    assert row["verdict"] == CHANGED and "macs +4.7% (changed)" in row["reason"]
    assert [m["verdict"] for m in row["metrics"]] == [UNCHANGED, CHANGED]
    # same latency, different count: changed; a latency regression leads, the count is still found by cases_with
    base = pd.DataFrame([_rec(case, _samples(0), macs=1)])
    cand = pd.DataFrame([_rec(case, _samples(1), macs=2, minutes=1)])
    result = compare(base, cand)
    assert result.loc[0, "verdict"] == CHANGED and result.loc[0, "reason"].startswith("latency unchanged (")
    cand = pd.DataFrame([_rec(case, _samples(1, median_ms=12.0), macs=2, minutes=1)])
    result = compare(base, cand)
    assert result.loc[0, "verdict"] == REGRESSED and len(cases_with(result, [CHANGED])) == 1


def test_parse_verdicts():
    assert parse_verdicts("regressed, not-comparable,missing") == [REGRESSED, NOT_COMPARABLE, MISSING_IN_BASELINE,
                                                                    MISSING_IN_CANDIDATE]
    assert parse_verdicts("") == []
    with pytest.raises(ValueError, match="unknown verdict 'worse'"):
        parse_verdicts("worse")


# ---------------------------------------------------------------------------------------- specs


@pytest.fixture
def store(tmp_path):
    """Two runs of two cases: r1 (baseline), r2 (resnet18 10% slower, resnet50 the same)."""
    store = ResultStore(tmp_path / "results")
    for i, model in enumerate(("resnet18", "<script>alert(1)</script>")):
        store.append(_rec(Case(model), _samples(i), run_id="20261123T100000Z-aaaaaa"), STORE_COLUMNS)
        shift = 1.1 if model == "resnet18" else 1.0
        store.append(_rec(Case(model), _samples(10 + i, median_ms=10 * shift), run_id="20261124T100000Z-bbbbbb",
                          minutes=60), STORE_COLUMNS)
    return store


def test_run_id_and_directory_specs_resolve(store, tmp_path):
    run = load_side("20261123T100000Z-aaaaaa", store.root)
    assert set(run["run_id"]) == {"20261123T100000Z-aaaaaa"} and len(run) == 2
    assert set(load_side("20261124T", store.root)["run_id"]) == {"20261124T100000Z-bbbbbb"}  # unique prefix
    assert len(load_side(str(store.root), "elsewhere")) == 4
    with pytest.raises(HarnessError, match=r"no results directory or run id 'nope' in .*results/ — known run ids: "
                       r"20261124T100000Z-bbbbbb, 20261123T100000Z-aaaaaa"):
        load_side("nope", store.root)
    with pytest.raises(HarnessError, match="ambiguous"):
        load_side("2026112", store.root)
    with pytest.raises(HarnessError, match="can only be the baseline"):
        load_side("published", store.root)
    (tmp_path / "empty").mkdir()
    with pytest.raises(HarnessError, match="no records in results directory"):
        load_side(str(tmp_path / "empty"), store.root)


def test_published_baseline_gives_reference_deltas(tmp_path):
    store = ResultStore(tmp_path / "results")
    published = json.dumps([
        {"metric": "params", "value": 11.7e6, "source": "He et al. 2016, Table 1", "convention": ""},
        {"metric": "acc_top1", "value": 0.80, "source": "timm", "convention": "ImageNet val", "comparable": False}])
    store.append(_rec(Case("resnet18"), _samples(0), params=11_689_512, acc_top1=0.70, published_json=published),
                 STORE_COLUMNS)
    store.append(_rec(Case("resnet50"), _samples(1), params=25_557_032), STORE_COLUMNS)
    candidate = load_side("run-a", store.root)
    result = compare(load_side("published", store.root, candidate=candidate), candidate).set_index("label")
    row = result.loc[Case("resnet18").label]
    assert row["verdict"] == REFERENCE and pd.isna(row["p_value"])
    metrics = {m["metric"]: m for m in row["metrics"]}
    assert metrics["params"]["delta_rel"] == pytest.approx(11_689_512 / 11.7e6 - 1)
    assert metrics["acc_top1"]["delta_rel"] == pytest.approx(-0.125) and "not comparable" in metrics["acc_top1"]["note"]
    assert "params -0.1%" in row["reason"] and "He et al. 2016" in row["reason"]
    assert result.loc[Case("resnet50").label, "verdict"] == MISSING_IN_BASELINE
    nothing = pd.DataFrame([_rec(Case("resnet50"), _samples(1))])
    with pytest.raises(HarnessError, match="has a published value"):
        load_side("published", store.root, candidate=nothing)


# ---------------------------------------------------------------------------------------- CLI and page


def test_cli_fail_on_regressed(store, capsys):
    root = str(store.root)
    assert main(["compare", "20261123T100000Z-aaaaaa", "20261124T100000Z-bbbbbb", "--results", root,
                 "--fail-on", "regressed"]) == 1
    text = capsys.readouterr()
    assert "regressed" in text.out and "1 regressed, 1 unchanged" in text.out and "fail:" in text.err
    # the same run against itself: nothing regressed
    assert main(["compare", "20261124T100000Z-bbbbbb", "20261124T100000Z-bbbbbb", "--results", root,
                 "--fail-on", "regressed"]) == 0
    # without --fail-on a regression does not fail
    assert main(["compare", "20261123T100000Z-aaaaaa", "20261124T100000Z-bbbbbb", "--results", root]) == 0


def test_cli_json_and_html(store, tmp_path, capsys):
    page = tmp_path / "pages" / "regressions.html"
    assert main(["compare", "20261123T100000Z-aaaaaa", "20261124T100000Z-bbbbbb", "--results", str(store.root),
                 "--json", "--html", str(page)]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["verdict"] for r in rows} == {REGRESSED, UNCHANGED}
    assert {"label", "baseline_ms", "candidate_ms", "delta_rel", "p_value", "n_baseline", "reason"} <= set(rows[0])
    html = page.read_text()
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert html.index('id="regressed"') < html.index('id="unchanged"')
    assert "<link" not in html and "http" not in html  # self-contained
    assert not list(page.parent.glob(".*tmp"))


def test_cli_bad_input_exits_2(store, capsys):
    root = str(store.root)
    assert main(["compare", "nope", "20261124T100000Z-bbbbbb", "--results", root]) == 2
    assert "no results directory or run id 'nope'" in capsys.readouterr().err
    assert main(["compare", "20261123T100000Z-aaaaaa", "published", "--results", root]) == 2
    assert main(["compare", "20261123T100000Z-aaaaaa", "20261124T100000Z-bbbbbb", "--results", root,
                 "--fail-on", "worse"]) == 2
    assert main(["compare", "20261123T100000Z-aaaaaa", "20261124T100000Z-bbbbbb", "--results", root,
                 "--alpha", "2"]) == 2
    assert main(["compare", "20261123T100000Z-aaaaaa", "20261124T100000Z-bbbbbb", "--results", root,
                 "--ignore-env", "ram"]) == 2


def test_cli_help_explains_the_rule(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["compare", "--help"])
    text = capsys.readouterr().out
    assert "Mann-Whitney" in text and "--min-effect" in text and "--fail-on" in text


def test_regressions_page_orders_sections(tmp_path):
    pairs = [(_samples(0), _samples(1)), (_samples(2), _samples(3, median_ms=12.0)),
             (_samples(4), _samples(5, median_ms=8.0)), (_samples(6, noise=0.2), _samples(7, noise=0.2))]
    result = compare(*_frames(pairs))
    page = render_regressions(result, tmp_path / "r.html", "base", "cand")
    html = page.read_text()
    positions = [html.index(f'id="{v}"') for v in ("regressed", "improved", "inconclusive", "unchanged")]
    assert positions == sorted(positions)
    assert "Baseline median (ms)" in html and "α = 0.01" in html


def test_latest_and_latest_tilde_n_name_runs_by_recency_within_a_suite(store):
    assert set(load_side("latest", store.root)["run_id"]) == {"20261124T100000Z-bbbbbb"}
    assert set(load_side("latest~1", store.root)["run_id"]) == {"20261123T100000Z-aaaaaa"}
    store.append(_rec(Case("resnet18"), _samples(3), run_id="other-suite-run", minutes=120) | {"suite": "other"},
                 STORE_COLUMNS)
    assert set(load_side("latest", store.root)["run_id"]) == {"other-suite-run"}
    assert set(load_side("latest", store.root, suite="demo")["run_id"]) == {"20261124T100000Z-bbbbbb"}
    with pytest.raises(HarnessError, match=r"'latest~1': .* holds 1 run\(s\) of suite 'other', so there is no run 1"):
        load_side("latest~1", store.root, suite="other")


def test_nightly_compare_fails_on_a_regression_and_passes_on_the_first_night(store, capsys):
    root = str(store.root)
    nightly = ["--results", root, "--suite", "demo", "--fail-on", "regressed,missing-in-candidate", "--no-baseline-ok"]
    assert main(["compare", "latest~1", "latest", *nightly]) == 1  # resnet18 is 10% slower tonight
    assert "regressed" in capsys.readouterr().out
    first_night = ["--results", root, "--suite", "demo", "--no-baseline-ok"]
    assert main(["compare", "latest~2", "latest", *first_night]) == 0
    assert "nothing to compare" in capsys.readouterr().out
    assert main(["compare", "latest~2", "latest", "--results", root, "--suite", "demo"]) == 2  # without the flag


def test_confirm_measures_the_flagged_cases_again_and_fails_only_if_they_regress_twice(write_suite, tmp_path,
                                                                                       capsys):
    import pyarrow.parquet as pq

    from harness.runner import run_suite
    from harness.runner.run import record_columns
    from harness.suite import load_suite

    suite_path = write_suite("name: night\nmatrix:\n  model: [tiny_cnn]\n  resolution: [16, 24]\nmetrics:\n"
                             "  latency: {warmup_min: 1, warmup_max_s: 0.2, min_repeats: 20, min_time_s: 0.1, "
                             "max_time_s: 0.5}\n")
    first = ResultStore(tmp_path / "first")
    run_suite(load_suite(suite_path), first.root, run_id="night-1", show_progress=False)
    results = tmp_path / "results"
    store = ResultStore(results)
    nights = [record for path in first.part_files() for record in pq.read_table(path).to_pylist()]
    for record in nights:  # a night that looks 5 times slower, without being so
        record["latency_noisy"] = False  # a noisy record is "too noisy" to judge: not this test's point
        store.append(record, record_columns())
        store.append(record | {"run_id": "night-2", "timestamp_utc": record["timestamp_utc"] + pd.Timedelta("1s"),
                               "latency_ms_samples": [5 * v for v in record["latency_ms_samples"]],
                               "latency_ms_median": 5 * record["latency_ms_median"]}, record_columns())
    gate = ["compare", "latest~1", "latest", "--results", str(results), "--fail-on", "regressed", "--min-effect",
            "1.0"]  # sub-millisecond timings of a tiny model on a shared machine: only a doubling counts
    assert main(gate) == 1
    assert main([*gate, "--confirm", str(tmp_path / "none.yaml")]) == 2
    capsys.readouterr()
    assert main([*gate, "--confirm", str(suite_path)]) == 0
    err = capsys.readouterr().err
    assert "confirm: measuring 2 of 2 flagged case(s) again (suite night, run night-2)" in err
    assert "confirm: 2 case(s) flagged or too noisy and measured again; 0 still with a verdict in --fail-on" in err
    tonight = store.read()
    assert (tonight["run_id"] == "night-2").sum() == 4  # the first records are kept beside the new ones


def test_confirm_measures_the_cases_too_noisy_to_judge_again(write_suite, tmp_path, capsys):
    import pyarrow.parquet as pq

    from harness.runner import run_suite
    from harness.runner.run import record_columns
    from harness.suite import load_suite

    suite_path = write_suite("name: night\nmatrix:\n  model: [tiny_cnn]\n  resolution: [16]\nmetrics:\n"
                             "  latency: {warmup_min: 1, warmup_max_s: 0.2, min_repeats: 20, min_time_s: 0.1, "
                             "max_time_s: 0.5}\n")
    first = ResultStore(tmp_path / "first")
    run_suite(load_suite(suite_path), first.root, run_id="night-1", show_progress=False)
    store = ResultStore(tmp_path / "results")
    for record in (r for path in first.part_files() for r in pq.read_table(path).to_pylist()):
        store.append(record | {"latency_noisy": False}, record_columns())
        store.append(record | {"run_id": "night-2", "timestamp_utc": record["timestamp_utc"] + pd.Timedelta("1s"),
                               "latency_noisy": True, "latency_noisy_reason": "IQR/median 0.90 > 0.1"},
                     record_columns())
    gate = ["compare", "latest~1", "latest", "--results", str(store.root), "--fail-on", "regressed"]
    assert main(gate) == 0
    assert "1 too noisy" in capsys.readouterr().out
    main([*gate, "--confirm", str(suite_path)])
    err = capsys.readouterr().err
    assert "confirm: measuring 1 of 1 flagged case(s) again (suite night, run night-2)" in err
    assert "confirm: 1 case(s) flagged or too noisy and measured again" in err
    assert (store.read()["run_id"] == "night-2").sum() == 2
