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


def _shard_worker(rank: int, world: int, init_file: str, queue) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    losses, weights, targets, noisy = _batches()
    stats = WeightStats(num_classes=3, keep_weights=False)
    for k in range(rank, len(losses), world):  # this worker's shard of the batches
        stats.update(losses[k], weights[k], targets[k], noisy[k])
    stats.all_reduce()
    queue.put((rank, stats.summary()))
    dist.destroy_process_group()


def _batches():
    g = torch.Generator().manual_seed(0)
    losses = [torch.rand(8, generator=g) for _ in range(6)]
    weights = [torch.rand(8, generator=g) * 2 for _ in range(6)]
    targets = [torch.randint(0, 3, (8,), generator=g) for _ in range(6)]
    noisy = [torch.rand(8, generator=g) < 0.3 for _ in range(6)]
    return losses, weights, targets, noisy


def test_data_parallel_workers_reduce_every_statistic_to_the_whole_batch(tmp_path):
    """Two real gloo workers, each with half the batches: after all_reduce both report
    what one process fed every batch reports, effective sample fraction included."""
    import torch.multiprocessing as mp

    whole = WeightStats(num_classes=3, keep_weights=False)
    for batch in zip(*_batches()):
        whole.update(*batch)
    expected = whole.summary()
    context = mp.get_context("spawn")
    queue = context.Queue()
    processes = [context.Process(target=_shard_worker, args=(rank, 2, str(tmp_path / "init"), queue))
                 for rank in range(2)]
    for p in processes:
        p.start()
    results = dict(queue.get(timeout=120) for _ in processes)
    for p in processes:
        p.join(timeout=60)
    for rank in (0, 1):
        for key, value in expected.items():
            assert results[rank][key] == pytest.approx(value, nan_ok=True), (rank, key)


def test_every_running_sum_is_reduced():
    stats = WeightStats(num_classes=3)
    sums = {name for name, value in vars(stats).items()
            if isinstance(value, torch.Tensor) and value.dtype == torch.float64}
    reduced = {name for name, value in vars(stats).items()
               if any(value is t for t in stats.accumulators())}
    assert sums == reduced, "a statistic added to WeightStats must be added to accumulators()"
