"""YOLOv3, torchvision's RetinaNet and Faster R-CNN on timm backbones, the timm feature adapter, and the
suppression methods of :mod:`harness.zoo.detectors.postprocess` on hand-made boxes.

Fast tests use timm's tiny ``test_resnet`` backbone at 64–128 px; the paper-size builds are ``slow``.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch
from torchvision.models.detection import RetinaNet

import harness.zoo.detectors  # noqa: F401  (registers the detectors)
from harness.zoo.detectors import METHODS, Detections, Detector, Suppression, Target, suppress
from harness.zoo.detectors.base import ImageMeta
from harness.zoo.detectors.timm_features import TimmFeatures, indices_for_strides
from harness.zoo.detectors.torchvision_detectors import TorchvisionFasterRCNN, TorchvisionRetinaNet
from harness.zoo.detectors.yolov3 import COCO_ANCHORS_PX, STRIDES, YOLOv3
from harness.zoo.registry import create_model, get_entry

TINY = "test_resnet"  # timm's test network: maps of 48/192/96 channels at strides 8/16/32 (and 32 @ 4)
NAMES = ["yolov3_darknet53", "retinanet_resnet50_fpn", "retinanet_resnext101_fpn", "fasterrcnn_resnet50_fpn"]
#: kwargs that make each family small for the fast tier.
SMALL = {"yolov3": {}, "retinanet": {"fpn_channels": 32}, "fasterrcnn": {"fpn_channels": 32}}
PAPER_SIZES = {"yolov3_darknet53": 416, "retinanet_resnet50_fpn": 800, "retinanet_resnext101_fpn": 800,
               "fasterrcnn_resnet50_fpn": 800}


def images() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [torch.randint(0, 256, (3, 100, 80), dtype=torch.uint8, generator=g),
            torch.randint(0, 256, (3, 64, 120), dtype=torch.uint8, generator=g)]


def small(name: str, num_classes: int = 5, input_size: int = 128, **kwargs) -> Detector:
    family = name.split("_")[0]
    torch.manual_seed(0)
    return create_model(name, num_classes=num_classes, input_size=input_size, backbone=TINY,
                        **SMALL[family], **kwargs).eval()


def assert_well_formed(found: list[Detections], originals: list[torch.Tensor], num_classes: int,
                       max_detections: int) -> None:
    assert len(found) == len(originals)
    for d, image in zip(found, originals, strict=True):
        h, w = image.shape[-2:]
        n = len(d)
        assert n <= max_detections
        assert d.boxes.shape == (n, 4) and d.scores.shape == (n,) and d.labels.shape == (n,)
        assert d.labels.dtype == torch.int64
        assert torch.isfinite(d.boxes).all()
        assert (d.boxes[:, 2] >= d.boxes[:, 0]).all() and (d.boxes[:, 3] >= d.boxes[:, 1]).all()
        assert (d.boxes >= 0).all() and (d.boxes[:, [0, 2]] <= w).all() and (d.boxes[:, [1, 3]] <= h).all()
        assert ((d.scores >= 0) & (d.scores <= 1)).all()
        assert (d.scores[:-1] >= d.scores[1:]).all()
        assert ((d.labels >= 0) & (d.labels < num_classes)).all()


# ---------------------------------------------------------------------------------------- registry, adapter


def test_registered_with_sources() -> None:
    for name in NAMES:
        entry = get_entry(name)
        assert entry is not None and entry.source


def test_timm_features_by_stride() -> None:
    assert indices_for_strides("darknet53", STRIDES) == (3, 4, 5)
    assert indices_for_strides("resnet50", (4, 8, 16, 32)) == (1, 2, 3, 4)
    features = TimmFeatures.at_strides(TINY, (8, 16, 32))
    assert features.strides == [8, 16, 32] and features.channels == [48, 192, 96]
    maps = features(torch.zeros(1, 3, 64, 96))
    assert [tuple(m.shape) for m in maps] == [(1, c, 64 // s, 96 // s) for c, s in zip(features.channels,
                                                                                         features.strides, strict=True)]
    with pytest.raises(ValueError, match="stride"):
        indices_for_strides("test_vit", (8, 16, 32))


# ----------------------------------------------------------------------------------------------- detect()


@pytest.mark.parametrize("name", NAMES)
def test_detect_is_well_formed(name: str) -> None:
    model = small(name)
    originals = images()
    assert_well_formed(model.detect(originals), originals, 5, model.suppression.max_detections)
    model.suppression = replace(model.suppression, score_threshold=0.0)  # random weights score low: keep all
    found = model.detect(originals)
    assert all(len(d) == model.suppression.max_detections for d in found)
    assert_well_formed(found, originals, 5, model.suppression.max_detections)


def test_torchvision_detectors_need_input_size_multiple_of_32() -> None:
    with pytest.raises(ValueError, match="multiple of 32"):
        create_model("retinanet_resnet50_fpn", input_size=100, backbone=TINY, fpn_channels=16)


# ----------------------------------------------------------------------------------------------------- YOLOv3


def test_yolov3_raw_maps_and_anchors() -> None:
    model = small("yolov3_darknet53", num_classes=5, input_size=128)
    raw = model(torch.zeros(2, 3, 128, 128))
    assert [tuple(r.shape) for r in raw] == [(2, 3 * (5 + 5), 128 // s, 128 // s) for s in STRIDES]
    assert model.anchors_px.tolist() == [[list(a) for a in COCO_ANCHORS_PX[s]] for s in STRIDES]
    scaled = small("yolov3_darknet53", anchor_scale=0.5, anchors=[[[8, 8]], [[16, 16]], [[32, 32]]])
    assert scaled.anchors_px.tolist() == [[[4, 4]], [[8, 8]], [[16, 16]]]
    with pytest.raises(ValueError, match="stride"):
        create_model("yolov3_darknet53", backbone="test_vit", input_size=128)  # a ViT: stride 16 only


def test_yolov3_decode_inverts_encode() -> None:
    model: YOLOv3 = small("yolov3_darknet53", num_classes=4, input_size=128)
    boxes = torch.tensor([[3.0, 5.0, 14.5, 19.0],      # small: stride 8
                          [40.0, 30.0, 71.0, 90.5],    # medium: stride 16
                          [10.0, 8.0, 125.0, 120.0],   # large: stride 32
                          [90.2, 60.7, 120.9, 85.3]])  # (33, 23)-like: stride 8
    labels = torch.tensor([0, 3, 1, 2])
    e = model.encode(boxes)
    assert e.level.tolist() == [0, 1, 2, 0]  # the last box, 30.7 × 24.6, fits (33, 23) best
    raw = [torch.full((1, 3, 9, 128 // s, 128 // s), -20.0) for s in STRIDES]  # (N, A, 5 + C, H, W)
    for i in range(len(boxes)):
        cell = raw[int(e.level[i])][0, int(e.anchor[i]), :, int(e.row[i]), int(e.column[i])]
        cell[0:2] = torch.logit(e.offset_xy[i].double()).float()
        cell[2:4] = e.log_wh[i]
        cell[4] = 20.0
        cell[5 + labels[i]] = 20.0
    raw = [r.flatten(1, 2) for r in raw]
    candidates = model.decode(raw, [ImageMeta((128, 128), 1.0)])[0]
    sure = candidates.scores > 0.5
    assert int(sure.sum()) == len(boxes)
    order = candidates.labels[sure].argsort()
    assert candidates.labels[sure][order].tolist() == [0, 1, 2, 3]
    torch.testing.assert_close(candidates.boxes[sure][order], boxes[labels.argsort()], atol=1e-4, rtol=0)


def test_yolov3_loss_overfits_a_tiny_batch() -> None:
    model = small("yolov3_darknet53", num_classes=3, input_size=64, anchor_scale=0.25).train()
    batch, _ = model.preprocess(images())
    targets = [Target(torch.tensor([[4.0, 6.0, 30.0, 40.0], [35.0, 20.0, 60.0, 30.0]]), torch.tensor([0, 2])),
               Target(torch.tensor([[10.0, 10.0, 20.0, 22.0]]), torch.tensor([1]))]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    totals = []
    for _ in range(30):
        terms = model.loss(model(batch), targets)
        assert set(terms) == {"loss_cls", "loss_obj", "loss_xy", "loss_wh"}
        total = sum(terms.values())
        assert torch.isfinite(total)
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        totals.append(total.item())
    assert totals[-1] < 0.5 * totals[0], totals


def test_yolov3_loss_with_an_image_without_objects() -> None:
    model = small("yolov3_darknet53", num_classes=3, input_size=64).train()
    terms = model.loss(model(torch.zeros(1, 3, 64, 64)), [Target(torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64))])
    assert terms["loss_cls"].item() == 0.0 and terms["loss_obj"].item() > 0


# ------------------------------------------------------------------------------------- RetinaNet, Faster R-CNN


def _same_detections(ours: list, theirs: list[dict], label_offset: int = 0) -> None:
    for mine, reference in zip(ours, theirs, strict=True):
        assert len(mine.scores) == len(reference["scores"]) > 0
        torch.testing.assert_close(mine.boxes, reference["boxes"])
        torch.testing.assert_close(mine.scores, reference["scores"])
        assert torch.equal(mine.labels + label_offset, reference["labels"])


def test_retinanet_decode_matches_torchvision_postprocess() -> None:
    model: TorchvisionRetinaNet = small("retinanet_resnet50_fpn", num_classes=5)
    batch, metas = model.preprocess(images())
    with torch.no_grad():
        raw = model(batch)
    g = torch.Generator().manual_seed(1)
    raw["cls_logits"] = torch.randn(raw["cls_logits"].shape, generator=g) * 2 - 2
    raw["bbox_regression"] = torch.randn(raw["bbox_regression"].shape, generator=g) * 0.2
    model.top_k = 50  # so that top-k binds on every level
    model.suppression = replace(model.suppression, max_detections=300)
    split = raw["anchors_per_level"]
    reference = RetinaNet.postprocess_detections(
        SimpleNamespace(score_thresh=0.05, topk_candidates=50, box_coder=model.box_coder, nms_thresh=0.5,
                        detections_per_img=300),
        {k: list(raw[k].split(split, dim=1)) for k in ("cls_logits", "bbox_regression")},
        [list(a.split(split)) for a in raw["anchors"]],
        [(round(m.original_hw[0] * m.scale), round(m.original_hw[1] * m.scale)) for m in metas])
    ours = [suppress(d.boxes, d.scores, d.labels, model.suppression) for d in model.decode(raw, metas)]
    _same_detections(ours, reference)


def test_fasterrcnn_decode_matches_torchvision_postprocess() -> None:
    model: TorchvisionFasterRCNN = small("fasterrcnn_resnet50_fpn", num_classes=5)
    batch, metas = model.preprocess(images())
    with torch.no_grad():
        raw = model(batch)
    g = torch.Generator().manual_seed(2)
    raw["class_logits"] = torch.randn(raw["class_logits"].shape, generator=g) * 2
    raw["box_regression"] = torch.randn(raw["box_regression"].shape, generator=g) * 0.2
    shapes = [(round(m.original_hw[0] * m.scale), round(m.original_hw[1] * m.scale)) for m in metas]
    boxes, scores, labels = model.roi_heads.postprocess_detections(raw["class_logits"], raw["box_regression"],
                                                                   raw["proposals"], shapes)
    ours = [suppress(d.boxes, d.scores, d.labels, model.suppression) for d in model.decode(raw, metas)]
    _same_detections(ours, [{"boxes": b, "scores": s, "labels": lab} for b, s, lab in zip(boxes, scores, labels,
                                                                                            strict=True)], 1)


@pytest.mark.parametrize("name", ["retinanet_resnet50_fpn", "fasterrcnn_resnet50_fpn"])
def test_torchvision_losses_are_finite_with_gradients(name: str) -> None:
    model = small(name, num_classes=3).train()
    batch, metas = model.preprocess(images())
    targets = model.targets_to_input(
        [Target(torch.tensor([[5.0, 10.0, 40.0, 60.0]]), torch.tensor([2])),
         Target(torch.tensor([[50.0, 5.0, 110.0, 50.0], [0.0, 0.0, 20.0, 20.0]]), torch.tensor([0, 1]))], metas)
    terms = model.loss(model(batch), targets)
    total = sum(terms.values())
    assert all(torch.isfinite(t) for t in terms.values())
    total.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert sum(float(g.abs().sum()) for g in grads if g is not None) > 0
    head = model.head.classification_head.cls_logits if name.startswith("retinanet") else \
        model.roi_heads.box_predictor.cls_score
    assert head.weight.grad is not None and float(head.weight.grad.abs().sum()) > 0


# ---------------------------------------------------------------------------------------------- suppression

A, B, C, D = [0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 5.0], [5.0, 0.0, 15.0, 10.0], [20.0, 20.0, 30.0, 30.0]
# IoU(A, B) = 50/100 = 0.5, IoU(A, C) = 50/150 = 1/3, IoU(B, C) = 25/125 = 0.2, D overlaps nothing.
SCORES = [0.9, 0.8, 0.7, 0.6]


def _run(method: str, boxes: list, scores: list, labels: list | None = None, **config) -> tuple[list, list]:
    kept = suppress(torch.tensor(boxes), torch.tensor(scores),
                    torch.tensor(labels if labels is not None else [0] * len(scores)), Suppression(method, **config))
    rows = [boxes.index(b) for b in kept.boxes.tolist()]
    return rows, kept.scores.tolist()


def test_soft_nms_linear_by_hand() -> None:
    rows, scores = _run("soft_nms_linear", [A, B, C, D], SCORES, iou_threshold=0.3, score_threshold=0.05)
    # A first: B (IoU 0.5 ≥ 0.3) → 0.8·(1 − 0.5), C (IoU 1/3) → 0.7·(1 − 1/3); then D, then C: IoU(C, B) 0.2 < 0.3.
    assert rows == [0, 3, 2, 1]
    assert scores == pytest.approx([0.9, 0.6, 0.7 * (2 / 3), 0.8 * 0.5], abs=1e-6)
    rows, _ = _run("soft_nms_linear", [A, B, C, D], SCORES, iou_threshold=0.3, score_threshold=0.45)
    assert rows == [0, 3, 2]  # B's rescaled 0.4 < 0.45 is dropped


def test_soft_nms_gaussian_by_hand() -> None:
    rows, scores = _run("soft_nms_gaussian", [A, B, C, D], SCORES, sigma=0.5, score_threshold=0.05)
    b_after_a = 0.8 * math.exp(-(0.5**2) / 0.5)
    c_after_a = 0.7 * math.exp(-((1 / 3) ** 2) / 0.5)
    assert rows == [0, 3, 2, 1]  # 0.9, 0.6, 0.5605, then B decayed again by C
    assert scores == pytest.approx([0.9, 0.6, c_after_a, b_after_a * math.exp(-(0.2**2) / 0.5)], abs=1e-6)


def test_diou_nms_keeps_an_equal_iou_box_with_a_distant_centre() -> None:
    near = [0.0, 0.0, 10.0, 5.0]   # IoU 0.5 with A, centre 2.5 px away: DIoU = 0.5 − 6.25/200 = 0.46875
    far = [0.0, 0.0, 20.0, 10.0]   # IoU 0.5 with A, centre 5 px away:   DIoU = 0.5 − 25/500 = 0.45
    boxes = [A, near, far]
    assert _run("nms", boxes, [0.9, 0.8, 0.7], iou_threshold=0.46)[0] == [0]
    assert _run("batched_nms", boxes, [0.9, 0.8, 0.7], iou_threshold=0.46)[0] == [0]
    assert _run("diou_nms", boxes, [0.9, 0.8, 0.7], iou_threshold=0.46)[0] == [0, 2]


def test_nms_is_class_agnostic_batched_nms_is_not() -> None:
    boxes, scores, labels = [A, [1.0, 1.0, 11.0, 11.0]], [0.9, 0.8], [0, 1]
    assert _run("nms", boxes, scores, labels)[0] == [0]
    for method in ("batched_nms", "diou_nms", "soft_nms_linear"):
        assert _run(method, boxes, scores, labels)[0] == [0, 1]
    assert _run("batched_nms", boxes, scores, [0, 0])[0] == [0]


@pytest.mark.parametrize("method", ["batched_nms", "diou_nms", "soft_nms_linear", "soft_nms_gaussian"])
def test_classes_stay_apart_with_negative_coordinates(method: str) -> None:
    # Offsetting class 1 by (largest coordinate + 1) = 101 would move its box exactly onto class 0's box.
    boxes, scores, labels = [[90.0, 90.0, 100.0, 100.0], [-11.0, -11.0, -1.0, -1.0]], [0.9, 0.8], [0, 1]
    rows, kept_scores = _run(method, boxes, scores, labels)
    assert rows == [0, 1] and kept_scores == pytest.approx(scores)


def test_score_threshold_and_max_detections() -> None:
    boxes = [[20.0 * i, 0.0, 20.0 * i + 10, 10.0] for i in range(10)]
    scores = [0.05 + 0.1 * i for i in range(10)]
    for method in METHODS:
        rows, kept = _run(method, boxes, scores, score_threshold=0.3, max_detections=3)
        assert rows == [9, 8, 7] and kept == pytest.approx([0.95, 0.85, 0.75])
        rows, _ = _run(method, boxes, scores, score_threshold=0.3, max_detections=100)
        assert rows == [9, 8, 7, 6, 5, 4, 3]
        rows, _ = _run(method, boxes, scores, score_threshold=0.0, pre_top_k=2)
        assert rows == [9, 8]


@pytest.mark.parametrize("method", list(METHODS))
def test_empty_input(method: str) -> None:
    kept = suppress(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64), Suppression(method))
    assert kept.boxes.shape == (0, 4) and kept.scores.shape == (0,) and kept.labels.shape == (0,)


# ------------------------------------------------------------------------------------------ paper sizes (slow)


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_paper_size_builds_detect_and_count(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name).eval()
    assert model.input_size == PAPER_SIZES[name] and model.num_classes == 80
    params = sum(p.numel() for p in model.parameters())
    originals = images()
    model.detect(originals)  # warm-up
    start = time.perf_counter()
    found = model.detect(originals)
    elapsed_ms = (time.perf_counter() - start) * 1e3
    print(f"{name}: {params:,} parameters, detect() of 2 images on CPU {elapsed_ms:.0f} ms")
    assert_well_formed(found, originals, 80, model.suppression.max_detections)
    if name == "yolov3_darknet53":
        assert params == pytest.approx(62e6, rel=0.02)  # published.md §2: about 62 M
