"""Local checkpoints: plain weights load, anything else is refused with a clear message."""

from __future__ import annotations

import pytest
import torch

from harness.errors import HarnessError
from harness.zoo import create_model


def test_checkpoint_weights_replace_random_ones(tmp_path):
    source = create_model("tiny_cnn")
    torch.nn.init.constant_(source.fc.weight, 0.5)
    path = tmp_path / "tiny.pt"
    torch.save({"state_dict": source.state_dict()}, path)
    loaded = create_model("tiny_cnn", checkpoint=str(path))
    assert torch.equal(loaded.fc.weight, source.fc.weight)


class NotWeights:
    """An arbitrary object: a pickle of it must not be loaded."""


def test_a_pickle_that_is_not_plain_weights_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": NotWeights()}, path)
    with pytest.raises(HarnessError, match="refused, it is not plain weights"):
        create_model("tiny_cnn", checkpoint=str(path))


def test_missing_or_mismatched_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(HarnessError, match="no such file"):
        create_model("tiny_cnn", checkpoint=str(tmp_path / "none.pt"))
    torch.save(create_model("tiny_cnn", num_classes=3).state_dict(), tmp_path / "three.pt")
    with pytest.raises(HarnessError, match="does not fit the model"):
        create_model("tiny_cnn", checkpoint=str(tmp_path / "three.pt"))


def test_timm_pretrained_weights_offline_are_a_clear_error(monkeypatch):
    # The hub is never reached in tests (HF_HUB_OFFLINE=1): asking for pretrained weights must say so clearly.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HarnessError, match="timm's pretrained weights for 'resnet18' could not be loaded"):
        create_model("resnet18", pretrained=True)
    assert create_model("resnet18", pretrained=False).fc.out_features == 1000
