"""The short training protocol behind accuracy comparisons: schedule, data order, and that it learns."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from harness.case import Case
from harness.metrics import accuracy, classifier_training, train
from harness.metrics.train import Schedule, batch_indices
from harness.zoo.build import build_inputs, build_model


def test_learning_rate_scales_with_the_global_batch_warms_up_and_decays():
    schedule = Schedule(images=3200, batch=8, world_size=2, lr=0.1, lr_reference_batch=32, warmup_fraction=0.1)
    assert schedule.global_batch == 16 and schedule.steps == 200
    assert schedule.peak_lr == pytest.approx(0.05)
    rates = [schedule.lr_at(s) for s in range(schedule.steps)]
    assert rates[0] == pytest.approx(0.05 / 20) and rates[19] == pytest.approx(0.05)  # 20 warm-up steps
    assert rates[20] == pytest.approx(0.05)
    assert rates[110] == pytest.approx(0.05 * 0.5 * (1 + math.cos(math.pi * 90 / 180)))
    assert all(a >= b for a, b in itertools.pairwise(rates[20:])) and rates[-1] < 1e-3


def test_each_epoch_is_a_seeded_permutation_split_between_processes(monkeypatch):
    schedule = Schedule(images=40, batch=2, world_size=2, seed=3)
    per_rank = {}
    for r in (0, 1):
        monkeypatch.setattr(train, "rank", lambda r=r: r)
        per_rank[r] = [index.tolist() for index in batch_indices(21, schedule)]
    assert len(per_rank[0]) == schedule.steps == 10
    first_epoch = [i for step in range(5) for r in (0, 1) for i in per_rank[r][step]]
    assert sorted(first_epoch) == sorted(set(first_epoch)) and len(first_epoch) == 20  # no image twice
    assert per_rank[0][0] != per_rank[0][5]  # epoch 2 is another permutation
    again = [index.tolist() for index in batch_indices(21, schedule)]
    assert again == per_rank[1]  # same seed, same order
    with pytest.raises(ValueError, match="fewer than one global batch"):
        next(batch_indices(3, schedule))


def test_short_training_learns_the_digits():
    case = Case("tiny_cnn", resolution=16, batch=16)
    options = accuracy.Options(train_images=3000, lr=0.5, limit=200)
    untrained_options = options.model_copy(update={"train_images": 0})
    untrained = accuracy.measure(build_model(case), build_inputs(case), case, untrained_options)
    trained = accuracy.measure(build_model(case), build_inputs(case), case, options)
    assert untrained["acc_train_steps"] == 0
    assert trained["acc_train_steps"] == 3000 // 16
    assert trained["acc_train_loss_last"] < trained["acc_train_loss_first"]
    assert trained["acc_top1"] > untrained["acc_top1"] + 0.15
    assert trained["acc_batch_average_batches"] == 0


def test_switchable_norm_batch_average_is_recomputed_after_training():
    case = Case("tiny_cnn", resolution=8, batch=8, norm="sn", norm_kwargs=(("moving_average", False),))
    model = build_model(case)
    sn = model.bn
    out = accuracy.measure(model, build_inputs(case), case, accuracy.Options(train_images=64, limit=20,
                                                                               batch_average_batches=3))
    assert out["acc_batch_average_batches"] == 3
    assert int(sn.num_batches_tracked) == 3 and not torch.equal(sn.running_var, torch.ones_like(sn.running_var))


def test_an_int8_model_cannot_train():
    case = Case("tiny_cnn", quant="int8")
    with pytest.raises(Exception, match="int8-quantized model cannot train"):
        classifier_training.train(torch.nn.Identity(), torch.zeros(1), case, accuracy.Options(train_images=8))


def test_a_training_split_in_two_step_ranges_is_the_same_training():
    torch.manual_seed(0)
    images, labels = torch.randn(40, 3, 8, 8), torch.randint(0, 10, (40,))
    schedule = Schedule(images=160, batch=8, momentum=0.0, seed=5)  # no momentum: nothing carried between calls

    def trained(ranges: list[range]) -> torch.Tensor:
        torch.manual_seed(1)
        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(192, 10))
        losses = [loss for steps in ranges for loss in train.run_steps(model, images, labels, schedule, steps)]
        assert len(losses) == schedule.steps
        return model[1].weight.detach().clone()

    whole = trained([range(schedule.steps)])
    assert torch.equal(trained([range(7), range(7, schedule.steps)]), whole)  # 7: mid-epoch (5 steps per epoch)
    assert not torch.equal(trained([range(7), range(8, schedule.steps), range(7, 8)]), whole)


def test_a_loss_function_replaces_cross_entropy():
    images, labels = torch.randn(16, 3, 8, 8), torch.randint(0, 10, (16,))
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(192, 10))
    seen = []

    def loss_fn(outputs, batch_labels, indices, module):
        seen.append((indices.tolist(), module))
        assert torch.equal(batch_labels, labels[indices])
        return outputs.sum() * 0

    losses = train.run_steps(model, images, labels, Schedule(images=32, batch=8), loss_fn=loss_fn)
    assert losses == [0.0] * 4 and all(module is model for _, module in seen)
    assert sorted(i for indices, _ in seen[:2] for i in indices) == list(range(16))
