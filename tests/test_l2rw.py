"""L2RW: the fast forward-mode path against the look-ahead definition."""
import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from baselines.l2rw import (L2RWWeighter, l2rw_scores, l2rw_step, l2rw_weights, lookahead_scores,
                            lookahead_step)
from law.errors import LawError
from law.weighting import Progress

ALPHA = 0.5


def tiny_mlp(batch_norm: bool) -> nn.Module:
    torch.manual_seed(0)
    layers = [nn.Linear(5, 7)] + ([nn.BatchNorm1d(7)] if batch_norm else []) + [nn.Tanh(), nn.Linear(7, 3)]
    return nn.Sequential(*layers).double().train()


def batches(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(8, 5, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (8,), generator=g)
    xm = torch.randn(6, 5, generator=g, dtype=torch.float64)
    ym = torch.randint(0, 3, (6,), generator=g)
    return x, y, xm, ym


def clean_loss_after_lookahead(model, eps, x, y, xm, ym):
    """L_c(theta - alpha * grad sum_i eps_i l_i): the definition, with an explicit look-ahead."""
    params = {k: p.detach() for k, p in model.named_parameters()}

    def fresh_buffers():
        return {k: b.clone() for k, b in model.named_buffers()}

    def weighted_train_loss(p):
        logits = functional_call(model, {**p, **fresh_buffers()}, (x,))
        return (eps * F.cross_entropy(logits, y, reduction="none")).sum()

    step = torch.func.grad(weighted_train_loss)(params)
    lookahead = {k: params[k] - ALPHA * step[k] for k in params}
    return F.cross_entropy(functional_call(model, {**lookahead, **fresh_buffers()}, (xm,)), ym)


def finite_difference_scores(model, x, y, xm, ym, h=1e-4):
    """-dL_c/d eps_i by central differences around eps = 0."""
    scores = []
    for i in range(len(y)):
        e = torch.zeros(len(y), dtype=torch.float64)
        e[i] = h
        up = clean_loss_after_lookahead(model, e, x, y, xm, ym)
        down = clean_loss_after_lookahead(model, -e, x, y, xm, ym)
        scores.append(-(up - down) / (2 * h))
    return torch.stack(scores)


@pytest.mark.parametrize("batch_norm", [False, True])
def test_scores_and_weights_match_finite_differences_of_the_lookahead(batch_norm):
    model = tiny_mlp(batch_norm)
    x, y, xm, ym = batches()
    fd = finite_difference_scores(model, x, y, xm, ym)
    assert (fd > 0).any() and (fd < 0).any()  # the clipping is exercised
    fast = ALPHA * l2rw_scores(model, x, y, xm, ym)
    torch.testing.assert_close(fast, fd, rtol=1e-6, atol=1e-9)

    expected = fd.clamp_min(0) / fd.clamp_min(0).sum()
    weights = l2rw_weights(model, x, y, xm, ym)
    torch.testing.assert_close(weights, expected, rtol=1e-6, atol=1e-9)
    assert weights.sum().item() == pytest.approx(1.0)


@pytest.mark.parametrize("batch_norm", [False, True])
def test_fast_scores_equal_differentiating_through_the_lookahead(batch_norm):
    model = tiny_mlp(batch_norm)
    x, y, xm, ym = batches(2)
    torch.testing.assert_close(ALPHA * l2rw_scores(model, x, y, xm, ym),
                               lookahead_scores(model, x, y, xm, ym, alpha=ALPHA), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("bn_options", [
    {}, {"affine": False}, {"track_running_stats": False}, {"momentum": None},
])
def test_conv_batch_norm_variants_match_the_lookahead(bn_options):
    # Covers the fused batch-norm tangent rule on 4-D inputs, with and without its optional parts.
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3, **bn_options), nn.ReLU(inplace=True),
        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(27, 4),
    ).double().train()
    x, xm = torch.randn(6, 2, 6, 6, dtype=torch.float64), torch.randn(5, 2, 6, 6, dtype=torch.float64)
    y, ym = torch.randint(0, 4, (6,)), torch.randint(0, 4, (5,))
    torch.testing.assert_close(l2rw_scores(model, x, y, xm, ym), lookahead_scores(model, x, y, xm, ym),
                               rtol=1e-10, atol=1e-12)


