"""tools/zoo_vs_fvcore.py against fvcore itself (in `tox -e bench`, which installs fvcore): given a formula for
attention and without its norm counts, fvcore's total equals our MACs on a ViT, a CNN and a hybrid."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from harness.case import Case
from harness.runner.worker import execute_case

pytestmark = pytest.mark.slow

TOOL = Path(__file__).resolve().parents[2] / "tools" / "zoo_vs_fvcore.py"


def _tool():
    spec = importlib.util.spec_from_file_location("zoo_vs_fvcore", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("model", ["deit_tiny_patch16_224", "resnet18", "coatnet_nano_rw_224"])
def test_fvcore_given_attention_counts_our_macs(model, tmp_path):
    pytest.importorskip("fvcore")  # installed by `tox -e bench`; here, not at collection: the default tier deselects
    tool = _tool()
    case = Case(model, resolution=224, device="meta")
    ours = execute_case(case.to_dict(), {"complexity": {"by": "op"}})["values"]
    record = {"model": model, "resolution": 224, "width": None, "channels": 3, "macs": ours["macs"]}
    torch.set_num_threads(1)
    theirs = tool.fvcore_count(record, timeout_s=300)
    like = {k: v for k, v in theirs["fvcore_by_operator"].items() if k not in tool.FVCORE_NOT_MACS}
    assert sum(like.values()) + theirs["fvcore_attention"] == ours["macs"]
    assert (theirs["fvcore_attention"] > 0) == (model != "resnet18")
    json.dumps(theirs)  # what the tool appends to its file
