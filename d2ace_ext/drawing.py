"""Weighted draws of a batch without replacement, for any n (also above 2^24).

``torch.multinomial`` refuses more than 2^24 categories, so batches are drawn here.
Both paths below are exact successive sampling (each next instance is drawn with
probability proportional to P among those not yet in the batch), and both use only
the CPU generator they are given, so batches do not depend on the device that
computed the probabilities.
"""
from __future__ import annotations

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
        candidates = torch.empty(0, dtype=torch.int64)
        for _ in range(_MAX_ROUNDS):
            uniform = torch.rand(2 * size, dtype=torch.float64, generator=generator) * self.cdf[-1]
            fresh = torch.searchsorted(self.cdf, uniform, right=True).clamp_(max=self.n - 1)
            candidates = torch.cat([candidates, fresh])
            distinct, inverse = torch.unique(candidates, return_inverse=True)
            if distinct.numel() >= size:
                positions = torch.arange(candidates.numel())
                first = torch.full((distinct.numel(),), candidates.numel(), dtype=torch.int64)
                first.scatter_reduce_(0, inverse, positions, reduce="amin")
                return candidates[first.sort().values[:size]]
        return None

    def _by_keys(self, size: int, generator: torch.Generator) -> torch.Tensor:
        # Efraimidis-Spirakis: the `size` largest log(u)/p are a successive sample.
        uniform = torch.rand(self.n, dtype=torch.float64, generator=generator).clamp_(min=1e-300)
        keys = uniform.log() / self.probabilities
        return torch.topk(keys, size).indices
