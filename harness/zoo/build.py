"""From a Case to what is measured: the model (precision, layout, quantization, compilation applied)
and its seeded input batch. Runs in the worker process.
"""

from __future__ import annotations

import contextlib
import dataclasses

import torch
from torch import nn

from harness.case import Case
from harness.errors import HarnessError, SkipCase
from harness.zoo.registry import create_model
from harness.zoo.slowdown import inject_slowdown

TORCH_DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class Autocast(nn.Module):
    """Runs the wrapped model's forward under ``torch.autocast`` (fp32 weights, low-precision ops)."""

    def __init__(self, model: nn.Module, device_type: str, dtype: torch.dtype) -> None:
        super().__init__()
        self.model = model
        self.pretrained_cfg = getattr(model, "pretrained_cfg", {})  # the same preprocessing as the model
        self.device_type = device_type
        self.dtype = dtype

    def forward(self, *args: object, **kwargs: object) -> object:
        with torch.autocast(self.device_type, dtype=self.dtype):
            return self.model(*args, **kwargs)


def input_dtype(case: Case) -> torch.dtype:
    """Return the dtype of the case's input: the case's dtype when converting, else fp32."""
    converted = case.precision == "convert" and case.quant == "none"
    return TORCH_DTYPES[case.dtype] if converted else torch.float32


def build_inputs(case: Case) -> torch.Tensor:
    """Return a seeded standard-normal NCHW batch for ``case``: device, dtype and memory format applied."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(case.input_shape, generator=generator).to(device=case.device, dtype=input_dtype(case))
    return x.contiguous(memory_format=torch.channels_last) if case.channels_last else x


def _check_supported(case: Case) -> None:
    if case.device == "cuda" and not torch.cuda.is_available():
        raise SkipCase("no CUDA device on this machine")
    if case.quant == "int8":
        from harness.zoo.quantize import check_int8_case

        check_int8_case(case)
    if case.precision == "autocast" and case.dtype == "fp32":
        raise SkipCase("precision autocast needs dtype fp16 or bf16")


def _apply_detector_fields(model: nn.Module, case: Case) -> None:
    """Set a detector's input side to the case's resolution and its suppression to the case's ``postprocess``, and
    the training choices ``box_loss`` and ``negatives`` on any model that offers them (class attributes
    ``BOX_LOSSES`` / ``NEGATIVES``: every detector, and the box-regression simulation). HarnessError when a case asks
    a model for what it has no notion of; SkipCase when the model's family does not offer the value asked."""
    from harness.zoo.detectors import Detector

    if isinstance(model, Detector):
        if case.width not in (None, case.resolution):
            raise HarnessError(f"{case.model} is a detector: it takes a square input (resolution), not "
                               f"{case.input_text} px")
        model.input_size = case.resolution
        model.suppression = model.suppression.with_method(case.postprocess)
    elif case.postprocess != "default":
        raise HarnessError(f"postprocess {case.postprocess!r} applies to detectors only; {case.model!r} is not one")
    for name, attribute in (("box_loss", "BOX_LOSSES"), ("negatives", "NEGATIVES")):
        value = getattr(case, name)
        offered = getattr(model, attribute, None)
        if offered is None:
            if value != "default":
                raise HarnessError(f"{name} {value!r} applies to detectors only; {case.model!r} is not one")
            continue
        if value != "default" and value not in offered:
            raise SkipCase(f"{case.model} ({type(model).__name__}) offers {name} "
                           f"{', '.join(offered) or 'default only'}, not {value!r}")
        setattr(model, name, value)


def build_model(case: Case) -> nn.Module:
    """Return the case's model with random weights drawn from the case's seed, in eval mode, ready to measure
    (on the meta device: built there, without weights).

    Applied in order: a detector's input size and post-processing, the normalization swap (``case.norm``),
    the compression (``case.compress``: :func:`harness.zoo.compress.compress_model`, its info kept in the
    returned model's attribute ``harness_compress_info``), int8 quantization (calibrated on real images) or
    conversion to the case's device and dtype (or an autocast wrapper), channels_last, then torch.compile. Raises
    SkipCase for combinations this machine or backend cannot run. Last, a slowdown ``HARNESS_INJECT_SLOWDOWN`` asks
    for is wrapped around it (:mod:`harness.zoo.slowdown`: calibration only, unset in normal use).
    """
    from harness.seeding import seed_everything

    _check_supported(case)
    seed_everything(case.seed)
    # on the meta device the parameters are never allocated nor initialised: what counting needs, nothing more
    with torch.device("meta") if case.device == "meta" else contextlib.nullcontext():
        model = create_model(case.model, **dict(case.model_kwargs)).eval()
    _apply_detector_fields(model, case)
    if case.norm != "native":
        from harness.zoo.norms import swap_norm

        device_option = {"device": case.device} if case.norm == "syncbn" else {}
        swap_norm(model, case.norm, **dict(case.norm_kwargs), **device_option)
    info = None
    if case.compress != "none":
        from harness.zoo.compress import INFO_ATTRIBUTE, compress_model

        model = compress_model(model, case, build_inputs(dataclasses.replace(case, device="cpu", dtype="fp32",
                                                                             channels_last=False)))
        info = getattr(model, INFO_ATTRIBUTE)
    if case.quant == "int8":
        from harness.zoo.quantize import calibration_batches, quantize_int8

        model = quantize_int8(model, calibration_batches(case, model))
    elif case.precision == "autocast":
        model = Autocast(model.to(case.device), case.device, TORCH_DTYPES[case.dtype])
    else:
        model = model.to(device=case.device, dtype=TORCH_DTYPES[case.dtype])
    if case.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if case.compile != "none":
        model = torch.compile(model, mode=case.compile)
    model = inject_slowdown(model, case.model)
    if info is not None:
        setattr(model, INFO_ATTRIBUTE, info)
    return model
