"""The compress axis in suite files: the method-with-options form, and bad options reported with file and line."""

from __future__ import annotations

import pytest

from harness.case import Case
from harness.suite import SuiteError, load_suite


def test_the_mapping_form_gives_each_method_its_own_options(write_suite):
    suite = load_suite(write_suite("""
        matrix:
          model: [tiny_cnn]
          compress:
            - none
            - distill: {alpha: 0.5, teacher: tiny_cnn}
            - distill: {alpha: 0.9, teacher: tiny_cnn}
        exclude:
          - {compress: distill, compress_kwargs: {alpha: 0.9, teacher: tiny_cnn}}
        baseline: {compress: none}
        metrics: [compression]
        """))
    assert [(c.compress, dict(c.compress_kwargs)) for c in suite.cases] == [
        ("none", {}), ("distill", {"alpha": 0.5, "teacher": "tiny_cnn"})]
    assert suite.baseline == {"compress": "none"}
    assert Case("tiny_cnn").case_id == suite.cases[0].case_id  # the dense case keeps its id


BAD = [
    ("out of range", "matrix:\n  model: [tiny_cnn]\n  compress:\n    - distill:\n        alpha: 1.5\n", 5,
     "compress distill: Input should be less than or equal to 1"),
    ("unknown option", "matrix:\n  model: [tiny_cnn]\n  compress:\n    - distill: {alhpa: 0.5}\n", 4,
     "compress distill: unknown option 'alhpa' (did you mean 'alpha'?)"),
    ("unknown teacher", "defaults:\n  compress: distill\n  compress_kwargs: {teacher: resnet_nonexistent}\n"
     "matrix:\n  model: [tiny_cnn]\n", 3, "unknown teacher model 'resnet_nonexistent'"),
    ("options without a method", "matrix:\n  model: [tiny_cnn]\n  compress_kwargs: [{sparsity: 0.5}]\n", 3,
     "compress_kwargs given without a compression method"),
    ("options twice", "include:\n  - {model: tiny_cnn, compress: {distill: {}}, compress_kwargs: {alpha: 0.1}}\n"
     "matrix:\n  model: [tiny_cnn]\n", 2, "already given"),
    ("unknown method", "matrix:\n  model: [tiny_cnn]\n  compress: [prune_everything]\n", 3, "prune_everything"),
    ("unknown method with options", "matrix:\n  model: [tiny_cnn]\n  compress:\n    - prune_everything: {}\n",
     4, "prune_everything"),
]


@pytest.mark.parametrize(("text", "line", "fragment"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_compress_options_name_file_and_line(write_suite, text, line, fragment):
    path = write_suite(text)
    with pytest.raises(SuiteError) as info:
        load_suite(path)
    messages = [str(p) for p in info.value.problems]
    assert any(m.startswith(f"{path}:{line}: ") and fragment in m for m in messages), messages
