import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from sklearn import metrics as sklearn_metrics

import law.metrics
from law.metrics import (
    average_ranks,
    classification_metrics,
    confusion_matrix,
    one_vs_rest_auc,
    one_vs_rest_log_odds,
)

# Worked example, 3 classes, 6 samples:
#   targets 0 0 0 1 1 2
#   preds   0 1 0 1 2 2
# Confusion matrix (rows true, cols predicted):
#   [[2, 1, 0],
#    [0, 1, 1],
#    [0, 0, 1]]
# accuracy = (2 + 1 + 1) / 6 = 2/3
# recall = [2/3, 1/2, 1]                    -> balanced accuracy = (2/3 + 1/2 + 1) / 3 = 13/18
# F1_c = 2 TP / (2 TP + FP + FN) = 2 TP / (row sum + column sum), column sums [2, 2, 2]:
#   [4/5, 2/4, 2/3]                         -> macro F1 = (4/5 + 1/2 + 2/3) / 3 = 59/90
TARGETS = torch.tensor([0, 0, 0, 1, 1, 2])
PREDS = torch.tensor([0, 1, 0, 1, 2, 2])


def _logits_predicting(preds: torch.Tensor, num_classes: int) -> torch.Tensor:
    return 3.0 * F.one_hot(preds, num_classes).float()


def test_confusion_matrix_worked_example():
    expected = torch.tensor([[2, 1, 0], [0, 1, 1], [0, 0, 1]])
    cm = confusion_matrix(PREDS, TARGETS, 3)
    assert cm.dtype == torch.int64
    assert torch.equal(cm, expected)


def test_classification_metrics_worked_example():
    logits = _logits_predicting(PREDS, 3)
    m = classification_metrics(logits, TARGETS, 3)
    assert m["accuracy"] == pytest.approx(2 / 3)
    assert m["per_class_recall"] == pytest.approx([2 / 3, 1 / 2, 1])
    assert m["balanced_accuracy"] == pytest.approx(13 / 18)
    assert m["macro_f1"] == pytest.approx(59 / 90)
    assert m["loss"] == pytest.approx(F.cross_entropy(logits, TARGETS).item())
    assert all(type(v) is float for k, v in m.items() if k not in ("per_class_recall", "predicted_classes"))
    assert m["predicted_classes"] == 3


def test_absent_classes():
    # Add class 3 (never true, predicted for one extra class-2 sample) and class 4 (never anywhere).
    targets = torch.cat([TARGETS, torch.tensor([2])])
    preds = torch.cat([PREDS, torch.tensor([3])])
    m = classification_metrics(_logits_predicting(preds, 5), targets, 5)
    recall = m["per_class_recall"]
    assert recall[:3] == pytest.approx([2 / 3, 1 / 2, 1 / 2])
    assert math.isnan(recall[3]) and math.isnan(recall[4])
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 1 / 2 + 1 / 2) / 3)
    # F1 over classes 0-3 (4 is neither true nor predicted); class 2: 2*1/(2+2) = 1/2, class 3: 0.
    assert m["macro_f1"] == pytest.approx((4 / 5 + 1 / 2 + 1 / 2 + 0) / 4)


def test_auc_with_ties_hand_computed():
    # Class-1 scores of positives {0.8, 0.4, 0.4} and negatives {0.1, 0.4, 0.9}.
    # Pairs (pos beats neg = 1, tie = 1/2): 0.8 -> 1 + 1 + 0 = 2; each 0.4 -> 1 + 1/2 + 0 = 1.5.
    #   AUC = (2 + 1.5 + 1.5) / 9 = 5/9.
    # Same via ranks: sorted 0.1 | 0.4 0.4 0.4 | 0.8 | 0.9 -> ranks 1 | 3 3 3 | 5 | 6;
    #   positives' rank sum 5 + 3 + 3 = 11, U = 11 - 3*4/2 = 5, AUC = 5/9.
    scores = torch.tensor([0.8, 0.4, 0.4, 0.1, 0.4, 0.9])
    targets = torch.tensor([1, 1, 1, 0, 0, 0])
    assert torch.equal(average_ranks(scores), torch.tensor([5.0, 3, 3, 1, 3, 6], dtype=torch.float64))
    auc = one_vs_rest_auc(torch.stack([1 - scores, scores], dim=1), targets)
    assert auc.tolist() == pytest.approx([5 / 9, 5 / 9])
    # Through the logits: with two classes, class 1's log-odds log(p1 / p0) is exactly z1 - z0.
    logits = torch.stack([torch.zeros(6), scores], dim=1)
    assert classification_metrics(logits, targets, 2)["mean_auc"] == pytest.approx(5 / 9)


def _pairwise_auc(scores: torch.Tensor, positive: torch.Tensor) -> float:
    pos, neg = scores[positive], scores[~positive]
    diff = pos[:, None] - neg[None, :]
    return ((diff > 0).double() + 0.5 * (diff == 0).double()).mean().item()


