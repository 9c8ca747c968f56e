"""Box-regression losses (IoU, GIoU, DIoU, CIoU; l1, smooth_l1, mse), hard negative mining and focal loss, and the
detectors' training choices (`box_loss`, `negatives`) in YOLOv3 and RetinaNet."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from harness.case import Case
from harness.data.targets import Target
from harness.errors import SkipCase
from harness.zoo.build import build_model
from harness.zoo.detectors.box_losses import BOX_LOSSES, OFFSET_LOSSES
from harness.zoo.detectors.negatives import hard_negatives, softmax_focal_loss
from tests.test_detectors_yolo_tv import images, small


def _loss(name: str, box: list[float], target: list[float]) -> float:
    return float(BOX_LOSSES[name](torch.tensor([box]), torch.tensor([target]))[0])


# The Distance-IoU paper's special cases, worked by hand: (box, target, {loss: value}).
CASES = [
    # apart, side by side: IoU 0; enclosing box 3 × 1 around a union of 2; centres 2 apart, diagonal² 10
    ([0, 0, 1, 1], [2, 0, 3, 1], {"iou": 1.0, "giou": 1 + 1 / 3, "diou": 1 + 4 / 10, "ciou": 1 + 4 / 10}),
    # one inside the other, same centre: every loss is 1 − IoU = 0.75
    ([1, 1, 3, 3], [0, 0, 4, 4], {"iou": 0.75, "giou": 0.75, "diou": 0.75, "ciou": 0.75}),
    # inside, off centre: GIoU degrades to IoU (the enclosing box is the target); DIoU adds d² / c² = 2 / 32
    ([0, 0, 2, 2], [0, 0, 4, 4], {"iou": 0.75, "giou": 0.75, "diou": 0.75 + 2 / 32, "ciou": 0.75 + 2 / 32}),
    # horizontal alignment: the enclosing box is the union, GIoU = IoU = 1/3; DIoU adds 0.25 / 3.25
    ([0, 0, 1, 1], [0.5, 0, 1.5, 1], {"iou": 2 / 3, "giou": 2 / 3, "diou": 2 / 3 + 0.25 / 3.25,
                                       "ciou": 2 / 3 + 0.25 / 3.25}),
    # vertical alignment, the same by symmetry
    ([0, 0, 1, 1], [0, 0.5, 1, 1.5], {"iou": 2 / 3, "giou": 2 / 3, "diou": 2 / 3 + 0.25 / 3.25,
                                       "ciou": 2 / 3 + 0.25 / 3.25}),
]


@pytest.mark.parametrize(("box", "target", "expected"), CASES)
def test_each_box_loss_on_the_papers_special_cases(box, target, expected):
    for name, value in expected.items():
        assert _loss(name, box, target) == pytest.approx(value, abs=1e-6), name


def test_ciou_adds_the_aspect_ratio_term():
    iou, d2_over_c2 = 0.5, 0.25 / 5
    v = 4 / math.pi**2 * (math.atan(1.0) - math.atan(2.0)) ** 2
    alpha = v / ((1 - iou) + v)
    assert _loss("diou", [0, 0, 2, 1], [0, 0, 1, 1]) == pytest.approx(1 - iou + d2_over_c2, abs=1e-6)
    assert _loss("ciou", [0, 0, 2, 1], [0, 0, 1, 1]) == pytest.approx(1 - iou + d2_over_c2 + alpha * v, abs=1e-6)


def test_iou_loss_has_no_gradient_apart_and_giou_diou_ciou_do():
    for name in BOX_LOSSES:
        box = torch.tensor([[0.0, 0.0, 1.0, 1.0]], requires_grad=True)
        BOX_LOSSES[name](box, torch.tensor([[2.0, 0.0, 3.0, 1.0]])).sum().backward()
        moved = float(box.grad.abs().sum())
        assert (moved == 0) if name == "iou" else (moved > 0), (name, box.grad)
    box = torch.tensor([[0.0, 0.0, 1.0, 1.0]], requires_grad=True)
    BOX_LOSSES["diou"](box, torch.tensor([[2.0, 0.0, 3.0, 1.0]])).sum().backward()
    assert box.grad[0, 0] + box.grad[0, 2] < 0  # descending it moves the box's centre right, towards the target


def test_offset_losses_sum_over_the_four_coordinates():
    p, t = torch.tensor([[0.0, 0.5, 2.0, -1.0]]), torch.zeros(1, 4)
    assert float(OFFSET_LOSSES["l1"](p, t)[0]) == pytest.approx(3.5)
    assert float(OFFSET_LOSSES["mse"](p, t)[0]) == pytest.approx(5.25)
    beta = 1 / 9  # Detectron's: quadratic below beta, linear (minus beta / 2) above
    assert float(OFFSET_LOSSES["smooth_l1"](p, t)[0]) == pytest.approx(3.5 - 3 * beta / 2)


def test_hard_negative_mining_keeps_exactly_three_negatives_per_positive_the_hardest():
    loss = torch.tensor([[0.1, 0.9, 0.5, 0.7, 0.3, 0.8, 0.2, 0.6], [0.4, 0.3, 0.2, 0.1, 0.0, 0.5, 0.6, 0.7]])
    positive = torch.tensor([[True, False, False, False, False, False, False, False],
                             [True, True, True, False, False, False, False, False]])
    candidate = ~positive
    kept = hard_negatives(loss, positive, candidate)
    assert kept[0].nonzero().flatten().tolist() == [1, 3, 5]  # losses 0.9, 0.8, 0.7 of the 7 negatives
    assert kept[1].sum() == 5 and (kept[1] == candidate[1]).all()  # 3 × 3 wanted, only 5 available
    ignored = candidate.clone()
    ignored[0, 1] = False  # an anchor between the matcher's thresholds is never a negative
    assert kept.logical_and(~positive).sum() == 8
    assert hard_negatives(loss, positive, ignored)[0].nonzero().flatten().tolist() == [3, 5, 7]


def test_softmax_focal_loss_is_weighted_cross_entropy():
    logits = torch.randn(6, 4, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 1, 2, 3, 0, 0])
    ce = F.cross_entropy(logits, labels, reduction="none")
    torch.testing.assert_close(softmax_focal_loss(logits, labels, alpha=0.5, gamma=0.0), ce / 2)
    p = F.softmax(logits, dim=1)[torch.arange(6), labels]
    alpha = torch.where(labels > 0, 0.25, 0.75)
    torch.testing.assert_close(softmax_focal_loss(logits, labels), alpha * (1 - p) ** 2 * ce)


# --- the detectors' training choices ------------------------------------------------------------------------------

TARGETS = [Target(torch.tensor([[4.0, 6.0, 30.0, 40.0], [35.0, 20.0, 60.0, 30.0]]), torch.tensor([0, 2])),
           Target(torch.tensor([[10.0, 10.0, 20.0, 22.0]]), torch.tensor([1]))]


def _yolo(box_loss: str = "default", negatives: str = "default"):
    model = small("yolov3_darknet53", num_classes=3, input_size=64, anchor_scale=0.25).train()
    model.box_loss, model.negatives = box_loss, negatives
    return model


@pytest.mark.parametrize("box_loss", ["mse", "l1", "smooth_l1", "iou", "giou", "diou", "ciou"])
def test_yolov3_box_losses_replace_xy_and_wh_and_train(box_loss):
    model = _yolo(box_loss)
    batch, _ = model.preprocess(images())
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    first = last = None
    for _ in range(12):
        terms = model.loss(model(batch), TARGETS)
        assert set(terms) == {"loss_cls", "loss_obj", "loss_box"}
        first = terms["loss_box"].item() if first is None else first
        last = terms["loss_box"].item()
        optimizer.zero_grad()
        sum(terms.values()).backward()
        optimizer.step()
    assert math.isfinite(last) and last < first, (first, last)


def test_yolov3_negatives_change_only_the_objectness_term():
    model = _yolo()
    batch, _ = model.preprocess(images())
    with torch.no_grad():
        raw = model(batch)
        default = model.loss(raw, TARGETS)
        model.negatives = "hard_mining"
        mined = model.loss(raw, TARGETS)
        model.negatives = "focal"
        focal = model.loss(raw, TARGETS)
    for terms in (mined, focal):
        assert terms["loss_cls"] == default["loss_cls"] and terms["loss_xy"] == default["loss_xy"]
    # by hand: the positives' BCE plus the 3 × 3 largest BCEs of the non-ignored negatives, per image of the batch
    predictions, boxes = model.flatten(raw)
    objectness, ignored, *_ = model._dense_targets(TARGETS, boxes, [(x.shape[-2], x.shape[-1]) for x in raw])
    bce = F.binary_cross_entropy_with_logits(predictions[..., 4], objectness, reduction="none")
    expected = 0.0
    for i in range(2):
        positive = objectness[i] > 0
        negatives = bce[i][~positive & ~ignored[i]].sort(descending=True).values[: 3 * int(positive.sum())]
        expected += float(bce[i][positive].sum() + negatives.sum())
    assert float(mined["loss_obj"]) == pytest.approx(expected / 2, rel=1e-5)
    assert mined["loss_obj"] < default["loss_obj"]
    assert torch.isfinite(focal["loss_obj"]) and focal["loss_obj"] != default["loss_obj"]


@pytest.mark.parametrize(("box_loss", "negatives"), [("giou", "default"), ("ciou", "hard_mining"),
                                                     ("smooth_l1", "focal")])
def test_retinanet_training_choices_give_finite_losses_with_gradients(box_loss, negatives):
    model = small("retinanet_resnet50_fpn", num_classes=3).train()
    model.box_loss, model.negatives = box_loss, negatives
    batch, metas = model.preprocess(images())
    second = Target(torch.tensor([[50.0, 5.0, 110.0, 50.0]]), torch.tensor([1]))
    targets = model.targets_to_input([*TARGETS[:1], second], metas)
    raw = model(batch)
    terms = model.loss(raw, targets)
    assert all(torch.isfinite(t) for t in terms.values())
    sum(terms.values()).backward()
    assert float(model.head.regression_head.bbox_reg.weight.grad.abs().sum()) > 0
    model.box_loss, model.negatives = "default", "default"
    plain = model.loss(raw, targets)
    assert terms["bbox_regression"] != plain["bbox_regression"]
    assert (terms["classification"] != plain["classification"]) == (negatives == "hard_mining")


def test_a_training_choice_the_family_does_not_offer_is_skipped_with_the_reason():
    kwargs = (("backbone", "test_resnet"), ("num_classes", 3))
    with pytest.raises(SkipCase, match="offers box_loss l1, smooth_l1, giou, diou, ciou, not 'mse'"):
        build_model(Case("retinanet_resnet50_fpn", resolution=128, box_loss="mse", model_kwargs=kwargs))
    assert build_model(Case("yolov3_darknet53", resolution=64, box_loss="diou", negatives="focal",
                            model_kwargs=kwargs)).box_loss == "diou"


def test_the_losses_suite_is_the_diou_papers_table_over_three_seeds():
    from pathlib import Path

    from harness.suite import load_suite

    suite = load_suite(Path(__file__).parents[1] / "suites" / "detector_losses.yaml")
    rows = {(c.box_loss, c.postprocess) for c in suite.cases}
    assert rows == {("iou", "default"), ("giou", "default"), ("diou", "default"), ("ciou", "default"),
                    ("ciou", "diou_nms")}
    assert {c.seed for c in suite.cases} == {0, 1, 2} and len(suite.cases) == 15
    assert suite.baseline == {"box_loss": "iou", "postprocess": "default"}
    published = {(c.box_loss, c.postprocess): {e["metric"]: e["value"] for e in suite.published_for(c)}
                 for c in suite.cases}
    assert published[("iou", "default")] == {"acc_ap": 0.4657}
    assert published[("ciou", "default")] == {"acc_ap": 0.4921}
    assert published[("ciou", "diou_nms")] == {}  # the CIoU (D) row's value is not claimed
