"""The placeholder model of the Distance-IoU paper's box-regression simulation (Zheng et al., AAAI 2020).

There is no network in that experiment: anchor boxes are moved by gradient descent on a box loss straight towards
their targets (:mod:`harness.metrics.box_simulation`). The model only carries the case's ``box_loss`` (set by
:func:`harness.zoo.build._apply_detector_fields`, which reads the class attributes below) through the harness.
"""

from __future__ import annotations

import torch
from torch import nn

from harness.zoo.registry import register_model


class BoxRegressionSimulation(nn.Module):
    """No parameters, identity forward; ``box_loss`` is the loss the simulation descends (one of
    :attr:`BOX_LOSSES`, set from the case)."""

    #: The box losses the simulation compares (harness.zoo.detectors.box_losses.BOX_LOSSES).
    BOX_LOSSES: tuple[str, ...] = ("iou", "giou", "diou", "ciou")
    #: No notion of negatives: only ``default`` is accepted.
    NEGATIVES: tuple[str, ...] = ()

    def __init__(self) -> None:
        super().__init__()
        self.box_loss = "default"
        self.negatives = "default"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


@register_model(origin="harness", source="Zheng et al. 2020, Distance-IoU Loss (AAAI), simulation experiment, "
                                         "Algorithm 1 and Fig. 3; https://arxiv.org/abs/1911.08287")
def box_regression_simulation(**_: object) -> nn.Module:
    """Return the placeholder of the DIoU paper's box-regression simulation (no parameters; metric
    ``box_simulation`` does the work, with the case's ``box_loss``)."""
    return BoxRegressionSimulation()
