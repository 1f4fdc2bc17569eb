import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from baselines.class_balanced import ClassBalancedWeighter, class_balanced_weights
from baselines.focal import FocalWeighter, focal_loss
from law.errors import ConfigError
from law.weighting import Progress, WeightInputs

# ---------------------------------------------------------------------------- focal loss


def _naive_focal(logits, targets, gamma):
    p_t = logits.softmax(dim=1).gather(1, targets[:, None]).squeeze(1)
    return -((1 - p_t) ** gamma) * p_t.log()


def test_focal_hand_computed():
    # logits [2, 0], target 0: p_t = e^2 / (e^2 + 1) = 0.8807971, 1 - p_t = 0.1192029,
    #   gamma 2: 0.1192029^2 * -ln(0.8807971) = 0.0142093 * 0.1269280 = 0.0018036.
    # logits [0, 0, 0], target 1: p_t = 1/3, gamma 1: (2/3) * ln 3 = 0.7324082.
    two_class = focal_loss(torch.tensor([[2.0, 0.0]]), torch.tensor([0]), gamma=2.0)
    three_class = focal_loss(torch.zeros(1, 3), torch.tensor([1]), gamma=1.0)
    assert two_class.item() == pytest.approx(0.0018035628, rel=1e-5)
    assert three_class.item() == pytest.approx(2 / 3 * math.log(3), rel=1e-6)


@pytest.mark.parametrize("gamma", [0.5, 1.0, 2.0, 5.0])
def test_focal_value_and_gradient_match_the_formula(gamma):
    torch.manual_seed(0)
    logits = torch.randn(16, 5, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 5, (16,))
    ours = focal_loss(logits, targets, gamma)
    naive = _naive_focal(logits, targets, gamma)
    assert torch.allclose(ours, naive)
    (grad_ours,) = torch.autograd.grad(ours.sum(), logits)
    (grad_naive,) = torch.autograd.grad(naive.sum(), logits)
    assert torch.allclose(grad_ours, grad_naive)


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_focal_gamma_zero_is_cross_entropy(reduction):
    torch.manual_seed(0)
    logits, targets = torch.randn(8, 4), torch.randint(0, 4, (8,))
    assert torch.equal(focal_loss(logits, targets, 0.0, reduction), F.cross_entropy(logits, targets, reduction=reduction))


@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.0, 2.0])
def test_focal_saturated_logits_give_finite_values_and_gradients(gamma):
    # Row 0: p_t -> 1 (loss 0); row 1: p_t -> 0 (loss 2e4, the CE, since (1 - p_t)^gamma = 1).
    logits = torch.tensor([[1e4, -1e4], [-1e4, 1e4]], requires_grad=True)
    targets = torch.tensor([0, 0])
    losses = focal_loss(logits, targets, gamma)
    (grad,) = torch.autograd.grad(losses.sum(), logits)
    assert torch.isfinite(losses).all() and torch.isfinite(grad).all()
    assert losses.tolist() == [0.0, 2e4]
    assert grad[0].abs().max() == 0  # nothing left to learn on the confident, correct sample


def test_focal_gamma_below_one_has_finite_gradient_where_p_t_rounds_to_one():
    # Margin 30: 1 - p_t = e^-30 ~ 9e-14 is below float32 resolution at 1, so p_t == 1.0;
    # d/dp (1 - p)^0.5 would be infinite there. The true gradient is tiny (~e^-45).
    logits = torch.tensor([[30.0, 0.0, 0.0]], requires_grad=True)
    assert logits.softmax(dim=1)[0, 0].item() == 1.0
    loss = focal_loss(logits, torch.tensor([0]), gamma=0.5)
    (grad,) = torch.autograd.grad(loss.sum(), logits)
    assert torch.isfinite(grad).all() and grad.abs().max() < 1e-12
    # Against float64 with the plain formula, where p_t is still below 1.
    exact = _naive_focal(logits.detach().double(), torch.tensor([0]), 0.5)
    assert loss.item() == pytest.approx(exact.item(), rel=1e-4)


