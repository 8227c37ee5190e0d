"""PACA as the D2ACE authors' published code builds it (iunanyou/D2ACE ``model.py`` class
``PACA``, ``layers.py`` flows, ``main.py`` configuration):
``make_model("paca", d, q, variant="published")``.

Where it differs from the paper reading in ``paca.py``:

- latent size D = ceil(d / 2), not capped;
- Dropout 0.2 after the hidden layers of the feature decoder, the label decoder and the
  instance map (the code's MLP default), besides 0.1 in both encoders;
- each prototype flow is the code's: a neural autoregressive flow whose MADE conditioner
  takes the label's one-hot code through its own linear layer (q -> 256) added before the
  ELU, emits 3 * floor(256 / D) parameters per latent dimension laid out parameter-major,
  mapped by a linear layer to one deep sigmoidal layer of 16 units; then an affine flow
  whose scale and shift are residual two-layer maps of the one-hot code
  (l2(ReLU(l1 c)) + l3 c), initialised near the identity (weights U(+-0.001), softplus^-1(1));
- the loss keeps the code's scale: reconstruction + gamma * (KL + label BCE summed over
  labels) + alpha * prototype BCE summed over labels, alpha = 2, gamma = 10; so
  ``bce_weight = alpha * q``; the order of the random draws follows the code's forward.

Choices where the code leaves room:
- its conditioner has no parameters when D > 256 (floor(256 / D) = 0); here at least 3.
- logits recorded for the sampler are the prototype logits, as in ``paca.py`` (the copy
  records the label auto-encoder's, which see the labels; its loop cannot run PACA anyway).
Initialisation: as ``clif_published``, the authors' order of draws from the global RNG.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .base import MultiLabelModel, check_inputs, gaussian_sample, mlp
from .clif_published import _reset_mlp


class _NeuralAutoregressiveFlow(nn.Module):
    """z (b, D) -> (u (b, q, D), log|det| (b, q)) for every label's one-hot condition."""

    def __init__(self, dim: int, num_labels: int, hidden: int = 256, units: int = 16, eps: float = 1e-6) -> None:
        super().__init__()
        self.dim, self.units, self.eps = dim, units, eps
        self.per_dim = 3 * max(1, hidden // dim)
        d_in = torch.arange(1, dim + 1)
        d_hid = torch.arange(hidden) % max(dim - 1, 1) + 1
        self.register_buffer("mask_in", (d_in[None, :] <= d_hid[:, None]).float())  # (H, D)
        self.register_buffer("mask_out", (d_hid[None, :] < d_in[:, None]).float().repeat(self.per_dim, 1))
        self.inp = nn.Linear(dim, hidden)
        self.out = nn.Linear(hidden, dim * self.per_dim)
        self.cond = nn.Linear(num_labels, hidden)  # on a one-hot code: one hidden bias per label
        self.to_ds = nn.Linear(self.per_dim, 3 * units)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        self.inp.reset_parameters()
        self.out.reset_parameters()
        nn.init.kaiming_uniform_(self.cond.weight, a=math.sqrt(5))
        nn.init.zeros_(self.cond.bias)
        self.to_ds.reset_parameters()

    def forward(self, z: torch.Tensor):
        b, D, k = z.shape[0], self.dim, self.units
        per_label = self.cond.weight.t() + self.cond.bias  # (q, H)
        h = F.elu(F.linear(z, self.inp.weight * self.mask_in, self.inp.bias)[:, None, :] + per_label)
        params = F.linear(h, self.out.weight * self.mask_out, self.out.bias)  # (b, q, P D)
        params = params.view(b, -1, self.per_dim, D).transpose(-1, -2)  # (b, q, D, P)
        ds = self.to_ds(params)
        a, shift, w_raw = F.softplus(ds[..., :k]), ds[..., k : 2 * k], ds[..., 2 * k :]
        pre = a * z[:, None, :, None] + shift  # (b, q, D, k)
        mixed = (torch.softmax(w_raw, -1) * torch.sigmoid(pre)).sum(-1) * (1 - self.eps) + 0.5 * self.eps
        u = torch.log(mixed) - torch.log1p(-mixed)
        terms = F.log_softmax(w_raw, -1) + F.logsigmoid(pre) + F.logsigmoid(-pre) + torch.log(a)
        log_det = torch.logsumexp(terms, -1) + math.log(1 - self.eps) - torch.log(mixed) - torch.log1p(-mixed)
        return u, log_det.sum(-1)


class _ResidualCode(nn.Module):
    """The per-label vector l2(ReLU(l1 c)) + l3 c of each one-hot code c: (q, D)."""

    def __init__(self, num_labels: int, dim: int) -> None:
        super().__init__()
        self.l1, self.l2, self.l3 = nn.Linear(num_labels, dim), nn.Linear(dim, dim), nn.Linear(num_labels, dim)

    def forward(self) -> torch.Tensor:
        return self.l2(F.relu(self.l1.weight.t() + self.l1.bias)) + self.l3.weight.t() + self.l3.bias


class _LabelAffineFlow(nn.Module):
    """u (b, q, D) -> (u * a_j + c_j, log|det| (q,)), a_j = softplus(.) of label j's code."""

    def __init__(self, num_labels: int, dim: int) -> None:
        super().__init__()
        self.scale, self.shift = _ResidualCode(num_labels, dim), _ResidualCode(num_labels, dim)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        for code in (self.scale, self.shift):
            for layer in (code.l1, code.l2, code.l3):
                layer.reset_parameters()
        for code, bias in ((self.shift, 0.0), (self.scale, 0.5 * math.log(math.e - 1))):  # a = 1, shift = 0
            code.l2.weight.uniform_(-0.001, 0.001)
            code.l3.weight.uniform_(-0.001, 0.001)
            code.l2.bias.fill_(bias)
            code.l3.bias.fill_(bias)

    def forward(self, u: torch.Tensor):
        a = F.softplus(self.scale())
        return u * a + self.shift(), torch.log(a).sum(-1)


class _PrototypeFlow(nn.Module):
    """log p(z | label j) for every label: z (b, D) -> (b, q)."""

    def __init__(self, dim: int, num_labels: int) -> None:
        super().__init__()
        self.naf, self.affine = _NeuralAutoregressiveFlow(dim, num_labels), _LabelAffineFlow(num_labels, dim)

    def reset_parameters(self) -> None:
        self.naf.reset_parameters()
        self.affine.reset_parameters()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        u, log_det = self.naf(z)
        u, log_det_affine = self.affine(u)
        return log_det + log_det_affine - 0.5 * u.pow(2).sum(-1) - 0.5 * u.shape[-1] * math.log(2 * math.pi)


class PublishedPACA(MultiLabelModel):
    """PACA as iunanyou/D2ACE builds it. x (b, d) -> logits (b, q) = log p(z|P_j) - log p(z|N_j)."""

    def __init__(
        self,
        in_features: int,
        num_labels: int,
        *,
        latent_dim: int | None = None,
        alpha: float = 2.0,
        gamma: float = 10.0,
        dropout: float = 0.1,
        decoder_dropout: float = 0.2,
    ) -> None:
        super().__init__()
        rng = torch.get_rng_state()  # restored below: only the authors' init draws count
        d, q = in_features, num_labels
        D = latent_dim or max(2, math.ceil(d / 2))  # >= 2: the autoregressive conditioner needs an input
        self.in_features, self.num_labels, self.alpha, self.gamma = d, q, alpha, gamma
        self.bce_weight = alpha * q
        self.x_encoder = mlp([d, 256, 512, 256], dropout=dropout)
        self.x_mu, self.x_logvar = nn.Linear(256, D), nn.Linear(256, D)
        self.y_encoder = mlp([q, 512, 256], dropout=dropout)
        self.y_mu, self.y_logvar = nn.Linear(256, D), nn.Linear(256, D)
        self.x_decoder = mlp([D, 256, 512, 256, d], dropout=decoder_dropout, last_activation=False)
        self.y_decoder = mlp([D, 256, 512], dropout=decoder_dropout)
        self.y_classifier = nn.Linear(512, q)
        self.instance_map = mlp([d + D, 256, 256, D], dropout=decoder_dropout, last_activation=False)
        self.positive, self.negative = _PrototypeFlow(D, q), _PrototypeFlow(D, q)
        torch.set_rng_state(rng)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """The authors' order: encoders and heads, decoders, instance map, the two flows."""
        _reset_mlp(self.x_encoder, 0.1, "relu")
        self.x_mu.reset_parameters()
        self.x_logvar.reset_parameters()
        _reset_mlp(self.y_encoder, 0.1, "relu")
        self.y_mu.reset_parameters()
        self.y_logvar.reset_parameters()
        _reset_mlp(self.x_decoder, 0.1, "relu")
        _reset_mlp(self.y_decoder, 0.1, "relu")
        self.y_classifier.reset_parameters()
        _reset_mlp(self.instance_map, 0.1, "relu")
        self.positive.reset_parameters()
        self.negative.reset_parameters()

    def _encode(self, x: torch.Tensor):
        check_inputs(x, self.in_features)
        h = self.x_encoder(x)
        return self.x_mu(h), self.x_logvar(h)

    def _prototype_logits(self, x: torch.Tensor, z: torch.Tensor):
        z = self.instance_map(torch.cat([x, z], dim=1))
        return self.positive(z) - self.negative(z), z

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mu, logvar = self._encode(x)
        return self._prototype_logits(x, gaussian_sample(mu, logvar) if self.training else mu)[0]

    def objective(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (b, d), y (b, q) -> (sampled prototype logits (b, q), the code's PACA loss)."""
        y = y.to(x.dtype)
        x_mu, x_logvar = self._encode(x)  # the code's order of random draws
        h = self.y_encoder(y)
        y_mu, y_logvar = self.y_mu(h), self.y_logvar(h)
        z_x, z_y = gaussian_sample(x_mu, x_logvar), gaussian_sample(y_mu, y_logvar)
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
        label_logits = self.y_classifier(self.y_decoder(z_y))
        logits, z = self._prototype_logits(x, z_x)
        recon = (torch.sigmoid(self.x_decoder(z)) - x).pow(2).sum(1).mean()
        q = self.num_labels
        label_bce = q * F.binary_cross_entropy_with_logits(label_logits, y)
        bce = F.binary_cross_entropy_with_logits(logits, y)
        return logits, recon + self.gamma * (kl + label_bce) + self.bce_weight * bce
