"""The keypoint detectors (CenterNet, CornerNet, CornerNet-Squeeze, CornerNet-Saccade, ExtremeNet): their
shared pieces, that each builds and detects on CPU, and that every decode inverts its encode.

Fast-tier builds are reduced (narrow hourglasses, 128-pixel inputs); the paper-size parameter counts are
checked on the meta device in the slow tier.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest
import torch

from harness.zoo import create_model, list_models
from harness.zoo.detectors import Detections, Target
from harness.zoo.detectors.base import ImageMeta
from harness.zoo.detectors.cornernet import ATTENTION_SCALES, CropPlan, SaccadeRaw, corner_pool, corner_targets
from harness.zoo.detectors.keypoints import (
    HEAT_PRIOR_BIAS,
    draw_gaussian,
    focal_loss,
    gather_at,
    gaussian_radius,
    peaks,
    topk,
)

SMALL_HOURGLASS = {"dims": (32, 32, 48), "counts": (1, 1, 1)}
#: registry name -> kwargs of a small build for the fast tier (few classes, so that untrained corner
#: and extreme-point grouping finds candidates of one class).
SMALL: dict[str, dict[str, Any]] = {
    "centernet_resnet18": {"input_size": 128, "neck_chs": 64, "head_conv": 32},
    "centernet_dla34": {"input_size": 128, "neck_chs": 32, "head_conv": 32},
    "centernet_hourglass104": {"input_size": 128, **SMALL_HOURGLASS},
    "cornernet_hourglass104": {"input_size": 128, "num_classes": 2, **SMALL_HOURGLASS},
    "cornernet_squeeze": {"input_size": 128, "num_classes": 2, **SMALL_HOURGLASS},
    "cornernet_saccade": {"input_size": 256, "num_classes": 2, "dims": (32, 48, 48, 64)},
    "extremenet_hourglass104": {"input_size": 128, "num_classes": 2, **SMALL_HOURGLASS},
}
IMAGES = [torch.randint(0, 256, size, dtype=torch.uint8) for size in ((3, 100, 80), (3, 64, 120))]
#: logits of a "perfect" heatmap: certain at the encoded peaks, certain of nothing elsewhere.
SURE, NEVER = 20.0, -20.0


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Run on one intra-op thread (small forwards on shared CI cores) with a fixed seed."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


def small(name: str) -> Any:
    """Return the fast-tier build of ``name`` in eval mode."""
    return create_model(name, **SMALL[name]).eval()


def eager(model: Any) -> Any:
    """Return ``model`` with its tag heads at 0 and its heatmap and attention heads at probability 0.5
    everywhere, so that untrained grouping finds candidates: an untrained network's random tags rarely
    match, its corner peaks rarely lie in order, and its 0.1 prior is at or below the thresholds."""
    with torch.no_grad():
        for name, module in model.named_modules():
            head = name.rsplit(".", 1)[-1]
            if head in ("tag", "hm") or head.endswith("heat") or head.startswith("att_"):
                module[-1].weight.zero_()
                module[-1].bias.zero_()
    return model


def scatter(values: torch.Tensor, index: torch.Tensor, mask: torch.Tensor, map_hw: tuple[int, int]) -> torch.Tensor:
    """Return maps (N, D, H, W), zero but for ``values`` (N, M, D) at the flat cells ``index`` of ``mask``."""
    n, _, d = values.shape
    out = torch.zeros(n, d, map_hw[0] * map_hw[1])
    for i in range(n):
        out[i][:, index[i][mask[i]]] = values[i][mask[i]].T
    return out.view(n, d, *map_hw)


def perfect_heat(heatmap: torch.Tensor) -> torch.Tensor:
    """Return logits certain at the Gaussian targets' peaks (value 1) and nowhere else."""
    return torch.where(heatmap == 1, SURE, NEVER)


def confident(detections: Detections) -> Detections:
    """Return the detections scoring above 0.5, sorted by their boxes' x1 (to compare with the truth)."""
    keep = detections.scores > 0.5
    order = detections.boxes[keep][:, 0].argsort()
    return Detections(detections.boxes[keep][order], detections.scores[keep][order], detections.labels[keep][order])


TARGETS = [
    Target(torch.tensor([[10.3, 12.7, 50.2, 61.9], [60.5, 20.25, 100.75, 90.5]]), torch.tensor([1, 1])),
    Target(torch.tensor([[30.0, 40.0, 70.4, 77.7]]), torch.tensor([0])),
]
METAS = [ImageMeta((128, 128), 1.0), ImageMeta((128, 128), 1.0)]


