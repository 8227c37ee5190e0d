"""CLIF: Hang & Zhang, "Collaborative Learning of Label Semantics and Deep Label-Specific
Features for Multi-Label Classification", IEEE TPAMI 2021 (doi 10.1109/TPAMI.2021.3136592).

A GIN over the label graph turns label input vectors into label embeddings e_j (q, d_e);
each embedding gates the instance encoding into label-specific features
z_j = f(g(x) * sigmoid(W e_j)); one linear classifier per label reads z_j; a graph
auto-encoder loss ties the embeddings' cosine similarities to the label graph.
Settings (D2ACE paper, App. D.2): 2 GIN layers, d_e = 128 (of {64, 128, 256}),
label-specific features 512, LeakyReLU slope 0.1, lambda = 1e-3 (D2ACE's published code).

Choices where the sources leave room (sources: the CLIF-derived layer code in public
repositories and the D2ACE authors' copy in iunanyou/D2ACE; the paper text was not at hand):
- graph "cooccurrence": A = label_cooccurrence_graph(train_labels); label inputs learnable (q, q) N(0,1).
- graph "published": identity graph and a frozen N(0,1) (q, q) label matrix, as iunanyou/D2ACE runs it.
- (the CLIF-derived code also freezes the random label inputs; pass learn_label_inputs=False for that).
- GIN layer: h' = MLP((1 + eps) h + A h) (+ h when shapes agree); MLP d -> ceil(d_e/2) -> d_e, BN + LeakyReLU.
- BatchNorm over the q label nodes as in the CLIF code, dropped when q == 1 (undefined for one node).
- gate sigmoid(W e_j) as in the CLIF code (the D2ACE copy drops the sigmoid; not reproduced).
- instance encoder d -> 512 -> 512 -> 512 (3 layers, D2ACE's in_layers = 3); no dropout by default.
- regulariser: mean over the q x q entries of (A + I - cos(e_i, e_j))^2, i.e. the link-prediction
  loss with self-loops added (so the "published" target is 2I, as in the D2ACE code).
- loss = mean BCE (= MultiLabelSoftMarginLoss) + lambda * regulariser.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .base import LabelwiseLinear, MultiLabelModel, check_inputs, mlp
from .label_graph import label_cooccurrence_graph

GRAPHS = ("cooccurrence", "published")


class GINLayer(nn.Module):
    """Graph isomorphism layer on a dense graph: h (q, n_in), adj (q, q) -> (q, n_out)."""

    def __init__(self, n_in: int, n_out: int, hidden: int, slope: float, batch_norm: bool) -> None:
        super().__init__()
        self.eps = nn.Parameter(torch.zeros(1))  # learnable self weight, GIN-eps
        self.mlp = mlp([n_in, hidden, n_out], activation="leaky_relu", negative_slope=slope, batch_norm=batch_norm)
        self.residual = n_in == n_out

    def forward(self, h: torch.Tensor, adj: torch.Tensor) -> torch.Tensor:
        out = self.mlp((1 + self.eps) * h + adj @ h)
        return out + h if self.residual else out


class CLIF(MultiLabelModel):
    """CLIF label-semantics-guided label-specific features. x (b, d) -> logits (b, q).

    train_labels (n, q) 0/1 are required for graph="cooccurrence" (the label graph).
    lam weights the label-embedding regulariser in ``objective``.
    """

    def __init__(
        self,
        in_features: int,
        num_labels: int,
        *,
        train_labels=None,
        graph: str = "cooccurrence",
        label_dim: int = 128,
        feature_dim: int = 512,
        gin_layers: int = 2,
        encoder_layers: int = 3,
        negative_slope: float = 0.1,
        lam: float = 1e-3,
        dropout: float = 0.0,
        learn_label_inputs: bool | None = None,
    ) -> None:
        super().__init__()
        if graph not in GRAPHS:
            raise ValueError(f"graph must be one of {GRAPHS}, got {graph!r}")
        q = num_labels
        if graph == "cooccurrence":
            if train_labels is None:
                raise ValueError("CLIF with graph='cooccurrence' needs train_labels (n, q) to build the label graph")
            adjacency = label_cooccurrence_graph(train_labels)
            if adjacency.shape[0] != q:
                raise ValueError(f"train_labels has {adjacency.shape[0]} labels, expected num_labels = {q}")
        else:
            adjacency = torch.eye(q)
        learn = (graph == "cooccurrence") if learn_label_inputs is None else learn_label_inputs
        self.in_features, self.graph, self.lam = in_features, graph, lam
        self.register_buffer("adjacency", adjacency)
        self.label_inputs = nn.Parameter(torch.randn(q, q), requires_grad=learn)
        hidden = math.ceil(label_dim / 2)
        sizes = [q] + [label_dim] * gin_layers
        self.gin = nn.ModuleList(
            GINLayer(a, b, hidden, negative_slope, batch_norm=q > 1) for a, b in zip(sizes[:-1], sizes[1:])
        )
        self.encoder = mlp(
            [in_features] + [feature_dim] * encoder_layers,
            activation="leaky_relu",
            negative_slope=negative_slope,
            dropout=dropout,
        )
        self.guide = nn.Linear(label_dim, feature_dim)
        nn.init.kaiming_uniform_(self.guide.weight, nonlinearity="sigmoid")
        nn.init.zeros_(self.guide.bias)
        self.specific = mlp(
            [feature_dim, feature_dim], activation="leaky_relu", negative_slope=negative_slope, dropout=dropout
        )
        self.classifier = LabelwiseLinear(q, feature_dim)

    def label_embeddings(self) -> torch.Tensor:
        """The GIN's label embeddings (q, d_e)."""
        h = self.label_inputs
        for layer in self.gin:
            h = layer(h, self.adjacency)
        return h

    def _logits(self, x: torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
        check_inputs(x, self.in_features)
        shared = self.encoder(x)  # (b, F)
        gate = torch.sigmoid(self.guide(embeddings))  # (q, F): which features label j uses
        specific = self.specific(shared[:, None, :] * gate)  # (b, q, F)
        return self.classifier(specific)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._logits(x, self.label_embeddings())

    def embedding_loss(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Graph auto-encoder loss: mean (A + I - cosine(e_i, e_j))^2 over the q x q pairs."""
        unit = embeddings / (embeddings.norm(dim=1, keepdim=True) + 1e-6)
        target = self.adjacency + torch.eye(len(unit), dtype=unit.dtype, device=unit.device)
        return (target - unit @ unit.t()).pow(2).mean()

    def objective(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (b, d), y (b, q) -> (logits (b, q), mean BCE + lam * embedding loss)."""
        embeddings = self.label_embeddings()  # once, shared by the logits and the regulariser
        logits = self._logits(x, embeddings)
        bce = F.binary_cross_entropy_with_logits(logits, y.to(logits.dtype))
        return logits, bce + self.lam * self.embedding_loss(embeddings)
