"""Per-sample features the LAW policy weights by: f = [loss, entropy, density, label].

All four come from the target network's detached logits and the observed
labels, batched on the device (no per-sample Python, no host sync):

- ``loss``: cross-entropy of the observed label. High loss late in training is
  the classic mark of a noisy label being memorised.
- ``entropy``: entropy of the softmax; how unsure the network is.
- ``density``: mean cosine similarity of a sample's logits to the *other*
  samples' logits in the batch, i.e. the off-diagonal row mean of the Gram
  matrix of the L2-normalised logits. Typical samples sit in dense regions,
  outliers in sparse ones.
- ``label``: ``log(n_c / max_c n_c)`` for the sample's observed class ``c`` with
  ``n_c`` the observed training count of ``c``. It is 0 for the most frequent
  class and negative for rarer ones, whatever the data set's size, so a policy
  that favours rare classes carries over to another data set. (After the batch
  z-score below only the ratios ``n_c / n_c'`` matter.)

Why normalise within the batch: raw losses and entropies drift by an order of
magnitude over training and differ between networks and data sets. Z-scoring
each feature over the batch makes ``theta`` mean "down-weight samples whose
loss is high *relative to this batch*", which is what lets one searched policy
transfer to another network or data set. A feature that is constant over the
batch (e.g. ``label`` on a balanced set) is 0, not NaN.

The feature set is named and versioned by ``FEATURE_SPEC``. A saved policy
stores the spec it was searched with; ``check_feature_spec`` refuses to apply
it to a different one, since ``theta``'s entries would mean other things.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence, Union

import torch
import torch.nn.functional as F

from law.errors import LawError

FEATURE_NAMES: tuple[str, ...] = ("loss", "entropy", "density", "label")

FEATURE_SPEC: dict[str, Any] = {
    "name": "law-sample-features",
    "version": 2,
    "features": list(FEATURE_NAMES),
    "normalisation": "batch-zscore-population-std",
    "density": "mean-offdiag-cosine-gram-of-logits",
    "label": "log(n_c/max_c n_c)-observed-train-counts",
    "weights": "1+tanh(theta.f+b)-scaled-to-batch-mean-1",
}
"""Identity of the feature set and of the weighting function on it. Bump ``version``
whenever either changes meaning (version 2: weights scaled to batch mean 1)."""

NUM_FEATURES = len(FEATURE_NAMES)

# A feature whose batch std is below this is treated as constant: rounding in
# the mean of identical values must not blow up into +-1 "signal".
_CONSTANT_STD = 1e-6


def check_feature_spec(spec: Mapping[str, Any]) -> None:
    """Raise LawError unless ``spec`` (from a saved policy) equals FEATURE_SPEC."""
    if not isinstance(spec, Mapping):
        raise LawError(
            f"policy feature spec must be a dict, got {type(spec).__name__}; "
            "the policy file is not from this version of LAW"
        )
    differences = []
    for key in sorted(set(FEATURE_SPEC) | set(spec)):
        expected, found = FEATURE_SPEC.get(key, "<missing>"), spec.get(key, "<missing>")
        if isinstance(found, tuple):
            found = list(found)
        if expected != found:
            differences.append(f"{key}: policy has {found!r}, this LAW computes {expected!r}")
    if differences:
        raise LawError(
            "the policy was searched with a different feature set, so its theta "
            "would weight the wrong quantities; search a new policy with this "
            "version of LAW. Differences: " + "; ".join(differences)
        )


def log_frequency_by_class(class_counts: Union[torch.Tensor, Sequence[int]]) -> torch.Tensor:
    """``log(n_c / max_c n_c)`` per class; an empty class counts as 1 sample."""
    counts = torch.as_tensor(class_counts, dtype=torch.float32).clamp_min(1.0)
    if counts.ndim != 1 or counts.numel() == 0:
        raise LawError(f"class_counts must be a non-empty 1-D sequence, got shape {tuple(counts.shape)}")
    return torch.log(counts / counts.max())


def zscore_columns(values: torch.Tensor) -> torch.Tensor:
    """Z-score each column of (B, K) over the batch; a constant column becomes 0."""
    mean = values.mean(dim=0, keepdim=True)
    std = values.std(dim=0, correction=0, keepdim=True)
    constant = std < _CONSTANT_STD
    return torch.where(constant, torch.zeros_like(values), (values - mean) / torch.where(constant, 1.0, std))


def raw_features(
    logits: torch.Tensor,
    targets: torch.Tensor,
    log_frequency: torch.Tensor,
    losses: torch.Tensor | None = None,
) -> torch.Tensor:
    """Un-normalised (B, 4) features ``[loss, entropy, density, label]``.

    ``log_frequency`` is ``log_frequency_by_class(counts)`` on the logits' device.
    ``losses`` may pass in the cross-entropy already computed by the trainer.
    """
    logits = logits.float()
    log_probs = F.log_softmax(logits, dim=1)
    if losses is None:
        losses = F.nll_loss(log_probs, targets, reduction="none")
    entropy = -(log_probs.exp() * log_probs).sum(dim=1)
    unit = F.normalize(logits, dim=1)
    gram = unit @ unit.T
    batch = logits.shape[0]
    # Off-diagonal row mean; a batch of one has no "others" and gets density 0.
    density = (gram.sum(dim=1) - gram.diagonal()) / max(batch - 1, 1)
    label = log_frequency[targets]
    return torch.stack([losses.float(), entropy, density, label], dim=1)


def sample_features(
    logits: torch.Tensor,
    targets: torch.Tensor,
    log_frequency: torch.Tensor,
    losses: torch.Tensor | None = None,
) -> torch.Tensor:
    """Batch-normalised (B, 4) features, the policy's input."""
    return zscore_columns(raw_features(logits, targets, log_frequency, losses))
