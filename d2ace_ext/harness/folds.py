"""Cross-validation splits by iterative stratification (Sechidis et al. 2011), as the
paper's protocol asks, from the ``iterative-stratification`` package."""

from __future__ import annotations

import numpy as np


def _stratifiers():
    try:
        from iterstrat.ml_stratifiers import MultilabelStratifiedKFold, MultilabelStratifiedShuffleSplit
    except ImportError as exc:  # an optional dependency of the harness only
        raise ImportError(
            "the experiment harness needs the 'iterative-stratification' package: "
            "pip install iterative-stratification (or pip install d2ace_ext[harness])"
        ) from exc
    return MultilabelStratifiedKFold, MultilabelStratifiedShuffleSplit


def fold_indices(labels: np.ndarray, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train rows, test rows) of each of ``folds`` stratified folds. labels (n, q) 0/1."""
    if not isinstance(folds, int) or folds < 2:
        raise ValueError(f"folds must be an integer >= 2, got {folds!r}")
    if labels.shape[0] < folds:
        raise ValueError(f"{folds} folds need at least {folds} instances, got {labels.shape[0]}")
    kfold, _ = _stratifiers()
    splitter = kfold(n_splits=folds, shuffle=True, random_state=seed)
    return [(np.sort(train), np.sort(test)) for train, test in splitter.split(np.zeros(len(labels)), labels)]


def validation_split(labels: np.ndarray, rows: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split ``rows`` of a training fold into (fit rows, validation rows), the validation
    part a stratified ``fraction`` of them. labels (n, q) 0/1 of the whole set."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"validation fraction must be in (0, 1), got {fraction}")
    _, shuffle_split = _stratifiers()
    splitter = shuffle_split(n_splits=1, test_size=fraction, random_state=seed)
    fit, val = next(splitter.split(np.zeros(len(rows)), labels[rows]))
    return np.sort(rows[fit]), np.sort(rows[val])
