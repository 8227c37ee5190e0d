"""DELA: Hang & Zhang, "Dual Perspective of Label-Specific Feature Learning for Multi-Label
Classification", ICML 2022 / ACM TKDD 2024 (doi 10.1145/3705006).

Instead of picking each label's informative features, DELA finds each label's
*non-informative* latent features and makes that label's classifier immune to them:
an encoder gives z ~ N(mu(x), sigma(x)^2); per label j a binary-concrete gate s_j in
{0,1}^D marks the features to perturb, z_j = mu + s_j * sigma * eps; the robust
classifier for label j reads [x, z_j]. Training minimises the probabilistically relaxed
expected risk plus lambda * KL(N(mu, (s_j sigma)^2) || N(0, I)), which rewards perturbing
(declaring non-informative) as many features as the classifier tolerates.
Settings: binary-concrete temperature tau = 2/3, L = 1 Monte Carlo sample, lambda = 1e-4.

Choices where the sources leave room (sources: the DELA configuration and code carried in
iunanyou/D2ACE, derived from the authors' release; the paper text was not at hand):
- lambda = 1e-4: the value of that configuration ("beta"); the paper's own grid could not be checked.
- latent size D = ceil(d / 2); encoder d -> 256 -> 512 -> 256 (ReLU, dropout 0.2) -> mu, log sigma^2.
- gates: hard straight-through binary-concrete samples of logits W c_j + b (c_j a free (q, D) code,
  init U(-10, 10), b init 2), one sample per step shared by the batch; eps shared by the labels.
- KL uses log(s + 1e-6) as the authors' code does (a gate at 0 costs a large finite amount).
- classifier per label: [x, z_j] -> 256 -> 512 (ReLU) -> logit; x is fed so training stays stable;
  no dropout there by default (``decoder_dropout``; the authors' copy uses 0.2, ``dela_published``).
- eval: no perturbation, z_j = mu for every label, so the decoder runs once per instance.
- scale: the authors sum the BCE over labels; the whole objective is divided by q here, so
  loss = mean BCE + (lambda / q) * KL keeps their balance with a mean-BCE classification term.
- the authors' smaller learning rate for the gate parameters (lr_ratio 0.8) is left to the optimiser.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .base import LabelwiseLinear, MultiLabelModel, check_inputs, mlp


def binary_concrete(logits: torch.Tensor, tau: float) -> torch.Tensor:
    """Hard {0, 1} sample of a binary-concrete relaxation with straight-through gradients."""
    u = torch.rand_like(logits).clamp(1e-6, 1 - 1e-6)
    soft = torch.sigmoid((logits + torch.log(u) - torch.log1p(-u)) / tau)
    hard = (soft > 0.5).to(soft.dtype)
    return hard + soft - soft.detach()


class DELA(MultiLabelModel):
    """DELA perturbation-robust label-specific classifiers. x (b, d) -> logits (b, q)."""

    def __init__(
        self,
        in_features: int,
        num_labels: int,
        *,
        latent_dim: int | None = None,
        tau: float = 2 / 3,
        lam: float = 1e-4,
        dropout: float = 0.2,
        hidden: int = 256,
        decoder_dim: int = 512,
        decoder_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        d, q = in_features, num_labels
        D = latent_dim or math.ceil(d / 2)
        self.in_features, self.num_labels, self.tau, self.lam = d, q, tau, lam
        self.decoder_dropout = decoder_dropout
        self.encoder = mlp([d, hidden, 2 * hidden, hidden], dropout=dropout)
        self.mu = nn.Linear(hidden, D)
        self.logvar = nn.Linear(hidden, D)
        self.gate_code = nn.Parameter(torch.empty(q, D).uniform_(-10.0, 10.0))
        self.gate_map = nn.Linear(D, D)  # shared map from label codes to gate logits
        nn.init.constant_(self.gate_map.bias, 2.0)
        # First decoder layer kept as one Linear over [x, z] but applied in two parts, so
        # the x half is computed once per instance rather than once per (instance, label).
        self.decoder_in = mlp([d + D, hidden])[0]
        self.decoder_out = mlp([hidden, decoder_dim], dropout=decoder_dropout)
        self.classifier = LabelwiseLinear(q, decoder_dim)

    def _encode(self, x: torch.Tensor):
        check_inputs(x, self.in_features)
        h = self.encoder(x)
        return self.mu(h), self.logvar(h)

    def _decode(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """x (b, d), z (b, D) or (b, q, D) -> logits (b, q)."""
        w, d = self.decoder_in.weight, self.in_features
        h = F.linear(x, w[:, :d], self.decoder_in.bias)
        h = h + F.linear(z, w[:, d:]) if z.dim() == 2 else h[:, None, :] + F.linear(z, w[:, d:])
        h = F.dropout(F.relu(h), self.decoder_dropout, self.training)
        return self.classifier(self.decoder_out(h))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:  # a training-mode call returns the sampled training logits
            return self._perturbed(x)[0]
        return self._decode(x, self._encode(x)[0])

    def _perturbed(self, x: torch.Tensor):
        mu, logvar = self._encode(x)
        gates = binary_concrete(self.gate_map(self.gate_code), self.tau)  # (q, D), L = 1 sample
        noise = torch.exp(0.5 * logvar) * torch.randn_like(mu)  # (b, D), shared by labels
        z = mu[:, None, :] + gates[None] * noise[:, None, :]  # (b, q, D)
        return self._decode(x, z), mu, logvar, gates

    def objective(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (b, d), y (b, q) -> (sampled logits (b, q), mean BCE + lam / q * KL)."""
        logits, bce, kl = self.loss_terms(x, y)
        return logits, bce + self.lam / self.num_labels * kl

    def loss_terms(self, x: torch.Tensor, y: torch.Tensor):
        """x (b, d), y (b, q) -> (sampled logits (b, q), mean BCE, KL averaged over (b, q))."""
        logits, mu, logvar, gates = self._perturbed(x)
        bce = F.binary_cross_entropy_with_logits(logits, y.to(logits.dtype))
        # KL(N(mu, (s sigma)^2) || N(0, 1)) summed over D, averaged over (b, q); the terms
        # are split by which axes they depend on so no (b, q, D) tensor is built.
        per_instance = (-logvar - 1 + mu.pow(2)).sum(1).mean()
        per_label = (-2 * torch.log(gates + 1e-6)).sum(1).mean()
        mixed = (torch.exp(logvar) @ gates.pow(2).t()).mean()
        kl = 0.5 * (per_instance + per_label + mixed)
        return logits, bce, kl
