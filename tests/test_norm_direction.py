"""The Group Normalization paper's finding, reproduced on the shipped digits (slow tier: `tox -e norm`).

Wu & He (2018), Table 2: ResNet-50's ImageNet error with BatchNorm grows from 23.6 % at 32 images per GPU to
34.7 % at 2, while GroupNorm's stays at 24.1 %. Here a small timm ResNet (``test_resnet``) is trained with
the harness's short training protocol on the scikit-learn digits at 32, 8 and 2 images per step, with the
same number of images seen and a linearly scaled learning rate, and the test asserts the direction: BN's
accuracy falls from batch 32 to batch 2 by more than GN's does. The table is printed (run with -s).
"""

from __future__ import annotations

import pytest

from harness.report.tables import error_by_batch_per_norm, latest_per_case
from harness.runner import run_suite
from harness.store import ResultStore
from harness.suite import load_suite

pytestmark = pytest.mark.slow

SUITE = """
name: gn-direction
defaults: {resolution: 32, model_kwargs: {num_classes: 10}}
matrix:
  model: [test_resnet]
  norm: [bn, gn]
  batch: [32, 8, 2]
metrics:
  accuracy: {train_images: 5752, lr: 0.1, lr_reference_batch: 256, limit: 359}
timeout_s: 1200
"""


def test_bn_loses_more_accuracy_than_gn_at_small_batches(write_suite, tmp_path):
    summary = run_suite(load_suite(write_suite(SUITE)), tmp_path / "results", show_progress=False)
    assert summary.counts == {"ok": 6}
    records = latest_per_case(ResultStore(tmp_path / "results").read())
    view = error_by_batch_per_norm(records)
    assert view is not None
    print("\n" + " | ".join(view.headers))
    for row in view.rows:
        print(" | ".join(cell.text for cell in row))
    accuracy = records.set_index(["norm", "batch"])["acc_top1"]
    bn_drop = accuracy["bn", 32] - accuracy["bn", 2]
    gn_drop = accuracy["gn", 32] - accuracy["gn", 2]
    print(f"top-1 drop from batch 32 to 2: BN {bn_drop:+.3f}, GN {gn_drop:+.3f}")
    assert bn_drop > gn_drop
    assert bn_drop > 0.05  # BN really degrades, not only relative to GN
