"""Sample features and the tanh policy, checked against batches worked by hand."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from law.errors import LawError
from law.features import (FEATURE_SPEC, check_feature_spec, log_frequency_by_class,
                          raw_features, sample_features)
from law.policy import ACTION_SIZE, LAWPolicyWeighter
from law.weighting import Progress, WeightInputs

LOG3 = math.log(3.0)
R2 = math.sqrt(2.0)

# Three samples, two classes, worked by hand:
#   logits [1, 1]      -> p = (1/2, 1/2), target 0: loss log 2, entropy log 2
#   logits [log 3, 0]  -> p = (3/4, 1/4), target 1: loss log 4, entropy log 4 - 3/4 log 3
#   logits [0, log 3]  -> p = (1/4, 3/4), target 0: loss log 4, same entropy
# Unit logits u1 = (1, 1)/sqrt2, u2 = (1, 0), u3 = (0, 1): cosines u1.u2 = u1.u3 = 1/sqrt2,
# u2.u3 = 0, so densities (mean over the two others) are 1/sqrt2, 1/(2 sqrt2), 1/(2 sqrt2).
# Class counts (4, 1): log(n_c / max n_c) = (0, log 1/4).
LOGITS = torch.tensor([[1.0, 1.0], [LOG3, 0.0], [0.0, LOG3]])
TARGETS = torch.tensor([0, 1, 0])
COUNTS = [4, 1]


def test_raw_features_match_hand_computation():
    f = raw_features(LOGITS, TARGETS, log_frequency_by_class(COUNTS))
    skewed_entropy = math.log(4) - 0.75 * LOG3
    expected = torch.tensor([
        [math.log(2), math.log(2), 1 / R2, 0.0],
        [math.log(4), skewed_entropy, 1 / (2 * R2), math.log(0.25)],
        [math.log(4), skewed_entropy, 1 / (2 * R2), 0.0],
    ])
    torch.testing.assert_close(f, expected, rtol=1e-5, atol=1e-6)


def test_normalised_features_match_hand_computation():
    # Every column has the shape (a, b, b) or (a, b, a); z-scores of three values with
    # two equal are +-sqrt2 for the odd one out and -+1/sqrt2 for the pair.
    f = sample_features(LOGITS, TARGETS, log_frequency_by_class(COUNTS))
    expected = torch.tensor([
        [-R2, R2, R2, 1 / R2],
        [1 / R2, -1 / R2, -1 / R2, -R2],
        [1 / R2, -1 / R2, -1 / R2, 1 / R2],
    ])
    torch.testing.assert_close(f, expected, rtol=1e-5, atol=1e-5)


def test_trainer_losses_are_used_as_given():
    given = torch.tensor([1.0, 2.0, 3.0])
    f = raw_features(LOGITS, TARGETS, log_frequency_by_class(COUNTS), losses=given)
    assert torch.equal(f[:, 0], given)


def test_constant_features_normalise_to_zero_not_nan():
    # Balanced classes: the label feature is constant over the batch.
    logits = torch.randn(5, 3, generator=torch.Generator().manual_seed(0))
    f = sample_features(logits, torch.tensor([0, 1, 2, 0, 1]), log_frequency_by_class([7, 7, 7]))
    assert torch.equal(f[:, 3], torch.zeros(5))
    # A batch of one: nothing to compare with.
    single = sample_features(logits[:1], torch.tensor([2]), log_frequency_by_class([7, 1, 3]))
    assert torch.equal(single, torch.zeros(1, 4))


def test_empty_class_counts_as_one():
    torch.testing.assert_close(log_frequency_by_class([0, 4]), torch.tensor([math.log(0.25), 0.0]))


def _inputs(logits, targets):
    return WeightInputs(logits, targets, F.cross_entropy(logits, targets, reduction="none"), Progress())


def test_zero_action_gives_exactly_unit_weights():
    logits = 5 * torch.randn(64, 10, generator=torch.Generator().manual_seed(1))
    targets = torch.randint(0, 10, (64,), generator=torch.Generator().manual_seed(2))
    weighter = LAWPolicyWeighter(torch.arange(1, 11))
    assert torch.equal(weighter.weights(_inputs(logits, targets)), torch.ones(64))
    weighter.set_action(np.zeros(ACTION_SIZE))
    assert torch.equal(weighter.weights(_inputs(logits, targets)), torch.ones(64))


def test_policy_weights_follow_the_formula():
    weighter = LAWPolicyWeighter(COUNTS)
    weighter.set_action(torch.tensor([1.0, 0.0, 0.0, -2.0, 0.5]))
    w = weighter.weights(_inputs(LOGITS, TARGETS))
    z = torch.tensor([[-R2, 1 / R2], [1 / R2, -R2], [1 / R2, 1 / R2]])
    expected = 1 + torch.tanh(z[:, 0] - 2 * z[:, 1] + 0.5)
    torch.testing.assert_close(w, expected / expected.mean(), rtol=1e-5, atol=1e-5)
    assert np.array_equal(weighter.action, np.array([1, 0, 0, -2, 0.5], dtype=np.float32))


def test_negative_loss_theta_downweights_high_loss_samples():
    logits = torch.randn(128, 10, generator=torch.Generator().manual_seed(3))
    targets = torch.randint(0, 10, (128,), generator=torch.Generator().manual_seed(4))
    inputs = _inputs(logits, targets)
    weighter = LAWPolicyWeighter([100] * 10)
    weighter.set_action([-3.0, 0, 0, 0, 0])
    w = weighter.weights(inputs)
    assert (w > 0).all()
    torch.testing.assert_close(w.mean(), torch.tensor(1.0))
    order = inputs.losses.argsort()
    assert (w[order].diff() <= 0).all()


def test_bias_sets_selectivity_not_the_mean_weight():
    # Mean 1 whatever b is (b is no learning-rate knob); large b flattens the weights.
    logits = torch.randn(128, 10, generator=torch.Generator().manual_seed(5))
    targets = torch.randint(0, 10, (128,), generator=torch.Generator().manual_seed(6))
    weighter = LAWPolicyWeighter([100] * 10)
    spread = {}
    for bias in (-4.0, 0.0, 4.0):
        weighter.set_action([-2.0, 0, 0, 0, bias])
        w = weighter.weights(_inputs(logits, targets))
        torch.testing.assert_close(w.mean(), torch.tensor(1.0))
        spread[bias] = (w.max() / w.min()).item()
    assert spread[-4.0] > spread[0.0] > spread[4.0] > 1.0


def test_weights_stay_finite_where_every_tanh_underflows():
    # 1 + tanh(z) is exactly 0 in float32 below z ~ -9: the ratio must survive.
    logits = torch.randn(64, 10, generator=torch.Generator().manual_seed(7))
    targets = torch.randint(0, 10, (64,), generator=torch.Generator().manual_seed(8))
    inputs = _inputs(logits, targets)
    weighter = LAWPolicyWeighter([100] * 10)
    weighter.set_action([-4.0, 0, 0, 0, -40.0])
    assert (1 + torch.tanh(torch.full((), -40.0))) == 0
    w = weighter.weights(inputs)
    assert torch.isfinite(w).all() and (w >= 0).all()
    torch.testing.assert_close(w.mean(), torch.tensor(1.0))
    assert w[inputs.losses.argmin()] == w.max()


def test_bad_actions_are_refused():
    weighter = LAWPolicyWeighter(COUNTS)
    with pytest.raises(LawError, match="5 entries"):
        weighter.set_action([1.0, 2.0])
    with pytest.raises(LawError, match="finite"):
        weighter.set_action([0, 0, float("nan"), 0, 0])


def test_state_round_trip():
    weighter = LAWPolicyWeighter(COUNTS)
    weighter.set_action([0.5, -1, 0.25, 0, 2])
    other = LAWPolicyWeighter(COUNTS)
    other.load_state_dict(weighter.state_dict())
    assert np.array_equal(other.action, weighter.action)


def test_saved_feature_spec_round_trips(tmp_path):
    path = tmp_path / "policy.pt"
    torch.save({"feature_spec": FEATURE_SPEC}, path)
    check_feature_spec(torch.load(path, weights_only=True)["feature_spec"])


def test_feature_spec_mismatch_is_refused_naming_the_difference(tmp_path):
    path = tmp_path / "policy.pt"
    torch.save({"feature_spec": {**FEATURE_SPEC, "version": FEATURE_SPEC["version"] + 1,
                                 "features": ["loss", "entropy"]}}, path)
    spec = torch.load(path, weights_only=True)["feature_spec"]
    with pytest.raises(LawError, match="different feature set") as error:
        check_feature_spec(spec)
    assert "version" in str(error.value) and "features" in str(error.value)
    assert "normalisation" not in str(error.value)
    with pytest.raises(LawError, match="must be a dict"):
        check_feature_spec(["loss"])


def test_policy_weights_scale_each_batch_of_a_stack_on_its_own():
    from law.policy import policy_weights
    features = torch.randn(3, 16, 4, generator=torch.Generator().manual_seed(0))
    theta, bias = torch.tensor([-2.0, 0.5, 0.0, 1.0]), torch.tensor(-1.0)
    stacked = policy_weights(features, theta, bias)
    for batch, weights in zip(features, stacked):
        assert torch.equal(weights, policy_weights(batch, theta, bias))
    assert torch.allclose(stacked.mean(dim=1), torch.ones(3))
