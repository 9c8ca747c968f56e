"""Suite validation (file:line messages), matrix expansion and case identity."""

from __future__ import annotations

import pytest

from harness.case import Case
from harness.suite import SuiteError, load_suite, parse_suite

# (id, yaml text, expected line, expected fragment of the message)
MALFORMED = [
    ("bad-yaml", "matrix:\n  model: [resnet18\n  batch: [1]\n", 3, "invalid YAML"),
    ("unknown-top-key", "matrx:\n  model: [resnet18]\n", 1, "unknown key 'matrx' (did you mean 'matrix'?)"),
    ("missing-matrix", "name: x\ndefaults: {batch: 1}\n", 1, "matrix: required key is missing"),
    ("wrong-type", "matrix:\n  model: [resnet18]\n  batch: [1, eight]\n", 3,
     "matrix.batch[1]: expected an integer, got 'eight'"),
    ("negative-batch", "matrix:\n  model: [resnet18]\n  batch: [-4]\n", 3, "greater than 0"),
    ("bool-is-not-int", "matrix:\n  model: [resnet18]\n  batch: [true]\n", 3, "expected an integer, got True"),
    ("unknown-model", "matrix:\n  model:\n    - resnet18\n    - resnet19\n", 4,
     "unknown model 'resnet19' (did you mean 'resnet18'?)"),
    ("unknown-metric", "matrix:\n  model: [resnet18]\nmetrics:\n  latncy: {}\n", 4,
     "unknown metric 'latncy' (did you mean 'latency'?)"),
    ("unknown-metric-option", "matrix:\n  model: [resnet18]\nmetrics:\n  latency:\n    warmpu_min: 3\n", 5,
     "metrics.latency.warmpu_min: unknown key 'warmpu_min'"),
    ("empty-axis", "matrix:\n  model: [resnet18]\n  batch: []\n", 3, "matrix.batch: expected a non-empty list"),
    ("duplicate-key", "matrix:\n  model: [resnet18]\n  batch: [1]\n  batch: [2]\n", 4,
     "duplicate key 'batch' (first given at line 3)"),
    ("excluded-all", "matrix:\n  model: [resnet18]\nexclude:\n  - model: resnet18\n", 1, "expands to no cases"),
    ("bad-device", "matrix:\n  model: [resnet18]\n  device: [tpu]\n", 3, "Input should be 'cpu', 'cuda' or 'meta'"),
    ("unknown-axis", "matrix:\n  model: [resnet18]\n  bacth: [1]\n", 3, "unknown key 'bacth' (did you mean 'batch'?)"),
    ("top-level-list", "- model: resnet18\n", 1, "expected a mapping with at least a 'matrix' key, got a list"),
    ("empty-file", "", 1, "got an empty file"),
    ("published-unknown-column",
     "matrix:\n  model: [resnet18]\npublished:\n  - match: {model: resnet18}\n    source: paper\n"
     "    values:\n      parms: 11.7e6\n", 7, "unknown metric column 'parms' (did you mean 'params'?)"),
    ("axis-not-a-list", "matrix:\n  model: resnet18\n", 2, "matrix.model: expected a list, got 'resnet18'"),
    ("unknown-norm", "matrix:\n  model: [resnet18]\n  norm: [gn, bathnorm]\n", 3, "Input should be 'native', 'bn'"),
    ("metric-where-unknown-axis", "matrix:\n  model: [resnet18]\nmetrics:\n  latency:\n    where: {mdoe: train}\n",
     5, "metrics.latency.where.mdoe: unknown key 'mdoe'"),
]


