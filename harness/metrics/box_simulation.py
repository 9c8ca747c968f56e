"""The Distance-IoU paper's box-regression simulation: how fast gradient descent on a box loss brings anchor boxes onto
their targets (Zheng et al., "Distance-IoU Loss: Faster and Better Learning for Bounding Box Regression", AAAI 2020,
https://arxiv.org/abs/1911.08287, simulation experiment, Algorithm 1, Fig. 3).

Protocol (defaults = the paper's; checked against the authors' MATLAB script ``simulation experiment/test_1715k.m``
and figures in https://github.com/Zzh-tju/DIoU):

- **Targets**: 7 boxes of unit area with aspect ratios (width:height) 1:4, 1:3, 1:2, 1:1, 2:1, 3:1, 4:1, all centred at
  (10, 10).
- **Anchors**: centred at ``points`` (5 000) points drawn uniformly over the disc of ``radius`` 3 around (10, 10)
  (radius √U · 3, angle 2πU, from a ``torch.Generator`` seeded with the case's seed); at each point, for each target,
  ``scales`` (areas 0.5, 0.67, 0.75, 1, 1.33, 1.5, 2 × the target's) × the same 7 ``aspect_ratios``: 7 × 7 × 7 × 5 000 =
  1 715 000 regression cases.
- **Descent**: a box is (x, y, w, h) (centre, width, height); each iteration t = 1…T moves every box at once by
  B_t = B_{t−1} − η_t (2 − IoU_{t−1}) ∇_B L(B_{t−1}, B_gt), the gradient taken by autograd on the case's
  ``box_loss`` from :data:`harness.zoo.detectors.box_losses.BOX_LOSSES` (``iou``, ``giou``, ``diou``, ``ciou``).
  η_t = ``lr`` (0.1), multiplied by ``lr_gamma`` (0.1) after each fraction of the iterations in ``lr_milestones``
  (0.8, 0.9): with T = 200, η = 0.1 up to iteration 160, 0.01 up to 180, then 0.001 — as the authors' script does (the
  paper's text gives η = 0.1 only; its error curves drop at iteration 160, which is this schedule). Widths and heights
  are kept ≥ 1e-6 (a box that would turn inside out stays a sliver; ``boxsim_clamped`` counts such steps).
- **Error**: after each iteration, the ℓ1 distance between every box and its target in (x, y, w, h), summed over all
  cases (``boxsim_error_per_iter``; summed in float64); ``boxsim_error_final`` is the last, ``boxsim_error_initial``
  the anchors' before any step.

Where ours differs from the authors' script: their gradients are written by hand in the DIoU-Darknet convention, in
which the IoU term's derivative with respect to w and h is d/dr − d/dl (twice the analytic derivative), and CIoU's
aspect-ratio term drops the 1/(w² + h²) factor; ours are autograd's analytic gradients of torchvision's losses (CIoU's
α held constant, as torchvision does). The numbers are therefore close to, not identical with, the paper's.

``subsample`` keeps every n-th point (a quick look at the same set-up: the error scales by about 1/n).
The simulation ignores the model (a :class:`~harness.zoo.box_simulation.BoxRegressionSimulation`) and the input batch.
"""

from __future__ import annotations

import math
import time
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from harness.case import Case
from harness.errors import HarnessError, SkipCase

NAME = "box_simulation"
#: Its values depend on the case's seed (the anchors' centres): a suite's `repeats` takes it at every seed.
SEEDED = True

#: The targets' common centre (the paper's (10, 10)).
CENTER = 10.0
#: Widths and heights are kept at least this (a step that would make one negative leaves a sliver).
MIN_SIZE = 1e-6
#: The paper's anchor areas relative to the target's, and aspect ratios (width / height) of targets and anchors.
PAPER_SCALES = (0.5, 0.67, 0.75, 1.0, 1.33, 1.5, 2.0)
PAPER_ASPECT_RATIOS = (1 / 4, 1 / 3, 1 / 2, 1.0, 2.0, 3.0, 4.0)
#: The losses the simulation compares (names of harness.zoo.detectors.box_losses.BOX_LOSSES).
LOSSES = ("iou", "giou", "diou", "ciou")


