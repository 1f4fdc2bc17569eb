"""LOW: the closed-form QP solution, the gradient-norm scores and the base-loss combinations."""
import math

import pytest
import torch
import torch.nn.functional as F

from baselines.class_balanced import ClassBalancedWeighter
from baselines.focal import FocalWeighter, focal_loss
from baselines.low import (LOWWeighter, ce_logit_gradient_norm, logit_gradient_norm, low_weights,
                           project_onto_scaled_simplex)
from law.errors import ConfigError
from law.weighting import Progress, WeightInputs, Weighter


def kkt_bisection(scores: torch.Tensor, lam: float) -> torch.Tensor:
    """Independent solution of the original QP from its KKT conditions.

    Stationarity with multiplier mu for sum(w) = B and nu_i >= 0 for w_i >= 0 gives
    w_i = max(0, 1 + (g_i^2 - mu) / (2 lam)); sum(w) falls as mu grows, so bisect mu.
    """
    g2 = scores.double().square()
    n = len(g2)

    def total(mu):
        return (1 + (g2 - mu) / (2 * lam)).clamp_min(0).sum()

    low, high = -2 * lam, g2.max().item() + 2 * lam  # total(low) >= n >= total(high)
    for _ in range(200):
        mid = 0.5 * (low + high)
        low, high = (mid, high) if total(mid) > n else (low, mid)
    return (1 + (g2 - 0.5 * (low + high)) / (2 * lam)).clamp_min(0)


def objective(w: torch.Tensor, scores: torch.Tensor, lam: float) -> torch.Tensor:
    return (w * scores.double().square()).sum(-1) - lam * (w - 1).square().sum(-1)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("lam", [1.0, 0.1, 0.01])
def test_closed_form_equals_an_independent_qp_solution(seed, lam):
    g = torch.Generator().manual_seed(seed)
    scores = torch.rand(64, generator=g, dtype=torch.float64) * 3
    scores[torch.rand(64, generator=g) < 0.4] = 0.0  # many equal, zero scores
    w = low_weights(scores, lam)
    torch.testing.assert_close(w, kkt_bisection(scores, lam), rtol=0, atol=1e-9)
    assert (w >= 0).all()
    assert w.sum().item() == pytest.approx(64, abs=1e-9)
    if lam == 0.01:
        assert (w == 0).sum() > 32  # most of the batch is clipped: the hard case is exercised

    # Optimality without the KKT derivation: no feasible point scores higher.
    others = torch.distributions.Dirichlet(torch.ones(64, dtype=torch.float64)).sample((200,)) * 64
    for t in (1.0, 0.01):
        mixed = (1 - t) * w + t * others  # convex combinations stay feasible
        assert (objective(mixed, scores, lam) <= objective(w, scores, lam) + 1e-9).all()


def test_float32_on_the_device_keeps_the_constraints():
    scores = torch.rand(128) * 1.5
    w = low_weights(scores, 0.1)
    assert w.dtype == torch.float32 and (w >= 0).all()
    assert w.sum().item() == pytest.approx(128, rel=1e-5)
    torch.testing.assert_close(w.double(), kkt_bisection(scores, 0.1), rtol=0, atol=1e-4)


def test_large_lambda_gives_all_ones_and_default_lambda_never_clips_ce_scores():
    scores = torch.rand(50, dtype=torch.float64) * math.sqrt(2)
    assert torch.equal(low_weights(scores, float("inf")), torch.ones(50, dtype=torch.float64))
    torch.testing.assert_close(low_weights(scores, 1e9), torch.ones(50, dtype=torch.float64))
    # Unclipped closed form w = 1 + (g^2 - mean g^2) / (2 lam), in [0, 2] for CE scores.
    w = low_weights(scores, 1.0)
    torch.testing.assert_close(w, 1 + (scores**2 - (scores**2).mean()) / 2)
    assert w.min() >= 0 and w.max() <= 2


