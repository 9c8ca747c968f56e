"""The digits image folder, the image-folder loader, the accuracy metric and int8 quantization.

Everything runs at 32 px on the real digits images (written once per test module into a temporary
``$HARNESS_DATA_DIR``); the models have random weights, so quantization is judged by how closely the
int8 outputs follow the fp32 twin's (SQNR), not by accuracy.
"""

from __future__ import annotations

import collections
import hashlib
import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from torch import nn

from harness.case import Case
from harness.data.digits import SPLITS, digits_root, split_indices
from harness.data.imagefolder import image_folder_loader
from harness.errors import HarnessError, SkipCase
from harness.metrics import accuracy, get_metric, metric_columns
from harness.zoo.quantize import calibration_batches, output_sqnr_db, quantize_int8
from tests.models import Branchy

RESOLUTION = 32
#: Lowest acceptable SQNR (dB) of int8 logits against the fp32 twin's on real digit images, random
#: weights. Measured in this test (64 test images, 64 calibration images, 32 px): resnet18 24.9 dB,
#: mobilenetv2_100 11.5 dB (at 224 px: 32.3 and 17.3 dB); the floors leave 3–5 dB of margin. Why: 7-bit
#: activations (reduce_range) bound one tensor's SQNR near 6.02·7 + 1.76 ≈ 44 dB; the noise of every
#: quantized layer adds up, and a random-weight network amplifies it with depth (quantizing only the
#: stem of MobileNetV2 already leaves 27 dB at its output; it has 52 convs, ResNet-18 has 20 with
#: residual paths). A broken recipe scores far lower: without reduce_range (int16 saturation on AVX2)
#: MobileNetV2 fell to 4.6 dB; calibrated on images scaled by 0.1 (ranges 10× too narrow) resnet18 gave
#: 2.2 dB and MobileNetV2 4.3 dB; calibrated on zeros, 1.2 and 0.0 dB.
SQNR_FLOOR_DB = {"resnet18": 20.0, "mobilenetv2_100": 8.0}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh ``$HARNESS_DATA_DIR`` holding the digits folder, for this module's tests."""
    home = tmp_path_factory.mktemp("harness-data")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HARNESS_DATA_DIR", str(home))
        digits_root()
        yield home


@pytest.fixture(scope="module")
def digits(data_dir: Path) -> Path:
    return data_dir / "digits"


# --- the digits folder --------------------------------------------------------------------------------


def test_digits_folder_holds_every_image_once_in_a_stratified_split(digits: Path) -> None:
    from sklearn.datasets import load_digits

    source = load_digits()
    files = {split: sorted((digits / split).glob("*/*.png")) for split in SPLITS}
    assert {split: len(paths) for split, paths in files.items()} == {"train": 1438, "test": 359}
    indices = {split: {int(p.stem) for p in paths} for split, paths in files.items()}
    assert indices["train"].isdisjoint(indices["test"])
    assert indices["train"] | indices["test"] == set(range(1797))
    assert sorted(p.name for p in (digits / "test").iterdir()) == [str(c) for c in range(10)]
    counts = collections.Counter(int(p.parent.name) for p in files["test"])
    for label, n in collections.Counter(source.target.tolist()).items():
        assert counts[label] == round(0.2 * n)  # every class split 80/20
    for path in files["test"][::60]:  # class folder = label; 4×4 blocks = the 8×8 source pixels
        index = int(path.stem)
        assert int(path.parent.name) == source.target[index]
        image = np.asarray(Image.open(path))
        assert image.shape == (32, 32, 3)
        assert np.array_equal(image[::4, ::4, 0], np.rint(source.images[index] * 255 / 16).astype(np.uint8))
    assert json.loads((digits / "manifest.json").read_text())["images"] == {"train": 1438, "test": 359}


def test_digits_split_is_fixed() -> None:
    targets = np.repeat(np.arange(3), 10)
    first, second = split_indices(targets), split_indices(targets)
    assert all(np.array_equal(first[s], second[s]) for s in SPLITS)
    assert len(first["test"]) == 6