def assert_recovers(found: list[Detections], targets: list[Target]) -> None:
    """Assert that the confident detections are the targets' boxes (1e-3 px) and classes."""
    for detections, target in zip(found, targets, strict=True):
        got = confident(detections)
        order = target.boxes[:, 0].argsort()
        torch.testing.assert_close(got.boxes, target.boxes[order], atol=1e-3, rtol=0)
        assert got.labels.tolist() == target.labels[order].tolist()


# ------------------------------------------------------------------------------------ shared pieces
def naive_pool(x: torch.Tensor, direction: str) -> torch.Tensor:
    """Return corner pooling by a Python double loop over rows and columns."""
    out = torch.empty_like(x)
    height, width = x.shape[-2:]
    for i in range(height):
        for j in range(width):
            rows, cols = {
                "top": (slice(i, None), slice(j, j + 1)),
                "bottom": (slice(0, i + 1), slice(j, j + 1)),
                "left": (slice(i, i + 1), slice(j, None)),
                "right": (slice(i, i + 1), slice(0, j + 1)),
            }[direction]
            out[..., i, j] = x[..., rows, cols].amax(dim=(-2, -1))
    return out


@pytest.mark.parametrize("direction", ["top", "left", "bottom", "right"])
def test_corner_pool_equals_naive_loop_and_has_gradients(direction: str) -> None:
    x = torch.randn(1, 2, 5, 6, requires_grad=True)
    pooled = corner_pool(x, direction)
    assert torch.equal(pooled, naive_pool(x.detach(), direction))
    pooled.sum().backward()
    assert x.grad is not None and x.grad.sum() == pooled.numel()  # each output's gradient reaches its argmax


def test_gaussian_radius_matches_hand_computation() -> None:
    # 10 x 10 box, IoU 0.7: the third quadratic (one corner in, one out) gives the smallest root:
    # a = 4·0.7, b = −2·0.7·20 = −28, c = −0.3·100 = −30; (b + sqrt(b² − 4ac)) / 2 = (−28 + sqrt(1120)) / 2.
    assert float(gaussian_radius(10, 10, 0.7)) == pytest.approx((-28 + math.sqrt(1120)) / 2)
    # CornerNet's IoU 0.3 on a 20 x 40 box: the third quadratic again, a = 1.2, b = −36, c = −0.7·800.
    roots = ((60 + math.sqrt(60**2 - 4 * 800 * 0.7 / 1.3)) / 2, (120 + math.sqrt(120**2 - 16 * 0.7 * 800)) / 2,
             (-36 + math.sqrt(36**2 + 4 * 1.2 * 0.7 * 800)) / 2)
    assert float(gaussian_radius(20, 40, 0.3)) == pytest.approx(min(roots)) == pytest.approx(roots[2])


def test_draw_gaussian_is_an_elementwise_max_clipped_at_the_border() -> None:
    heat = torch.zeros(5, 6)
    draw_gaussian(heat, (0, 1), radius=2)
    sigma = 5 / 6
    assert heat[1, 0] == 1 and heat[1, 1] == pytest.approx(math.exp(-1 / (2 * sigma**2)))
    assert heat[4, 0] == 0 and heat[1, 3] == 0  # outside the radius
    before = heat.clone()
    draw_gaussian(heat, (1, 1), radius=0)
    assert heat[1, 1] == 1 and torch.equal(heat[heat != 1], before[heat != 1])


def test_focal_loss_is_near_zero_for_a_perfect_prediction() -> None:
    target = torch.zeros(1, 2, 8, 8)
    draw_gaussian(target[0, 1], (3, 4), radius=2)
    perfect = focal_loss(perfect_heat(target), target)
    assert 0 <= float(perfect) < 1e-3
    assert float(focal_loss(torch.full_like(target, HEAT_PRIOR_BIAS), target)) > 1.0
    assert float(focal_loss(torch.randn_like(target), target)) > float(perfect)


def test_peaks_topk_and_gather_find_the_maxima() -> None:
    heat = torch.zeros(1, 3, 4, 5)
    heat[0, 2, 1, 3], heat[0, 2, 1, 4], heat[0, 0, 3, 0] = 0.9, 0.5, 0.7  # (1, 4) is not a local max
    top = topk(peaks(heat), 2)
    assert top.scores.tolist() == [pytest.approx([0.9, 0.7])]
    assert top.labels.tolist() == [[2, 0]] and top.ys.tolist() == [[1, 3]] and top.xs.tolist() == [[3, 0]]
    values = torch.arange(2 * 20.0).view(1, 2, 4, 5)
    assert gather_at(values, top.index).tolist() == [[[8.0, 28.0], [15.0, 35.0]]]