class Options(BaseModel):
    """The simulation's set-up; every option is recorded with the result."""

    model_config = ConfigDict(extra="forbid")
    iterations: int = Field(200, ge=1)
    lr: float = Field(0.1, gt=0)
    lr_milestones: list[float] = Field(default_factory=lambda: [0.8, 0.9])
    lr_gamma: float = Field(0.1, gt=0)
    points: int = Field(5000, ge=1)
    radius: float = Field(3.0, ge=0)
    scales: list[float] = Field(default_factory=lambda: list(PAPER_SCALES), min_length=1)
    aspect_ratios: list[float] = Field(default_factory=lambda: list(PAPER_ASPECT_RATIOS), min_length=1)
    subsample: int = Field(1, ge=1)
    chunk_cases: int = Field(500_000, ge=1)
    dtype: Literal["float32", "float64"] = "float32"

    def model_post_init(self, _: Any) -> None:
        if any(v <= 0 for v in (*self.scales, *self.aspect_ratios)):
            raise ValueError("scales and aspect_ratios must be positive")
        if any(not 0 < m <= 1 for m in self.lr_milestones):
            raise ValueError("lr_milestones are fractions of the iterations, in (0, 1]")


COLUMNS: dict[str, str] = {
    "boxsim_loss": "string",
    "boxsim_cases": "int64",
    "boxsim_iterations": "int64",
    "boxsim_error_initial": "float64",
    "boxsim_error_final": "float64",
    "boxsim_error_per_iter": "list<float64>",
    "boxsim_iou_final_mean": "float64",
    "boxsim_clamped": "int64",
    "boxsim_s": "float64",
}


def learning_rates(options: Options) -> list[float]:
    """Return η of each iteration 1…T: ``lr`` times ``lr_gamma`` per milestone (round(fraction · T)) passed."""
    steps = [round(m * options.iterations) for m in options.lr_milestones]
    return [options.lr * options.lr_gamma ** sum(t > s for s in steps) for t in range(1, options.iterations + 1)]


def _sizes(areas: torch.Tensor, ratios: torch.Tensor) -> torch.Tensor:
    """Return ``(len(areas), len(ratios), 2)`` widths and heights of boxes of each area and width/height ratio."""
    return torch.stack([(areas[:, None] * ratios[None, :]).sqrt(), (areas[:, None] / ratios[None, :]).sqrt()], dim=-1)


