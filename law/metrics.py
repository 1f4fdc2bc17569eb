"""Classification metrics in batched torch (no sklearn), computed on the logits' device.

Conventions for classes that do not occur (common in small or long-tailed
validation sets):

* ``per_class_recall[c]`` is ``nan`` when class ``c`` has no sample, so index
  ``c`` always means class ``c``; ``balanced_accuracy`` is the mean recall over
  the classes that do occur.
* ``macro_f1`` averages F1 over the classes that occur in the targets *or* the
  predictions (sklearn's default label set); a class that is predicted but
  never true contributes F1 = 0.
* ``mean_auc`` averages one-vs-rest ROC AUC of the softmax probabilities over
  the classes that have both positive and negative samples; ``nan`` when there
  is none. Samples are ranked by log-odds (same order, no float saturation).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

_AUC_CHUNK_ELEMENTS = 1 << 24
"""Rank at most this many (class, sample) scores at once, bounding memory for ImageNet-sized evals."""


def confusion_matrix(preds: torch.Tensor, targets: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(C, C) int64 counts; rows are true classes, columns predicted classes."""
    flat = targets.long() * num_classes + preds.long()
    return torch.bincount(flat, minlength=num_classes * num_classes).view(num_classes, num_classes)


def average_ranks(scores: torch.Tensor) -> torch.Tensor:
    """1-based ranks of each row's entries, tied values sharing their average rank.

    Entries equal to a value occupy sorted positions [left, right) (0-based),
    so their average 1-based rank is (left + 1 + right) / 2.
    """
    ordered = scores.sort(dim=-1).values
    left = torch.searchsorted(ordered, scores, side="left")
    right = torch.searchsorted(ordered, scores, side="right")
    return (left + right + 1).double() / 2


def one_vs_rest_auc(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(C,) ROC AUC of column ``c`` of the (N, C) scores for class ``c`` against the rest.

    Mann-Whitney U: AUC = (sum of positives' ranks - P(P+1)/2) / (P * N_neg), which
    counts tied positive/negative pairs as 1/2. ``nan`` where a class has no
    positives or no negatives.
    """
    n, num_classes = scores.shape
    chunk = max(1, _AUC_CHUNK_ELEMENTS // n)
    rank_sums = []
    for first in range(0, num_classes, chunk):
        classes = torch.arange(first, min(first + chunk, num_classes), device=scores.device)
        positives = targets[None, :] == classes[:, None]  # (chunk, N)
        ranks = average_ranks(scores[:, classes].T.contiguous())
        rank_sums.append((ranks * positives).sum(dim=1))
    n_pos = torch.bincount(targets, minlength=num_classes).double()
    n_neg = n - n_pos
    u = torch.cat(rank_sums) - n_pos * (n_pos + 1) / 2
    return u / (n_pos * n_neg)  # 0/0 -> nan for classes without positives or negatives


def one_vs_rest_log_odds(logits: torch.Tensor) -> torch.Tensor:
    """(N, C) log(p_c / (1 - p_c)) of the softmax probabilities p.

    An increasing function of p_c, so it ranks samples exactly as p_c does in exact
    arithmetic; unlike p_c or log p_c it does not round to a constant for confident
    predictions (p_c = 1.0 in float32 once the margin exceeds ~17), which would turn
    distinct scores into ties.
    """
    log_p = F.log_softmax(logits, dim=1)
    top = log_p.argmax(dim=1, keepdim=True)
    # Every class but the top one has p <= 1/2, where log1p(-p) is accurate; for the top
    # class, log(1 - p) is the log of the other classes' total probability.
    log_one_minus_p = torch.log1p(-log_p.exp())
    others_of_top = log_p.scatter(1, top, float("-inf")).logsumexp(dim=1, keepdim=True)
    return log_p - log_one_minus_p.scatter(1, top, others_of_top)


def classification_metrics(logits: torch.Tensor, targets: torch.Tensor, num_classes: int) -> dict:
    """accuracy, balanced_accuracy, per_class_recall, macro_f1, mean_auc, loss as Python floats, and
    predicted_classes, how many classes the model predicts for at least one sample.

    One device sync, at the end.
    """
    if logits.ndim != 2 or logits.shape[1] != num_classes:
        raise ValueError(f"logits must have shape (N, {num_classes}), got {tuple(logits.shape)}")
    if targets.shape != logits.shape[:1] or logits.shape[0] == 0:
        raise ValueError(f"targets must have shape ({logits.shape[0]},) with N > 0, got {tuple(targets.shape)}")
    logits = logits.detach().float()
    targets = targets.long()

    cm = confusion_matrix(logits.argmax(dim=1), targets, num_classes).double()
    true_positives = cm.diagonal()
    support = cm.sum(dim=1)
    predicted = cm.sum(dim=0)

    recall = true_positives / support  # nan for classes without samples
    f1_denominator = support + predicted  # = 2TP + FP + FN
    f1 = 2 * true_positives / f1_denominator
    auc = one_vs_rest_auc(one_vs_rest_log_odds(logits), targets)

    summary = torch.stack([
        true_positives.sum() / cm.sum(),
        recall.nanmean(),
        f1[f1_denominator > 0].mean(),
        auc.nanmean(),
        F.cross_entropy(logits, targets).double(),
        (predicted > 0).sum().double(),
    ])
    accuracy, balanced_accuracy, macro_f1, mean_auc, loss, predicted_classes, *per_class_recall = torch.cat(
        [summary, recall]).tolist()
    return {
        "accuracy": accuracy,
        "balanced_accuracy": balanced_accuracy,
        "per_class_recall": per_class_recall,
        "macro_f1": macro_f1,
        "mean_auc": mean_auc,
        "loss": loss,
        "predicted_classes": int(predicted_classes),
    }