# ------------------------------------------------------------------------------ builds and detects
def test_every_keypoint_detector_has_a_small_build() -> None:
    names = {n for pattern in ("centernet_*", "cornernet_*", "extremenet_*") for n, _ in list_models(pattern)}
    assert names == set(SMALL)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_detect_returns_well_formed_detections(name: str) -> None:
    model = eager(small(name))
    found = model.detect(IMAGES)
    assert len(found) == len(IMAGES)
    for detections, image in zip(found, IMAGES, strict=True):
        height, width = image.shape[-2:]
        boxes, scores = detections.boxes, detections.scores
        assert len(detections) <= model.suppression.max_detections
        assert boxes.shape == (len(detections), 4) and torch.isfinite(boxes).all()
        assert (boxes[:, 2] >= boxes[:, 0]).all() and (boxes[:, 3] >= boxes[:, 1]).all()
        assert (boxes >= 0).all() and (boxes[:, [0, 2]] <= width).all() and (boxes[:, [1, 3]] <= height).all()
        assert ((scores >= 0) & (scores <= 1)).all() and (scores[:-1] >= scores[1:]).all()
        assert detections.labels.dtype == torch.int64
        assert ((detections.labels >= 0) & (detections.labels < model.num_classes)).all()
    assert all(len(d) for d in found)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_loss_terms_are_finite_and_train_every_stack(name: str) -> None:
    model = small(name).train()
    batch, metas = model.preprocess(IMAGES)
    raw = model(batch)
    targets = model.targets_to_input([Target(torch.tensor([[10.0, 10.0, 60.0, 70.0]]), torch.tensor([1])),
                                      Target(torch.tensor([[5.0, 8.0, 40.0, 50.0]]), torch.tensor([0]))], metas)
    terms = model.loss(raw, targets)
    assert all(t.ndim == 0 and torch.isfinite(t) for t in terms.values())
    sum(terms.values()).backward()
    heads = getattr(model, "heads", None)
    for stack in heads or []:
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in stack.parameters())


# ----------------------------------------------------------------------------- decode inverts encode
def test_centernet_decode_inverts_encode() -> None:
    model = create_model("centernet_resnet18", num_classes=3, **SMALL["centernet_resnet18"]).eval()
    map_hw = (32, 32)
    encoded = model.encode(TARGETS, map_hw, stride=4.0)
    c = encoded.centers
    raw = [{"hm": perfect_heat(c.heatmap), "wh": scatter(encoded.size, c.index, c.mask, map_hw),
            "reg": scatter(c.offset, c.index, c.mask, map_hw)}]
    assert_recovers(model.decode(raw, METAS), TARGETS)


def test_cornernet_decode_inverts_encode() -> None:
    model = create_model("cornernet_hourglass104", num_classes=3, input_size=128, **SMALL_HOURGLASS).eval()
    map_hw = (32, 32)
    encoded = corner_targets(TARGETS, map_hw, 4.0, 3, min_overlap=0.3)
    mask = encoded["tl"].mask
    tags = torch.arange(1.0, mask.shape[1] + 1).expand(mask.shape)[..., None] * 10  # one distinct tag per object
    raw = [{f"{corner}_{name}": value for corner, e in encoded.items() for name, value in (
        ("heat", perfect_heat(e.heatmap)), ("tag", scatter(tags, e.index, mask, map_hw)),
        ("offset", scatter(e.offset, e.index, mask, map_hw)))}]
    assert_recovers(model.decode(raw, METAS), TARGETS)


def test_extremenet_decode_inverts_encode() -> None:
    model = create_model("extremenet_hourglass104", num_classes=3, input_size=128, **SMALL_HOURGLASS).eval()
    map_hw = (32, 32)
    encoded = model.encode(TARGETS, map_hw, stride=4.0)
    heats = {f"{name}_heat": perfect_heat(e.heatmap) for name, e in encoded.items()}
    offsets = {f"{name}_offset": scatter(e.offset, e.index, e.mask, map_hw) for name, e in encoded.items()}
    raw = [heats | offsets]
    assert_recovers(model.decode(raw, METAS), TARGETS)


def test_extremenet_groups_in_chunks_like_at_once() -> None:
    model = small("extremenet_hourglass104")
    batch, metas = model.preprocess(IMAGES)
    with torch.inference_mode():
        raw = model(batch)
    at_once = model.decode(raw, metas)
    model.decoding = type(model.decoding)(max_combinations=7)
    chunked = model.decode(raw, metas)
    for a, b in zip(at_once, chunked, strict=True):
        assert torch.equal(a.scores, b.scores) and torch.equal(a.boxes, b.boxes)


