"""Multi-label metrics against scikit-learn (one_error by hand), edge cases, bad input."""

import numpy as np
import pytest
import torch
from sklearn.metrics import (
    coverage_error,
    f1_score,
    hamming_loss,
    label_ranking_average_precision_score,
    label_ranking_loss,
    roc_auc_score,
)

from d2ace_ext import metrics

KEYS = {
    "macro_auc",
    "macro_auc_skipped",
    "macro_f1",
    "micro_f1",
    "ranking_loss",
    "hamming_loss",
    "one_error",
    "coverage",
    "average_precision",
}


def problem(n=80, q=7, seed=0, density=0.3):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, q)) < density).astype(np.int64)
    y[:, 0] = 0  # a one-class column
    y[0] = 0  # a row with no relevant label
    p = rng.random((n, q))
    p[1] = 0.5  # a row of ties
    p[2, :3] = np.round(p[2, :3], 1)
    return y, p


def one_error_by_hand(y, s):
    errors = 0
    for row, scores in zip(y, s):
        top = max(range(len(scores)), key=lambda j: (scores[j], -j))  # first maximum
        errors += row[top] != 1
    return errors / len(y)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_each_metric_matches_scikit_learn(seed):
    y, p = problem(seed=seed)
    predicted = (p >= 0.5).astype(int)
    assert metrics.macro_f1(y, p) == pytest.approx(f1_score(y, predicted, average="macro", zero_division=0))
    assert metrics.micro_f1(y, p) == pytest.approx(f1_score(y, predicted, average="micro", zero_division=0))
    assert metrics.hamming_loss(y, p) == pytest.approx(hamming_loss(y, predicted))
    assert metrics.ranking_loss(y, p) == pytest.approx(label_ranking_loss(y, p))
    assert metrics.coverage(y, p) == pytest.approx(coverage_error(y, p))
    assert metrics.average_precision(y, p) == pytest.approx(label_ranking_average_precision_score(y, p))
    assert metrics.one_error(y, p) == pytest.approx(one_error_by_hand(y, p))
    per_label = metrics.per_label_auc(y, p)
    assert per_label.shape == (y.shape[1],) and np.isnan(per_label[0])
    expected = [roc_auc_score(y[:, j], p[:, j]) for j in range(1, y.shape[1])]
    np.testing.assert_allclose(per_label[1:], expected)
    auc, skipped = metrics.macro_auc(y, p)
    assert skipped == 1 and auc == pytest.approx(np.mean(expected)) == pytest.approx(np.nanmean(per_label))


def test_evaluate_returns_every_metric_and_agrees_with_the_functions():
    y, p = problem(seed=3)
    result = metrics.evaluate(torch.tensor(y, dtype=torch.float32), torch.tensor(p))
    assert set(result) == KEYS
    assert result["macro_auc"] == pytest.approx(metrics.macro_auc(y, p)[0])
    assert result["macro_auc_skipped"] == 1
    for key in KEYS - {"macro_auc", "macro_auc_skipped"}:
        assert result[key] == pytest.approx(getattr(metrics, key)(y, p)), key
    assert all(isinstance(v, (float, int)) for v in result.values())


def test_one_error_by_hand_with_an_empty_row_and_ties():
    y = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 0]])
    s = np.array([[0.9, 0.1, 0.2], [0.8, 0.7, 0.1], [0.3, 0.3, 0.9], [0.5, 0.2, 0.1]])
    # right, wrong (top is label 0), right, no relevant label: an error
    assert metrics.one_error(y, s) == 0.5
    tie = np.array([[0.5, 0.5]])
    assert metrics.one_error(np.array([[1, 0]]), tie) == 0.0  # first maximum: label 0
    assert metrics.one_error(np.array([[0, 1]]), tie) == 1.0
    assert metrics.one_error(np.array([[0, 0]]), tie) == 1.0


def test_ranking_metrics_on_ties_and_empty_rows():
    tie = np.array([[0.5, 0.5, 0.1]])
    assert metrics.coverage(np.array([[1, 0, 0]]), tie) == 2.0  # ties pessimistic
    assert metrics.average_precision(np.array([[1, 0, 0]]), tie) == 0.5
    assert metrics.ranking_loss(np.array([[1, 0, 0]]), tie) == 0.5  # the tied pair is an error
    empty = np.zeros((1, 3), dtype=int)
    assert metrics.coverage(empty, tie) == 0.0  # scikit-learn: 0 for no label
    assert metrics.average_precision(empty, tie) == 1.0  # scikit-learn: 1 for no label
    assert metrics.ranking_loss(empty, tie) == 0.0
    # the best coverage is the number of relevant labels (MLC variant: that minus 1)
    y = np.array([[1, 1, 0, 0]])
    assert metrics.coverage(y, np.array([[0.9, 0.8, 0.2, 0.1]])) == 2.0


