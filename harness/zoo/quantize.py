"""int8 post-training static quantization on the CPU, calibrated on real images (the digits train split).

Path taken: torch.ao FX graph mode (``prepare_fx`` → calibration → ``convert_fx``) with the backend's
``get_default_qconfig_mapping``. The converted model runs the backend's int8 kernels eagerly —
``quantized::conv2d(_relu)``, ``quantized::linear``, ``quantized::add(_relu)`` through fbgemm (x86) —
so its latency is timed like any module. Why this path, checked with torch 2.14.1:

- PT2E (``prepare_pt2e`` / ``convert_pt2e``, ``X86InductorQuantizer``) is no longer in torch; it moved to
  the ``torchao`` package, and its output is a float graph with quantize/dequantize nodes that only becomes
  int8 kernels when lowered by ``torch.compile`` (inductor, a C++ toolchain, minutes per model on two
  cores); eagerly it runs fp32 ops on fake-quantized values, so its latency would not be int8 latency.
- FX graph mode is still shipped and works, but is deprecated (torch warns that ``torch.ao.quantization``
  "will be removed", pointing to torchao, and that quantized tensor creation functions are deprecated,
  pytorch#184982): a later torch may drop it, and then this module must move to torchao PT2E + inductor.
  Those warnings are silenced here: the deprecation is this documented limit.

The recipe (recorded in the docs of the functions below):

- timm's ``BatchNormAct2d`` (BN and activation in one module, as in MobileNetV2/EfficientNet) is split
  into ``BatchNorm2d`` → activation first, so FX fuses conv + BN (+ ReLU) and the BN is folded into the
  int8 conv instead of running in fp32 between a dequantize and a quantize;
- weights: per-channel symmetric int8 (the backend's default); activations: per-tensor affine uint8
  from a ``MinMaxObserver`` (``observer="minmax"``, default) or torch's default ``HistogramObserver``
  (``observer="histogram"``). Measured on this CPU: the histogram observer gave the same SQNR within
  ±3 dB on random-weight ResNet-18/MobileNetV2 and took 25× longer to calibrate at 32 px (13 s vs 0.5 s
  for 256 images) and 1.7× at 224 px;
- x86/fbgemm use 7-bit activations (``reduce_range``): without AVX-512 VNNI their int8 kernels
  accumulate in int16 and saturate otherwise (on this AVX2 CPU, full range gave 4.6 dB SQNR on
  MobileNetV2 instead of 11.8 dB);
- ops without an int8 kernel for the backend stay fp32 behind a dequantize (FX does this itself); a
  model FX cannot trace (data-dependent control flow) or whose converted graph fails to run raises
  :class:`~harness.errors.SkipCase` with the reason.

The quantized model takes and returns fp32 tensors, runs on the CPU only, and needs
``torch.backends.quantized.engine`` at the backend it was packed for (:func:`quantize_int8` leaves it so).
"""

from __future__ import annotations

import contextlib
import copy
import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

import torch
from timm.layers import BatchNormAct2d
from torch import nn

from harness.case import Case
from harness.errors import HarnessError, SkipCase

if TYPE_CHECKING:
    from torch.ao.quantization import QConfigMapping

#: Backends (quantized engines) and whether their activations are 7-bit (``reduce_range``).
BACKEND_REDUCE_RANGE: dict[str, bool] = {"x86": True, "fbgemm": True, "onednn": False, "qnnpack": False}
#: Fixed calibration protocol: ``n_batches`` × this many images of the digits train split.
CALIBRATION_BATCH_SIZE = 8
#: Case fields an int8 case must hold: quantization starts from an fp32 model on the CPU, for inference.
INT8_REQUIREMENTS: dict[str, str] = {"device": "cpu", "dtype": "fp32", "mode": "inference"}
#: Attributes timm reads for a model's data config; carried to the quantized model so that it is fed
#: the same preprocessing as its fp32 twin.
TIMM_DATA_ATTRIBUTES = ("pretrained_cfg", "default_cfg")
#: What the FX trace, the conversion or the first int8 forward raise for a model the backend cannot take.
QUANTIZE_ERRORS: tuple[type[Exception], ...] = (
    torch.fx.proxy.TraceError,
    NotImplementedError,
    RuntimeError,
    TypeError,
    AssertionError,
)


