"""DELA as the D2ACE authors' published code builds it (iunanyou/D2ACE ``model.py``, class
``DELA``, with ``main.py``'s configuration): ``make_model("dela", d, q, variant="published")``.

The same network as ``dela.py`` (encoder d -> 256 -> 512 -> 256, latent D = ceil(d/2),
binary-concrete gates tau = 2/3 from U(-10, 10) codes through a D -> D map with bias 2,
classifier [x, z_j] -> 256 -> 512 -> one linear unit per label), with the two places
where that code differs from the paper reading:

- Dropout 0.2 after both decoder layers (the code's MLP default), not only in the encoder;
- the loss keeps the code's scale: BCE SUMMED over labels (mean over the batch) plus
  beta * KL, beta = 1e-4; so ``bce_weight = q``.

Not reproduced: the smaller learning rate (0.8 x) for the gate parameters, which the
code's ``get_config_optim`` sets but its training loop never uses.
Initialisation: as ``clif_published``, construction draws from the global torch RNG
exactly what the authors' ``reset_parameters`` draws after their reseeding, in its order.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .clif_published import _reset_mlp
from .dela import DELA


class PublishedDELA(DELA):
    """DELA as iunanyou/D2ACE builds it. x (b, d) -> logits (b, q)."""

    def __init__(
        self,
        in_features: int,
        num_labels: int,
        *,
        latent_dim: int | None = None,
        tau: float = 2 / 3,
        lam: float = 1e-4,
        dropout: float = 0.2,
        decoder_dropout: float = 0.2,
    ) -> None:
        rng = torch.get_rng_state()  # restored below: only the authors' init draws count
        super().__init__(
            in_features,
            num_labels,
            latent_dim=latent_dim,
            tau=tau,
            lam=lam,
            dropout=dropout,
            decoder_dropout=decoder_dropout,
        )
        self.bce_weight = float(num_labels)
        torch.set_rng_state(rng)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """The authors' order: encoder, mu, log-variance, decoder, classifier, gate codes, gate map."""
        _reset_mlp(self.encoder, 0.1, "relu")
        self.mu.reset_parameters()
        self.logvar.reset_parameters()
        _reset_mlp(nn.Sequential(self.decoder_in), 0.1, "relu")
        _reset_mlp(self.decoder_out, 0.1, "relu")
        nn.init.kaiming_uniform_(self.classifier.weight, a=math.sqrt(5))
        self.classifier.bias.uniform_(
            -1 / math.sqrt(self.classifier.weight.shape[1]), 1 / math.sqrt(self.classifier.weight.shape[1])
        )
        self.gate_code.uniform_(-10.0, 10.0)
        self.gate_map.reset_parameters()
        nn.init.constant_(self.gate_map.bias, 2.0)

    def objective(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (b, d), y (b, q) -> (sampled logits (b, q), q * mean BCE + lam * KL)."""
        logits, bce, kl = self.loss_terms(x, y)
        return logits, self.bce_weight * bce + self.lam * kl