def test_threshold_metrics_edge_cases():
    y = np.zeros((4, 3), dtype=int)
    p = np.full((4, 3), 0.1)
    assert metrics.micro_f1(y, p) == 0.0 and metrics.macro_f1(y, p) == 0.0  # 0/0 scored as 0
    assert metrics.hamming_loss(y, p) == 0.0
    p[0, 0] = 0.5  # the threshold itself predicts 1
    assert metrics.hamming_loss(y, p) == pytest.approx(1 / 12)
    auc, skipped = metrics.macro_auc(y, p)
    assert np.isnan(auc) and skipped == 3
    assert np.isnan(metrics.per_label_auc(y, p)).all()


@pytest.mark.parametrize(
    "fn",
    [metrics.evaluate, metrics.one_error, metrics.coverage, metrics.macro_auc, metrics.micro_f1, metrics.per_label_auc],
)
def test_bad_input_raises_value_error_naming_the_argument(fn):
    y, p = problem(n=10, q=4)
    name = "probs" if fn in (metrics.evaluate, metrics.micro_f1) else "scores"
    with pytest.raises(ValueError, match=name):
        fn(y, p[:, :3])
    nan = p.copy()
    nan[3, 1] = np.nan
    with pytest.raises(ValueError, match=f"{name} holds NaN"):
        fn(y, nan)
    bad = y.copy()
    bad[2, 2] = 2
    with pytest.raises(ValueError, match="targets must hold only 0 and 1"):
        fn(bad, p)
    with pytest.raises(ValueError, match="targets"):
        fn(y[:, 0], p[:, 0])


def test_one_label_scores_that_label_not_both_classes():
    # q = 1: scikit-learn reads an (n, 1) matrix as a binary problem, where "macro" averages
    # the F1 of classes 0 and 1 and "micro" is accuracy; the label's own F1 is 2*3/(2*3+1).
    y = np.array([[1], [1], [1], [0]])
    p = np.array([[0.8], [0.9], [0.7], [0.6]])
    assert metrics.macro_f1(y, p) == pytest.approx(6 / 7)
    assert metrics.micro_f1(y, p) == pytest.approx(6 / 7)
    assert metrics.macro_f1(np.array([[0], [0]]), np.array([[0.1], [0.2]])) == 0.0  # 0/0 scored as 0
    assert metrics.ranking_loss(y, p) == 0.0  # no (relevant, irrelevant) pair in any row
    assert metrics.coverage(y, p) == 0.75  # depth 1 where the label is relevant, 0 where not
    assert metrics.average_precision(y, p) == 1.0
    assert metrics.one_error(y, p) == 0.25
    result = metrics.evaluate(y, p)
    assert result["macro_f1"] == result["micro_f1"] == pytest.approx(6 / 7)
    assert result["ranking_loss"] == 0.0 and result["coverage"] == 0.75 and result["hamming_loss"] == 0.25
    assert result["macro_auc"] == pytest.approx(roc_auc_score(y[:, 0], p[:, 0]))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float64])
def test_torch_dtypes_numpy_lacks_or_has_give_the_same_metrics(dtype):
    # bfloat16 has no numpy dtype: .numpy() raised TypeError; the values it holds are exact in float32.
    y, p = problem(seed=4)
    scores = torch.tensor(p).to(dtype)
    expected = metrics.evaluate(y, scores.float().numpy())
    got = metrics.evaluate(torch.tensor(y).to(dtype), scores)
    assert got == pytest.approx(expected, nan_ok=True)


def test_complex_scores_are_refused():
    y, p = problem(n=10, q=4)
    with pytest.raises(ValueError, match="scores must be real"):
        metrics.ranking_loss(y, p + 1j)


def test_evaluate_refuses_logits_whose_threshold_metrics_would_be_wrong():
    # evaluate thresholds probabilities at 0.5: the logits 0.3 and 0.4 (probabilities 0.57 and
    # 0.60) fall below it, so Macro-F1 on logits read 0 where it is 1.
    y = np.array([[1, 0], [0, 1]])
    logits = np.array([[0.3, -2.0], [-1.0, 0.4]])
    with pytest.raises(ValueError, match=r"probs must be probabilities in \[0, 1\].*sigmoid"):
        metrics.evaluate(y, logits)
    probs = 1 / (1 + np.exp(-logits))
    assert metrics.evaluate(y, probs)["macro_f1"] == 1.0  # 0.57 and 0.60 pass the threshold
    assert metrics.ranking_loss(y, logits) == metrics.ranking_loss(y, probs)  # ranking metrics take any score
