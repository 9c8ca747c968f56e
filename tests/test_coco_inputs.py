"""COCO inputs pycocotools accepts (float and string ids, no ``iscrowd``) give both evaluators pycocotools' numbers;
inputs that COCOeval would crash on or miscount are named errors."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import random
from collections.abc import Callable
from typing import Any

import pytest

from harness.cli import main
from harness.errors import HarnessError
from harness.metrics.coco import EVALUATORS, STAT_NAMES, detections_to_coco, evaluate
from tests.conftest import SHARED

GOLDEN = SHARED / "data" / "coco_golden"

Instances = dict[str, Any]
Detections = list[dict[str, Any]]


def pycocotools_stats(instances: Instances, detections: Detections) -> dict[str, float]:
    """The 12 stats of pycocotools run directly (COCO, loadRes, COCOeval) on copies of the inputs."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO()
        truth.dataset = copy.deepcopy(instances)
        truth.createIndex()
        cocoeval = COCOeval(truth, truth.loadRes(copy.deepcopy(detections)), "bbox")
        cocoeval.evaluate()
        cocoeval.accumulate()
        cocoeval.summarize()
    return {name: float(value) for name, value in zip(STAT_NAMES, cocoeval.stats, strict=True)}


def synthetic() -> tuple[Instances, Detections]:
    """Six 200×200 images, two categories, small/medium/large objects (one crowd), and detections: jittered
    truths, misses and false positives with scores rounded to 0.1 (ties, so image order matters)."""
    rng = random.Random(19)
    images = [{"id": image_id, "width": 200, "height": 200} for image_id in (3, 11, 2, 27, 100, 9)]
    annotations, detections = [], []
    for image in images:
        for _ in range(rng.randint(2, 5)):
            w, h = rng.uniform(8, 120), rng.uniform(8, 120)
            box = [rng.uniform(0, 200 - w), rng.uniform(0, 200 - h), w, h]
            category = rng.choice((1, 2))
            annotations.append({"id": len(annotations) + 1, "image_id": image["id"], "category_id": category,
                                "bbox": box, "area": w * h, "iscrowd": 0})
            if rng.random() < 0.8:
                jitter = [v + rng.uniform(-0.15, 0.15) * min(w, h) for v in box[:2]] + box[2:]
                detections.append({"image_id": image["id"], "category_id": category, "bbox": jitter,
                                   "score": round(rng.random(), 1)})
        detections.append({"image_id": image["id"], "category_id": rng.choice((1, 2)),
                           "bbox": [rng.uniform(0, 150), rng.uniform(0, 150), 30, 30], "score": round(rng.random(), 1)})
    annotations[3]["iscrowd"] = 1
    return {"images": images, "annotations": annotations,
            "categories": [{"id": 1, "name": "one"}, {"id": 2, "name": "two"}]}, detections


def float_annotation_ids(instances: Instances, detections: Detections) -> tuple[Instances, Detections]:
    for annotation in instances["annotations"]:
        annotation["id"] = float(annotation["id"])
    return instances, detections


def float_image_and_category_ids(instances: Instances, detections: Detections) -> tuple[Instances, Detections]:
    for entry in (*instances["images"], *instances["categories"]):
        entry["id"] = float(entry["id"])
    for entry in (*instances["annotations"], *detections):
        entry["image_id"], entry["category_id"] = float(entry["image_id"]), float(entry["category_id"])
    return instances, detections


def float_detection_ids(instances: Instances, detections: Detections) -> tuple[Instances, Detections]:
    for detection in detections:
        detection["image_id"], detection["category_id"] = float(detection["image_id"]), float(detection["category_id"])
    return instances, detections


def string_ids(instances: Instances, detections: Detections) -> tuple[Instances, Detections]:
    """Image ids "3", "11", … (sorted as strings: another order than as numbers) and category names as ids."""
    names = {c["id"]: c["name"] for c in instances["categories"]}
    for image in instances["images"]:
        image["id"] = str(image["id"])
    for category in instances["categories"]:
        category["id"] = category["name"]
    for entry in (*instances["annotations"], *detections):
        entry["image_id"], entry["category_id"] = str(entry["image_id"]), names[entry["category_id"]]
    return instances, detections


