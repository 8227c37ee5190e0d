"""Multi-label metrics with scikit-learn semantics.

Macro-AUC averages per-label ROC AUC over the labels with both classes in the
evaluated set and reports how many were skipped; Macro-F1 thresholds at 0.5 and scores
0/0 as 0; Ranking loss counts ties as errors (``label_ranking_loss``).
"""
from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import f1_score, label_ranking_loss, roc_auc_score


def _numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def macro_auc(targets, scores) -> tuple[float, int]:
    """(mean ROC AUC over evaluable labels, number of labels skipped). (n, q), (n, q)."""
    y, s = _numpy(targets), _numpy(scores)
    both = [j for j in range(y.shape[1]) if 0 < y[:, j].sum() < y.shape[0]]
    skipped = y.shape[1] - len(both)
    if not both:
        return float("nan"), skipped
    return float(roc_auc_score(y[:, both], s[:, both], average="macro")), skipped


def macro_f1(targets, probs, threshold: float = 0.5) -> float:
    """Macro-F1 of ``probs >= threshold`` over every label, 0/0 scored as 0."""
    y, p = _numpy(targets), _numpy(probs)
    return float(f1_score(y, (p >= threshold).astype(int), average="macro", zero_division=0))


def ranking_loss(targets, scores) -> float:
    """scikit-learn's label ranking loss (ties count as errors)."""
    return float(label_ranking_loss(_numpy(targets), _numpy(scores)))


def evaluate(targets, probs) -> dict:
    """The paper's three metrics on probabilities (n, q)."""
    auc, skipped = macro_auc(targets, probs)
    return {"macro_auc": auc, "macro_auc_skipped": skipped, "macro_f1": macro_f1(targets, probs),
            "ranking_loss": ranking_loss(targets, probs)}
