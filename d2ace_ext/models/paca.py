"""PACA: Hang, Zhang, Feng & Song, "End-to-End Probabilistic Label-Specific Feature Learning
for Multi-Label Classification", AAAI 2022 (doi 10.1609/aaai.v36i6.20641).

Prototype-based label-specific features learnt end to end in a probabilistic latent
metric space: for each label j a positive and a negative prototype *distribution* is a
label-conditional normalizing flow p(z | P_j), p(z | N_j); an instance's label-specific
features are its (log-density) closeness to both, and the parameter-free classifier
is logit_j = log p(z | P_j) - log p(z | N_j). The latent space is a VAE on the features,
regularised towards a label auto-encoder's posterior (label correlations):
loss = recon + gamma * (KL(q(z|x) || q(z|y)) + label BCE) + alpha * prototype BCE.
Settings: L = 1 Monte Carlo sample; the flow's deep sigmoidal (autoregressive) transformer has
d_tau = 16 hidden units; alpha = 2 (of {1,2,5,10,20,50}), gamma = 10 (of {1e-4,...,10}).

Choices where the sources leave room (sources: the PACA configuration and code carried in
iunanyou/D2ACE, derived from the authors' release; the paper text was not at hand):
- alpha = 2, gamma = 10: the values of that configuration; the paper's per-data-set picks were not checked.
- latent D = ceil(d / 2) as configured there, capped at 64 by default: the flows cost O(b q D * 48)
  memory, and an uncapped D at d ~ 2000, q ~ 400 does not fit; D is unchanged for d <= 128;
  D >= 2 so the autoregressive conditioner always has an input.
- x-encoder d -> 256 -> 512 -> 256 and y-encoder q -> 512 -> 256 (ReLU, dropout 0.1) -> mu, log var;
  x-decoder D -> 256 -> 512 -> 256 -> d; y-decoder D -> 256 -> 512 -> q; instance map [x, z] -> 256 -> 256 -> D.
- each prototype flow: a label-conditional MADE (256 hidden, ELU) giving one deep sigmoidal flow
  layer (16 units), then a label-conditional affine layer; the label conditioning is a per-label
  table (the same function class as the authors' linear/residual maps of one-hot codes),
  the affine layer starts at the identity.
- recon = sum over features of (sigmoid(x_hat) - x)^2, averaged over the batch (features in [0, 1]).
- logits: the prototype logits (what PACA predicts with); the D2ACE copy records the label
  auto-encoder's outputs instead, which see the true labels, so that is not reproduced.
- eval: the instance map reads the posterior mean of q(z | x), no sampling.
- scale: the authors sum the BCEs over labels; the whole objective is divided by alpha * q, so
  loss = prototype mean BCE + (recon + gamma KL) / (alpha q) + gamma / alpha * label mean BCE.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .base import MultiLabelModel, check_inputs, gaussian_sample, mlp


class LabelConditionalFlow(nn.Module):
    """log p(z | label j) for every label at once: z (b, D) -> (b, q).

    z -> deep sigmoidal flow (MADE conditioner on z_<i and j) -> affine (a_j, c_j) -> N(0, I).
    """

    def __init__(self, dim: int, num_labels: int, hidden: int = 256, units: int = 16, eps: float = 1e-6) -> None:
        super().__init__()
        self.dim, self.units, self.eps = dim, units, eps
        self.per_dim = 3 * max(1, hidden // dim)  # conditioner outputs per latent dimension
        # MADE degrees: inputs 1..D, hidden cycling 1..D-1; output i sees hidden of degree < i.
        # Output rows are ordered (dimension, parameter) so the result views as (.., D, P).
        d_in = torch.arange(1, dim + 1)
        d_hid = torch.arange(hidden) % max(dim - 1, 1) + 1
        self.register_buffer("mask_in", (d_in[None, :] <= d_hid[:, None]).float())
        mask_out = (d_hid[None, :] < d_in[:, None]).float()  # (D, H)
        self.register_buffer("mask_out", mask_out.repeat_interleave(self.per_dim, 0))
        self.inp = nn.Linear(dim, hidden)
        self.label_in = nn.Parameter(torch.empty(num_labels, hidden).uniform_(-1, 1) / math.sqrt(num_labels))
        self.out = nn.Linear(hidden, dim * self.per_dim)
        self.to_ds = nn.Linear(self.per_dim, 3 * units)  # -> sigmoid-flow (scale, shift, weight) logits
        self.shift = nn.Parameter(torch.zeros(num_labels, dim))
        self.scale_raw = nn.Parameter(torch.full((num_labels, dim), math.log(math.e - 1)))  # softplus -> 1

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        b, D, k = z.shape[0], self.dim, self.units
        # The z half of the first layer is shared by all labels; labels only add a bias.
        h = F.elu(F.linear(z, self.inp.weight * self.mask_in, self.inp.bias)[:, None, :] + self.label_in)
        params = F.linear(h, self.out.weight * self.mask_out, self.out.bias).view(b, -1, D, self.per_dim)
        # Three small projections instead of slicing one wide output: the (b, q, D, k)
        # tensors stay contiguous and backward does not scatter into a 3k-wide buffer.
        w, c = self.to_ds.weight, self.to_ds.bias
        raw_a = F.linear(params, w[:k], c[:k])
        a = F.softplus(raw_a).clamp(min=1e-12)
        pre = a * z[:, None, :, None] + F.linear(params, w[k : 2 * k], c[k : 2 * k])  # (b, q, D, k)
        log_w = F.log_softmax(F.linear(params, w[2 * k :], c[2 * k :]), dim=-1)
        soft = F.softplus(pre)  # log sigmoid(pre) = pre - soft, log sigmoid(-pre) = -soft
        log_terms = log_w + pre - soft  # log(w sigmoid(pre))
        mixed = log_terms.exp().sum(-1) * (1 - self.eps) + 0.5 * self.eps  # in (0, 1)
        log_mixed, log_rest = torch.log(mixed), torch.log1p(-mixed)
        u = log_mixed - log_rest  # (b, q, D)
        log_det = (
            torch.logsumexp(log_terms - soft + torch.log(a), -1) + math.log(1 - self.eps) - log_mixed - log_rest
        ).sum(-1)
        scale = F.softplus(self.scale_raw).clamp(min=1e-12)
        u = u * scale + self.shift
        log_det = log_det + torch.log(scale).sum(-1)
        return log_det - 0.5 * u.pow(2).sum(-1) - 0.5 * D * math.log(2 * math.pi)


class PACA(MultiLabelModel):
    """PACA probabilistic prototype label-specific features. x (b, d) -> logits (b, q)."""

    def __init__(
        self,
        in_features: int,
        num_labels: int,
        *,
        latent_dim: int | None = None,
        alpha: float = 2.0,
        gamma: float = 10.0,
        dropout: float = 0.1,
        flow_hidden: int = 256,
        flow_units: int = 16,
        max_latent_dim: int = 64,
    ) -> None:
        super().__init__()
        d, q = in_features, num_labels
        D = latent_dim or max(2, min(math.ceil(d / 2), max_latent_dim))  # >= 2: MADE needs an input
        self.in_features, self.num_labels, self.alpha, self.gamma = d, q, alpha, gamma
        self.x_encoder = mlp([d, 256, 512, 256], dropout=dropout)
        self.x_mu, self.x_logvar = nn.Linear(256, D), nn.Linear(256, D)
        self.x_decoder = mlp([D, 256, 512, 256, d], last_activation=False)
        self.y_encoder = mlp([q, 512, 256], dropout=dropout)
        self.y_mu, self.y_logvar = nn.Linear(256, D), nn.Linear(256, D)
        self.y_decoder = mlp([D, 256, 512]).append(nn.Linear(512, q))
        self.instance_map = mlp([d + D, 256, 256, D], last_activation=False)
        self.positive = LabelConditionalFlow(D, q, flow_hidden, flow_units)
        self.negative = LabelConditionalFlow(D, q, flow_hidden, flow_units)

    def _prototype_logits(self, x: torch.Tensor, z: torch.Tensor):
        z = self.instance_map(torch.cat([x, z], dim=1))  # instance-conditional latent (b, D)
        return self.positive(z) - self.negative(z), z

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_inputs(x, self.in_features)
        mu, logvar = self.x_mu_logvar(x)
        return self._prototype_logits(x, gaussian_sample(mu, logvar) if self.training else mu)[0]

    def x_mu_logvar(self, x: torch.Tensor):
        h = self.x_encoder(x)
        return self.x_mu(h), self.x_logvar(h)

    def objective(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (b, d), y (b, q) -> (sampled prototype logits (b, q), normalised PACA loss)."""
        check_inputs(x, self.in_features)
        y = y.to(x.dtype)
        x_mu, x_logvar = self.x_mu_logvar(x)
        h = self.y_encoder(y)
        y_mu, y_logvar = self.y_mu(h), self.y_logvar(h)
        logits, z = self._prototype_logits(x, gaussian_sample(x_mu, x_logvar))  # L = 1 sample
        label_logits = self.y_decoder(gaussian_sample(y_mu, y_logvar))
        recon = (torch.sigmoid(self.x_decoder(z)) - x).pow(2).sum(1).mean()
        kl = (
            0.5
            * (
                y_logvar
                - x_logvar
                - 1
                + torch.exp(x_logvar - y_logvar)
                + (y_mu - x_mu).pow(2) / (torch.exp(y_logvar) + 1e-8)
            )
            .sum(1)
            .mean()
        )
        bce = F.binary_cross_entropy_with_logits(logits, y)
        label_bce = F.binary_cross_entropy_with_logits(label_logits, y)
        scale = self.alpha * self.num_labels
        return logits, bce + (recon + self.gamma * kl) / scale + self.gamma / self.alpha * label_bce