def test_digits_folder_is_written_once(digits: Path) -> None:
    stamp = (digits / "manifest.json").stat().st_mtime_ns
    assert digits_root() == digits
    assert (digits / "manifest.json").stat().st_mtime_ns == stamp
    assert [p.name for p in digits.parent.iterdir() if p.name.startswith(".")] == []  # no staging left


def test_digits_folder_is_rebuilt_when_stale_and_never_over_a_foreign_folder(tmp_path: Path) -> None:
    stale = tmp_path / "stale"
    stale.mkdir()
    (stale / "manifest.json").write_text(json.dumps({"format": 0}))
    assert digits_root(stale) == stale
    assert len(list((stale / "test").glob("*/*.png"))) == 359
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "mine.txt").write_text("keep")
    with pytest.raises(HarnessError, match="no manifest"):
        digits_root(foreign)
    assert (foreign / "mine.txt").read_text() == "keep"


# --- the image-folder loader --------------------------------------------------------------------------


def test_image_folder_loader_batches_for_the_case(digits: Path) -> None:
    loader = image_folder_loader(digits / "test", nn.Identity(), RESOLUTION, channels=1, batch_size=50, limit=100)
    batches = list(loader)
    assert [len(labels) for _, labels in batches] == [50, 50]
    images = batches[0][0]
    assert images.shape == (50, 1, RESOLUTION, RESOLUTION) and images.dtype == torch.float32
    assert set(torch.cat([labels for _, labels in batches]).tolist()) == set(range(10))  # spread over classes


@pytest.mark.parametrize(
    ("make", "channels", "message"),
    [
        pytest.param(lambda root: root / "missing", 3, "does not exist", id="missing"),
        pytest.param(lambda root: root, 3, "holds no images", id="empty"),
        pytest.param(lambda root: root, 4, "1 or 3 channels", id="4-channels"),
    ],
)
def test_image_folder_loader_errors_name_the_folder(
    tmp_path: Path, make: Callable[[Path], Path], channels: int, message: str
) -> None:
    folder = make(tmp_path)
    with pytest.raises(HarnessError, match=message) as info:
        image_folder_loader(folder, nn.Identity(), RESOLUTION, channels)
    assert str(folder) in str(info.value)


# --- the accuracy metric ------------------------------------------------------------------------------


class Oracle(nn.Module):
    """Scores every image by a lookup of its pixels: ``rank(label)`` lists the outputs best first."""

    def __init__(self, table: dict[str, int], outputs: int, rank: Callable[[int], list[int]]) -> None:
        super().__init__()
        self.table, self.outputs, self.rank = table, outputs, rank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scores = torch.zeros(len(x), self.outputs)
        for row, image in enumerate(x):
            order = self.rank(self.table[image_key(image)])
            scores[row, order] = torch.arange(len(order), 0, -1, dtype=torch.float32)
        return scores


def image_key(image: torch.Tensor) -> str:
    return hashlib.sha1(image.contiguous().numpy().tobytes()).hexdigest()


@pytest.fixture(scope="module")
def labels_by_image(digits: Path) -> dict[str, int]:
    """The label of every digits test image, keyed by its preprocessed pixels (as the metric feeds them)."""
    table = {}
    for images, labels in image_folder_loader(digits / "test", nn.Identity(), RESOLUTION, batch_size=128):
        table |= {image_key(image): int(label) for image, label in zip(images, labels, strict=True)}
    assert len(table) == 359  # no two test images alike, so the lookup is exact
    return table


def shifted(by: int, outputs: int = 10) -> Callable[[int], list[int]]:
    """Rank the outputs from ``label + by`` onwards (mod ``outputs``): the label comes ``-by mod outputs``-th."""
    return lambda label: [(label + by + i) % outputs for i in range(outputs)]


