"""Knowledge distillation: the loss, its options, and the teacher trained once and reused."""

from __future__ import annotations

import pydantic
import pytest
import torch
import torch.nn.functional as F

from harness.case import Case
from harness.metrics import accuracy
from harness.zoo.build import build_inputs, build_model
from harness.zoo.compress import distill, get_method, method_options


def test_at_alpha_zero_the_loss_is_plain_cross_entropy():
    torch.manual_seed(0)
    student, teacher, labels = torch.randn(6, 10), torch.randn(6, 10), torch.randint(0, 10, (6,))
    assert torch.equal(distill.distillation_loss(student, teacher, labels, 4.0, 0.0), F.cross_entropy(student, labels))


def test_the_soft_term_is_the_temperature_scaled_kl_divergence():
    torch.manual_seed(0)
    student, teacher, labels = torch.randn(6, 10), torch.randn(6, 10), torch.randint(0, 10, (6,))
    t, alpha = 3.0, 0.7
    p = torch.softmax(teacher / t, dim=1)
    kl = (p * (p.log() - torch.log_softmax(student / t, dim=1))).sum(dim=1).mean()
    expected = alpha * t * t * kl + (1 - alpha) * F.cross_entropy(student, labels)
    assert distill.distillation_loss(student, teacher, labels, t, alpha).item() == pytest.approx(expected.item())
    assert distill.distillation_loss(teacher, teacher, labels, t, 1.0).item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("kwargs", [{"alpha": 1.5}, {"temperature": 0}, {"teacher": "resnet_nonexistent"},
                                    {"beta": 1}])
def test_bad_options_are_rejected(kwargs):
    with pytest.raises(pydantic.ValidationError):
        method_options("distill", kwargs)


def test_the_student_keeps_its_structure():
    case = Case("tiny_cnn", resolution=8, compress="distill", compress_kwargs=(("teacher", "tiny_cnn"),))
    model = build_model(case)
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in build_model(Case("tiny_cnn"))
                                                             .parameters())
    assert model.harness_compress_info == {"teacher": "tiny_cnn", "temperature": 4.0, "alpha": 0.9}
    assert get_method("distill").loss_all is not None


def test_the_teacher_trains_once_and_its_logits_are_cached(tmp_path, monkeypatch):
    monkeypatch.setattr(distill, "teacher_cache_dir", lambda: tmp_path)
    trainings = []
    original = distill.teacher_logits

    def counting(options, context):
        real_train = context.train
        context.train = lambda model: trainings.append(type(model).__name__) or real_train(model)
        return original(options, context)

    monkeypatch.setattr(distill, "teacher_logits", counting)
    case = Case("tiny_cnn", resolution=8, batch=8, compress="distill",
                compress_kwargs=(("alpha", 0.5), ("teacher", "tiny_cnn")))
    options = accuracy.Options(train_images=64, limit=40)
    first = accuracy.measure(build_model(case), build_inputs(case), case, options)
    second = accuracy.measure(build_model(case), build_inputs(case), case, options)
    assert trainings == ["TinyCNN"]  # the second student read the teacher's logits from the cache
    assert len(list(tmp_path.glob("*.pt"))) == 1
    assert first["acc_top1"] == second["acc_top1"] and first["acc_train_steps"] == 8
    assert first["acc_compress_step"] == 0
    plain = Case("tiny_cnn", resolution=8, batch=8)
    dense = accuracy.measure(build_model(plain), build_inputs(plain), plain, options)
    assert dense["acc_train_loss_first"] != first["acc_train_loss_first"]  # the soft term changed the loss