def test_saccade_crops_follow_attention_and_map_back_to_input_pixels() -> None:
    model = small("cornernet_saccade")  # input 256: network and crops 64 pixels, maps 16 cells
    side = model.network_size
    full = {key: torch.full((1, 1, side // s, side // s), NEVER)
            for key, s in zip([a.key for a in ATTENTION_SCALES], (16, 8, 4), strict=True)}
    full["att_small"][0, 0, 5, 7] = SURE  # a small object at (x, y) = (7, 5) cells of stride 4 -> zoom 4
    plan = model.plan_crops(full)
    assert plan.image.tolist() == [0] and plan.zoom.tolist() == [4]
    assert plan.origin.tolist() == [[7 * 4 * 4 - side // 2, 5 * 4 * 4 - side // 2]]
    batch = torch.randn(1, 3, 256, 256)
    crop = model.cut_crops(batch, plan)[0]
    assert torch.equal(crop[:, side // 2, side // 2], batch[0, :, 5 * 16, 7 * 16])  # zoom 4 is the batch itself

    # A perfect crop detection at (10, 12)-(40, 44) crop pixels, crop at zoom 2 with origin (20, 30):
    # in input pixels ((10, 12, 40, 44) + (20, 30, 20, 30)) * 256 / 128.
    crop_target = [Target(torch.tensor([[10.0, 12.0, 40.0, 44.0]]), torch.tensor([1]))]
    encoded = corner_targets(crop_target, (16, 16), 4.0, 2, min_overlap=0.5)
    mask = encoded["tl"].mask
    crops = {f"{corner}_{name}": value for corner, e in encoded.items() for name, value in (
        ("heat", perfect_heat(e.heatmap)), ("tag", torch.zeros(1, 1, 16, 16)),
        ("offset", scatter(e.offset, e.index, mask, (16, 16))))}
    nothing = {key: torch.full_like(value, NEVER) if key.endswith("heat") else value for key, value in crops.items()}
    plan = CropPlan(torch.tensor([0]), torch.tensor([2]), torch.tensor([[20, 30]]), torch.tensor([2.0]))
    found = model.decode(SaccadeRaw(nothing, plan, crops), [ImageMeta((256, 256), 1.0)])
    got = confident(found[0])
    torch.testing.assert_close(got.boxes, torch.tensor([[60.0, 84.0, 120.0, 148.0]]), atol=1e-3, rtol=0)
    assert got.labels.tolist() == [1]


# ------------------------------------------------------------------------------------------- training
def test_centernet_loss_decreases_overfitting_a_tiny_batch() -> None:
    model = create_model("centernet_resnet18", **(SMALL["centernet_resnet18"] | {"input_size": 64})).train()
    batch, metas = model.preprocess(IMAGES)
    targets = model.targets_to_input([Target(torch.tensor([[10.0, 10.0, 60.0, 70.0]]), torch.tensor([3])),
                                      Target(torch.tensor([[5.0, 8.0, 40.0, 50.0], [60.0, 10.0, 110.0, 60.0]]),
                                             torch.tensor([0, 7]))], metas)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(30):
        loss = sum(model.loss(model(batch), targets).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    print(f"CenterNet loss over 30 steps: {losses[0]:.2f} -> {losses[-1]:.2f}")
    assert losses[-1] < 0.5 * losses[0], losses


# ------------------------------------------------------------------------------------- paper sizes
#: parameters at the paper's size: exact where the official code's count is known.
PAPER_PARAMS: dict[str, int | None] = {
    "cornernet_hourglass104": 201_035_212,  # CornerNet: "201 M"; backbone 187,700,352 + heads 13,334,860
    "cornernet_squeeze": 24_728_448 + 7_043_404,  # CornerNet-Lite code: backbone + heads
    "cornernet_saccade": None,
    "centernet_resnet18": None,
    "centernet_dla34": None,
    "centernet_hourglass104": None,
    "extremenet_hourglass104": None,
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(PAPER_PARAMS))
def test_paper_size_parameter_counts(name: str) -> None:
    with torch.device("meta"):
        model = create_model(name)
    params = sum(p.numel() for p in model.parameters())
    print(f"{name}: {params:,} parameters")
    if PAPER_PARAMS[name] is not None:
        assert params == PAPER_PARAMS[name]
