"""Multi-label metrics with scikit-learn semantics.

Every function takes ``targets`` (n, q) of 0/1 and scores or probabilities (n, q), as
numpy arrays, array-likes or torch tensors. Bad input raises ``ValueError`` naming the
argument: shapes that differ or are not (n, q) with n, q >= 1, NaN, infinite or complex
scores, targets other than 0/1. Torch tensors of any floating dtype are taken (bfloat16
through float32, which holds it exactly). One label (q = 1) keeps the multi-label
meaning: both F1s are that label's F1, ranking loss 0, coverage the share of relevant rows.

Conventions (``evaluate`` returns all of them):

* ``macro_auc``: mean per-label ROC AUC over the labels with both classes in the
  evaluated set; labels with one class are skipped and counted (``per_label_auc`` gives
  NaN for them).
* ``macro_f1`` / ``micro_f1`` / ``hamming_loss``: on ``probs >= 0.5``; F1 scores 0/0 as 0.
* ``ranking_loss``: ``sklearn.metrics.label_ranking_loss`` (ties count as errors; rows
  with no relevant or all relevant labels count 0).
* ``one_error``: fraction of rows whose top-scored label is not relevant (Schapire &
  Singer 2000; Zhang & Zhou 2014). scikit-learn has none. A row with no relevant label
  counts as an error (its top label cannot be relevant: the standard definition read
  literally, no row skipped). Ties: the top label is the FIRST label with the maximum
  score (``argmax``), so a tie between a relevant and an irrelevant label is decided by
  label order.
* ``coverage``: ``sklearn.metrics.coverage_error``: the mean number of top-ranked labels
  needed to cover all relevant labels, ties counted pessimistically, 0 for a row with no
  relevant label; its best value is the mean number of relevant labels. The MLC
  literature's coverage (Schapire & Singer 2000; MULAN) is this minus 1 on the rows
  with relevant labels; ``coverage`` returns scikit-learn's value.
* ``average_precision``: ``sklearn.metrics.label_ranking_average_precision_score``
  (ties pessimistic; a row with no relevant label, or with all labels relevant, scores 1).
* ``voc_interpolated_map``: the per-label AP that HST's release reports (PASCAL VOC
  2010+ all-point interpolation, its ``Compute_mAP_VOC2012``), averaged over the labels
  with a positive; the image protocol's ``map_voc_interpolated``. Not in ``evaluate``.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.stats import rankdata
from sklearn.metrics import (
    coverage_error,
    f1_score,
    label_ranking_average_precision_score,
    label_ranking_loss,
    roc_auc_score,
)
from sklearn.metrics import hamming_loss as _sk_hamming_loss

THRESHOLD = 0.5


#: torch floating dtypes numpy has; the others (bfloat16, the float8 types) go through float32,
#: which holds every value of theirs exactly.
_NUMPY_FLOATS = (torch.float16, torch.float32, torch.float64)


def _numpy(x) -> np.ndarray:
    if not isinstance(x, torch.Tensor):
        return np.asarray(x)
    x = x.detach().cpu()
    if x.is_floating_point() and x.dtype not in _NUMPY_FLOATS:
        x = x.float()
    return x.numpy()


def _targets(targets) -> np.ndarray:
    y = _numpy(targets)
    if y.ndim != 2 or y.shape[0] == 0 or y.shape[1] == 0:
        raise ValueError(f"targets must be a non-empty (n, q) matrix, got shape {y.shape}")
    if y.dtype == bool:
        return y.astype(np.int64)
    if not np.issubdtype(y.dtype, np.number) or np.iscomplexobj(y):
        raise ValueError(f"targets must be real numbers 0/1, got dtype {y.dtype}")
    if not np.isin(y, (0, 1)).all():
        bad = np.unique(y[~np.isin(y, (0, 1))])[:5]
        raise ValueError(f"targets must hold only 0 and 1, found {bad.tolist()}")
    return y.astype(np.int64)


def _inputs(targets, scores, name: str = "scores") -> tuple[np.ndarray, np.ndarray]:
    """(targets int64 0/1, scores float64) checked: same (n, q) shape, finite scores."""
    y = _targets(targets)
    s = _numpy(scores)
    if s.shape != y.shape:
        raise ValueError(f"{name} has shape {s.shape}, targets {y.shape}: they must match")
    if not (np.issubdtype(s.dtype, np.number) or s.dtype == bool):
        raise ValueError(f"{name} must be numeric, got dtype {s.dtype}")
    if np.iscomplexobj(s):  # astype(float64) would drop the imaginary part with only a warning
        raise ValueError(f"{name} must be real numbers, got dtype {s.dtype}")
    s = s.astype(np.float64)
    if not np.isfinite(s).all():
        raise ValueError(f"{name} holds NaN or infinite values ({int((~np.isfinite(s)).sum())} entries)")
    return y, s


# ----------------------------------------------------------------------------- on checked arrays


def _per_label_auc(y: np.ndarray, s: np.ndarray) -> np.ndarray:
    # Mann-Whitney from average ranks: roc_auc_score's values (a tie counts one half) for
    # all labels in one vectorised pass, cheap enough for a validation check every epoch.
    positives = y.sum(0).astype(np.float64)
    negatives = y.shape[0] - positives
    ranks = rankdata(s, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = ((ranks * y).sum(0) - positives * (positives + 1) / 2) / (positives * negatives)
    auc[(positives == 0) | (negatives == 0)] = np.nan
    return auc


def _macro_auc(y: np.ndarray, s: np.ndarray) -> tuple[float, int]:
    both = [j for j in range(y.shape[1]) if 0 < y[:, j].sum() < y.shape[0]]
    skipped = y.shape[1] - len(both)
    if not both:
        return float("nan"), skipped
    return float(roc_auc_score(y[:, both], s[:, both], average="macro")), skipped


def _f1(y: np.ndarray, predicted: np.ndarray, average: str) -> float:
    if y.shape[1] == 1:
        # scikit-learn reads an (n, 1) matrix as a binary problem: "macro" would average the F1
        # of classes 0 and 1 and "micro" be accuracy. One label: both are that label's F1.
        return float(f1_score(y[:, 0], predicted[:, 0], average="binary", zero_division=0))
    return float(f1_score(y, predicted, average=average, zero_division=0))


def _ranking_loss(y: np.ndarray, s: np.ndarray) -> float:
    # scikit-learn refuses one label ("binary format"); no row then has a (relevant,
    # irrelevant) pair, and such rows count 0 under its convention.
    return 0.0 if y.shape[1] == 1 else float(label_ranking_loss(y, s))


def _coverage(y: np.ndarray, s: np.ndarray) -> float:
    # scikit-learn refuses one label; its convention gives depth 1 to a row whose label is
    # relevant and 0 to one without a relevant label: the mean of the column.
    return float(y.mean()) if y.shape[1] == 1 else float(coverage_error(y, s))


def _one_error(y: np.ndarray, s: np.ndarray) -> float:
    top = np.argmax(s, axis=1)  # first maximum on ties
    return float(np.mean(y[np.arange(y.shape[0]), top] == 0))


# ----------------------------------------------------------------------------- public


def per_label_auc(targets, scores) -> np.ndarray:
    """ROC AUC of each label (q,), NaN for a label with one class in ``targets``."""
    return _per_label_auc(*_inputs(targets, scores))


def mean_auc(per_label: np.ndarray) -> float:
    """Mean of a ``per_label_auc`` result over its defined labels; NaN when none is."""
    finite = per_label[np.isfinite(per_label)]
    return float(finite.mean()) if finite.size else float("nan")


def macro_auc(targets, scores) -> tuple[float, int]:
    """(mean ROC AUC over evaluable labels, number of labels skipped). (n, q), (n, q)."""
    return _macro_auc(*_inputs(targets, scores))


def macro_f1(targets, probs, threshold: float = THRESHOLD) -> float:
    """Macro-F1 of ``probs >= threshold`` over every label, 0/0 scored as 0."""
    y, p = _inputs(targets, probs, "probs")
    return _f1(y, (p >= threshold).astype(np.int64), "macro")


def micro_f1(targets, probs, threshold: float = THRESHOLD) -> float:
    """Micro-F1 of ``probs >= threshold`` (all labels pooled), 0/0 scored as 0."""
    y, p = _inputs(targets, probs, "probs")
    return _f1(y, (p >= threshold).astype(np.int64), "micro")


def hamming_loss(targets, probs, threshold: float = THRESHOLD) -> float:
    """Fraction of (instance, label) entries where ``probs >= threshold`` is wrong."""
    y, p = _inputs(targets, probs, "probs")
    return float(_sk_hamming_loss(y, (p >= threshold).astype(np.int64)))


def ranking_loss(targets, scores) -> float:
    """scikit-learn's label ranking loss (ties count as errors)."""
    return _ranking_loss(*_inputs(targets, scores))


