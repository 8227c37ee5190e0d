"""The local label-appearance matrix Z of Eq. 10, from K nearest neighbours.

The neighbour search (scikit-learn, Euclidean) runs once per training set; Z is kept
as its nonzeros.
"""
from __future__ import annotations

import numpy as np
import torch
from sklearn.neighbors import NearestNeighbors

from .sparse_rows import SparseRows

_ROW_CHUNK = 1 << 14


def nearest_neighbors(features: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the k nearest other instances. features (n, d) -> (n, k) int64.

    The query point itself is never among its own neighbours (scikit-learn's rule when
    the fitted points are queried).
    """
    n = features.shape[0]
    if not 1 <= k < n:
        raise ValueError(f"num_neighbors must be in [1, n - 1] = [1, {n - 1}], got {k}")
    points = np.ascontiguousarray(features.detach().to("cpu", torch.float64).numpy())
    search = NearestNeighbors(n_neighbors=k).fit(points)
    found = search.kneighbors(return_distance=False)
    return torch.from_numpy(found.astype(np.int64))


def local_label_appearance(labels: torch.Tensor, neighbors: torch.Tensor | None, include_self: bool) -> SparseRows:
    """Eq. 10: Z_ij = 1 when some instance of N(x_i) has label j.

    labels: (n, q) 0/1; neighbors: (n, K) int64 or None (N(x_i) = {x_i});
    ``include_self`` adds x_i to its K neighbours (the published code).
    """
    relevant = labels != 0
    if neighbors is None or neighbors.shape[1] == 0:
        return SparseRows.from_dense(relevant)
    neighbors = neighbors.to(relevant.device)
    appear = torch.empty_like(relevant)
    for start in range(0, relevant.shape[0], _ROW_CHUNK):
        stop = min(start + _ROW_CHUNK, relevant.shape[0])
        block = relevant[neighbors[start:stop]].any(1)
        if include_self:
            block |= relevant[start:stop]
        appear[start:stop] = block
    return SparseRows.from_dense(appear)
