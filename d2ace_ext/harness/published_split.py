"""The folds and validation split of the D2ACE authors' published code, reproduced exactly.

The published ``main.py`` cuts each data set with scikit-multilearn's
``IterativeStratification(n_splits=5, order=1, random_state=55)``. Its ``random_state``
has no effect: the only randomness is ``np.random.choice`` on the global NumPy state,
seeded 55 by the script. Each training fold is then split by
``torch.utils.data.random_split(train, [n - int(0.1 n), int(0.1 n)], generator=seed 55)``.

This module re-states that algorithm (scikit-multilearn 0.2.0, order 1) so no extra
package is needed; ``tests/test_published_split.py`` pins its output against indices
that scikit-multilearn itself produced. What the algorithm does, which is not quite
Sechidis et al.'s description:

- Labels are visited in the order in which they first appear scanning the rows (the
  library's "most desired combination" test can never prefer another at order 1), and
  each one's still unassigned rows are taken from the LAST row backwards.
- A row goes to the fold that still wants most of that label. A tie is drawn uniformly,
  ``rng.choice(tied folds, 1)``: the library's tie-break is meant to prefer the folds that
  want most rows overall, but it is handed the label's wanted counts instead, so it
  re-selects the same tied folds. The draws are kept call for call, so the NumPy stream,
  and thus the folds, agree with the library's.
- Rows without labels are dealt last, from the last one backwards, each to a random fold
  that still wants rows.
- The "wanted" counts are the library's floats (count * (1 / k) minus whole numbers),
  compared exactly as it compares them.
"""

from __future__ import annotations

import numpy as np
import torch


def _stratified_test_rows(labels: np.ndarray, folds: int, rng: np.random.RandomState) -> list[list[int]]:
    """Each fold's test rows in the order they were dealt. labels (n, q) 0/1."""
    n = labels.shape[0]
    share = [1 / float(folds) for _ in range(folds)]
    wanted_rows = np.array([share[k] * n for k in range(folds)])
    rows_labels = [np.flatnonzero(row).tolist() for row in labels]
    evidence: dict[int, list[int]] = {}  # label -> its rows, in row order (insertion = first appearance)
    for i, present in enumerate(rows_labels):
        for j in present:
            evidence.setdefault(j, []).append(i)
    wanted = {j: np.array([len(rows) * share[k] for k in range(folds)]) for j, rows in evidence.items()}
    remaining = {j: len(rows) for j, rows in evidence.items()}  # unassigned rows per label
    used = np.zeros(n, dtype=bool)
    dealt: list[list[int]] = [[] for _ in range(folds)]
    order = list(evidence)
    for label in order:  # the first label with rows left is always the next one chosen
        stack = evidence[label]
        while remaining[label] > 0:
            row = stack.pop()
            if used[row]:  # assigned through another label: the library removed it from this list
                continue
            best = np.where(wanted[label] == max(wanted[label]))[0]
            fold = best[0] if len(best) == 1 else _tie_break(wanted[label], best, rng)
            dealt[fold].append(row)
            used[row] = True
            for j in rows_labels[row]:
                remaining[j] -= 1
                wanted[j][fold] -= 1
            wanted_rows[fold] -= 1
    for row in [i for i in range(n) if not used[i]][::-1]:
        fold = rng.choice(np.where(wanted_rows > 0)[0], 1)[0]
        wanted_rows[fold] -= 1
        dealt[fold].append(row)
    return dealt


def _tie_break(wanted: np.ndarray, best: np.ndarray, rng: np.random.RandomState) -> int:
    """The library's tie-break as it runs: the folds of ``best`` whose ``wanted`` count is
    the largest (all of them, since ``wanted`` is the count that tied), one drawn."""
    top = max(wanted[best])
    keep = np.array([k for k in np.where(wanted == top)[0] if k in best])
    return rng.choice(keep, 1)[0]


def published_folds(labels: np.ndarray, folds: int = 5, seed: int = 55) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train rows, test rows) of each fold, both ascending, as the published code's
    ``k_fold.split(X, y)`` yields them after ``np.random.seed(seed)``. labels (n, q) 0/1."""
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be (n, q), got shape {labels.shape}")
    if not isinstance(folds, int) or folds < 2 or labels.shape[0] < folds:
        raise ValueError(f"need an integer folds >= 2 and at least that many rows, got {folds} for {labels.shape[0]}")
    dealt = _stratified_test_rows(labels != 0, folds, np.random.RandomState(seed))
    everything = np.arange(labels.shape[0])
    out = []
    for rows in dealt:
        test = np.zeros(labels.shape[0], dtype=bool)
        test[rows] = True
        out.append((everything[~test], everything[test]))
    return out


def published_validation_split(
    train_rows: np.ndarray, fraction: float = 0.1, seed: int = 55
) -> tuple[np.ndarray, np.ndarray]:
    """(fit rows, validation rows) of a training fold, in the ORDER ``random_split`` gives
    them (the published warm-up walks the fit rows in this order): a permutation from a
    ``torch.Generator`` seeded ``seed``, its last ``int(fraction * n)`` entries validate."""
    train_rows = np.asarray(train_rows)
    n = len(train_rows)
    val_size = int(fraction * n)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).numpy()
    return train_rows[perm[: n - val_size]], train_rows[perm[n - val_size :]]
