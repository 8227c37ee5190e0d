"""Seeded synthetic multi-label data with a chosen shape and label statistics.

Used by the demo (a yeast-shaped default: n = 2400, d = 100, q = 14, cardinality about
4) and by benchmarks at mediamill or MS-COCO scale, where the real sets are not at hand.
"""

from __future__ import annotations

import math

import torch


def make_multilabel(
    n: int = 2400,
    d: int = 100,
    q: int = 14,
    cardinality: float = 4.0,
    noise: float = 0.03,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Features (n, d) float32 in [0, 1] and labels (n, q) float32 0/1.

    Labels come from a low-rank latent model, so they are correlated and learnable from
    the features; per-label biases set the mean number of positives per row to about
    ``cardinality``, with a skewed (imbalanced) label frequency profile; a fraction
    ``noise`` of the entries is flipped, so some instances are noisy outliers.
    Every label column keeps at least one positive.
    """
    if not 0 < cardinality < q:
        raise ValueError(f"cardinality must lie in (0, q) = (0, {q}), got {cardinality}")
    g = torch.Generator().manual_seed(seed)
    rank = max(2, min(d, q) // 2)
    latent = torch.randn(n, rank, generator=g)
    features = latent @ torch.randn(rank, d, generator=g) / math.sqrt(rank)
    features = features + 0.5 * torch.randn(n, d, generator=g)
    scores = latent @ torch.randn(rank, q, generator=g) / math.sqrt(rank)
    scores = scores + 0.3 * torch.randn(n, q, generator=g)
    # Imbalanced label frequencies whose mean matches the requested cardinality.
    frequency = torch.linspace(1.0, 0.2, q) ** 1.5
    frequency = (frequency * (cardinality / frequency.sum())).clamp(0.01, 0.95)
    thresholds = torch.stack([torch.quantile(scores[:, j], 1.0 - float(frequency[j])) for j in range(q)])
    labels = (scores > thresholds).float()
    # Label noise that keeps the cardinality: positives dropped at rate `noise`, as many
    # spurious positives spread over the negatives.
    spurious = noise * cardinality / max(q - cardinality, 1e-9)
    flips = torch.rand(n, q, generator=g) < torch.where(labels > 0, noise, spurious)
    labels = torch.where(flips, 1.0 - labels, labels)
    empty = labels.sum(0) == 0
    labels[0, empty] = 1.0
    low, high = features.min(0).values, features.max(0).values
    features = (features - low) / (high - low).clamp(min=1e-12)
    return features.float(), labels
