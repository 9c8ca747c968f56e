"""Case: one point of a suite's matrix, frozen and hashable, with a stable ``case_id``.

A case knows nothing about torch; it is plain data that travels to the worker process and into the
results store. Its ``case_id`` is a hash of its fields that do not hold their default value, so adding
a new optional field to this class (a later axis) leaves every existing ``case_id`` unchanged, and the
order in which a suite spells its keys does not matter.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

#: ``meta``: the model built without weights (``torch.device("meta")``), for counting only: no memory for weights, no
#: initialisation, so the largest architectures count in seconds (the complexity metric only; see harness.suite).
DEVICES = ("cpu", "cuda", "meta")
DTYPES = ("fp32", "fp16", "bf16")
PRECISION_MODES = ("convert", "autocast")
QUANT = ("none", "int8")
COMPILE_MODES = ("none", "default", "reduce-overhead", "max-autotune")
MODES = ("inference", "train")
#: Normalization kinds (harness.zoo.norms): ``native`` keeps the model's own layers.
NORMS = ("native", "bn", "gn", "ln", "ln2d", "in", "sn", "syncbn")

#: Post-processing of a detector's candidates (harness.zoo.detectors.postprocess.METHODS): ``default`` keeps
#: the detector's own (its paper's).
POSTPROCESS = ("default", "none", "nms", "batched_nms", "soft_nms_linear", "soft_nms_gaussian", "diou_nms")

#: Box-regression losses a detector's training may use (harness.zoo.detectors.box_losses): ``default`` keeps the
#: detector's own.
BOX_LOSSES = ("default", "l1", "smooth_l1", "mse", "iou", "giou", "diou", "ciou")
#: How a one-stage detector's training treats the mass of easy negatives: ``default`` keeps its paper's,
#: ``hard_mining`` (SSD: the highest-loss negatives at a fixed ratio to positives), ``focal`` (RetinaNet's focal loss).
NEGATIVES = ("default", "hard_mining", "focal")

#: Model compression methods (harness.zoo.compress.METHOD_MODULES): ``none`` is the dense model.
COMPRESS = ("none", "magnitude_prune", "channel_prune", "slimming", "low_rank", "weight_sharing", "distill", "qat_int8")

#: Fields holding keyword arguments: tuples of sorted (name, value) pairs, dicts in suites and storage.
KWARGS_FIELDS = ("model_kwargs", "norm_kwargs", "compress_kwargs")


@dataclass(frozen=True)
class Case:
    """One measurement: a model at an input shape on a device, in a dtype.

    Fields are the suite's matrix axes. ``resolution`` is the input's side in pixels (its height when ``width`` is
    given: a non-square input, e.g. 1024 x 768); ``batch``
    the number of images per forward pass; ``channels`` the input channels. ``precision`` says how a
    fp16/bf16 ``dtype`` is applied: ``convert`` (model and input converted) or ``autocast`` (fp32
    weights, ops under torch.autocast). ``quant`` ``int8``: post-training static quantization (CPU).
    ``channels_last``: model and input in NHWC memory format. ``compile``: a torch.compile mode or
    ``none``. ``mode``: ``inference`` (forward under inference_mode) or ``train`` (a training step).
    ``norm``: every BatchNorm swapped for that normalization kind (``norm_kwargs`` its options, e.g.
    ``groups``), or ``native``. ``world_size``: processes (one per GPU on CUDA) in a torch.distributed
    group that run the case together, ``batch`` images each (the per-device batch); above 1, or with
    ``syncbn``, the case is launched through torchrun. ``postprocess``: a detector's suppression of
    overlapping detections (NMS, Soft-NMS, ...), or ``default``, its paper's. ``seed``: fixes what is random
    in the case (the weights' initialisation, the training's data order, dropout; torch, numpy and Python RNGs):
    the records of one case's seeds share its :attr:`group_id`. ``box_loss`` and ``negatives``: a detector's
    training choices (the box-regression loss; hard negative mining or focal loss), ``default`` its paper's.
    ``compress``: a model compression method applied to the built model (``compress_kwargs`` its options), or
    ``none``.
    """

    model: str
    resolution: int = 224
    batch: int = 1
    device: str = "cpu"
    dtype: str = "fp32"
    channels: int = 3
    threads: int | None = None
    model_kwargs: tuple[tuple[str, Any], ...] = field(default=())
    precision: str = "convert"
    quant: str = "none"
    channels_last: bool = False
    compile: str = "none"
    mode: str = "inference"
    norm: str = "native"
    norm_kwargs: tuple[tuple[str, Any], ...] = field(default=())
    world_size: int = 1
    postprocess: str = "default"
    seed: int = 0
    box_loss: str = "default"
    negatives: str = "default"
    compress: str = "none"
    compress_kwargs: tuple[tuple[str, Any], ...] = field(default=())
    width: int | None = None

    @property
    def case_id(self) -> str:
        """Return a 16-hex-digit stable hash of the fields that differ from their defaults."""
        payload = json.dumps(self.identity(), sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    @property
    def group_id(self) -> str:
        """Return the ``case_id`` of this case at seed 0: the same for every seed of one case."""
        return dataclasses.replace(self, seed=0).case_id

    def identity(self) -> dict[str, Any]:
        """Return the fields that define this case: every field not at its default value."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            default = f.default if f.default is not dataclasses.MISSING else None
            if f.name in KWARGS_FIELDS:
                if value:
                    out[f.name] = dict(value)
            elif f.name == "model" or value != default:
                out[f.name] = value
        return out

    @property
    def label(self) -> str:
        """Return a short human-readable name, e.g. ``resnet18 b8 224px cpu fp32``."""
        text = f"{self.model} b{self.batch} {self.input_text}px {self.device} {self.dtype}"
        extras = {
            "autocast": self.precision == "autocast",
            self.quant: self.quant != "none",
            "channels_last": self.channels_last,
            f"compile={self.compile}": self.compile != "none",
            self.mode: self.mode != "inference",
            f"norm={self.norm}": self.norm != "native",
            f"world={self.world_size}": self.world_size != 1,
            f"post={self.postprocess}": self.postprocess != "default",
            f"box_loss={self.box_loss}": self.box_loss != "default",
            f"negatives={self.negatives}": self.negatives != "default",
            f"compress={self.compress}": self.compress != "none",
            f"seed={self.seed}": self.seed != 0,
        }
        text += "".join(f" {name}" for name, shown in extras.items() if shown)
        for kwargs in (self.model_kwargs, self.norm_kwargs, self.compress_kwargs):
            if kwargs:
                text += " " + ",".join(f"{k}={v}" for k, v in kwargs)
        return text

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        """Return the NCHW input shape of one forward pass."""
        return (self.batch, self.channels, self.resolution, self.width or self.resolution)

    @property
    def input_text(self) -> str:
        """Return the input's size in pixels as text: ``224``, or ``1024x768`` (height x width) when not square."""
        return f"{self.resolution}x{self.width}" if self.width else str(self.resolution)

    def to_dict(self) -> dict[str, Any]:
        """Return the case as a plain dict (keyword-argument fields as dicts) for transport and storage."""
        d = dataclasses.asdict(self)
        for name in KWARGS_FIELDS:
            d[name] = dict(getattr(self, name))
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Case:
        """Build a case from a plain dict as produced by :meth:`to_dict` or a suite's matrix."""
        data = dict(data)
        for name in KWARGS_FIELDS:
            data[name] = tuple(sorted(dict(data.get(name) or {}).items()))
        return cls(**data)

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """Return the names of the case's fields (the possible matrix axes)."""
        return tuple(f.name for f in dataclasses.fields(cls))

    def storage_columns(self) -> dict[str, Any]:
        """Return the case's fields as store columns (keyword-argument fields as sorted JSON text)."""
        d = self.to_dict()
        for name in KWARGS_FIELDS:
            d[name] = json.dumps(d[name], sort_keys=True, default=str)
        return d


def matches(point: dict[str, Any], rule: dict[str, Any]) -> bool:
    """Return True when every key of ``rule`` matches ``point`` (a case as :meth:`Case.to_dict`; a list in the
    rule means any of)."""
    for key, wanted in rule.items():
        options = wanted if isinstance(wanted, list) else [wanted]
        if point.get(key) not in options:
            return False
    return True


#: Store column type of every Case field (see harness.store.ARROW_TYPES).
CASE_COLUMNS: dict[str, str] = {
    "model": "string",
    "resolution": "int64",
    "batch": "int64",
    "device": "string",
    "dtype": "string",
    "channels": "int64",
    "threads": "int64",
    "model_kwargs": "string",
    "precision": "string",
    "quant": "string",
    "channels_last": "bool",
    "compile": "string",
    "mode": "string",
    "norm": "string",
    "norm_kwargs": "string",
    "world_size": "int64",
    "postprocess": "string",
    "seed": "int64",
    "box_loss": "string",
    "negatives": "string",
    "compress": "string",
    "compress_kwargs": "string",
    "width": "int64",
}