def make_cases(options: Options, seed: int, dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(anchors, targets)``, each ``(cases, 4)`` (x, y, w, h), ordered point × target ratio × scale ×
    anchor ratio (the authors' loop order). Points are drawn uniformly over the disc by a generator seeded with
    ``seed``; ``subsample`` keeps every n-th point."""
    generator = torch.Generator().manual_seed(seed)
    u = torch.rand(options.points, 2, generator=generator, dtype=torch.float64)
    r, theta = options.radius * u[:, 0].sqrt(), 2 * math.pi * u[:, 1]
    centers = torch.stack([CENTER + r * theta.cos(), CENTER + r * theta.sin()], dim=1)[:: options.subsample]
    ratios = torch.tensor(options.aspect_ratios, dtype=torch.float64)
    scales = torch.tensor(options.scales, dtype=torch.float64)
    target_wh = _sizes(torch.ones(1, dtype=torch.float64), ratios)[0]  # (R, 2): unit area
    anchor_wh = _sizes(scales, ratios)  # (S, R, 2): area = scale × the target's (1)
    p, n_ratio, n_scale = len(centers), len(ratios), len(scales)
    shape = (p, n_ratio, n_scale, n_ratio)
    anchors = torch.cat([centers[:, None, None, None, :].expand(*shape, 2),
                         anchor_wh[None, None].expand(*shape, 2)], dim=-1)
    targets = torch.cat([torch.full((*shape, 2), CENTER, dtype=torch.float64),
                         target_wh[None, :, None, None, :].expand(*shape, 2)], dim=-1)
    return anchors.reshape(-1, 4).to(dtype), targets.reshape(-1, 4).to(dtype)


def to_corners(boxes: torch.Tensor) -> torch.Tensor:
    """Return (x, y, w, h) boxes as (x1, y1, x2, y2)."""
    half = boxes[:, 2:] / 2
    return torch.cat([boxes[:, :2] - half, boxes[:, :2] + half], dim=1)


def regress(anchors: torch.Tensor, targets: torch.Tensor, loss: str,
            rates: list[float]) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Run the paper's descent from ``anchors`` towards ``targets`` ((N, 4) x, y, w, h) on box loss ``loss``, one
    iteration per learning rate in ``rates``; return the final boxes, the summed ℓ1 error after each iteration
    (float64, shape (T,)) and how many width/height values were clamped at :data:`MIN_SIZE`."""
    from harness.zoo.detectors.box_losses import BOX_LOSSES, iou_loss

    loss_fn = BOX_LOSSES[loss]
    target_corners = to_corners(targets)
    boxes = anchors.clone()
    errors = torch.empty(len(rates), dtype=torch.float64)
    clamped = 0
    for t, rate in enumerate(rates):
        with torch.enable_grad():
            leaf = boxes.detach().requires_grad_(True)
            corners = to_corners(leaf)
            (grad,) = torch.autograd.grad(loss_fn(corners, target_corners).sum(), leaf)
        with torch.no_grad():
            iou = 1 - iou_loss(corners.detach(), target_corners)
            boxes = boxes - rate * (2 - iou)[:, None] * grad
            sizes = boxes[:, 2:]
            small = sizes < MIN_SIZE
            if bool(small.any()):
                clamped += int(small.sum())
                boxes[:, 2:] = sizes.clamp(min=MIN_SIZE)
            errors[t] = (boxes - targets).abs().sum(dtype=torch.float64)
    return boxes, errors, clamped


def _loss_of(case: Case) -> str:
    if case.box_loss not in LOSSES:
        raise HarnessError(f"metric box_simulation needs a box_loss of {', '.join(LOSSES)} in the case (the loss to "
                           f"descend); got {case.box_loss!r}: add `box_loss: [{', '.join(LOSSES)}]` to the matrix")
    return case.box_loss


def measure(model: torch.nn.Module, inputs: torch.Tensor, case: Case, options: Options) -> dict[str, Any]:
    """Run the simulation for the case's ``box_loss`` over every regression case (in chunks of ``chunk_cases``) and
    return the summed ℓ1 error per iteration, the final error and mean IoU, and the time it took."""
    from harness.zoo.box_simulation import BoxRegressionSimulation

    loss = _loss_of(case)
    if not isinstance(model, BoxRegressionSimulation):
        raise SkipCase(f"metric box_simulation runs on model box_regression_simulation, not {case.model!r}")
    from harness.zoo.detectors.box_losses import iou_loss

    dtype = torch.float64 if options.dtype == "float64" else torch.float32
    start = time.perf_counter()
    anchors, targets = make_cases(options, case.seed, dtype)
    rates = learning_rates(options)
    errors = torch.zeros(options.iterations, dtype=torch.float64)
    iou_sum, clamped = 0.0, 0
    for begin in range(0, len(anchors), options.chunk_cases):
        chunk_anchors = anchors[begin: begin + options.chunk_cases].to(case.device)
        chunk_targets = targets[begin: begin + options.chunk_cases].to(case.device)
        final, chunk_errors, chunk_clamped = regress(chunk_anchors, chunk_targets, loss, rates)
        errors += chunk_errors.cpu()
        clamped += chunk_clamped
        iou = 1 - iou_loss(to_corners(final), to_corners(chunk_targets))
        iou_sum += float(iou.sum(dtype=torch.float64))
    return {
        "boxsim_loss": loss,
        "boxsim_cases": len(anchors),
        "boxsim_iterations": options.iterations,
        "boxsim_error_initial": float((anchors.double() - targets.double()).abs().sum()),
        "boxsim_error_final": float(errors[-1]),
        "boxsim_error_per_iter": errors.tolist(),
        "boxsim_iou_final_mean": iou_sum / len(anchors),
        "boxsim_clamped": clamped,
        "boxsim_s": time.perf_counter() - start,
    }
