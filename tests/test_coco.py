"""COCO box evaluation (golden parity with the official cocoapi numbers), `harness coco-eval`, the COCO dataset
loader and the digit boxes dataset."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from harness.cli import main
from harness.data import digit_boxes
from harness.data.coco import DATASETS, CocoDetection
from harness.errors import HarnessError
from harness.metrics.coco import EVALUATORS, STAT_NAMES, Evaluator, detections_to_coco, evaluate
from tests.conftest import SHARED

GOLDEN = SHARED / "data" / "coco_golden"
#: cocoapi's printed bbox results of fakebbox100 on the 100 val2014 images (results/val2014_fake_eval_res.txt).
OFFICIAL = {"AP": 0.505, "AP50": 0.697, "AP75": 0.573, "APs": 0.586, "APm": 0.519, "APl": 0.501,
            "AR1": 0.387, "AR10": 0.594, "AR100": 0.595, "ARs": 0.640, "ARm": 0.566, "ARl": 0.564}
#: AP at full precision, pinned by faster-coco-eval's own test of the same pair.
GOLDEN_AP = 0.5045806987249628
VAL_IMAGES = 24


@pytest.fixture(scope="module")
def golden() -> tuple[Path, Path]:
    """(annotations, detections) of the cocoapi golden pair in ../shared."""
    if not GOLDEN.is_dir():
        pytest.skip(f"the COCO golden files are not here: {GOLDEN} (../shared beside the checkout, present in CI)")
    return GOLDEN / "instances_val2014_100.json", GOLDEN / "fakebbox100.json"


@pytest.fixture(scope="module")
def golden_stats(golden: tuple[Path, Path]) -> dict[str, dict[str, float]]:
    """The 12 stats of the golden pair by each evaluator."""
    return {name: evaluate(*golden, evaluator=name) for name in EVALUATORS}


@pytest.fixture(scope="module")
def boxes_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A digit boxes folder of 24 + 24 images in a fresh ``$HARNESS_DATA_DIR``."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HARNESS_DATA_DIR", str(tmp_path_factory.mktemp("harness-data")))
        return digit_boxes.digit_boxes_root(train_images=VAL_IMAGES, val_images=VAL_IMAGES)


# --- evaluation -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("evaluator", list(EVALUATORS))
def test_golden_pair_gives_the_official_numbers(golden_stats, evaluator):
    stats = golden_stats[evaluator]
    assert list(stats) == list(STAT_NAMES) and all(type(v) is float for v in stats.values())
    assert stats["AP"] == pytest.approx(GOLDEN_AP, abs=1e-12)
    assert {name: round(value, 3) for name, value in stats.items()} == OFFICIAL


def test_pycocotools_ap_is_exact_and_faster_coco_eval_agrees_on_every_stat(golden_stats):
    assert golden_stats["pycocotools"]["AP"] == GOLDEN_AP
    for name in STAT_NAMES:
        assert golden_stats["faster"][name] == pytest.approx(golden_stats["pycocotools"][name], abs=1e-12), name


def _one_image(areas: list[int]) -> dict:
    """Annotations of one 200×200 image with a square class-1 object of each area (px²)."""
    annotations = [{"id": i + 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, a**0.5, a**0.5], "area": a,
                    "iscrowd": 0} for i, a in enumerate(areas)]
    return {"images": [{"id": 1, "width": 200, "height": 200}], "annotations": annotations,
            "categories": [{"id": 1, "name": "one"}]}


@pytest.mark.parametrize("evaluator", list(EVALUATORS))
def test_no_detections_give_zero_where_objects_exist_and_minus_one_elsewhere(golden, evaluator):
    assert set(evaluate(golden[0], [], evaluator).values()) == {0.0}  # the golden set has S, M and L objects
    stats = evaluate(_one_image([20 * 20]), [], evaluator)  # one small object only
    assert {n for n, v in stats.items() if v == -1.0} == {"APm", "APl", "ARm", "ARl"}
    assert {n for n, v in stats.items() if v == 0.0} == set(STAT_NAMES) - {"APm", "APl", "ARm", "ARl"}


def test_ground_truth_as_detections_scores_one(golden):
    instances = json.loads(golden[0].read_text())
    category_ids = sorted(c["id"] for c in instances["categories"])
    detections = []
    for image in instances["images"]:
        own = [a for a in instances["annotations"] if a["image_id"] == image["id"] and not a["iscrowd"]]
        xywh = np.array([a["bbox"] for a in own], dtype=np.float64).reshape(-1, 4)
        boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
        labels = np.array([category_ids.index(a["category_id"]) for a in own], dtype=np.int64)
        detections += detections_to_coco(image["id"], boxes, np.ones(len(own)), labels, category_ids)
    assert len(detections) == 830  # 839 annotations, 9 of them crowd
    stats = evaluate(golden[0], detections)
    assert {n: stats[n] for n in ("AP", "AP50", "AP75", "AR100")} == {"AP": 1.0, "AP50": 1.0, "AP75": 1.0, "AR100": 1.0}


def test_detections_to_coco_maps_boxes_and_labels():
    boxes = torch.tensor([[10.0, 20.0, 30.0, 60.0], [0.5, 1.5, 2.5, 4.0]])
    found = detections_to_coco(7, boxes, torch.tensor([0.5, 0.25]), torch.tensor([1, 0]), [3, 9])
    assert found == [{"image_id": 7, "category_id": 9, "bbox": [10.0, 20.0, 20.0, 40.0], "score": 0.5},
                     {"image_id": 7, "category_id": 3, "bbox": [0.5, 1.5, 2.0, 2.5], "score": 0.25}]
    assert all(type(v) in (int, float) for d in found for v in (d["image_id"], d["category_id"], d["score"]))
    assert detections_to_coco(7, np.zeros((0, 4)), [], np.zeros(0, dtype=np.int64), [3, 9]) == []
    with pytest.raises(HarnessError, match=r"expected boxes \(N, 4\)"):
        detections_to_coco(7, [[1, 2, 3]], [0.5], [0], [3, 9])
    with pytest.raises(HarnessError, match="labels must be class indices 0…1"):
        detections_to_coco(7, [[1, 2, 3, 4]], [0.5], [2], [3, 9])


GOOD = {"image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.5}


@pytest.mark.parametrize(("detection", "message"), [
    (GOOD | {"image_id": 2}, "detection 1: image_id 2 is not an image of the annotations"),
    (GOOD | {"category_id": 0}, "detection 1: category_id 0 is not a category of the annotations"),
    (GOOD | {"bbox": [1, 2, 3]}, r"detection 1: bbox: expected \[x, y, width, height\]"),
    (GOOD | {"bbox": [1, 2, -3, 4]}, r"detection 1: bbox: expected \[x, y, width, height\]"),
    (GOOD | {"bbox": [1, 2, float("nan"), 4]}, r"detection 1: bbox: expected \[x, y, width, height\]"),
    (GOOD | {"score": "high"}, "detection 1: score: expected a finite number"),
    ({"image_id": 1, "bbox": [1, 2, 3, 4]}, "detection 1: expected an object with image_id, category_id"),
])
def test_bad_detections_are_named(detection, message):
    with pytest.raises(HarnessError, match=message):
        evaluate(_one_image([100]), [GOOD, detection])


def test_bad_annotations_and_evaluator_are_named(tmp_path):
    with pytest.raises(HarnessError, match="expected a list 'categories'"):
        evaluate({"images": [], "annotations": []}, [])
    with pytest.raises(HarnessError, match=r"annotations\[0\] has no area"):
        evaluate({"images": [], "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1]}],
                  "categories": []}, [])
    with pytest.raises(HarnessError, match="unknown COCO evaluator 'fast'; known: faster, pycocotools"):
        evaluate(_one_image([100]), [], "fast")
    listed = tmp_path / "list.json"
    listed.write_text("[]")
    with pytest.raises(HarnessError, match=f"{listed}: expected a COCO instances JSON object"):
        evaluate(listed, [])


@pytest.mark.parametrize("evaluator", list(EVALUATORS))
def test_evaluate_leaves_the_callers_dicts_alone(evaluator):
    instances, detections = _one_image([100, 2500]), [dict(GOOD), GOOD | {"bbox": [0, 0, 50, 50]}]
    before = json.dumps([instances, detections])
    stats = evaluate(instances, detections, evaluator)
    assert json.dumps([instances, detections]) == before  # COCOeval adds ignore, area, id... to what it reads
    assert stats["APm"] == pytest.approx(1.0, abs=1e-12) and stats["APs"] == 0.0  # medium found, small missed


def test_a_missing_evaluator_package_says_what_to_install(monkeypatch):
    def missing() -> tuple[type, type]:
        raise ModuleNotFoundError("No module named 'pycocotools'", name="pycocotools")

    monkeypatch.setitem(EVALUATORS, "pycocotools", Evaluator("pycocotools", missing))
    with pytest.raises(HarnessError, match=r"pycocotools COCO evaluator is not installed .*: pip install pycocotools"):
        evaluate(_one_image([100]), [], "pycocotools")


# --- the command ------------------------------------------------------------------------------------------


def test_coco_eval_json_through_the_command(golden):
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "coco-eval", *map(str, golden), "--json"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    stats = json.loads(proc.stdout)
    assert list(stats) == list(STAT_NAMES) and stats["AP"] == pytest.approx(GOLDEN_AP, abs=1e-12)


def test_coco_eval_table_names_every_stat(golden, capsys):
    assert main(["coco-eval", *map(str, golden), "--evaluator", "pycocotools"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == list(STAT_NAMES)
    assert lines[0] == "AP     Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 0.505"
    assert lines[6] == "AR1    Average Recall     (AR) @[ IoU=0.50:0.95 | area=   all | maxDets=  1 ] = 0.387"


@pytest.mark.parametrize(("which", "content", "message"), [
    ("annotations", None, "{path}: no such COCO annotation file"),
    ("detections", None, "{path}: no such COCO results file"),
    ("detections", '[{"image_id": 1,\n  "bbox": [1, 2, 3, 4],,\n}]',
     "{path}:2:24: invalid JSON in the COCO results file"),
    ("annotations", "{}", "{path}: expected a list 'images'"),
    ("detections", '[{"image_id": 99, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.5}]',
     "{path}: detection 0: image_id 99 is not an image of the annotations"),
])
def test_coco_eval_bad_input_exits_2_naming_the_file(tmp_path, capsys, which, content, message):
    paths = {"annotations": tmp_path / "instances.json", "detections": tmp_path / "results.json"}
    paths["annotations"].write_text(json.dumps(_one_image([100])))
    paths["detections"].write_text("[]")
    if content is None:
        paths[which].unlink()
    else:
        paths[which].write_text(content)
    assert main(["coco-eval", str(paths["annotations"]), str(paths["detections"])]) == 2
    assert message.format(path=paths[which]) in " ".join(capsys.readouterr().err.split())


# --- the COCO dataset loader ------------------------------------------------------------------------------


def test_coco_detection_reads_digit_boxes_val(boxes_root):
    data = CocoDetection(boxes_root / "val", boxes_root / "annotations" / "instances_val.json")
    instances = json.loads((boxes_root / "annotations" / "instances_val.json").read_text())
    assert len(data) == VAL_IMAGES and data.image_ids == list(range(1, VAL_IMAGES + 1))
    assert data.category_ids == list(range(1, 11)) and data.class_names == [str(d) for d in range(10)]
    objects = 0
    for index in range(len(data)):
        image, target = data[index]
        assert image.dtype == torch.uint8 and image.shape == (3, 128, 128)
        assert target.extra == {"image_id": index + 1}
        own = [a for a in instances["annotations"] if a["image_id"] == index + 1]
        assert target.labels.dtype == torch.int64 and target.labels.tolist() == [a["category_id"] - 1 for a in own]
        assert target.boxes.dtype == torch.float32 and target.boxes.shape == (len(own), 4)
        assert ((target.boxes >= 0) & (target.boxes <= 128)).all() and (target.boxes[:, 2:] > target.boxes[:, :2]).all()
        ink = image.max(dim=0).values >= digit_boxes.BACKGROUND_MAX  # the faintest ink is brighter than any noise
        inside = torch.zeros_like(ink)
        for x1, y1, x2, y2 in target.boxes.int().tolist():
            inside[y1:y2, x1:x2] = True
            box_ink = ink[y1:y2, x1:x2]  # the box is tight: ink on each of its four edges
            assert box_ink[0].any() and box_ink[-1].any() and box_ink[:, 0].any() and box_ink[:, -1].any()
        assert not (ink & ~inside).any()  # outside the boxes: background only
        objects += len(own)
    assert objects == len(instances["annotations"]) > VAL_IMAGES


def test_coco_detection_leaves_crowds_out_and_names_missing_files(tmp_path):
    Image.new("RGB", (20, 10)).save(tmp_path / "a.png")
    instances = _one_image([16, 25]) | {"images": [{"id": 1, "file_name": "a.png", "width": 20, "height": 10}]}
    instances["annotations"][1]["iscrowd"] = 1
    (tmp_path / "instances.json").write_text(json.dumps(instances))
    image, target = CocoDetection(tmp_path, tmp_path / "instances.json")[0]
    assert image.shape == (3, 10, 20) and target.boxes.tolist() == [[0, 0, 4, 4]] and target.labels.tolist() == [0]
    (tmp_path / "a.png").unlink()
    with pytest.raises(HarnessError, match=f"no image file {tmp_path / 'a.png'}"):
        CocoDetection(tmp_path, tmp_path / "instances.json")
    (tmp_path / "instances.json").write_text(json.dumps({"images": [], "annotations": []}))
    with pytest.raises(HarnessError, match="expected a list 'categories'"):
        CocoDetection(tmp_path, tmp_path / "instances.json")


# --- the digit boxes dataset ------------------------------------------------------------------------------


def test_digit_boxes_annotations_are_exact_real_digits_with_small_and_medium_objects(boxes_root):
    from sklearn.datasets import load_digits

    targets = load_digits().target
    instances = {s: json.loads((boxes_root / "annotations" / f"instances_{s}.json").read_text())
                 for s in digit_boxes.SPLITS}
    manifest = json.loads((boxes_root / "manifest.json").read_text())
    sources = {}
    for split, data in instances.items():
        assert [i["file_name"] for i in data["images"]] == [f"{n}.png" for n in range(1, VAL_IMAGES + 1)]
        anns = data["annotations"]
        assert all(a["area"] == a["bbox"][2] * a["bbox"][3] and a["iscrowd"] == 0 for a in anns)
        assert all(a["category_id"] == targets[a["digit_index"]] + 1 for a in anns)  # the class is the digit's
        counts = digit_boxes.area_counts([a["area"] for a in anns])
        assert counts == manifest["objects"][split] and counts["small"] > 0 and counts["medium"] > 0
        assert sum(counts.values()) == len(anns)
        sources[split] = {a["digit_index"] for a in anns}
    assert sources["train"].isdisjoint(sources["val"])


def test_digit_boxes_are_deterministic_and_independent_of_the_split_size(tmp_path, monkeypatch):
    roots = []
    for name, val_images in (("a", 3), ("b", 3), ("c", 5)):
        monkeypatch.setenv("HARNESS_DATA_DIR", str(tmp_path / name))
        roots.append(digit_boxes.digit_boxes_root(train_images=2, val_images=val_images))
    first, second, larger = roots

    def files(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    assert files(first) == files(second)
    assert all((larger / "val" / f"{n}.png").read_bytes() == (first / "val" / f"{n}.png").read_bytes()
               for n in (1, 2, 3))


def test_digit_boxes_are_written_once_and_rebuilt_when_the_manifest_differs(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_DATA_DIR", str(tmp_path))
    root = digit_boxes.digit_boxes_root(train_images=2, val_images=2)
    stamp = (root / "manifest.json").stat().st_mtime_ns
    assert digit_boxes.digit_boxes_root(train_images=2, val_images=2) == root
    assert (root / "manifest.json").stat().st_mtime_ns == stamp
    assert digit_boxes.digit_boxes_root(train_images=2, val_images=3) == root
    assert sorted(p.name for p in (root / "val").iterdir()) == ["1.png", "2.png", "3.png"]
    assert json.loads((root / "manifest.json").read_text())["images"] == {"train": 2, "val": 3}
    assert [p.name for p in tmp_path.iterdir()] == ["digit_boxes"]  # no staging folder left
    assert digit_boxes.annotation_file("val", root) == root / "annotations" / "instances_val.json"
    with pytest.raises(HarnessError, match="digit_boxes has no split 'test'; it has: train, val"):
        digit_boxes.images_dir("test", root)


def test_digit_boxes_is_a_named_coco_dataset(tmp_path, monkeypatch):
    monkeypatch.setattr(digit_boxes, "digit_boxes_root", lambda: tmp_path)
    assert DATASETS["digit_boxes"]("val") == (tmp_path / "val", tmp_path / "annotations" / "instances_val.json")
