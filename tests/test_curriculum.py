"""SPL and OHEM: which samples each selects, and the schedule of how many."""
import math

import pytest
import torch

from baselines.curriculum import CurriculumConfig, OHEMWeighter, SPLWeighter, ramp, samples_used
from law.errors import ConfigError
from law.weighting import Progress, WeightInputs

LOSSES = torch.tensor([0.5, 2.0, 0.1, 3.0, 1.0, 0.7, 4.0, 0.2, 1.5, 0.05])


def weights_at(weighter, epoch, total_epochs=10.0):
    batch = WeightInputs(torch.zeros(10, 3), torch.zeros(10, dtype=torch.long), LOSSES,
                         Progress(epoch=epoch, total_epochs=total_epochs))
    return weighter.weights(batch)


def selected(weights):
    return set(torch.nonzero(weights).flatten().tolist())


@pytest.mark.parametrize("epoch, spl, ohem", [
    (0.0, {9, 2}, {6, 3}),  # m = 0.2 * 10 = 2
    (2.5, {9, 2, 7, 0, 5, 4}, {6, 3, 1, 8, 4, 5}),  # centre of the ramp: m = 0.2 + 0.8 / 2 -> 6
    (5.0, set(range(10)), set(range(10))),  # mid-training: everything
])
def test_selected_sets_on_a_hand_batch(epoch, spl, ohem):
    for a in (0.0, 1.0):  # the ramp's centre is the same for every steepness
        for weighter, expected in ((SPLWeighter(a=a), spl), (OHEMWeighter(a=a), ohem)):
            w = weights_at(weighter, epoch)
            assert selected(w) == expected, (weighter.name, a, epoch)
            assert torch.equal(w[sorted(expected)], torch.full((len(expected),), 10 / len(expected)))
            assert w.mean().item() == pytest.approx(1.0)


def test_steep_ramp_between_start_and_centre():
    # a = 1, epoch 1 of 10: s = (tanh(-0.75) + tanh(1.25)) / (2 tanh(1.25)) = 0.1257, m = ceil(3.005) = 4.
    assert selected(weights_at(SPLWeighter(a=1.0), 1.0)) == {9, 2, 7, 0}
    assert selected(weights_at(OHEMWeighter(a=1.0), 1.0)) == {6, 3, 1, 8}


@pytest.mark.parametrize("a", [0.0, 0.3, 1.0, 5.0])
def test_schedule_is_monotone_and_complete_by_mid_training(a):
    cfg = CurriculumConfig(a=a, min_fraction=0.2)
    epochs = [i * 0.05 for i in range(401)]  # 0 .. 20 epochs
    m = [samples_used(128, Progress(epoch=e, total_epochs=20.0), cfg) for e in epochs]
    assert m[0] == math.ceil(0.2 * 128)
    assert all(x <= y for x, y in zip(m, m[1:]))
    assert all(x == 128 for x, e in zip(m, epochs) if e >= 10.0)
    assert m[epochs.index(5.0)] == math.ceil(0.6 * 128)  # half-way up at the ramp's centre


def test_ramp_is_the_rescaled_logistic_curve():
    a, half = 0.7, 5.0
    sigmoid = lambda x: 1 / (1 + math.exp(-x))
    for epoch in (0.0, 1.0, 3.3, 5.0, 8.0, 10.0):
        e = epoch - half
        expected = (sigmoid(a * e) - sigmoid(-a * half)) / (sigmoid(a * half) - sigmoid(-a * half))
        assert ramp(epoch, 20.0, a, 0.5) == pytest.approx(expected)


def test_invalid_settings_name_the_field():
    with pytest.raises(ConfigError, match="min_fraction"):
        SPLWeighter(min_fraction=0.0)
    with pytest.raises(ConfigError, match="^a:"):
        OHEMWeighter(a=-1.0)
