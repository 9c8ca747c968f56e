"""The Group Normalization paper's finding, reproduced on the shipped digits over 5 seeds (slow tier: `tox -e norm`).

Wu & He (2018), Table 2: ResNet-50's ImageNet error with BatchNorm grows from 23.6 % at 32 images per GPU to
34.7 % at 2, while GroupNorm's stays at 24.1 %. ``suites/gn_direction.yaml`` trains a small timm ResNet
(``test_resnet``) with the harness's short training protocol on the scikit-learn digits at 32, 8 and 2 images per
step (the same images seen, a linearly scaled learning rate), once per seed. The test decides on the means over
the seeds and their significance, not on single runs: BN's top-1 falls from batch 32 to batch 2 (paired t-test over
the seeds, p < the suite's alpha), and it falls by more than GN's does (a paired t-test on the per-seed drops).
The tables are printed (run with -s).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from harness.report.tables import error_by_batch_per_norm, latest_per_case, seeds_table
from harness.runner import run_suite
from harness.seed_stats import against_baseline, judge, seed_groups
from harness.store import ResultStore
from harness.suite import load_suite

pytestmark = pytest.mark.slow

SUITE = Path(__file__).resolve().parents[1] / "suites" / "gn_direction.yaml"


def test_bn_loses_more_accuracy_than_gn_at_small_batches_over_seeds(tmp_path):
    suite = load_suite(SUITE)
    summary = run_suite(suite, tmp_path / "results", show_progress=False)
    assert summary.counts == {"ok": 30}
    records = latest_per_case(ResultStore(tmp_path / "results").read())
    for view in (seeds_table(records), error_by_batch_per_norm(records)):
        assert view is not None
        print("\n" + " | ".join(view.headers))
        for row in view.rows:
            print(" | ".join(cell.text for cell in row))
    groups = against_baseline(seed_groups(records)).set_index(["norm", "batch"])
    top1 = groups["acc_top1_by_seed"]
    assert all(len(top1[key]) == 5 for key in top1.index)
    bn_fall = judge(top1["bn", 32], top1["bn", 2])
    drops = {norm: {s: top1[norm, 32][s] - top1[norm, 2][s] for s in top1[norm, 32]} for norm in ("bn", "gn")}
    drop_gap = judge(drops["gn"], drops["bn"])
    mean_drop = {norm: float(np.mean(list(d.values()))) for norm, d in drops.items()}
    print(f"BN top-1 from batch 32 to 2: {bn_fall.delta_rel:+.1%} (paired t-test p={bn_fall.p_value:.2g}); "
          f"mean drop BN {mean_drop['bn']:+.3f}, GN {mean_drop['gn']:+.3f} "
          f"(paired t-test on the per-seed drops p={drop_gap.p_value:.2g})")
    assert bn_fall.delta_rel < -0.05 and bn_fall.significant(suite.alpha)  # BN really degrades
    assert mean_drop["bn"] > mean_drop["gn"] and drop_gap.significant(suite.alpha)  # more than GN, beyond the noise