def _observers() -> dict[str, type]:
    from torch.ao.quantization.observer import HistogramObserver, MinMaxObserver

    return {"minmax": MinMaxObserver, "histogram": HistogramObserver}


def _split_batchnorm_act(module: BatchNormAct2d) -> nn.Module:
    """Return ``BatchNorm2d`` → drop → act as a Sequential (identities left out), sharing no tensors."""
    bn = nn.BatchNorm2d(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats)
    bn.load_state_dict({k: v for k, v in module.state_dict().items() if "." not in k})
    bn.train(module.training)
    parts = (bn, module.drop, module.act)
    return nn.Sequential(*[m for m in parts if not isinstance(m, nn.Identity)])


#: Modules rewritten before tracing so that FX can fuse them (module type -> equivalent module).
FUSABLE_REWRITES: dict[type[nn.Module], Callable[[nn.Module], nn.Module]] = {BatchNormAct2d: _split_batchnorm_act}


def rewrite_for_fusion(model: nn.Module) -> nn.Module:
    """Replace, in place, every submodule listed in ``FUSABLE_REWRITES`` by its fusable equivalent; return model."""
    for name, child in model.named_children():
        rewrite = FUSABLE_REWRITES.get(type(child))
        if rewrite is not None:
            setattr(model, name, rewrite(child))
        else:
            rewrite_for_fusion(child)
    return model


def carry_data_attributes(source: nn.Module, target: nn.Module) -> nn.Module:
    """Copy onto ``target`` the timm data-config attributes (:data:`TIMM_DATA_ATTRIBUTES`) that ``source`` has, so
    that ``target`` is fed the same preprocessing; return ``target``."""
    for attribute in TIMM_DATA_ATTRIBUTES:
        if hasattr(source, attribute):
            setattr(target, attribute, getattr(source, attribute))
    return target


def require_engine(backend: str, what: str = "int8") -> None:
    """Raise SkipCase naming ``what`` when torch has no ``backend`` quantized engine here; return None otherwise."""
    if backend not in torch.backends.quantized.supported_engines:
        engines = torch.backends.quantized.supported_engines
        raise SkipCase(f"{what}: torch has no {backend} quantized engine here (it has {engines})")


@contextlib.contextmanager
def skip_unquantizable(model: nn.Module, what: str) -> Iterator[None]:
    """Return a context in which torch.ao's deprecation and ``reduce_range`` warnings are silenced (the documented
    limit, see the module doc) and :data:`QUANTIZE_ERRORS` become SkipCase("``what``: cannot quantize <class of
    ``model``>: <error>")."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*(deprecated|reduce_range).*")
        try:
            yield
        except QUANTIZE_ERRORS as exc:
            reason = next(iter(str(exc).strip().splitlines()), "")
            raise SkipCase(f"{what}: cannot quantize {type(model).__name__}: {type(exc).__name__}: {reason}") from exc


def qconfig_mapping(backend: str, observer: str = "minmax") -> QConfigMapping:
    """Return the FX ``QConfigMapping``: the backend's default, with ``observer`` for activations."""
    from torch.ao.quantization import QConfig, get_default_qconfig, get_default_qconfig_mapping

    default = get_default_qconfig(backend)
    activation = _observers()[observer].with_args(reduce_range=BACKEND_REDUCE_RANGE[backend])
    return get_default_qconfig_mapping(backend).set_global(QConfig(activation=activation, weight=default.weight))


