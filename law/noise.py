"""How the training data gets biased: label noise, class imbalance, and the
class-stratified draws that splits and subsets are made of.

Every function takes an explicit ``torch.Generator`` and works on CPU label
tensors without Python loops over samples, so a seed fixes the result.
"""
from __future__ import annotations

import math

import torch

NOISE_KINDS = ("none", "symmetric", "pair", "cifar10n")
"""cifar10n: real human labels from the CIFAR-10N file (``law.human_labels``), not drawn here."""
IMBALANCE_KINDS = ("none", "longtail", "step")


def corrupt_labels(labels: torch.Tensor, num_classes: int, kind: str, rate: float,
                   generator: torch.Generator) -> torch.Tensor:
    """Observed labels after label noise; ``labels`` is left untouched.

    symmetric: each label is replaced, with probability ``rate``, by a class
    drawn uniformly from all ``num_classes`` classes (the LAW paper's
    protocol). The draw may return the true class, so the fraction of labels
    that actually change is ``rate * (C - 1) / C`` (36 % for 40 % noise on
    10 classes).
    pair: with probability ``rate``, class ``c`` becomes ``(c + 1) mod C``
    (asymmetric "pair flip"); every drawn flip changes the label.
    """
    if kind == "none" or rate == 0:
        return labels.clone()
    replace = torch.rand(len(labels), generator=generator) < rate
    if kind == "symmetric":
        new = torch.randint(0, num_classes, (len(labels),), generator=generator)
    elif kind == "pair":
        new = (labels + 1) % num_classes
    else:
        raise ValueError(f"unknown noise kind {kind!r}; known: {', '.join(NOISE_KINDS)}")
    return torch.where(replace, new, labels)


def imbalance_counts(available: torch.Tensor, kind: str, ratio: float = 100.0,
                     minority_classes: int = 2, keep_fraction: float = 0.04) -> torch.Tensor:
    """Per-class sample counts after imposing an imbalance profile.

    ``available`` holds how many samples each class has; ``n_max`` is the
    largest of them.
    longtail (Cui et al., 2019): ``n_c = floor(n_max * ratio ** (-c / (C - 1)))``,
    so class 0 keeps ``n_max`` and class ``C - 1`` keeps ``n_max / ratio``.
    step (LAW paper): classes ``0 .. minority_classes - 1`` keep
    ``floor(n_max * keep_fraction)``, the others ``n_max``.
    Counts never exceed what a class has and never drop below 1.
    """
    available = available.long()
    num_classes, n_max = len(available), int(available.max())
    if kind == "none":
        return available.clone()
    if kind == "longtail":
        exponents = torch.arange(num_classes, dtype=torch.float64) / max(num_classes - 1, 1)
        # The tiny epsilon keeps floor() from dropping e.g. 50.000000000000001 -> 49.99... cases.
        wanted = torch.floor(n_max * ratio ** (-exponents) + 1e-9).long()
    elif kind == "step":
        wanted = torch.full((num_classes,), n_max, dtype=torch.long)
        wanted[:minority_classes] = math.floor(n_max * keep_fraction + 1e-9)
    else:
        raise ValueError(f"unknown imbalance kind {kind!r}; known: {', '.join(IMBALANCE_KINDS)}")
    return torch.minimum(wanted.clamp_min(1), available)


def proportional_counts(available: torch.Tensor, total: int) -> torch.Tensor:
    """Split ``total`` over classes in proportion to ``available`` (largest remainder).

    The result sums to ``total`` exactly and keeps the class profile: a
    stratified subset of an imbalanced pool is just as imbalanced.
    """
    available = available.long()
    exact = available.double() * total / available.sum()
    counts = exact.floor().long()
    missing = total - int(counts.sum())
    if missing > 0:
        # Ties go to the lower class index (stable sort), so the result is deterministic.
        remainder = torch.where(counts < available, exact - counts, torch.full_like(exact, -1.0))
        order = torch.sort(remainder, descending=True, stable=True).indices
        counts[order[:missing]] += 1
    return counts


def take_per_class(labels: torch.Tensor, counts: torch.Tensor, generator: torch.Generator,
                   interleave: bool = False) -> torch.Tensor:
    """Indices of ``counts[c]`` randomly chosen samples of every class ``c``.

    The result is in ascending index order, or, with ``interleave``, ordered
    by rank within class: the first ``k * C`` indices then hold ``k`` samples
    of every class, so any prefix of the result is itself (nearly) stratified
    (used for the validation split, whose prefix is the L2RW meta set).
    """
    num_classes = len(counts)
    shuffled = torch.randperm(len(labels), generator=generator)
    by_class = shuffled[torch.sort(labels[shuffled], stable=True).indices]
    class_sizes = torch.bincount(labels, minlength=num_classes)
    class_start = torch.cumsum(class_sizes, 0) - class_sizes
    sorted_labels = labels[by_class]
    rank = torch.arange(len(labels)) - class_start[sorted_labels]
    chosen = rank < counts[sorted_labels]
    if not interleave:
        return torch.sort(by_class[chosen]).values
    key = rank[chosen] * num_classes + sorted_labels[chosen]
    return by_class[chosen][torch.argsort(key)]
