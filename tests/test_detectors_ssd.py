"""SSD300 (VGG-16) and SSDLite320 (MobileNetV3-Large) from torchvision in the zoo's Detector interface.

SSDLite runs at 128 px; SSD300's network needs at least 268 px, so it is built once and run at 300 px.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torchvision.models.detection import ssdlite320_mobilenet_v3_large as tv_ssdlite
from torchvision.models.detection.image_list import ImageList

from harness.case import Case
from harness.errors import SkipCase
from harness.zoo.build import build_model
from harness.zoo.detectors import PAPER_NAMES, Target, suppress
from harness.zoo.detectors.box_losses import BOX_LOSSES, OFFSET_LOSSES
from harness.zoo.detectors.negatives import hard_negatives, softmax_focal_loss
from harness.zoo.detectors.ssd import (
    SSD300_MEAN,
    SSD300_MIN_INPUT,
    SSD300_STD,
    SSDLITE_MEAN,
    SSDLITE_STD,
    TorchvisionSSD,
)
from harness.zoo.registry import create_model, get_entry

NAMES = ["ssd300_vgg16", "ssdlite320_mobilenet_v3_large"]
NUM_CLASSES = 3
SMALL = 128


def lite(input_size: int = SMALL, seed: int = 0) -> TorchvisionSSD:
    torch.manual_seed(seed)
    return create_model("ssdlite320_mobilenet_v3_large", num_classes=NUM_CLASSES, input_size=input_size)


@pytest.fixture(scope="module")
def ssd300() -> TorchvisionSSD:
    torch.manual_seed(0)
    return create_model("ssd300_vgg16", num_classes=NUM_CLASSES).eval()


def one_box_image(size: int = SMALL) -> tuple[torch.Tensor, Target]:
    """Return a float image with a bright rectangle and its target (class 1), both in input pixels."""
    image = torch.full((3, size, size), 0.2)
    box = torch.tensor([[size * 0.25, size * 0.3, size * 0.7, size * 0.8]])
    x1, y1, x2, y2 = box[0].round().int().tolist()
    image[:, y1:y2, x1:x2] = 0.9
    return image, Target(box, torch.tensor([1]))


def assert_in_image(boxes: torch.Tensor, hw: tuple[int, int]) -> None:
    h, w = hw
    assert torch.isfinite(boxes).all()
    assert (boxes >= 0).all() and (boxes[:, [0, 2]] <= w).all() and (boxes[:, [1, 3]] <= h).all()
    assert (boxes[:, 2:] >= boxes[:, :2]).all()


# ---------------------------------------------------------------------------------------------- registry


def test_registered_with_sources_and_paper_names() -> None:
    for name in NAMES:
        entry = get_entry(name)
        assert entry is not None and entry.source and entry.origin == "torchvision"
    assert PAPER_NAMES["ssd300_vgg16"] == ("SSD300", "VGG-16")
    assert PAPER_NAMES["ssdlite320_mobilenet_v3_large"] == ("SSDLite", "MobileNetV3-Large")


def test_defaults_follow_torchvision(ssd300: TorchvisionSSD) -> None:
    """Input size, normalisation and suppression are torchvision's for each model; classes exclude background.
    (SSD300's torchvision values are written out: building a second VGG-16 takes seconds.)"""
    detector = lite(input_size=320)
    reference = tv_ssdlite(weights=None, weights_backbone=None, num_classes=NUM_CLASSES + 1)
    assert detector.input_size == 320 and detector.num_classes == NUM_CLASSES
    assert torch.allclose(detector.mean.flatten(), torch.tensor(reference.transform.image_mean))
    assert torch.allclose(detector.std.flatten(), torch.tensor(reference.transform.image_std))
    assert torch.allclose(detector.mean.flatten(), torch.tensor(SSDLITE_MEAN))
    s = detector.suppression
    assert (s.method, s.iou_threshold, s.score_threshold, s.max_detections, detector.top_k) == (
        "batched_nms", reference.nms_thresh, reference.score_thresh, reference.detections_per_img,
        reference.topk_candidates) == ("batched_nms", 0.55, 0.001, 300, 300)
    assert detector.head.classification_head.module_list[0][1].out_channels == 6 * (NUM_CLASSES + 1)

    assert ssd300.input_size == 300 and ssd300.num_classes == NUM_CLASSES
    assert torch.allclose(ssd300.mean.flatten(), torch.tensor([0.48235, 0.45882, 0.40784]))
    assert torch.allclose(ssd300.std.flatten(), torch.full((3,), 1 / 255))
    assert (SSD300_MEAN, SSD300_STD) == ((0.48235, 0.45882, 0.40784), (1 / 255,) * 3)
    s = ssd300.suppression
    assert (s.method, s.iou_threshold, s.score_threshold, s.max_detections, ssd300.top_k) == (
        "batched_nms", 0.45, 0.01, 200, 400)
    assert ssd300.head.classification_head.module_list[0].out_channels == 4 * (NUM_CLASSES + 1)


# ------------------------------------------------------------------------------------ forward, backward


def test_ssdlite_forward_backward_small() -> None:
    detector = lite().train()
    image, target = one_box_image()
    batch, _ = detector.preprocess([image, image])
    raw = detector(batch)
    anchors = raw["cls_logits"].shape[1]
    assert raw["cls_logits"].shape == (2, anchors, NUM_CLASSES + 1)
    assert raw["bbox_regression"].shape == (2, anchors, 4)
    assert len(raw["anchors"]) == 2 and raw["anchors"][0].shape == (anchors, 4)
    losses = detector.loss(raw, [target, target])
    assert set(losses) == {"bbox_regression", "classification"}
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    grads = [p.grad for p in detector.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


def test_ssd300_forward_backward_at_300(ssd300: TorchvisionSSD) -> None:
    """At its paper's 300 px: 8732 default boxes, torchvision's own (fixed steps), and a finite backward pass."""
    image, target = one_box_image(300)
    batch, _ = ssd300.preprocess([image])
    ssd300.train()
    try:
        raw = ssd300(batch)
        assert raw["cls_logits"].shape == (1, 8732, NUM_CLASSES + 1)
        assert raw["bbox_regression"].shape == (1, 8732, 4)
        features = list(ssd300.backbone(batch).values())
        expected = ssd300.anchor_generator(ImageList(batch, [(300, 300)]), features)[0]
        assert torch.equal(raw["anchors"][0], expected)
        total = sum(ssd300.loss(raw, [target]).values())
        assert torch.isfinite(total)
        total.backward()
        assert all(torch.isfinite(p.grad).all() for p in ssd300.parameters() if p.grad is not None)
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in ssd300.head.classification_head.parameters())
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in ssd300.backbone.parameters())
    finally:
        ssd300.zero_grad(set_to_none=True)
        ssd300.eval()