def test_focal_reductions():
    torch.manual_seed(0)
    logits, targets = torch.randn(8, 3), torch.randint(0, 3, (8,))
    per_sample = focal_loss(logits, targets, 2.0)
    assert per_sample.shape == (8,)
    assert torch.allclose(focal_loss(logits, targets, 2.0, "mean"), per_sample.mean())
    assert torch.allclose(focal_loss(logits, targets, 2.0, "sum"), per_sample.sum())
    with pytest.raises(ValueError, match="reduction"):
        focal_loss(logits, targets, 2.0, "max")
    with pytest.raises(ValueError, match="gamma"):
        focal_loss(logits, targets, -1.0)


def test_focal_weighter_uses_focal_losses_with_unit_weights():
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    inputs, targets = torch.randn(6, 4), torch.randint(0, 3, (6,))
    weighter = FocalWeighter(gamma=2.0)
    logits, losses, weights = weighter.forward(model, inputs, targets, Progress())
    assert weighter.name == "focal"
    assert torch.allclose(losses, focal_loss(logits, targets, 2.0))
    assert losses.requires_grad
    assert torch.equal(weights, torch.ones(6))
    with pytest.raises(ConfigError):
        FocalWeighter(gamma=-0.5)


# ---------------------------------------------------------------------- class-balanced


def test_inverse_frequency_hand_computed():
    # counts [1, 2, 4]: 1/n = [1, 1/2, 1/4], sum 7/4; scaled to sum 3: [12/7, 6/7, 3/7].
    weights = class_balanced_weights([1, 2, 4])
    assert weights.dtype == torch.float32
    assert weights.tolist() == pytest.approx([12 / 7, 6 / 7, 3 / 7])


def test_effective_number_hand_computed():
    # beta 0.5, counts [1, 2, 4]: 1 - beta^n = [1/2, 3/4, 15/16];
    #   (1 - beta) / (1 - beta^n) = [1, 2/3, 8/15], sum 11/5; scaled to sum 3: [15/11, 10/11, 8/11].
    weights = class_balanced_weights(torch.tensor([1, 2, 4]), beta=0.5)
    assert weights.tolist() == pytest.approx([15 / 11, 10 / 11, 8 / 11])


def test_beta_limits_and_normalisation():
    counts = [5000, 500, 50, 5]
    assert class_balanced_weights(counts, beta=0.0).tolist() == pytest.approx([1.0] * 4)
    # beta -> 1 tends to inverse frequency; beta^n is computed without cancellation.
    assert torch.allclose(class_balanced_weights(counts, beta=1 - 1e-12), class_balanced_weights(counts), rtol=1e-6)
    for beta in (None, 0.9, 0.999, 0.9999):
        weights = class_balanced_weights(counts, beta)
        assert weights.sum().item() == pytest.approx(4.0)
        # Rarer classes never weigh less (with small beta, large classes saturate to equal weights).
        assert (weights.diff() >= 0).all() and weights[-1] > weights[0]


def test_class_balanced_rejects_bad_input():
    with pytest.raises(ValueError, match="class 2 has count 0"):
        class_balanced_weights([3, 1, 0, 4])
    for beta in (1.0, -0.1):
        with pytest.raises(ValueError, match="beta"):
            class_balanced_weights([1, 2], beta=beta)
    with pytest.raises(ConfigError):
        ClassBalancedWeighter([1, 2], beta=1.0)


def test_class_balanced_weighter_gathers_weight_of_each_target():
    weighter = ClassBalancedWeighter([1, 2, 4], beta=None)  # weights [12/7, 6/7, 3/7]
    targets = torch.tensor([2, 0, 1, 0])
    batch = WeightInputs(torch.zeros(4, 3), targets, torch.ones(4), Progress())
    assert weighter.name == "cb"
    assert weighter.weights(batch).tolist() == pytest.approx([3 / 7, 12 / 7, 6 / 7, 12 / 7])

    model = nn.Linear(4, 3)
    logits, losses, weights = weighter.forward(model, torch.randn(4, 4), targets, Progress())
    assert torch.allclose(losses, F.cross_entropy(logits, targets, reduction="none"))
    assert torch.allclose(weights, class_balanced_weights([1, 2, 4])[targets])
