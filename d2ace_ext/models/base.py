"""The interface every base model implements, and the small layers the models share."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class MultiLabelModel(nn.Module):
    """A deep multi-label classifier: features (b, d) -> one logit per label (b, q).

    ``forward`` is the prediction path (deterministic in eval mode). ``objective`` is the
    model's full training objective together with the logits of that same training
    forward pass: those logits are what a batch sampler records, so for stochastic
    models they are the sampled training-time logits, not a second clean pass.
    Contract: the loss contains the mean BCE-with-logits of exactly those logits with
    weight ``bce_weight`` (1 unless a published variant keeps its authors' scale, e.g.
    a BCE summed over labels), so a caller may swap that term for a weighted BCE by
    subtracting and adding ``bce_weight`` times it.
    """

    bce_weight: float = 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def objective(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (b, d), y (b, q) 0/1 -> (logits (b, q), scalar loss). Default: mean BCE."""
        logits = self(x)
        return logits, F.binary_cross_entropy_with_logits(logits, y.to(logits.dtype))


def mlp(
    sizes: list[int],
    *,
    activation: str = "relu",
    negative_slope: float = 0.1,
    dropout: float = 0.0,
    batch_norm: bool = False,
    last_activation: bool = True,
) -> nn.Sequential:
    """Linear layers ``sizes[0] -> ... -> sizes[-1]``, each followed by [BN], act, [dropout].

    Initialised as the Hang et al. code bases do (Kaiming-uniform for the activation,
    biases uniform in [0, 0.1]) so that ReLU units start alive.
    """
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        linear = nn.Linear(n_in, n_out)
        nn.init.kaiming_uniform_(linear.weight, a=negative_slope, nonlinearity=activation)
        nn.init.uniform_(linear.bias, 0.0, 0.1)
        layers.append(linear)
        if i < len(sizes) - 2 or last_activation:
            if batch_norm:
                layers.append(nn.BatchNorm1d(n_out))
            layers.append(nn.ReLU() if activation == "relu" else nn.LeakyReLU(negative_slope))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class LabelwiseLinear(nn.Module):
    """One linear classifier per label: z (b, q, h) -> (b, q), or shared z (b, h) -> (b, q).

    Equivalent to the authors' grouped ``Conv1d(q, q, h, groups=q)`` (same default init),
    written as one batched contraction so there is no per-label Python loop.
    """

    def __init__(self, num_labels: int, features: int) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(features)
        self.weight = nn.Parameter(torch.empty(num_labels, features).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(num_labels).uniform_(-bound, bound))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.dim() == 2:  # the same features for every label: a plain matrix product
            return F.linear(z, self.weight, self.bias)
        return torch.einsum("bqh,qh->bq", z, self.weight) + self.bias


def gaussian_sample(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """One reparameterised draw from N(mu, exp(logvar)), same shape as ``mu``."""
    return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)


def check_inputs(x: torch.Tensor, in_features: int) -> None:
    """Fail early, with the shapes, when the features do not match the model."""
    if x.dim() != 2 or x.shape[1] != in_features:
        raise ValueError(f"expected features of shape (b, {in_features}), got {tuple(x.shape)}")
