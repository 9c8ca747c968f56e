"""Local checkpoints: plain weights load, anything else is refused with a clear message."""

from __future__ import annotations

import os
import re
import threading

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


# --- every failure names the file and says what is wrong --------------------------------------------------


@pytest.fixture
def saved(tmp_path):
    """The path of a valid tiny_cnn checkpoint."""
    path = tmp_path / "tiny.pt"
    torch.save(create_model("tiny_cnn").state_dict(), path)
    return path


def load_error(path) -> str:
    """The message of the HarnessError that loading ``path`` into tiny_cnn raises."""
    with pytest.raises(HarnessError) as caught:
        create_model("tiny_cnn", checkpoint=str(path))
    return str(caught.value)


def test_an_empty_file_is_named_empty(tmp_path):
    (tmp_path / "empty.pt").touch()
    assert load_error(tmp_path / "empty.pt") == (f"checkpoint {tmp_path / 'empty.pt'}: is empty (0 bytes), "
                                                 "expected a file saved by torch.save")


@pytest.mark.parametrize(("zip_format", "reason"), [
    (True, re.escape("RuntimeError: PytorchStreamReader failed reading zip archive: failed finding central "
                     "directory")),
    (False, r"RuntimeError: unexpected EOF, expected \d+ more bytes"),  # the legacy format
])
def test_a_checkpoint_cut_in_half_is_named_truncated(saved, zip_format, reason):
    torch.save(create_model("tiny_cnn").state_dict(), saved, _use_new_zipfile_serialization=zip_format)
    half = saved.read_bytes()[:saved.stat().st_size // 2]
    saved.write_bytes(half)
    assert re.fullmatch(re.escape(f"checkpoint {saved}: is truncated or damaged, torch cannot read it ({len(half)} "
                                  "bytes; ") + reason + re.escape("): save it or copy it again"), load_error(saved))


def test_a_file_that_is_no_checkpoint_is_named(tmp_path):
    (tmp_path / "notes.pt").write_text("hello")
    assert load_error(tmp_path / "notes.pt") == (f"checkpoint {tmp_path / 'notes.pt'}: is not a checkpoint "
                                                 "(5 bytes beginning b'hello'), expected a file saved by torch.save")


def test_a_directory_is_named(tmp_path):
    assert load_error(tmp_path) == f"checkpoint {tmp_path}: is a directory, expected a file saved by torch.save"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes on this platform")
def test_a_fifo_is_refused_at_once_without_being_opened(tmp_path):
    os.mkfifo(tmp_path / "pipe.pt")
    messages = []
    loader = threading.Thread(target=lambda: messages.append(load_error(tmp_path / "pipe.pt")), daemon=True)
    loader.start()
    loader.join(timeout=10)  # opening a FIFO with no writer would block for ever
    assert not loader.is_alive(), "loading a FIFO blocked"
    assert messages == [f"checkpoint {tmp_path / 'pipe.pt'}: is a named pipe (FIFO), "
                        "expected a file saved by torch.save"]


def test_a_refused_pickle_does_not_advise_disabling_the_safety(tmp_path):
    torch.save({"state_dict": NotWeights()}, tmp_path / "evil.pt")
    message = load_error(tmp_path / "evil.pt")
    assert message == (f"checkpoint {tmp_path / 'evil.pt'}: refused, it is not plain weights: it holds "
                       f"{__name__}.NotWeights (only tensors, numbers, strings and plain containers are loaded: "
                       "unpickling other objects can run code)")
    assert "weights_only" not in message and "\x1b" not in message


def test_wrong_keys_are_listed_with_their_counts(tmp_path):
    state = create_model("tiny_cnn").state_dict()
    renamed = {f"module.{key}": value for key, value in state.items() if key != "fc.bias"}
    torch.save(renamed, tmp_path / "parallel.pt")
    assert len(state) == 8
    assert load_error(tmp_path / "parallel.pt") == (
        f"checkpoint {tmp_path / 'parallel.pt'}: does not fit the model (TinyCNN): "
        "8 keys of the model missing from the checkpoint: conv.weight, bn.weight, bn.bias, bn.running_mean, "
        "bn.running_var, … (3 more); 7 unexpected keys not in the model: module.conv.weight, module.bn.weight, "
        "module.bn.bias, module.bn.running_mean, module.bn.running_var, … (2 more)")


def test_wrong_shapes_name_the_key_the_expected_and_the_found_shape(tmp_path):
    state = create_model("tiny_cnn", num_classes=3).state_dict()
    del state["bn.num_batches_tracked"]
    state["bn.bias"] = [0.0] * 8
    torch.save(state, tmp_path / "three.pt")
    assert load_error(tmp_path / "three.pt") == (
        f"checkpoint {tmp_path / 'three.pt'}: does not fit the model (TinyCNN): "
        "1 key of the model missing from the checkpoint: bn.num_batches_tracked; "
        "3 tensors of another shape: bn.bias (expected [8], got a list, not a tensor), "
        "fc.weight (expected [10, 8], got [3, 8]), fc.bias (expected [10], got [3])")


def test_a_checkpoint_that_is_not_a_state_dict_is_named(tmp_path):
    torch.save([torch.zeros(1)], tmp_path / "list.pt")
    assert load_error(tmp_path / "list.pt") == (
        f"checkpoint {tmp_path / 'list.pt'}: expected a state dict (tensor names to tensors, as model.state_dict() "
        "returns), got a list")