def test_auc_matches_pairwise_definition_with_many_ties(monkeypatch):
    torch.manual_seed(0)
    scores = torch.randint(0, 4, (50, 4)).float()  # heavily tied
    targets = torch.randint(0, 4, (50,))
    expected = [_pairwise_auc(scores[:, c], targets == c) for c in range(4)]
    assert one_vs_rest_auc(scores, targets).tolist() == pytest.approx(expected)
    # Small chunks (one class at a time) must give the same answer as one chunk.
    monkeypatch.setattr(law.metrics, "_AUC_CHUNK_ELEMENTS", 1)
    assert one_vs_rest_auc(scores, targets).tolist() == pytest.approx(expected)


def test_auc_skips_classes_without_positives():
    scores = torch.tensor([[0.9, 0.1, 0.0], [0.2, 0.8, 0.0], [0.6, 0.4, 0.0]])
    targets = torch.tensor([0, 1, 1])
    auc = one_vs_rest_auc(scores, targets)
    assert auc[:2].tolist() == [1.0, 1.0] and math.isnan(auc[2].item())
    assert classification_metrics(scores.log(), targets, 3)["mean_auc"] == 1.0


def test_perfect_classifier_scores_one_everywhere():
    torch.manual_seed(0)
    targets = torch.randint(0, 5, (40,))
    m = classification_metrics(10.0 * F.one_hot(targets, 5).float(), targets, 5)
    for key in ("accuracy", "balanced_accuracy", "macro_f1", "mean_auc"):
        assert m[key] == 1.0, key
    assert m["per_class_recall"] == [1.0] * 5


def test_log_odds_match_definition():
    torch.manual_seed(0)
    logits = torch.randn(20, 4, dtype=torch.float64)
    p = logits.softmax(dim=1)
    assert torch.allclose(one_vs_rest_log_odds(logits), (p / (1 - p)).log())


def test_saturated_logits_do_not_create_ties():
    # In float32, p_0 rounds to exactly 1.0 (and log p_0 to 0.0) in all three rows, which would
    # tie the negative (row 2) with the positives; the log-odds 200, 100, 150 keep them apart.
    logits = torch.tensor([[200.0, 0.0], [100.0, 0.0], [150.0, 0.0]])
    targets = torch.tensor([0, 1, 0])
    assert classification_metrics(logits, targets, 2)["mean_auc"] == 1.0


def test_shape_errors():
    with pytest.raises(ValueError, match="logits"):
        classification_metrics(torch.zeros(4, 3), torch.zeros(4, dtype=torch.long), 5)
    with pytest.raises(ValueError, match="targets"):
        classification_metrics(torch.zeros(4, 3), torch.zeros(3, dtype=torch.long), 3)


# ---------------------------------------------------------------------------- against scikit-learn



def _random_case(seed: int, n: int, num_classes: int, missing: int):
    """Random logits and skewed targets; the last ``missing`` classes never occur as targets."""
    g = torch.Generator().manual_seed(seed)
    present = num_classes - missing
    prior = torch.rand(present, generator=g) ** 2 + 0.05
    targets = torch.multinomial(prior, n, replacement=True, generator=g)
    # Logits that lean towards the target, so accuracy is neither 0 nor 1.
    logits = torch.randn(n, num_classes, generator=g) * 2
    logits[torch.arange(n), targets] += torch.rand(n, generator=g) * 3
    return logits, targets


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("num_classes,missing", [(2, 0), (5, 0), (10, 2)])
def test_classification_metrics_match_scikit_learn(seed, num_classes, missing):
    logits, targets = _random_case(seed, 300, num_classes, missing)
    ours = classification_metrics(logits, targets, num_classes)
    y, pred = targets.numpy(), logits.argmax(1).numpy()
    probs = torch.softmax(logits.double(), 1).numpy()

    assert ours["accuracy"] == pytest.approx(sklearn_metrics.accuracy_score(y, pred))
    with warnings.catch_warnings():  # "y_pred contains classes not in y_true": by design here
        warnings.simplefilter("ignore")
        balanced = sklearn_metrics.balanced_accuracy_score(y, pred)
    assert ours["balanced_accuracy"] == pytest.approx(balanced)
    assert ours["macro_f1"] == pytest.approx(sklearn_metrics.f1_score(y, pred, average="macro"))
    assert ours["loss"] == pytest.approx(sklearn_metrics.log_loss(y, probs, labels=range(num_classes)), rel=1e-5)
    expected_cm = sklearn_metrics.confusion_matrix(y, pred, labels=range(num_classes))
    assert confusion_matrix(logits.argmax(1), targets, num_classes).tolist() == expected_cm.tolist()
    aucs = [sklearn_metrics.roc_auc_score(y == c, probs[:, c]) for c in range(num_classes - missing)]
    assert ours["mean_auc"] == pytest.approx(sum(aucs) / len(aucs))
    assert ours["predicted_classes"] == len(set(pred.tolist()))


@pytest.mark.parametrize("seed", range(4))
def test_auc_with_tied_scores_matches_scikit_learn(seed):
    """Ties score one half, as in the Mann-Whitney statistic scikit-learn computes."""
    g = torch.Generator().manual_seed(seed)
    scores = torch.randint(0, 4, (200, 3), generator=g).double()  # few distinct values: many ties
    targets = torch.randint(0, 3, (200,), generator=g)
    ours = one_vs_rest_auc(scores, targets)
    for c in range(3):
        assert float(ours[c]) == pytest.approx(sklearn_metrics.roc_auc_score(targets.numpy() == c, scores[:, c]))