def measure_accuracy(model: nn.Module, **options: object) -> dict[str, object]:
    case = Case(model="oracle", resolution=RESOLUTION)
    return accuracy.measure(model, torch.zeros(case.input_shape), case, accuracy.Options(**options))


@pytest.mark.parametrize(
    ("rank", "top1", "top5"),
    [
        pytest.param(shifted(0), 1.0, 1.0, id="perfect"),
        pytest.param(shifted(1), 0.0, 0.0, id="label-last"),
        pytest.param(shifted(-2), 0.0, 1.0, id="label-third"),
        pytest.param(shifted(-5), 0.0, 0.0, id="label-sixth"),
    ],
)
def test_accuracy_is_exact_for_known_predictions(
    data_dir: Path, labels_by_image: dict[str, int], rank: Callable[[int], list[int]], top1: float, top5: float
) -> None:
    out = measure_accuracy(Oracle(labels_by_image, 10, rank), batch_size=100)
    assert out == {"acc_top1": top1, "acc_top5": top5, "acc_images": 359, "acc_dataset": "digits/test",
                   "acc_train_steps": 0}


def test_accuracy_counts_a_mix_and_takes_top_k_over_all_outputs(digits: Path, labels_by_image: dict[str, int]) -> None:
    # right on even labels; on odd ones outputs 10 and 11 (no class) come first, then the label
    def rank(label: int) -> list[int]:
        rest = [o for o in range(10) if o != label]
        return [label, *rest, 10, 11] if label % 2 == 0 else [10, 11, label, *rest]

    out = measure_accuracy(Oracle(labels_by_image, 12, rank), dataset=str(digits), limit=1000)
    even = sum(label % 2 == 0 for label in labels_by_image.values()) / 359
    assert out["acc_top1"] == pytest.approx(even, abs=1e-12)
    assert out["acc_top5"] == 1.0 >= out["acc_top1"]
    assert out["acc_dataset"] == f"{digits}/test"


def test_accuracy_limit_and_errors(data_dir: Path, labels_by_image: dict[str, int]) -> None:
    assert measure_accuracy(Oracle(labels_by_image, 10, shifted(0)), limit=100)["acc_images"] == 100
    with pytest.raises(HarnessError, match="8 outputs, the dataset 10 classes"):
        measure_accuracy(Oracle(labels_by_image, 8, lambda label: list(range(8))))
    with pytest.raises(HarnessError, match="logits"):
        measure_accuracy(nn.Flatten(0))


def test_accuracy_is_registered() -> None:
    assert get_metric("accuracy") is accuracy
    assert {"acc_top1", "acc_top5", "acc_images", "acc_dataset"} <= set(metric_columns())


# --- int8 quantization --------------------------------------------------------------------------------


