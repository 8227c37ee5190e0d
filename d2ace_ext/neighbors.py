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


def resolve_neighbors(n: int, k: int, features, neighbors, needed_for: str) -> torch.Tensor:
    """The (n, K) int64 neighbour indices a selector uses: ``neighbors`` checked when
    given, else the K-NN of ``features`` (n, d). ``needed_for`` names the use in the
    error raised when neither is given."""
    if neighbors is not None:
        if not isinstance(neighbors, torch.Tensor) or neighbors.dim() != 2 or neighbors.shape[0] != n:
            got = tuple(neighbors.shape) if isinstance(neighbors, torch.Tensor) else type(neighbors).__name__
            raise ValueError(f"neighbors must be a ({n}, {k}) index tensor, got {got}")
        if neighbors.shape[1] != k:
            raise ValueError(f"neighbors has {neighbors.shape[1]} columns but num_neighbors = {k}; "
                             f"pass ({n}, {k}) indices or set num_neighbors to match")
        if neighbors.is_floating_point() or neighbors.is_complex() or neighbors.dtype == torch.bool:
            raise TypeError(f"neighbors must hold integer indices, got dtype {neighbors.dtype}")
        if neighbors.layout != torch.strided or int(neighbors.min()) < 0 or int(neighbors.max()) >= n:
            raise ValueError(f"neighbors must be a dense tensor of indices in [0, {n})")
        return neighbors.to(torch.int64)
    if features is None:
        raise ValueError(f"features is required for {needed_for}")
    if not isinstance(features, torch.Tensor) or features.dim() != 2 or features.shape[0] != n:
        shape = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
        raise ValueError(f"features must be an ({n}, d) tensor, got {shape}")
    if not features.is_floating_point() or not bool(torch.isfinite(features).all()):
        raise ValueError("features must be finite floating-point values")
    if k >= n:
        raise ValueError(f"num_neighbors must be below n = {n}, got {k}")
    return nearest_neighbors(features, k)


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


def local_label_appearance(labels: torch.Tensor, neighbors: torch.Tensor | None, include_self: bool,
                           rows: torch.Tensor | None = None) -> SparseRows:
    """Eq. 10: Z_ij = 1 when some instance of N(x_i) has label j.

    labels: (n, q) 0/1; neighbors: (n, K) int64 or None (N(x_i) = {x_i});
    ``include_self`` adds x_i to its K neighbours (the published code); rows: (m,) int64
    the instances whose rows of Z to build, in that order (default: all n; a row-sharded
    state builds only its own).
    """
    relevant = labels != 0
    own = relevant if rows is None else relevant[rows.to(relevant.device)]
    if neighbors is None or neighbors.shape[1] == 0:
        return SparseRows.from_dense(own)
    neighbors = neighbors.to(relevant.device)
    if rows is not None:
        neighbors = neighbors[rows.to(relevant.device)]
    appear = torch.empty_like(own)
    for start in range(0, own.shape[0], _ROW_CHUNK):
        stop = min(start + _ROW_CHUNK, own.shape[0])
        block = relevant[neighbors[start:stop]].any(1)
        if include_self:
            block |= own[start:stop]
        appear[start:stop] = block
    return SparseRows.from_dense(appear)
