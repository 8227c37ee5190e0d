"""CLIF as the D2ACE authors' published code builds it (iunanyou/D2ACE, ``model.py`` /
``layers.py`` / ``main.py``): ``make_model("clif", d, q, variant="published")``.

The paper reading (``clif.py``) follows CLIF's own description; this module follows the
copy that produced D2ACE's tables, which differs in width, label embedding size, dropout
and the gate (docs/models.md puts the two side by side). Written here from a reading of
that code, not copied. Structure for d features, q labels (width W = 768):

- label inputs: a frozen (q, q) N(0, 1) matrix; label graph: the identity (frozen);
- GIN, 2 layers, each h' = MLP((1 + eps) h + A h) + h with MLP q -> ceil(q/2) -> q,
  every linear layer followed by BatchNorm over the q label nodes, LeakyReLU 0.1 and
  Dropout 0.2; label embeddings e (q, q), so d_e = q;
- instance encoder d -> W -> W -> W, LeakyReLU 0.1 + Dropout 0.2 after every layer;
- gate G e_j (q, W) by a linear layer WITHOUT a sigmoid (Kaiming-uniform for a sigmoid,
  bias 0), multiplied into the encoding: (b, q, W);
- one shared W -> W linear layer with LeakyReLU 0.1 (no dropout), then one linear
  classifier per label (the authors' grouped Conv1d(q, q, W, groups=q));
- loss = mean BCE + 1e-3 * mean over q x q of (2I - cos(e_i, e_j))^2 (graph + self-loops).

Choices where the code leaves room:
- BatchNorm is dropped when q == 1 (one node has no batch statistics; the code would fail).
- Initialisation: construction leaves the global torch RNG exactly as the authors'
  ``reset_parameters`` would after their ``Init_random_seed``: the RNG state is restored
  after the modules are built and the parameters are drawn again in the authors' order.
  So ``torch.manual_seed(s); make_model(...)`` gives their weights for seed s.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .base import LabelwiseLinear, MultiLabelModel, check_inputs, mlp

WIDTH = 768


def _reset_mlp(block: nn.Sequential, slope: float, activation: str) -> None:
    """Redraw a ``base.mlp`` block's linear layers as the authors' MLP.reset_parameters does."""
    for layer in block:
        if isinstance(layer, nn.Linear):
            nn.init.kaiming_uniform_(layer.weight, a=slope, nonlinearity=activation)
            nn.init.uniform_(layer.bias, 0.0, 0.1)
        elif isinstance(layer, nn.BatchNorm1d):
            layer.reset_parameters()


class _GINLayer(nn.Module):
    """h (q, n) -> MLP((1 + eps) h + adj @ h) (+ h): the published GIN layer (residual
    whenever the widths agree, which they always do here since d_e = q)."""

    def __init__(self, size: int, hidden: int, slope: float, dropout: float, batch_norm: bool) -> None:
        super().__init__()
        self.eps = nn.Parameter(torch.zeros(1))
        self.mlp = mlp(
            [size, hidden, size], activation="leaky_relu", negative_slope=slope, dropout=dropout, batch_norm=batch_norm
        )

    def forward(self, h: torch.Tensor, adj: torch.Tensor) -> torch.Tensor:
        return self.mlp((1 + self.eps) * h + adj @ h) + h


class PublishedCLIF(MultiLabelModel):
    """CLIF as iunanyou/D2ACE runs it. x (b, d) -> logits (b, q).

    ``width``: the label-specific feature width (768 there); ``lam``: weight of the
    label-embedding regulariser (1e-3 there). Other sizes follow q as in that code.
    """

    def __init__(
        self,
        in_features: int,
        num_labels: int,
        *,
        width: int = WIDTH,
        gin_layers: int = 2,
        encoder_layers: int = 3,
        negative_slope: float = 0.1,
        dropout: float = 0.2,
        lam: float = 1e-3,
    ) -> None:
        super().__init__()
        q = num_labels
        rng = torch.get_rng_state()  # restored below: only the authors' init draws count
        self.in_features, self.lam, self.slope = in_features, lam, negative_slope
        self.register_buffer("label_inputs", torch.empty(q, q))  # frozen N(0, 1) label vectors
        self.register_buffer("adjacency", torch.eye(q))  # the identity label graph
        hidden = math.ceil(q / 2)
        self.gin = nn.ModuleList(
            _GINLayer(q, hidden, negative_slope, dropout, batch_norm=q > 1) for _ in range(gin_layers)
        )
        self.encoder = mlp(
            [in_features] + [width] * encoder_layers,
            activation="leaky_relu",
            negative_slope=negative_slope,
            dropout=dropout,
        )
        self.guide = nn.Linear(q, width)
        self.specific = mlp([width, width], activation="leaky_relu", negative_slope=negative_slope)
        self.classifier = LabelwiseLinear(q, width)
        torch.set_rng_state(rng)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Draw every parameter from the global RNG in the order of the authors' code:
        label inputs, GIN layers, encoder, gate, shared layer, classifier."""
        self.label_inputs.normal_()
        for layer in self.gin:
            _reset_mlp(layer.mlp, self.slope, "leaky_relu")
            layer.eps.zero_()
        _reset_mlp(self.encoder, self.slope, "leaky_relu")
        nn.init.kaiming_uniform_(self.guide.weight, nonlinearity="sigmoid")
        nn.init.zeros_(self.guide.bias)
        _reset_mlp(self.specific, self.slope, "leaky_relu")
        # The grouped Conv1d's default init (fan-in W per group), computed the same way so
        # the bounds, and hence the drawn values, agree to the last bit.
        nn.init.kaiming_uniform_(self.classifier.weight, a=math.sqrt(5))
        bound = 1.0 / math.sqrt(self.classifier.weight.shape[1])
        self.classifier.bias.uniform_(-bound, bound)

    def label_embeddings(self) -> torch.Tensor:
        """The GIN's label embeddings (q, q); stochastic in training mode (dropout)."""
        h = self.label_inputs
        for layer in self.gin:
            h = layer(h, self.adjacency)
        return h

    def _logits(self, x: torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
        check_inputs(x, self.in_features)
        shared = self.encoder(x)  # (b, W)
        gated = shared[:, None, :] * self.guide(embeddings)  # (b, q, W), no sigmoid
        return self.classifier(self.specific(gated))  # (b, q)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Embeddings first, as the authors' forward: the dropout draws keep their order.
        return self._logits(x, self.label_embeddings())

    def embedding_loss(self, embeddings: torch.Tensor) -> torch.Tensor:
        """mean over q x q of (A + I - cos(e_i, e_j))^2, A = I here."""
        unit = embeddings / (embeddings.norm(dim=1, keepdim=True) + 1e-6)
        target = self.adjacency + torch.eye(len(unit), dtype=unit.dtype, device=unit.device)
        return (target - unit @ unit.t()).pow(2).mean()

    def objective(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (b, d), y (b, q) -> (logits (b, q), mean BCE + lam * embedding loss)."""
        embeddings = self.label_embeddings()
        logits = self._logits(x, embeddings)
        bce = F.binary_cross_entropy_with_logits(logits, y.to(logits.dtype))
        return logits, bce + self.lam * self.embedding_loss(embeddings)