def test_ssd300_input_size_limit(ssd300: TorchvisionSSD) -> None:
    with pytest.raises(ValueError, match="at least"):
        ssd300(torch.zeros(1, 3, SSD300_MIN_INPUT - 12, SSD300_MIN_INPUT - 12))


@pytest.mark.parametrize(("size", "grids"), [(400, (50, 25, 13, 7, 5, 3)), (512, (64, 32, 16, 8, 6, 4))])
def test_ssd300_anchors_tile_other_input_sizes(ssd300: TorchvisionSSD, size: int, grids: tuple[int, ...]) -> None:
    """Away from 300 px the fixed steps would put default boxes' centres outside the image; the grid tiling
    puts each map's centres at (i + 0.5) / side of the image."""
    features = [torch.zeros(1, 1, g, g) for g in grids]
    images = ImageList(torch.zeros(1, 3, size, size), [(size, size)])
    anchors = ssd300.grid_anchor_generator(images, features)[0]
    centres = (anchors[:, :2] + anchors[:, 2:]) / 2
    assert ((centres > 0) & (centres < size)).all()
    finest = centres[: grids[0] ** 2 * 4].round(decimals=2).unique()
    assert torch.allclose(finest, (torch.arange(grids[0]) + 0.5) * size / grids[0], atol=1e-3)
    fixed = ssd300.anchor_generator(images, features)[0]
    assert ((fixed[:, :2] + fixed[:, 2:]) / 2 > size).any()  # why the fixed steps are not used here


# ----------------------------------------------------------------------------------------------- detect