def test_weights_leave_parameters_buffers_and_grads_untouched():
    model = tiny_mlp(batch_norm=True)
    before = copy.deepcopy(model.state_dict())
    x, y, xm, ym = batches()
    l2rw_weights(model, x, y, xm, ym)
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), name
    assert all(p.grad is None for p in model.parameters())


def test_all_negative_scores_give_zero_weights_without_nan():
    # Only the bias learns, so grad l_i = softmax(b) - onehot(y_i). With b = 0 and two classes,
    # clean samples of class 0 and training samples of class 1 have opposite gradients: u_i < 0.
    model = nn.Linear(4, 2).double()
    nn.init.zeros_(model.weight)
    nn.init.zeros_(model.bias)
    model.weight.requires_grad_(False)
    x, xm = torch.randn(5, 4, dtype=torch.float64), torch.randn(3, 4, dtype=torch.float64)
    y, ym = torch.ones(5, dtype=torch.long), torch.zeros(3, dtype=torch.long)
    torch.testing.assert_close(l2rw_scores(model, x, y, xm, ym), torch.full((5,), -0.5, dtype=torch.float64))
    weights = l2rw_weights(model, x, y, xm, ym)
    assert torch.equal(weights, torch.zeros(5, dtype=torch.float64))

    # A step with all-zero weights changes nothing (and produces no NaN).
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    l2rw_step(model, optimizer, x, y, xm, ym)
    assert torch.equal(model.bias.detach(), torch.zeros(2, dtype=torch.float64))


def test_step_equals_the_reference_lookahead_step():
    fast = tiny_mlp(batch_norm=True)
    reference = copy.deepcopy(fast)
    fast_opt = torch.optim.SGD(fast.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    reference_opt = torch.optim.SGD(reference.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    for seed in range(3):
        x, y, xm, ym = batches(seed)
        w_fast = l2rw_step(fast, fast_opt, x, y, xm, ym)
        w_reference = lookahead_step(reference, reference_opt, x, y, xm, ym)
        torch.testing.assert_close(w_fast, w_reference, rtol=1e-9, atol=1e-12)
    for (name, a), b in zip(fast.state_dict().items(), reference.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12, msg=name)
    assert fast[1].num_batches_tracked.item() == 3  # running stats moved once per step


def test_weighter_shares_the_training_forward():
    model = tiny_mlp(batch_norm=True)
    plain = copy.deepcopy(model)
    x, y, xm, ym = batches()
    expected_weights = l2rw_weights(model, x, y, xm, ym)

    weighter = L2RWWeighter(lambda: (xm, ym))
    assert weighter.needs_meta_batch and weighter.name == "l2rw"
    logits, losses, weights = weighter.forward(model, x, y, Progress())
    torch.testing.assert_close(weights, len(y) * expected_weights)  # mean-one convention
    assert not weights.requires_grad and losses.requires_grad

    plain_logits = plain(x)
    torch.testing.assert_close(logits, plain_logits)
    torch.testing.assert_close(losses, F.cross_entropy(plain_logits, y, reduction="none"))
    for name, value in model.named_buffers():  # running stats updated exactly like a plain forward
        torch.testing.assert_close(value, dict(plain.named_buffers())[name], msg=name)

    # The weighted loss backpropagates to the same gradient as sum_i w_i l_i on a plain forward.
    weights.mul(losses).mean().backward()
    expected_weights.mul(F.cross_entropy(plain_logits, y, reduction="none")).sum().backward()
    for p, q in zip(model.parameters(), plain.parameters()):
        torch.testing.assert_close(p.grad, q.grad)


def test_weighter_without_meta_batch_says_what_is_missing():
    model = tiny_mlp(batch_norm=False)
    x, y, _, _ = batches()
    with pytest.raises(LawError, match="meta batch"):
        L2RWWeighter().forward(model, x, y, Progress())


def test_benchmark_script_runs(tmp_path):
    script = Path(__file__).resolve().parents[1] / "scripts" / "bench_weighters.py"
    out = tmp_path / "bench.json"
    subprocess.run([sys.executable, str(script), "--steps", "1", "--warmup", "0", "--batch-size", "8",
                    "--threads", "1", "--no-memory", "--output", str(out)], check=True, capture_output=True)
    results = json.loads(out.read_text())
    assert set(results["ratio_to_plain"]) == {"plain", "low", "l2rw", "l2rw_ref"}
    assert results["l2rw_weights_max_abs_diff_vs_lookahead"] < 1e-5