def no_iscrowd(instances: Instances, detections: Detections) -> tuple[Instances, Detections]:
    for annotation in instances["annotations"]:
        if not annotation["iscrowd"]:
            del annotation["iscrowd"]
    return instances, detections


#: Variants pycocotools scores when run directly (no_iscrowd: once the missing iscrowd is written as 0).
ACCEPTED: dict[str, Callable[[Instances, Detections], tuple[Instances, Detections]]] = {
    "float annotation ids": float_annotation_ids,
    "float image and category ids": float_image_and_category_ids,
    "float detection ids": float_detection_ids,
    "string ids": string_ids,
    "no iscrowd": no_iscrowd,
}


def reference(variant: str, instances: Instances, detections: Detections) -> dict[str, float]:
    """pycocotools' stats of ``variant`` applied to the inputs; a missing iscrowd (which pycocotools cannot read)
    is scored as the same file with ``iscrowd: 0``."""
    base = copy.deepcopy((instances, detections))
    return pycocotools_stats(*(base if variant == "no iscrowd" else ACCEPTED[variant](*base)))


def assert_same(stats: dict[str, float], expected: dict[str, float]) -> None:
    assert list(stats) == list(STAT_NAMES)
    for name in STAT_NAMES:  # pycocotools and faster-coco-eval agree within 2e-16
        assert stats[name] == pytest.approx(expected[name], abs=1e-12), name


def test_the_synthetic_set_is_not_trivial():
    stats = pycocotools_stats(*synthetic())
    assert 0.2 < stats["AP"] < 0.8 and all(stats[name] != -1.0 for name in ("APs", "APm", "APl"))


@pytest.mark.parametrize("evaluator", list(EVALUATORS))
@pytest.mark.parametrize("variant", list(ACCEPTED))
def test_ids_pycocotools_accepts_give_its_numbers_with_both_evaluators(variant, evaluator):
    instances, detections = synthetic()
    changed = ACCEPTED[variant](*copy.deepcopy((instances, detections)))
    assert_same(evaluate(*changed, evaluator=evaluator), reference(variant, instances, detections))


@pytest.mark.parametrize("evaluator", list(EVALUATORS))
def test_an_annotation_with_id_0_is_matched_like_any_other(evaluator):
    instances, detections = synthetic()
    expected = pycocotools_stats(instances, detections)  # ids 1…N
    for annotation in instances["annotations"]:
        annotation["id"] -= 1
    assert pycocotools_stats(instances, detections)["AP"] < expected["AP"]  # pycocotools counts id 0 as unmatched
    assert_same(evaluate(instances, detections, evaluator), expected)


def test_golden_pair_with_string_image_ids_float_annotation_ids_and_no_iscrowd_gives_pycocotools_numbers():
    if not GOLDEN.is_dir():
        pytest.skip(f"the COCO golden files are not here: {GOLDEN} (../shared beside the checkout, present in CI)")
    instances = json.loads((GOLDEN / "instances_val2014_100.json").read_text())
    detections = json.loads((GOLDEN / "fakebbox100.json").read_text())
    instances, detections = string_ids(*float_annotation_ids(instances, detections))
    expected = pycocotools_stats(instances, detections)
    changed = no_iscrowd(instances, detections)
    for evaluator in EVALUATORS:
        assert_same(evaluate(*changed, evaluator=evaluator), expected)


def test_coco_eval_command_reads_float_ids_and_no_iscrowd(tmp_path, capsys):
    instances, detections = no_iscrowd(*float_image_and_category_ids(*float_annotation_ids(*synthetic())))
    (tmp_path / "instances.json").write_text(json.dumps(instances))
    (tmp_path / "results.json").write_text(json.dumps(detections))
    assert main(["coco-eval", str(tmp_path / "instances.json"), str(tmp_path / "results.json"), "--json"]) == 0
    assert_same(json.loads(capsys.readouterr().out), pycocotools_stats(*synthetic()))


