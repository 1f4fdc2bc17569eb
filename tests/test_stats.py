"""Weight statistics: the per-epoch summary users read in results and TensorBoard."""
import math

import pytest
import torch

from law.stats import WeightStats


def test_summary_splits_weights_by_class_and_noise():
    stats = WeightStats(num_classes=3)
    stats.update(torch.tensor([1.0, 2.0, 3.0, 4.0]), torch.tensor([0.5, 1.5, 1.0, 1.0]),
                 torch.tensor([0, 0, 1, 2]), noisy=torch.tensor([True, False, False, False]))
    summary = stats.summary()
    assert summary["mean_loss"] == 2.5 and summary["samples"] == 4
    assert summary["mean_weight"] == 1.0
    assert summary["mean_weight_per_class"] == [1.0, 1.0, 1.0]
    assert summary["mean_weight_noisy"] == 0.5 and summary["mean_weight_clean"] == 7 / 6


def test_effective_sample_fraction_is_kish_over_batch_size_averaged_over_batches():
    stats = WeightStats(num_classes=2, keep_weights=False)
    targets = torch.tensor([0, 1, 0, 1])
    stats.update(torch.ones(4), torch.ones(4), targets)                       # equal weights: 1
    stats.update(torch.ones(4), torch.tensor([4.0, 0.0, 0.0, 0.0]), targets)  # one sample: 1/4
    stats.update(torch.ones(4), torch.tensor([2.0, 2.0, 0.0, 0.0]), targets)  # two samples: 1/2
    assert stats.summary()["effective_sample_fraction"] == pytest.approx((1 + 0.25 + 0.5) / 3)


def test_all_zero_batch_has_no_effective_samples_and_no_nan():
    stats = WeightStats(num_classes=2)
    stats.update(torch.ones(3), torch.zeros(3), torch.tensor([0, 1, 1]))
    assert stats.summary()["effective_sample_fraction"] == 0.0
    stats.reset()
    assert math.isnan(stats.summary()["effective_sample_fraction"])
