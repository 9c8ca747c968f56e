"""The detection accuracy path for real: suites/detector_training.yaml's small YOLOv3 and small CenterNet,
trained from random weights on digit_boxes for 300 steps, reach a COCO AP clearly above zero (slow tier); the same
path for 20 steps of 8 images at 64 px in the default tier: the loss falls and COCO AP is computed.

Each case runs in this process with the suite's options (a few minutes on 2 CPU cores). The floors sit below
what the cases reached here (stated beside each) to leave room for other CPUs' arithmetic; training is seeded,
so on one machine the numbers repeat.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from harness.metrics import detection
from harness.metrics.latency import Options as LatencyOptions
from harness.suite import load_suite
from harness.zoo.build import build_inputs, build_model

SUITE = load_suite(Path(__file__).resolve().parents[1] / "suites" / "detector_training.yaml")

#: model -> (AP floor asserted, AP reached when the floor was set; fractions 0…1).
AP_FLOORS: dict[str, tuple[float, float]] = {
    "yolov3_darknet53": (0.06, 0.110),  # AP50 0.172, AR100 0.575; 240 s of training on one thread
    "centernet_resnet18": (0.35, 0.564),  # AP50 0.858, AR100 0.697; 305 s of training on one thread
}


#: The suite's first-seed cases, one per model.
CASES = [c for c in SUITE.cases if c.seed == SUITE.repeat_seeds[0]]
#: The short version: steps of 8 images at 64 px, validation images, and a timing protocol of a few samples.
SHORT_STEPS, SHORT_IMAGES = 20, 16
SHORT_TIMING = {"timing_images": 4, "latency": LatencyOptions(warmup_min=1, min_repeats=3, min_time_s=0, max_time_s=1)}


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.model)
def test_small_detector_trains_and_is_scored(case):
    case = dataclasses.replace(case, resolution=64, batch=8)
    options = SUITE.metrics_for(case)["detection"]
    options = options.model_copy(update={"train_images": SHORT_STEPS * case.batch, "limit": SHORT_IMAGES,
                                         **SHORT_TIMING})
    out = detection.measure(build_model(case), build_inputs(case), case, options)
    assert out["det_train_steps"] == SHORT_STEPS and out["det_images"] == SHORT_IMAGES
    assert out["det_train_loss_last"] < out["det_train_loss_first"]
    assert 0 <= out["acc_ap"] <= out["acc_ap50"] <= 1 and out["acc_ar100"] >= 0


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.model)
def test_small_detector_learns_the_digits(case):
    floor, reached = AP_FLOORS[case.model]
    options = SUITE.metrics_for(case)["detection"]
    out = detection.measure(build_model(case), build_inputs(case), case, options)
    print(f"\n{case.label}: AP {out['acc_ap']:.3f} AP50 {out['acc_ap50']:.3f} AR100 {out['acc_ar100']:.3f} "
          f"loss {out['det_train_loss_first']:.2f} -> {out['det_train_loss_last']:.2f} in {out['det_train_s']:.0f} s "
          f"(floor {floor}, reached {reached} when set)")
    assert out["det_train_steps"] == 300 and out["det_images"] == 200
    assert out["det_train_loss_last"] < 0.7 * out["det_train_loss_first"]
    assert out["acc_ap"] >= floor
    assert out["acc_ap50"] >= out["acc_ap"]  # a looser IoU finds at least as much
