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

DEVICES = ("cpu", "cuda")
DTYPES = ("fp32", "fp16", "bf16")
PRECISION_MODES = ("convert", "autocast")
QUANT = ("none", "int8")
COMPILE_MODES = ("none", "default", "reduce-overhead", "max-autotune")
MODES = ("inference", "train")


@dataclass(frozen=True)
class Case:
    """One measurement: a model at an input shape on a device, in a dtype.

    Fields are the suite's matrix axes. ``resolution`` is the square input side in pixels; ``batch``
    the number of images per forward pass; ``channels`` the input channels. ``precision`` says how a
    fp16/bf16 ``dtype`` is applied: ``convert`` (model and input converted) or ``autocast`` (fp32
    weights, ops under torch.autocast). ``quant`` ``int8``: post-training static quantization (CPU).
    ``channels_last``: model and input in NHWC memory format. ``compile``: a torch.compile mode or
    ``none``. ``mode``: ``inference`` (forward under inference_mode) or ``train`` (a training step).
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

    @property
    def case_id(self) -> str:
        """Return a 16-hex-digit stable hash of the fields that differ from their defaults."""
        payload = json.dumps(self.identity(), sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def identity(self) -> dict[str, Any]:
        """Return the fields that define this case: every field not at its default value."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            default = f.default if f.default is not dataclasses.MISSING else None
            if f.name == "model_kwargs":
                if value:
                    out[f.name] = dict(value)
            elif f.name == "model" or value != default:
                out[f.name] = value
        return out

    @property
    def label(self) -> str:
        """Return a short human-readable name, e.g. ``resnet18 b8 224px cpu fp32``."""
        text = f"{self.model} b{self.batch} {self.resolution}px {self.device} {self.dtype}"
        extras = {
            "autocast": self.precision == "autocast",
            self.quant: self.quant != "none",
            "channels_last": self.channels_last,
            f"compile={self.compile}": self.compile != "none",
            self.mode: self.mode != "inference",
        }
        text += "".join(f" {name}" for name, shown in extras.items() if shown)
        if self.model_kwargs:
            text += " " + ",".join(f"{k}={v}" for k, v in self.model_kwargs)
        return text

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        """Return the NCHW input shape of one forward pass."""
        return (self.batch, self.channels, self.resolution, self.resolution)

    def to_dict(self) -> dict[str, Any]:
        """Return the case as a plain dict (model_kwargs as a dict) for transport and storage."""
        d = dataclasses.asdict(self)
        d["model_kwargs"] = dict(self.model_kwargs)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Case:
        """Build a case from a plain dict as produced by :meth:`to_dict` or a suite's matrix."""
        data = dict(data)
        kwargs = data.pop("model_kwargs", None) or {}
        return cls(**data, model_kwargs=tuple(sorted(dict(kwargs).items())))

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """Return the names of the case's fields (the possible matrix axes)."""
        return tuple(f.name for f in dataclasses.fields(cls))

    def storage_columns(self) -> dict[str, Any]:
        """Return the case's fields as store columns (model_kwargs as sorted JSON text)."""
        d = self.to_dict()
        d["model_kwargs"] = json.dumps(d["model_kwargs"], sort_keys=True, default=str)
        return d


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
}