def executed_ops(model: nn.Module, x: torch.Tensor) -> collections.Counter[str]:
    """Count the operators one forward of ``model`` runs, by the profiler's names."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof, torch.inference_mode():
        model(x)
    return collections.Counter(event.name for event in prof.events())


@pytest.mark.parametrize("name", ["resnet18", "mobilenetv2_100"])
def test_int8_runs_quantized_kernels_and_follows_fp32(data_dir: Path, name: str) -> None:
    case = Case(model=name, resolution=RESOLUTION, quant="int8", model_kwargs=(("num_classes", 10),))
    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=10).eval()
    batches = calibration_batches(case, model)
    assert len(batches) == 8 and batches[0].shape == (8, 3, RESOLUTION, RESOLUTION)
    test_images = next(iter(image_folder_loader(data_dir / "digits" / "test", model, RESOLUTION, batch_size=64)))[0]
    with torch.inference_mode():
        reference = model(test_images)

    quantized = quantize_int8(model, batches)

    floats = [m for m in quantized.modules() if type(m) in (nn.Conv2d, nn.Linear)]
    assert floats == []  # every conv and linear became an int8 module
    ops = executed_ops(quantized, test_images)
    assert ops["quantized::conv2d"] + ops["quantized::conv2d_relu"] >= 19 and ops["quantized::linear"] == 1
    assert not {"aten::conv2d", "aten::convolution", "aten::linear", "aten::batch_norm"} & set(ops)
    with torch.inference_mode():
        out = quantized(test_images)
        assert torch.equal(model(test_images), reference)  # the fp32 twin is left as it was
    assert out.dtype == torch.float32 and out.shape == reference.shape
    assert output_sqnr_db(reference, out) > SQNR_FLOOR_DB[name]
    assert quantized.pretrained_cfg == model.pretrained_cfg  # same preprocessing as the twin


def test_int8_skips_what_the_backend_cannot_quantize(monkeypatch: pytest.MonkeyPatch) -> None:
    batches = [torch.randn(2, 3, 16, 16)]
    with pytest.raises(SkipCase, match="cannot quantize Branchy: TraceError"):
        quantize_int8(Branchy().eval(), batches)
    monkeypatch.setattr(type(torch.backends.quantized), "supported_engines", property(lambda self: ["qnnpack"]))
    with pytest.raises(SkipCase, match="no x86 quantized engine"):
        quantize_int8(nn.Conv2d(3, 4, 3).eval(), batches)
    with pytest.raises(HarnessError, match="known backends"):
        quantize_int8(nn.Conv2d(3, 4, 3).eval(), batches, backend="tpu")


@pytest.mark.parametrize(("field", "value"), [("device", "cuda"), ("dtype", "bf16"), ("mode", "train")])
def test_int8_cases_that_cannot_be_int8_are_skipped(field: str, value: str) -> None:
    case = Case.from_dict({"model": "resnet18", "quant": "int8", field: value})
    with pytest.raises(SkipCase, match=f"needs {field}="):
        calibration_batches(case, nn.Identity())


@pytest.mark.filterwarnings("ignore:.*quantized tensor creation functions.*deprecated")
def test_output_sqnr_db() -> None:
    reference = torch.ones(100)
    assert output_sqnr_db(reference, reference + 0.1) == pytest.approx(20.0)
    assert output_sqnr_db(reference, reference.clone()) == math.inf
    quantized = torch.quantize_per_tensor(reference, scale=0.5, zero_point=0, dtype=torch.quint8)
    assert output_sqnr_db(reference, quantized) == math.inf


def test_int8_accuracy_after_training_scores_the_quantized_fp32_twin(data_dir: Path) -> None:
    """An int8 case with training trains its fp32 twin (same seed: the very weights the fp32 case reaches), then
    quantizes it: the training is identical to the fp32 case's, and int8 scores about what fp32 scores."""
    from harness.runner.worker import measure_case

    metrics = {"accuracy": {"train_images": 384, "batch_size": 64, "limit": 359, "lr": 0.05,
                            "lr_reference_batch": 16}}
    fp32 = Case("resnet18", resolution=RESOLUTION, batch=16, model_kwargs=(("num_classes", 10),), seed=1)
    int8 = Case("resnet18", resolution=RESOLUTION, batch=16, model_kwargs=(("num_classes", 10),), seed=1,
                quant="int8")
    trained_fp32, trained_int8 = measure_case(fp32, metrics), measure_case(int8, metrics)
    untrained_int8 = measure_case(int8, {"accuracy": {"limit": 359}})
    print(f"\ntop-1 fp32 {trained_fp32['acc_top1']:.3f}, int8 {trained_int8['acc_top1']:.3f}, "
          f"untrained int8 {untrained_int8['acc_top1']:.3f}")
    for column in ("acc_train_steps", "acc_train_loss_first", "acc_train_loss_last"):
        assert trained_int8[column] == trained_fp32[column], column
    assert trained_fp32["acc_top1"] > untrained_int8["acc_top1"] + 0.2  # the training taught it something
    assert abs(trained_int8["acc_top1"] - trained_fp32["acc_top1"]) < 0.1  # and int8 kept it
