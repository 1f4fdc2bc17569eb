"""Running statistics of training batches, kept on the device.

Training steps only add into device tensors; ``summary()`` is the one host sync,
called once per epoch or stage. That keeps the hot loop free of ``.item()``.
"""
from __future__ import annotations

import torch
import torch.distributed as dist


class WeightStats:
    """Accumulates losses and sample weights, split by class and by noise mask.

    Users look at weights split by what they know about a sample (its class,
    whether its label was corrupted), so those splits are first-class here.
    """

    def __init__(self, num_classes: int, device: torch.device | str = "cpu",
                 keep_weights: bool = True, num_samples: int = 0):
        self.num_classes = num_classes
        self.device = torch.device(device)
        self.keep_weights = keep_weights
        self.num_samples = num_samples
        """With ``num_samples`` > 0, also each training sample's loss and weight sums, by its index in
        the split (``sample_means``; what ``--export-weights`` writes)."""
        self.reset()

    def reset(self) -> None:
        zeros = lambda *shape: torch.zeros(*shape, dtype=torch.float64, device=self.device)
        self.loss_sum = zeros(())
        self.samples = zeros(())
        self.class_weight_sum = zeros(self.num_classes)
        self.class_count = zeros(self.num_classes)
        self.noisy_weight_sum = zeros(2)  # index 0: clean, 1: noisy
        self.noisy_count = zeros(2)
        self.nonfinite = torch.zeros((), dtype=torch.bool, device=self.device)
        self.effective_fraction_sum = zeros(())
        self.batches = zeros(())
        self.sample_loss_sum = zeros(self.num_samples)
        self.sample_weight_sum = zeros(self.num_samples)
        self.sample_count = zeros(self.num_samples)
        self._weights: list[torch.Tensor] = []

    @torch.no_grad()
    def update(self, losses: torch.Tensor, weights: torch.Tensor, targets: torch.Tensor,
               noisy: torch.Tensor | None = None, indices: torch.Tensor | None = None) -> None:
        """Add one batch: per-sample losses and weights, observed labels, noise mask, and the
        samples' indices in the training split (used when per-sample sums are kept)."""
        w = weights.detach().to(torch.float64)
        self.loss_sum += losses.detach().sum()
        self.samples += losses.numel()
        self.nonfinite |= ~torch.isfinite(losses.detach()).all()
        self.class_weight_sum.index_add_(0, targets, w)
        self.class_count.index_add_(0, targets, torch.ones_like(w))
        # Kish's effective sample size over the batch size: 1 for equal weights, 1/B when
        # one sample carries the step. How much of each batch a method really trains on.
        square_sum = (w * w).sum()
        self.effective_fraction_sum += torch.where(
            square_sum > 0, w.sum() ** 2 / (w.numel() * square_sum.clamp_min(torch.finfo(w.dtype).tiny)), 0.0)
        self.batches += 1
        if noisy is not None:
            group = noisy.long()
            self.noisy_weight_sum.index_add_(0, group, w)
            self.noisy_count.index_add_(0, group, torch.ones_like(w))
        if self.num_samples and indices is not None:
            self.sample_loss_sum.index_add_(0, indices, losses.detach().to(torch.float64))
            self.sample_weight_sum.index_add_(0, indices, w)
            self.sample_count.index_add_(0, indices, torch.ones_like(w))
        if self.keep_weights:
            self._weights.append(weights.detach().float())

    def accumulators(self) -> list[torch.Tensor]:
        """Every running sum of the statistics (what data-parallel workers add up)."""
        return [self.loss_sum, self.samples, self.class_weight_sum, self.class_count, self.noisy_weight_sum,
                self.noisy_count, self.effective_fraction_sum, self.batches,
                self.sample_loss_sum, self.sample_weight_sum, self.sample_count]

    def all_reduce(self) -> None:
        """Sum the statistics over the workers of a data-parallel run, so every worker's
        summary describes the whole batch, not its own shard. A collective: every worker
        calls it, at the same point; without a process group it does nothing."""
        if not (dist.is_available() and dist.is_initialized()):
            return
        for tensor in self.accumulators():
            if tensor.numel():  # per-sample sums are empty unless kept
                dist.all_reduce(tensor)
        nonfinite = self.nonfinite.to(torch.float64)
        dist.all_reduce(nonfinite)
        self.nonfinite = nonfinite > 0

    def all_weights(self) -> torch.Tensor:
        """Every weight seen since the last reset, for histograms."""
        if not self._weights:
            return torch.empty(0)
        return torch.cat(self._weights).cpu()

    def sample_sums(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Each training sample's (loss sum, weight sum, times seen) since the last reset, on the CPU."""
        return self.sample_loss_sum.cpu(), self.sample_weight_sum.cpu(), self.sample_count.cpu()

    def summary(self) -> dict:
        """Host-side means. This is the sync point: call it once per epoch/stage."""
        nan = float("nan")
        class_mean = (self.class_weight_sum / self.class_count).cpu().tolist()
        noisy_mean = (self.noisy_weight_sum / self.noisy_count).cpu().tolist()
        samples, batches = float(self.samples), float(self.batches)
        return {
            "mean_loss": float(self.loss_sum) / samples if samples else nan,
            "samples": int(samples),
            "nonfinite": bool(self.nonfinite),
            "mean_weight": float(self.class_weight_sum.sum()) / samples if samples else nan,
            "mean_weight_per_class": class_mean,
            "mean_weight_clean": noisy_mean[0],
            "mean_weight_noisy": noisy_mean[1],
            "effective_sample_fraction": float(self.effective_fraction_sum) / batches if batches else nan,
        }
