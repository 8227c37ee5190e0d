"""Label graphs from training labels: the co-occurrence counts every graph starts from,
and the graph CLIF builds from them."""

from __future__ import annotations

import numpy as np
import torch


def cooccurrence_counts(labels) -> tuple[torch.Tensor, torch.Tensor]:
    """labels (n, q) 0/1 -> (pair counts (q, q) float64 with a zero diagonal, label counts (q,)
    float64): n_ij rows carrying both i and j, n_i rows carrying i. The layout of ML-GCN's
    ``*_adj.pkl`` files ({'adj': n_ij, 'nums': n_i}), so a file and labels feed one formula."""
    y = torch.as_tensor(np.asarray(labels) if not torch.is_tensor(labels) else labels).to(torch.float64)
    if y.dim() != 2:
        raise ValueError(f"labels must be a (n, q) matrix, got shape {tuple(y.shape)}")
    counts = y.t() @ y
    return counts.fill_diagonal_(0.0), y.sum(0)


def label_cooccurrence_graph(labels) -> torch.Tensor:
    """labels (n, q) 0/1 (tensor or array) -> symmetric (q, q) float32 adjacency.

    The normalisation of CLIF (Hang & Zhang, TPAMI 2021), the "symmetric conditional
    probability" of its code: with n_i the number of training rows carrying label i and
    n_ij the number carrying both i and j,

        A_ij = (P(j | i) + P(i | j)) / 2 = (n_ij / n_i + n_ij / n_j) / 2   (i != j),
        A_ii = 0.

    Entries lie in [0, 1]; a label with no positives gets an all-zero row (its counts
    are divided by a floor instead of zero). Self-loops are left out on purpose: the
    GIN adds the node's own state through its (1 + eps) term, and the label-embedding
    regulariser adds the identity to its target.
    """
    y = torch.as_tensor(np.asarray(labels) if not torch.is_tensor(labels) else labels)
    if y.dim() != 2:
        raise ValueError(f"labels must be a (n, q) matrix, got shape {tuple(y.shape)}")
    y = y.to(torch.float64)  # exact counts, then one rounding to float32 at the end
    if not bool(((y == 0) | (y == 1)).all()):
        raise ValueError("labels must be 0/1")
    counts = y.t() @ y  # n_ij, with n_i on the diagonal
    support = counts.diagonal().clamp(min=1e-6)  # n_i (floored: empty labels)
    conditional = counts / support[:, None]  # row i: P(j | i)
    conditional.fill_diagonal_(0.0)
    return (0.5 * (conditional + conditional.t())).to(torch.float32)