def test_detect_matches_torchvision_at_paper_size() -> None:
    """At 320 px (no resize): our preprocess + network give torchvision's SSDLite head outputs and default boxes
    (after its own transform), and our decode + suppression give its ``postprocess_detections`` (fed random raw
    outputs, as an untrained network scores many anchors alike)."""
    torch.manual_seed(1)
    reference = tv_ssdlite(weights=None, weights_backbone=None, num_classes=NUM_CLASSES + 1).eval()
    detector = TorchvisionSSD(reference, NUM_CLASSES, 320, SSDLITE_MEAN, SSDLITE_STD, paper_size=320).eval()
    image = torch.randint(0, 256, (3, 320, 320), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        images, _ = reference.transform([image.float() / 255])
        features = list(reference.backbone(images.tensors).values())
        expected = reference.head(features)
        expected_anchors = reference.anchor_generator(images, features)
        batch, metas = detector.preprocess([image])
        raw = detector(batch)
    assert torch.allclose(batch, images.tensors, atol=1e-5)
    for key in ("cls_logits", "bbox_regression"):
        assert torch.allclose(raw[key], expected[key], atol=1e-4), key
    assert torch.allclose(raw["anchors"][0], expected_anchors[0])

    g = torch.Generator().manual_seed(0)
    raw = {"cls_logits": torch.randn(raw["cls_logits"].shape, generator=g) * 3,
           "bbox_regression": torch.randn(raw["bbox_regression"].shape, generator=g) * 0.5,
           "anchors": raw["anchors"]}
    (theirs,) = reference.postprocess_detections(raw, raw["anchors"], [(320, 320)])
    (found,) = detector.postprocess(raw, metas)
    assert len(found) == len(theirs["scores"]) == reference.detections_per_img
    assert torch.allclose(found.scores, theirs["scores"], atol=1e-6)
    assert torch.equal(found.labels, theirs["labels"] - 1)
    assert torch.allclose(found.boxes, theirs["boxes"], atol=1e-4)


def test_detect_returns_boxes_in_original_image() -> None:
    """Images of other sizes than the input: detections are the suppressed candidates scaled back by 1/scale
    and clipped to each original image."""
    detector = lite(seed=2).eval()
    for p in detector.head.parameters():
        p.data.normal_(0, 0.3)
    g = torch.Generator().manual_seed(0)
    images = [torch.randint(0, 256, (3, 200, 90), dtype=torch.uint8, generator=g),
              torch.randint(0, 256, (3, 60, 300), dtype=torch.uint8, generator=g)]
    found = detector.detect(images)
    with torch.no_grad():
        batch, metas = detector.preprocess(images)
        candidates = detector.decode(detector(batch), metas)
    for d, c, meta, image in zip(found, candidates, metas, images, strict=True):
        h, w = image.shape[-2:]
        assert meta.scale == pytest.approx(SMALL / max(h, w))
        assert len(d) > 0
        assert_in_image(d.boxes, (h, w))
        assert_in_image(c.boxes, (round(h * meta.scale), round(w * meta.scale)))  # clipped to the image's part
        kept = suppress(c.boxes, c.scores, c.labels, detector.suppression)
        scaled = kept.boxes / meta.scale
        scaled[:, [0, 2]] = scaled[:, [0, 2]].clamp(0, w)
        scaled[:, [1, 3]] = scaled[:, [1, 3]].clamp(0, h)
        assert torch.allclose(d.boxes, scaled) and torch.equal(d.labels, kept.labels)
        assert d.boxes[:, 2:].amax(dim=0).max() > SMALL  # in the original's pixels, beyond the input's side
        assert ((d.scores >= 0) & (d.scores <= 1)).all() and ((d.labels >= 0) & (d.labels < NUM_CLASSES)).all()


def test_ssd300_detect_non_square(ssd300: TorchvisionSSD) -> None:
    image = torch.randint(0, 256, (3, 150, 420), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    (found,) = ssd300.detect([image])
    assert len(found) <= 200
    assert_in_image(found.boxes, (150, 420))
    assert ((found.labels >= 0) & (found.labels < NUM_CLASSES)).all()


# ------------------------------------------------------------------------------------------------- loss


def test_default_loss_is_torchvision_compute_loss() -> None:
    reference = tv_ssdlite(weights=None, weights_backbone=None, num_classes=NUM_CLASSES + 1)
    detector = TorchvisionSSD(reference, NUM_CLASSES, SMALL, SSDLITE_MEAN, SSDLITE_STD, paper_size=320).train()
    image, target = one_box_image()
    other = Target(torch.tensor([[5.0, 10.0, 60.0, 40.0], [70.0, 64.0, 120.0, 127.0]]), torch.tensor([0, 2]))
    batch, _ = detector.preprocess([image, image.flip(-1)])
    raw = detector(batch)
    ours = detector.loss(raw, [target, other])
    matched = detector.match(raw["anchors"], [target, other])
    theirs = reference.compute_loss([{"boxes": t.boxes, "labels": t.labels + 1} for t in (target, other)],
                                    {k: raw[k] for k in ("cls_logits", "bbox_regression")}, raw["anchors"], matched)
    for key in theirs:
        assert torch.allclose(ours[key], theirs[key]), key


@pytest.mark.parametrize(("box_loss", "negatives"), [("default", "default"), ("giou", "focal")])
def test_loss_decreases_with_sgd(box_loss: str, negatives: str) -> None:
    detector = lite().train()
    detector.box_loss, detector.negatives = box_loss, negatives
    image, target = one_box_image()
    batch, _ = detector.preprocess([image, image])  # two copies: BatchNorm of 1×1 maps needs two values
    optimizer = torch.optim.SGD(detector.parameters(), lr=0.01, momentum=0.9)
    totals = []
    for _ in range(6):
        total = sum(detector.loss(detector(batch), [target, target]).values())
        assert torch.isfinite(total)
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        totals.append(float(total.detach()))
    assert totals[-1] < 0.8 * totals[0], totals


def _hand_raw(detector: TorchvisionSSD, anchors: torch.Tensor, deltas: torch.Tensor, classes: int) -> dict:
    logits = torch.randn(1, anchors.shape[0], classes + 1, generator=torch.Generator().manual_seed(0))
    return {"cls_logits": logits, "bbox_regression": deltas[None], "anchors": [anchors]}


def test_box_losses_on_offsets_and_boxes() -> None:
    """Offset losses are box_losses' OFFSET_LOSSES on the box coder's targets; IoU losses are BOX_LOSSES on the
    decoded boxes; all vanish when the regression is exact."""
    detector = lite()
    anchors = torch.tensor([[0.0, 0.0, 40.0, 40.0], [30.0, 30.0, 90.0, 80.0], [60.0, 0.0, 120.0, 50.0],
                            [0.0, 70.0, 50.0, 128.0]])
    gt = Target(torch.tensor([[32.0, 28.0, 88.0, 84.0]]), torch.tensor([2]))
    positive = detector.match([anchors], [gt])[0] >= 0
    assert positive.tolist() == [False, True, False, False]
    exact = torch.zeros(4, 4)
    exact[1] = detector.box_coder.encode_single(gt.boxes, anchors[1:2])[0]
    off = exact.clone()
    off[1] += torch.tensor([0.3, -0.2, 0.1, 0.4])
    for name in detector.BOX_LOSSES:
        detector.box_loss = name
        assert float(detector.loss(_hand_raw(detector, anchors, exact, NUM_CLASSES), [gt])["bbox_regression"]) \
            == pytest.approx(0.0, abs=1e-5), name
        value = detector.loss(_hand_raw(detector, anchors, off, NUM_CLASSES), [gt])["bbox_regression"]
        if name in OFFSET_LOSSES:
            expected = OFFSET_LOSSES[name](off[1:2], exact[1:2])[0]
        else:
            expected = BOX_LOSSES[name](detector.box_coder.decode_single(off[1:2], anchors[1:2]), gt.boxes)[0]
        assert float(value) == pytest.approx(float(expected), rel=1e-5) and float(value) > 0, name
    detector.box_loss = "default"
    value = detector.loss(_hand_raw(detector, anchors, off, NUM_CLASSES), [gt])["bbox_regression"]
    assert float(value) == pytest.approx(float(F.smooth_l1_loss(off[1:2], exact[1:2], reduction="sum")), rel=1e-5)
    detector.box_loss = "mse"  # not offered by the family
    with pytest.raises(ValueError, match="box_loss"):
        detector.loss(_hand_raw(detector, anchors, off, NUM_CLASSES), [gt])


def test_hard_negatives_keep_three_per_positive() -> None:
    loss = torch.tensor([
        [0.5, 9.0, 0.1, 3.0, 7.0, 0.2, 5.0, 0.3, 4.0, 0.0],  # 2 positives (0, 1): 6 of 8 negatives
        [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0],  # 3 positives: 9 wanted, 7 available: all of them
        [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0],  # no positive: no negative
    ])
    positive = torch.zeros_like(loss, dtype=torch.bool)
    positive[0, [0, 1]] = True
    positive[1, [7, 8, 9]] = True
    mask = hard_negatives(loss, positive, ~positive, 3)
    assert not (mask & positive).any()
    assert mask.sum(dim=1).tolist() == [6, 7, 0]
    assert set(mask[0].nonzero().flatten().tolist()) == {4, 6, 8, 3, 7, 5}  # the 6 highest-loss negatives
    assert mask[1, :7].all()
    for row in range(2):  # every kept negative has at least the loss of every dropped one
        kept, dropped = loss[row][mask[row]], loss[row][~mask[row] & ~positive[row]]
        assert dropped.numel() == 0 or kept.min() >= dropped.max()
    g = torch.Generator().manual_seed(0)
    loss = torch.rand(4, 500, generator=g)
    positive = torch.rand(4, 500, generator=g) < torch.tensor([[0.0], [0.01], [0.1], [0.5]])
    mask = hard_negatives(loss, positive, ~positive, 3)
    expected = torch.minimum(3 * positive.sum(1), (~positive).sum(1))
    assert torch.equal(mask.sum(1), expected)
    for row in range(4):
        kept, dropped = loss[row][mask[row]], loss[row][~mask[row] & ~positive[row]]
        assert kept.numel() == 0 or dropped.numel() == 0 or kept.min() >= dropped.max()


def test_focal_loss_properties() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 50, NUM_CLASSES + 1, generator=g) * 3
    labels = torch.randint(0, NUM_CLASSES + 1, (2, 50), generator=g)
    ce = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), reduction="none").view_as(labels)
    assert torch.allclose(softmax_focal_loss(logits, labels, alpha=None, gamma=0.0), ce, atol=1e-6)
    half = torch.where(labels > 0, 0.25, 0.75) * ce
    assert torch.allclose(softmax_focal_loss(logits, labels, alpha=0.25, gamma=0.0), half, atol=1e-6)
    focal = softmax_focal_loss(logits, labels, alpha=None, gamma=2.0)
    assert (focal <= ce + 1e-6).all() and (focal < ce).any()
    p_t = torch.exp(-ce)
    assert torch.allclose(focal, (1 - p_t) ** 2 * ce, atol=1e-5)


