"""Weighted draws of a batch without replacement, for any n (also above 2^24).

``torch.multinomial`` refuses more than 2^24 categories, so batches are drawn here.
Both paths below are exact successive sampling (each next instance is drawn with
probability proportional to P among those not yet in the batch), and both use only
the CPU generator they are given, so batches do not depend on the device that
computed the probabilities.
"""

from __future__ import annotations

import numpy as np
import torch

_MAX_ROUNDS = 64


class WeightedDraw:
    """Draws batches from fixed probabilities P (n,), float64 on the CPU."""

    def __init__(self, probabilities: torch.Tensor) -> None:
        probs = probabilities.detach().to("cpu", torch.float64)
        if probs.dim() != 1 or probs.numel() < 1:
            raise ValueError(f"probabilities must be a non-empty 1-D tensor, got shape {tuple(probs.shape)}")
        if not bool(torch.isfinite(probs).all()) or bool((probs <= 0).any()):
            raise ValueError("probabilities must be finite and strictly positive")
        self.probabilities = probs / probs.sum()
        self.cdf = self.probabilities.cumsum(0)
        self._cdf = self.cdf.numpy()
        self._total = float(self.cdf[-1])
        self.n = probs.numel()

    def batch(self, size: int, generator: torch.Generator) -> torch.Tensor:
        """``size`` distinct indices (size,) int64, in draw order."""
        if not 1 <= size <= self.n:
            raise ValueError(f"batch size must be in [1, {self.n}], got {size}")
        if 4 * size <= self.n:
            found = self._by_rejection(size, generator)
            if found is not None:
                return found
        return self._by_keys(size, generator)

    def _by_rejection(self, size: int, generator: torch.Generator) -> torch.Tensor | None:
        # Draws with replacement, keeping first occurrences in order: the same law as
        # successive sampling without replacement, at O(size log n) instead of O(n).
        # The bookkeeping runs in NumPy: these arrays hold a few hundred entries, and
        # torch's intra-op threads made one searchsorted cost a scheduler time slice
        # (12 ms measured) whenever the other core was busy, as it is with loader workers.
        candidates = np.empty(0, dtype=np.int64)
        for _ in range(_MAX_ROUNDS):
            uniform = torch.rand(2 * size, dtype=torch.float64, generator=generator).numpy() * self._total
            fresh = np.minimum(np.searchsorted(self._cdf, uniform, side="right"), self.n - 1)
            candidates = np.concatenate([candidates, fresh])
            distinct, first = np.unique(candidates, return_index=True)
            if distinct.size >= size:
                return torch.from_numpy(candidates[np.sort(first)[:size]])
        return None

    def _by_keys(self, size: int, generator: torch.Generator) -> torch.Tensor:
        # Efraimidis-Spirakis: the `size` largest log(u)/p are a successive sample.
        uniform = torch.rand(self.n, dtype=torch.float64, generator=generator).clamp_(min=1e-300)
        keys = uniform.log() / self.probabilities
        return torch.topk(keys, size).indices