def one_error(targets, scores) -> float:
    """Fraction of rows whose top-scored label (the first on ties) is not relevant; a
    row with no relevant label counts as an error (see the module notes)."""
    return _one_error(*_inputs(targets, scores))


def coverage(targets, scores) -> float:
    """scikit-learn's ``coverage_error`` (the MLC literature's coverage is this minus 1)."""
    return _coverage(*_inputs(targets, scores))


def average_precision(targets, scores) -> float:
    """scikit-learn's label ranking average precision (LRAP)."""
    return float(label_ranking_average_precision_score(*_inputs(targets, scores)))


def voc_interpolated_map(targets, scores, ignore=None) -> float:
    """Mean over labels with a positive of the all-point interpolated average precision:
    precision made non-increasing in recall (each point takes the best precision at any
    higher recall), integrated over recall. targets (n, q) 0/1, scores (n, q), ``ignore``
    (n, q) bool entries left out of their label's ranking (VOC's difficult objects under
    ML-GCN's rule). Tied scores count as one threshold (scikit-learn's convention); the
    release's ``np.argsort`` breaks ties in whatever order it returns. Never above 1 and
    never below the non-interpolated AP of the same ranking."""
    y, s = _inputs(targets, scores)
    keep = None if ignore is None else ~_numpy(ignore).astype(bool)
    values = []
    for j in range(y.shape[1]):
        yj, sj = (y[:, j], s[:, j]) if keep is None else (y[keep[:, j], j], s[keep[:, j], j])
        positives = yj.sum()
        if positives == 0:
            continue
        order = np.argsort(-sj, kind="stable")
        hits, ranked = np.cumsum(yj[order]), sj[order]
        last = np.r_[ranked[1:] != ranked[:-1], True]  # the last row of each group of tied scores
        recall = hits[last] / positives
        precision = hits[last] / (np.flatnonzero(last) + 1)
        envelope = np.maximum.accumulate(precision[::-1])[::-1]
        values.append(float(np.sum(np.diff(recall, prepend=0.0) * envelope)))
    return float(np.mean(values)) if values else float("nan")


def evaluate(targets, probs) -> dict:
    """All metrics on probabilities (n, q) in [0, 1] (logits are refused): macro_auc, macro_auc_skipped, macro_f1,
    micro_f1, ranking_loss, hamming_loss, one_error, coverage, average_precision."""
    y, p = _inputs(targets, probs, "probs")
    if p.min() < 0 or p.max() > 1:  # logits: the 0.5 threshold of the F1s and Hamming loss would be wrong
        raise ValueError(
            f"probs must be probabilities in [0, 1], got values in [{p.min():.4g}, {p.max():.4g}]; "
            "apply a sigmoid to logits first"
        )
    auc, skipped = _macro_auc(y, p)
    predicted = (p >= THRESHOLD).astype(np.int64)
    return {
        "macro_auc": auc,
        "macro_auc_skipped": skipped,
        "macro_f1": _f1(y, predicted, "macro"),
        "micro_f1": _f1(y, predicted, "micro"),
        "ranking_loss": _ranking_loss(y, p),
        "hamming_loss": float(_sk_hamming_loss(y, predicted)),
        "one_error": _one_error(y, p),
        "coverage": _coverage(y, p),
        "average_precision": float(label_ranking_average_precision_score(y, p)),
    }