def test_focal_negatives_at_gamma_zero_is_cross_entropy_over_all_anchors() -> None:
    """``negatives="focal"`` with γ = 0 and no α: cross-entropy summed over every anchor / positive anchors."""
    detector = lite()
    image, target = one_box_image()
    batch, _ = detector.preprocess([image, image])
    with torch.no_grad():
        raw = detector(batch)
    detector.negatives, detector.focal_alpha, detector.focal_gamma = "focal", None, 0.0
    value = detector.loss(raw, [target, target])["classification"]
    matched = torch.stack(detector.match(raw["anchors"], [target, target]))
    labels = torch.where(matched >= 0, 2, 0)  # target class 1 → torchvision label 2
    ce = F.cross_entropy(raw["cls_logits"].flatten(0, 1), labels.flatten(), reduction="sum")
    assert float(value) == pytest.approx(float(ce / (matched >= 0).sum()), rel=1e-5)
    detector.focal_alpha, detector.focal_gamma = 0.25, 2.0
    assert float(detector.loss(raw, [target, target])["classification"]) < float(value)


# ----------------------------------------------------------------------------------------------- cases


def test_case_training_options() -> None:
    base = Case(model="ssdlite320_mobilenet_v3_large", resolution=SMALL, model_kwargs=(("num_classes", 3),))
    with pytest.raises(SkipCase, match="mse"):
        build_model(Case(**{**base.__dict__, "box_loss": "mse"}))
    with pytest.raises(SkipCase, match="iou"):
        build_model(Case(**{**base.__dict__, "box_loss": "iou"}))
    model = build_model(Case(**{**base.__dict__, "box_loss": "ciou", "negatives": "focal"}))
    assert isinstance(model, TorchvisionSSD)
    assert (model.box_loss, model.negatives, model.input_size) == ("ciou", "focal", SMALL)
