"""A/B interleaving of two environments (harness ab): the rule on paired rounds, and real workers end to end."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

import harness.ab
from harness.ab import judge_pairs, looks, run_ab, window_options
from harness.case import Case
from harness.cli import main

SUITE = """
name: ab-demo
defaults: {device: cpu, resolution: 16}
matrix:
  model: [tiny_cnn]
  batch: [1, 2]
metrics:
  latency: {warmup_max_s: 0.2}
"""


def _pairs(seed: int, n: int = 10, ratio: float = 1.0, noise: float = 0.02) -> list[float]:
    """Each pair's log ratio: the change plus the offset of that pair's two processes."""
    return list(np.log(ratio) + np.random.default_rng(seed).normal(0, noise, n))


def test_pairs_without_a_change_are_unchanged():
    verdict, why, stats = judge_pairs(_pairs(0))
    assert verdict == "unchanged", why
    assert abs(stats["delta_rel"]) < 0.02 and stats["ci_low"] < 0 < stats["ci_high"]


def test_a_ten_percent_slower_candidate_regresses_and_a_faster_one_improves():
    assert judge_pairs(_pairs(1, ratio=1.1))[0] == "regressed"
    assert judge_pairs(_pairs(2, ratio=0.9))[0] == "improved"
    _verdict, _why, stats = judge_pairs(_pairs(3, ratio=1.1))
    assert stats["delta_rel"] == pytest.approx(0.1, abs=0.02)


def test_too_few_pairs_or_too_much_noise_is_inconclusive():
    assert judge_pairs([0.0] * 4)[0] == "inconclusive"
    assert judge_pairs(_pairs(4, n=6, noise=0.2))[0] == "inconclusive"
    assert judge_pairs([0.0] * 6)[0] == "unchanged"  # no difference at all


def test_looks_double_the_pairs_up_to_the_most():
    assert looks(10, 10) == looks(10, 5) == [10]
    assert looks(10, 80) == [10, 20, 40, 80]
    assert looks(10, 30) == [10, 20, 30]


def test_until_decided_only_the_inconclusive_cases_go_on_and_each_look_is_corrected(monkeypatch):
    """Case 0 agrees at once; case 1's pairs spread ±8% and need 40 of them; case 2's spread ±100% never settles."""
    spread = {0: 0.0, 1: 0.08, 2: 1.0}
    measured_per_pair: list[list[int]] = []

    def fake_pair(cases, tallies, todo, commands, options, rounds, envs):
        envs.setdefault("baseline", {}), envs.setdefault("candidate", {})
        measured_per_pair.append(list(todo))
        for i in todo:
            sign = 1 if len(tallies[i].pair_deltas) % 2 else -1
            tallies[i].pair_deltas.append(sign * spread[i])
            tallies[i].medians["baseline"].append(1.0), tallies[i].medians["candidate"].append(1.0)

    monkeypatch.setattr(harness.ab, "_measure_pair", fake_pair)
    cases = [Case("tiny_cnn", batch=b) for b in (1, 2, 3)]
    results, _ = run_ab(cases, "a", "b", {}, pairs=10, max_pairs=80)
    assert [r.judgement.verdict for r in results] == ["unchanged", "unchanged", "inconclusive"]
    assert [r.pairs for r in results] == [10, 40, 80]
    assert measured_per_pair[9] == [0, 1, 2] and measured_per_pair[10] == [1, 2] and measured_per_pair[40] == [2]
    assert "look 1 of 4, after 10 pairs; each look at alpha 0.01/4" in results[0].judgement.reason
    assert "98.75% CI" in results[1].judgement.reason and "look 3 of 4, after 40 pairs" in results[1].judgement.reason
    single, _ = run_ab(cases, "a", "b", {}, pairs=10)  # one look: the plain rule, as before
    assert "look" not in single[0].judgement.reason and "95% CI" in single[0].judgement.reason


def test_window_options_bound_the_sampling():
    options = window_options({"min_time_s": 2.0, "max_time_s": 10.0, "warmup_max_s": 5.0}, 0.5)
    assert options["min_time_s"] == options["max_time_s"] == 0.5 and options["warmup_max_s"] == 0.5


FAST = ["--pairs", "5", "--rounds", "2", "--window-s", "0.05"]


@pytest.mark.slow  # ten fresh worker processes (~45 s); the rule itself is tested above in the default tier
def test_an_injected_slowdown_is_flagged(write_suite, tmp_path, capsys):
    suite = write_suite(SUITE)
    report = tmp_path / "ab.json"
    slowed = f"env HARNESS_INJECT_SLOWDOWN=tiny_cnn=1.0 {sys.executable}"
    assert main(["ab", str(suite), "--candidate-env", slowed, *FAST, "--json", str(report),
                 "--fail-on", "regressed"]) == 1
    data = json.loads(report.read_text())
    assert [c["judgement"]["verdict"] for c in data["cases"]] == ["regressed", "regressed"]
    assert all(c["pairs"] == 5 and c["judgement"]["delta_rel"] > 0.5 for c in data["cases"])
    assert data["environments"]["baseline"]["env_torch"] == data["environments"]["candidate"]["env_torch"]
    captured = capsys.readouterr()
    assert "t-test" in captured.out and "pair 5/5 measured every case" in captured.err


@pytest.mark.slow
def test_identical_environments_are_not_called_different(write_suite, tmp_path):
    suite = write_suite(SUITE)
    report = tmp_path / "ab.json"
    assert main(["ab", str(suite), *FAST, "--json", str(report), "--fail-on", "regressed,improved"]) == 0
    same = json.loads(report.read_text())["cases"]
    assert all(abs(c["judgement"]["delta_rel"]) < 0.5 for c in same)


def test_an_environment_that_cannot_run_the_worker_is_named(write_suite, capsys):
    suite = write_suite(SUITE)
    assert main(["ab", str(suite), "--candidate-env", f"{sys.executable} -c pass", "--rounds", "2"]) == 2
    assert "candidate side's worker" in capsys.readouterr().err
    assert main(["ab", str(suite), "--candidate-env", "/no/such/python", "--rounds", "2"]) == 2
    assert "cannot start it" in capsys.readouterr().err
    assert main(["ab", str(suite), "--model", "resnet*"]) == 2
    assert "no case" in capsys.readouterr().err
