"""The detection metric: split timing on real images, COCO scoring of exactly the scored images, the
post-processing protocol, training before scoring, and its place in a suite, a record and the report."""

from __future__ import annotations

import io
import json
import re

import pytest
import torch
from rich.console import Console

from harness.case import POSTPROCESS, Case
from harness.data.coco import CocoDetection
from harness.errors import HarnessError, SkipCase
from harness.metrics import detection
from harness.zoo.build import build_inputs, build_model
from harness.zoo.detectors import METHODS, Detections

FAST_LATENCY = {"warmup_min": 1, "warmup_max_s": 2, "min_repeats": 2, "min_time_s": 0, "max_time_s": 1}


def _case(**fields) -> Case:
    defaults = {"resolution": 64, "batch": 2, "model_kwargs": (("num_classes", 10),)}
    return Case("centernet_resnet18", **(defaults | fields))


def _options(**fields) -> detection.Options:
    return detection.Options(**({"limit": 4, "timing_images": 3, "latency": FAST_LATENCY} | fields))


def test_case_postprocess_values_are_the_suppression_methods():
    assert set(POSTPROCESS) == {"default", *METHODS}


def test_split_timing_adds_up_and_fps_is_images_per_second():
    case = _case()
    out = detection.measure(build_model(case), build_inputs(case), case, _options(limit=0))
    phases = out["det_pre_ms_median"] + out["det_network_ms_median"] + out["det_post_ms_median"]
    assert all(out[k] > 0 for k in ("det_pre_ms_median", "det_network_ms_median", "det_post_ms_median"))
    assert out["det_total_ms_median"] == pytest.approx(phases, rel=0.5)  # medians of parts vs of sums
    assert out["det_fps"] == pytest.approx(case.batch / (out["det_total_ms_median"] / 1e3))
    assert len(out["det_total_ms_samples"]) >= 2 and out["det_timing_images"] == 3
    assert out["det_postprocess"] == "none" and out["det_method"] and "acc_ap" not in out  # limit 0: not scored
    assert out["det_train_steps"] == 0


def test_case_postprocess_and_option_overrides_reach_the_suppression():
    case = _case(postprocess="soft_nms_gaussian")
    model = build_model(case)
    assert model.input_size == 64 and model.suppression.method == "soft_nms_gaussian"
    out = detection.measure(model, build_inputs(case), case, _options(limit=0, score_threshold=0.3,
                                                                      max_detections=7))
    assert (out["det_postprocess"], out["det_score_threshold"], out["det_max_detections"]) == (
        "soft_nms_gaussian", 0.3, 7)
    assert out["det_detections_per_image"] <= 7


def test_postprocess_of_a_classifier_is_refused():
    with pytest.raises(HarnessError, match="applies to detectors only"):
        build_model(Case("test_resnet", postprocess="nms"))


def test_a_classifier_is_skipped_with_the_reason():
    case = Case("test_resnet", resolution=32)
    with pytest.raises(SkipCase, match="needs a detector"):
        detection.measure(build_model(case), build_inputs(case), case, _options())


class _Oracle:
    """Stands in for a detector's ``detect``: returns each image's ground truth, in dataset order."""

    def __init__(self, dataset: CocoDetection, shift_px: float = 0.0) -> None:
        self.targets = [dataset[i][1] for i in range(len(dataset))]
        self.shift_px, self.seen = shift_px, 0

    def __call__(self, images):
        out = []
        for _ in images:
            target = self.targets[self.seen]
            self.seen += 1
            out.append(Detections(target.boxes + self.shift_px, torch.ones(len(target.labels)), target.labels))
        return out


