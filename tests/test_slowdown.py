"""The injected slowdown used to calibrate regression detection (HARNESS_INJECT_SLOWDOWN)."""

from __future__ import annotations

import pytest
import torch

from harness.case import Case
from harness.errors import HarnessError
from harness.zoo import slowdown
from harness.zoo.build import build_model
from harness.zoo.slowdown import ENV_VAR, Slowed, injected_fraction, parse_injection


def test_parse_and_match_patterns():
    assert parse_injection(" resnet*=0.1, *=0.02 ,") == (("resnet*", 0.1), ("*", 0.02))
    environ = {ENV_VAR: "resnet50=0.1,*=0.02"}
    assert injected_fraction("resnet50", environ) == 0.1
    assert injected_fraction("mobilenetv2_100", environ) == 0.02
    assert injected_fraction("resnet50", {}) == 0.0


@pytest.mark.parametrize("bad", ["resnet50", "resnet50=fast", "=0.1", "resnet50=-0.1"])
def test_bad_entries_are_named(bad):
    with pytest.raises(HarnessError, match="PATTERN=FRACTION"):
        parse_injection(bad)


def test_slowed_waits_the_fraction_of_the_forward(monkeypatch):
    clock = iter([10.0, 10.5])  # the forward took 0.5 s
    slept = []
    monkeypatch.setattr(slowdown.time, "perf_counter", lambda: next(clock))
    monkeypatch.setattr(slowdown.time, "sleep", slept.append)
    model = Slowed(torch.nn.Identity(), 0.1)
    x = torch.ones(2)
    assert model(x) is x
    assert slept == [pytest.approx(0.05)]


def test_build_model_wraps_only_the_named_model(monkeypatch):
    monkeypatch.setenv(ENV_VAR, "tiny_cnn=0.2")
    model = build_model(Case("tiny_cnn", resolution=16))
    assert isinstance(model, Slowed) and model.fraction == 0.2
    monkeypatch.setenv(ENV_VAR, "resnet*=0.2")
    assert not isinstance(build_model(Case("tiny_cnn", resolution=16)), Slowed)