def test_projection_of_a_hand_example():
    # v = (3, 1, 0) onto {w >= 0, sum = 2}: threshold 1 -> (2, 0, 0).
    w = project_onto_scaled_simplex(torch.tensor([3.0, 1.0, 0.0]), 2.0)
    assert torch.equal(w, torch.tensor([2.0, 0.0, 0.0]))
    w = project_onto_scaled_simplex(torch.tensor([2.0, 1.5, 0.0]), 2.0)  # threshold 0.75
    torch.testing.assert_close(w, torch.tensor([1.25, 0.75, 0.0]))


def per_sample_logit_grad_norms(loss_fn, logits, targets):
    norms = []
    for z, y in zip(logits, targets):
        z = z.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(loss_fn(z[None], y[None]).sum(), z)
        norms.append(grad.norm())
    return torch.stack(norms)


def test_scores_match_autograd_per_sample():
    torch.manual_seed(0)
    logits, targets = torch.randn(16, 5, dtype=torch.float64) * 3, torch.randint(0, 5, (16,))
    ce = lambda z, y: F.cross_entropy(z, y, reduction="none")
    torch.testing.assert_close(ce_logit_gradient_norm(logits, targets),
                               per_sample_logit_grad_norms(ce, logits, targets))
    focal = lambda z, y: focal_loss(z, y, gamma=2.0)
    torch.testing.assert_close(logit_gradient_norm(focal, logits, targets),
                               per_sample_logit_grad_norms(focal, logits, targets))


def batch_inputs(seed=0, batch=32, classes=4):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, classes, generator=g) * 2
    targets = torch.randint(0, classes, (batch,), generator=g)
    losses = F.cross_entropy(logits, targets, reduction="none")
    return WeightInputs(logits, targets, losses, Progress())


def test_weighter_on_cross_entropy_uses_the_closed_form_scores():
    batch = batch_inputs()
    w = LOWWeighter(lam=0.5).weights(batch)
    torch.testing.assert_close(w, low_weights(ce_logit_gradient_norm(batch.logits, batch.targets), 0.5))
    assert w.mean().item() == pytest.approx(1.0, rel=1e-5)
    assert w.std() > 0.1  # the default scale does something


def test_batch_mean_scale_leaves_weights_near_one():
    batch = batch_inputs(batch=128)
    w = LOWWeighter(lam=0.1, score_scale="batch_mean").weights(batch)
    assert (w - 1).abs().max() <= 2 / (2 * 0.1 * 128**2) + 1e-6


def test_weighter_combines_with_focal_and_class_balanced_bases():
    batch = batch_inputs()
    focal = FocalWeighter(gamma=2.0)
    low = LOWWeighter(lam=0.5, base=focal)
    focal_scores = logit_gradient_norm(focal.per_sample_loss, batch.logits, batch.targets)
    torch.testing.assert_close(low.weights(batch), low_weights(focal_scores, 0.5))
    torch.testing.assert_close(low.per_sample_loss(batch.logits, batch.targets),
                               focal_loss(batch.logits, batch.targets, gamma=2.0))

    cb = ClassBalancedWeighter([100, 10, 50, 5], beta=0.99)
    low = LOWWeighter(lam=0.5, base=cb)
    base = cb.weights(batch)
    # Scored loss is b_i * CE_i, so its logit gradient norm is b_i * ||softmax - onehot||.
    expected = base * low_weights(base * ce_logit_gradient_norm(batch.logits, batch.targets), 0.5)
    torch.testing.assert_close(low.weights(batch), expected)


def test_invalid_settings_name_the_field():
    with pytest.raises(ConfigError, match="lam"):
        LOWWeighter(lam=0.0)
    with pytest.raises(ConfigError, match="score_scale"):
        LOWWeighter(score_scale="mean")

    class OwnForward(Weighter):
        def forward(self, model, inputs, targets, progress):
            raise AssertionError

    with pytest.raises(ConfigError, match="low_base"):
        LOWWeighter(base=OwnForward())
