"""The weighted step, the schedule, the NaN guard and evaluation."""
import math

import pytest
import torch
from torch import nn

from law.errors import TrainingDiverged
from law.trainer import (DivergenceGuard, OptimConfig, evaluate, learning_rate, make_optimizer,
                         train_step)
from law.weighting import Progress, WeightInputs, Weighter


class FixedWeights(Weighter):
    def __init__(self, weights):
        super().__init__()
        self.fixed = weights

    def weights(self, batch: WeightInputs):
        return self.fixed


def test_step_minimises_mean_of_weighted_per_sample_losses():
    torch.manual_seed(0)
    x, y = torch.randn(4, 3), torch.tensor([0, 1, 1, 0])
    w = torch.tensor([0.0, 2.0, 1.0, 1.0])
    model = nn.Linear(3, 2)
    reference = nn.Linear(3, 2)
    reference.load_state_dict(model.state_dict())

    result = train_step(model, torch.optim.SGD(model.parameters(), lr=0.1), FixedWeights(w), x, y,
                        Progress())

    # Same update by hand: loss = mean_i w_i * CE_i.
    losses = nn.functional.cross_entropy(reference(x), y, reduction="none")
    (w * losses).mean().backward()
    with torch.no_grad():
        for p in reference.parameters():
            p -= 0.1 * p.grad
    for a, b in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(result.loss, (w * losses).mean().detach())
    assert torch.equal(result.weights, w)


def test_unit_weights_equal_plain_mean_loss_bitwise():
    torch.manual_seed(0)
    x, y = torch.randn(8, 5), torch.randint(0, 3, (8,))
    a = nn.Linear(5, 3)
    b = nn.Linear(5, 3)
    b.load_state_dict(a.state_dict())
    train_step(a, make_optimizer(a, OptimConfig()), Weighter(), x, y, Progress())
    opt = make_optimizer(b, OptimConfig())
    nn.functional.cross_entropy(b(x), y).backward()
    opt.step()
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)


def test_schedules():
    cos = OptimConfig(lr=0.1, lr_schedule="cosine")
    assert learning_rate(cos, 0, 10) == pytest.approx(0.1)
    assert learning_rate(cos, 5, 10) == pytest.approx(0.05)
    assert learning_rate(cos, 10, 10) == pytest.approx(0.0, abs=1e-12)
    step = OptimConfig(lr=0.1, lr_schedule="step", lr_milestones=(10, 13), lr_gamma=0.1)
    assert [learning_rate(step, e, 20) for e in (0, 9.9, 10, 12, 13, 19)] == pytest.approx(
        [0.1, 0.1, 0.01, 0.01, 0.001, 0.001])
    assert learning_rate(OptimConfig(lr=0.3, lr_schedule="constant"), 7, 10) == 0.3


def test_nan_loss_stops_training_with_a_clear_error():
    model = nn.Linear(2, 2)
    opt = make_optimizer(model, OptimConfig())
    guard = DivergenceGuard()
    x, y = torch.tensor([[1.0, math.nan]]), torch.tensor([0])
    result = train_step(model, opt, Weighter(), x, y, Progress())
    guard.observe(result.loss)
    with pytest.raises(TrainingDiverged, match="NaN or infinite.*epoch 1.*--lr"):
        guard.check("epoch 1")


def test_finite_losses_pass_the_guard():
    guard = DivergenceGuard()
    guard.observe(torch.tensor(1.0))
    guard.check("epoch 1")


def test_evaluate_restores_train_mode_and_counts_correctly():
    model = nn.Sequential(nn.Identity(), nn.BatchNorm1d(2))
    model.train()
    x = torch.tensor([[2.0, 0.0], [0.0, 2.0], [3.0, 1.0], [0.0, 1.0]])
    y = torch.tensor([0, 1, 1, 1])  # BN in eval with fresh stats is identity: preds 0, 1, 0, 1
    metrics = evaluate(model, [(x[:2], y[:2]), (x[2:], y[2:])], num_classes=2)
    assert metrics["accuracy"] == pytest.approx(0.75)
    assert model.training
    assert torch.equal(model[1].running_mean, torch.zeros(2))