def test_detections_to_coco_keeps_a_string_image_id():
    found = detections_to_coco("a", [[1, 2, 4, 6]], [0.5], [1], ["cat", "dog"])
    assert found == [{"image_id": "a", "category_id": "dog", "bbox": [1.0, 2.0, 3.0, 4.0], "score": 0.5}]


def one_image() -> tuple[Instances, Detections]:
    """Two objects on image 1 and a detection of the first."""
    annotations = [{"id": n, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "area": 100, "iscrowd": 0}
                   for n in (1, 2)]
    return ({"images": [{"id": 1}], "annotations": annotations, "categories": [{"id": 1, "name": "one"}]},
            [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.5}])


def set_path(data: Any, path: str, value: Any) -> None:
    """Set ``data[k1][k2]…`` to ``value``, the keys dotted in ``path`` (list indices as digits)."""
    *parents, last = [int(k) if k.isdigit() else k for k in path.split(".")]
    for key in parents:
        data = data[key]
    data[last] = value


@pytest.mark.parametrize(("field", "value", "message"), [
    ("images.0.id", 1.5, "{path}: images[0].id: expected an integer or a string, got 1.5"),
    ("images.0.id", True, "{path}: images[0].id: expected an integer or a string, got True"),
    ("annotations.1.id", 1.0, "{path}: annotations[1].id 1 repeats annotations[0].id (ids must be unique)"),
    ("annotations.1.id", "b", "{path}: annotations[1].id 'b': the ids of annotations mix numbers and strings "
                              "(annotations[0].id is 1); COCOeval sorts them, so use one kind"),
    ("annotations.0.image_id", 9, "{path}: annotations[0].image_id 9 is not the id of an entry of images"),
    ("annotations.0.image_id", "1", "{path}: annotations[0].image_id '1' is not the id of an entry of images"),
    ("annotations.1.category_id", None, "{path}: annotations[1].category_id None is not the id of an entry of "
                                        "categories"),
    ("annotations.0.area", "big", "{path}: annotations[0].area: expected a finite number ≥ 0 (px²), got 'big'"),
    ("annotations.0.area", -1, "{path}: annotations[0].area: expected a finite number ≥ 0 (px²), got -1"),
    ("annotations.0.iscrowd", 2, "{path}: annotations[0].iscrowd: expected 0 or 1, got 2"),
])
@pytest.mark.parametrize("evaluator", list(EVALUATORS))
def test_bad_ids_and_fields_in_the_annotations_are_named(tmp_path, capsys, field, value, message, evaluator):
    instances, detections = one_image()
    set_path(instances, field, value)
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(instances))
    (tmp_path / "results.json").write_text(json.dumps(detections))
    with pytest.raises(HarnessError) as caught:
        evaluate(path, detections, evaluator)
    assert str(caught.value) == message.format(path=path)
    assert main(["coco-eval", str(path), str(tmp_path / "results.json"), "--evaluator", evaluator]) == 2
    assert message.format(path=path) in " ".join(capsys.readouterr().err.split())


@pytest.mark.parametrize(("field", "value", "message"), [
    ("image_id", 1.5, "detections: detection 0: image_id 1.5 is not an image of the annotations"),
    ("image_id", "1", "detections: detection 0: image_id '1' is not an image of the annotations"),
    ("category_id", [1], "detections: detection 0: category_id [1] is not a category of the annotations"),
])
def test_detection_ids_that_are_no_image_or_category_are_named(field, value, message):
    instances, detections = one_image()
    detections[0][field] = value
    with pytest.raises(HarnessError) as caught:
        evaluate(instances, detections)
    assert str(caught.value) == message


def test_the_callers_ids_are_left_as_they_are():
    instances, detections = string_ids(*float_annotation_ids(*synthetic()))
    before = json.dumps([instances, detections])
    evaluate(instances, detections)
    assert json.dumps([instances, detections]) == before