@pytest.mark.parametrize(("text", "line", "fragment"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
def test_malformed_suite_names_file_line_and_expectation(write_suite, text, line, fragment):
    path = write_suite(text)
    with pytest.raises(SuiteError) as info:
        load_suite(path)
    messages = [str(p) for p in info.value.problems]
    assert any(m.startswith(f"{path}:{line}: ") and fragment in m for m in messages), messages


def test_unreadable_file_is_a_suite_error(tmp_path):
    with pytest.raises(SuiteError, match="cannot read the file"):
        load_suite(tmp_path / "missing.yaml")


def test_every_problem_is_reported_not_only_the_first(write_suite):
    path = write_suite("matrix:\n  model: [resnet19]\nmetrics: [latncy]\n")
    with pytest.raises(SuiteError) as info:
        load_suite(path)
    assert len(info.value.problems) == 2


def test_matrix_product_exclude_and_include(write_suite):
    suite = load_suite(
        write_suite(
            """
            name: demo
            defaults: {resolution: 64}
            matrix:
              model: [tiny_cnn, resnet18]
              batch: [1, 8]
            exclude:
              - {model: resnet18, batch: [8]}
            include:
              - {model: mobilenetv2_100, batch: 2, resolution: 96}
              - {model: tiny_cnn, batch: 1}
            """
        )
    )
    got = [(c.model, c.batch, c.resolution) for c in suite.cases]
    # model varies slowest (first axis in the file); the duplicate include is kept once
    assert got == [("tiny_cnn", 1, 64), ("tiny_cnn", 8, 64), ("resnet18", 1, 64), ("mobilenetv2_100", 2, 96)]
    assert suite.name == "demo"
    assert list(suite.metrics) == ["complexity"]


def test_metrics_as_list_or_mapping_with_options(write_suite):
    suite = load_suite(write_suite("matrix: {model: [tiny_cnn]}\nmetrics:\n  latency: {min_repeats: 5}\n"))
    assert suite.metrics["latency"].min_repeats == 5
    suite = load_suite(write_suite("matrix: {model: [tiny_cnn]}\nmetrics: [latency, complexity]\n"))
    assert list(suite.metrics) == ["latency", "complexity"]


def test_case_id_is_independent_of_key_order(write_suite):
    a = load_suite(write_suite("matrix:\n  model: [tiny_cnn]\n  batch: [2]\n  dtype: [bf16]\n", "a"))
    b = load_suite(write_suite("matrix:\n  dtype: [bf16]\n  batch: [2]\n  model: [tiny_cnn]\n", "b"))
    c = load_suite(write_suite("defaults: {dtype: bf16, batch: 2}\nmatrix:\n  model: [tiny_cnn]\n", "c"))
    assert a.cases[0].case_id == b.cases[0].case_id == c.cases[0].case_id


def test_case_id_is_stable_across_versions():
    # A golden value: if this changes, every stored result stops matching its case (resume breaks).
    assert Case("resnet18", batch=8).case_id == "3833056951861ebb"  # sha256 of {"batch":8,"model":"resnet18"}
    assert Case("resnet18").case_id == Case("resnet18", resolution=224, device="cpu").case_id
    assert Case("resnet18", batch=8).case_id != Case("resnet18", batch=1).case_id
    assert Case("x", model_kwargs=(("a", 1),)).case_id != Case("x").case_id


def test_case_round_trips_through_dict():
    case = Case("tiny_cnn", batch=3, model_kwargs=(("num_classes", 5),), norm="gn", norm_kwargs=(("groups", 4),))
    assert Case.from_dict(case.to_dict()) == case
    assert case.storage_columns()["norm_kwargs"] == '{"groups": 4}'
    assert case.label == "tiny_cnn b3 224px cpu fp32 norm=gn num_classes=5 groups=4"


def test_new_axes_at_their_defaults_leave_case_ids_unchanged():
    assert Case("resnet18", batch=8, norm="native", world_size=1).case_id == "3833056951861ebb"
    ids = {Case("resnet18", norm=n).case_id for n in ("native", "bn", "gn")}
    ids |= {Case("resnet18", world_size=2).case_id, Case("resnet18", norm="gn", norm_kwargs=(("groups", 8),)).case_id}
    assert len(ids) == 5


def test_a_metric_where_filter_limits_it_to_matching_cases(write_suite):
    suite = load_suite(write_suite("""
        matrix: {model: [tiny_cnn], mode: [inference, train]}
        metrics:
          latency: {}
          accuracy: {train_images: 10, where: {mode: inference}}
        """))
    taken = {case.mode: list(suite.metrics_for(case)) for case in suite.cases}
    assert taken == {"inference": ["latency", "accuracy"], "train": ["latency"]}
    assert suite.metrics["accuracy"].train_images == 10
    assert list(suite.with_metrics(["accuracy"]).metrics_for(suite.cases[1])) == []


def test_published_values_match_cases(write_suite):
    suite = load_suite(
        write_suite(
            """
            matrix: {model: [tiny_cnn, resnet18]}
            published:
              - match: {model: resnet18}
                source: He et al. 2016, Table 1
                convention: multiply-accumulates
                values: {params: 11.7e6, macs: 1.8e9}
            """
        )
    )
    tiny, resnet = suite.cases
    assert suite.published_for(tiny) == []
    assert {p["metric"]: p["value"] for p in suite.published_for(resnet)} == {"params": 11.7e6, "macs": 1.8e9}


def test_a_wrong_type_and_an_unknown_metric_are_said_in_one_pass():
    text = "matrix:\n  model: [resnet18]\n  batch: [abc]\nmetrics: {latncy: {}}\n"
    with pytest.raises(SuiteError) as info:
        parse_suite(text, "s.yaml")
    assert [str(p) for p in info.value.problems] == [
        "s.yaml:3: matrix.batch[0]: expected an integer, got 'abc'",
        "s.yaml:4: metrics.latncy: unknown metric 'latncy' (did you mean 'latency'?); expected one of: accuracy, "
        "box_simulation, complexity, compression, detection, energy, latency, memory"]