def quantize_int8(
    model: nn.Module,
    calibration_batches: Sequence[torch.Tensor],
    backend: str = "x86",
    observer: str = "minmax",
) -> nn.Module:
    """Return an int8 copy of the fp32 CPU ``model``, calibrated on ``calibration_batches`` (fp32 NCHW).

    Post-training static quantization through torch.ao FX graph mode (see module doc). ``model`` is put
    in eval mode and otherwise left unchanged. The result is an ``fx.GraphModule`` in eval mode that takes
    and returns fp32 tensors and carries the model's timm data config. Raises SkipCase when torch lacks
    the ``backend`` engine or cannot quantize the model, HarnessError for an unknown backend or observer,
    no batches, or a model that is not fp32 on the CPU; a model failing in fp32 raises its own error.
    """
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    if backend not in BACKEND_REDUCE_RANGE or observer not in _observers():
        raise HarnessError(
            f"int8: backend {backend!r} / observer {observer!r}: known backends {sorted(BACKEND_REDUCE_RANGE)}, "
            f"observers {sorted(_observers())}"
        )
    require_engine(backend)
    if not calibration_batches:
        raise HarnessError("int8: no calibration batches")
    if any(p.device.type != "cpu" or p.dtype != torch.float32 for p in model.parameters()):
        raise HarnessError("int8: quantize_int8 needs an fp32 model on the CPU")
    with torch.no_grad():
        model.eval()(calibration_batches[0])  # a model that fails in fp32 fails the case, it is not skipped
    torch.backends.quantized.engine = backend
    with skip_unquantizable(model, f"int8 ({backend})"):
        prepared = prepare_fx(
            rewrite_for_fusion(copy.deepcopy(model).eval()),
            qconfig_mapping(backend, observer),
            example_inputs=(calibration_batches[0],),
        )
        with torch.no_grad():
            for batch in calibration_batches:
                prepared(batch)
        quantized = convert_fx(prepared)
        with torch.no_grad():
            quantized(calibration_batches[0])  # an op without an int8 kernel fails here, not in a metric
    return carry_data_attributes(model, quantized).eval()


def check_int8_case(case: Case) -> None:
    """Raise SkipCase when ``case`` asks for int8 with a field int8 cannot have (see ``INT8_REQUIREMENTS``)."""
    for field, needed in INT8_REQUIREMENTS.items():
        value = getattr(case, field)
        if value != needed:
            raise SkipCase(f"int8 static quantization (torch.ao, CPU kernels) needs {field}={needed}, not {value}")


def calibration_batches(case: Case, model: nn.Module, n_batches: int = 8) -> list[torch.Tensor]:
    """Return ``n_batches`` fp32 CPU batches of ``CALIBRATION_BATCH_SIZE`` digits train images for ``case``.

    Images are preprocessed for the fp32 ``model`` (its timm data config) at the case's resolution and
    channels; they are an evenly spaced subset of the class-sorted train split, so every class is seen.
    Raises SkipCase when the case cannot be int8 (see :func:`check_int8_case`).
    """
    from harness.data.digits import digits_root
    from harness.data.imagefolder import image_folder_loader

    check_int8_case(case)
    loader = image_folder_loader(
        digits_root() / "train",
        model,
        case.resolution,
        case.channels,
        batch_size=CALIBRATION_BATCH_SIZE,
        limit=n_batches * CALIBRATION_BATCH_SIZE,
    )
    return [images for images, _ in loader]


def output_sqnr_db(reference: torch.Tensor, test: torch.Tensor) -> float:
    """Return the signal-to-quantization-noise ratio 10·log10(Σ reference² / Σ (reference − test)²) in dB.

    Both are compared as fp32 (a quantized ``test`` is dequantized); identical tensors give ``inf``.
    """
    reference = reference.detach().float()
    test = (test.dequantize() if test.is_quantized else test).detach().float()
    noise = float((reference - test).pow(2).sum())
    signal = float(reference.pow(2).sum())
    return math.inf if noise == 0 else 10 * math.log10(signal / noise)