def test_scoring_perfect_detections_gives_ap_one_on_exactly_the_scored_images():
    options = _options(limit=5, batch_size=2)
    images_dir, annotations = detection.dataset_paths(options, "val")
    dataset = CocoDetection(images_dir, annotations)
    model = build_model(_case())
    model.detect = _Oracle(dataset)
    out = detection.score(model, dataset, options)
    assert out["det_images"] == 5
    assert out["acc_ap"] == pytest.approx(1.0) and out["acc_ap50"] == pytest.approx(1.0)
    model.detect = _Oracle(dataset, shift_px=200.0)  # every box far off: nothing matches
    assert detection.score(model, dataset, options)["acc_ap"] == 0.0


def test_dataset_options_need_both_paths_and_a_known_name(tmp_path):
    with pytest.raises(HarnessError, match="both `images`"):
        detection.dataset_paths(detection.Options(images=str(tmp_path)), "val")
    with pytest.raises(HarnessError, match="unknown dataset 'coco'"):
        detection.dataset_paths(detection.Options(dataset="coco"), "val")
    assert detection.dataset_paths(detection.Options(images="i", annotations="a.json"), "val")[1].name == "a.json"


def test_training_runs_the_schedule_and_lowers_the_loss():
    case = _case(batch=4)
    model = build_model(case)
    out = detection.measure(model, build_inputs(case), case, _options(train_images=96, lr=2e-3, limit=2))
    assert out["det_train_steps"] == 24
    assert out["det_train_loss_last"] < out["det_train_loss_first"]
    assert 0.0 <= out["acc_ap"] <= 1.0 and out["det_images"] == 2


def test_detector_suite_records_and_the_notes_table(tmp_path):
    from harness.report import render_report
    from harness.runner import run_suite
    from harness.suite import parse_suite

    suite = parse_suite(json.dumps({
        "name": "det", "defaults": {"resolution": 64, "batch": 1, "model_kwargs": {"num_classes": 10}},
        "matrix": {"model": ["centernet_resnet18", "yolov3_darknet53"]},
        "metrics": {"detection": {"limit": 2, "timing_images": 2, "latency": FAST_LATENCY}},
        "published": [{"match": {"model": "centernet_resnet18"}, "source": "Zhou et al. 2019, Table 1",
                       "comparable": False, "values": {"det_fps": 142, "acc_ap": 0.281}}],
    }), "det.yaml")
    console = Console(file=io.StringIO(), width=300)
    summary = run_suite(suite, tmp_path / "results", show_progress=False, console=console)
    assert summary.counts == {"ok": 2}, summary
    lines = console.file.getvalue()
    assert re.search(r"ok centernet_resnet18 .* \d+\.\d FPS  AP \d+\.\d", lines), lines  # each case's line
    page = next((render_report(tmp_path / "results", tmp_path / "reports")).parent.glob("suite-det*.html"))
    html = page.read_text(encoding="utf-8")
    assert "Detectors (Methods | Backbone | FPS | AP | APs | APm | APl)" in html
    assert "CenterNet" in html and "YOLOv3" in html
    assert ">142.0<" in html and ">28.1<" in html  # the published row, AP in %


def test_every_registered_detector_has_its_papers_names():
    from harness.zoo import create_model, list_models
    from harness.zoo.detectors import PAPER_NAMES, Detector

    with torch.device("meta"):  # shapes only: builds every zoo model in seconds
        detectors = {name for name, origin in list_models() if origin not in ("timm", "testing")
                     and isinstance(create_model(name), Detector)}
    assert detectors == set(PAPER_NAMES)


def test_a_local_checkpoint_replaces_the_random_weights_of_a_detector(tmp_path):
    trained = build_model(_case())
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(0.01)
    torch.save(trained.state_dict(), tmp_path / "centernet.pt")
    case = _case(model_kwargs=(("checkpoint", str(tmp_path / "centernet.pt")), ("num_classes", 10)))
    loaded, fresh = build_model(case), build_model(_case())
    x = build_inputs(case)
    with torch.inference_mode():
        assert torch.equal(loaded(x)[-1]["hm"], trained(x)[-1]["hm"])
        assert not torch.equal(fresh(x)[-1]["hm"], trained(x)[-1]["hm"])
