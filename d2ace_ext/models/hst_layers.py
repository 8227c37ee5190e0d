"""HST's network parts (module notes of ``hst``): the label graph P(L_j | L_i), semantic
decoupling (one vector per label from a feature map) and the gated GNN over the graph."""

from __future__ import annotations

import torch
from torch import nn

from .label_graph import cooccurrence_counts


def conditional_cooccurrence(labels: torch.Tensor) -> torch.Tensor:
    """(n, q) 0/1 -> (q, q) P(L_j | L_i) in row i, diagonal 1 (see ``hst``'s module notes)."""
    return hst_graph(*cooccurrence_counts(labels))


def hst_graph(pairs: torch.Tensor, n_i: torch.Tensor) -> torch.Tensor:
    """pair counts (q, q) and label counts (q,) -> HST's graph (q, q) float32: row i holds
    n_ij / n_i with n_ii = n_i, so the diagonal is 1; zero rows for labels without positives."""
    n_i = n_i.double()
    graph = pairs.double() + torch.diag(n_i)
    return (graph / n_i.clamp(min=1).unsqueeze(1)).float()


class SemanticDecoupling(nn.Module):
    """map (b, C, h, w), words (q, d_w) -> per-label vectors (b, q, C): a softmax over
    positions, scored from tanh(W1 f ⊙ W2 e_c), weights the map's positions."""

    def __init__(self, channels: int, word_dim: int, hidden: int = 512) -> None:
        super().__init__()
        self.fc1 = nn.Linear(channels, hidden, bias=False)
        self.fc2 = nn.Linear(word_dim, hidden, bias=False)
        self.fc3 = nn.Linear(hidden, hidden)
        self.fc4 = nn.Linear(hidden, 1)

    def forward(self, fmap: torch.Tensor, words: torch.Tensor) -> torch.Tensor:
        f = fmap.flatten(2).transpose(1, 2)  # (b, hw, C)
        joint = torch.tanh(self.fc1(f).unsqueeze(2) * self.fc2(words))  # (b, hw, q, hidden)
        weights = torch.softmax(self.fc4(self.fc3(joint)).squeeze(-1), dim=1)  # over positions
        return torch.einsum("bpq,bpc->bqc", weights, f)


class GatedGNN(nn.Module):
    """h (b, q, C) -> h (b, q, C) after ``steps`` GRU-style updates over graph A (q, q)."""

    def __init__(self, dim: int, adjacency: torch.Tensor, steps: int = 3) -> None:
        super().__init__()
        self.steps = steps
        self.register_buffer("adjacency", adjacency)
        self.w = nn.ModuleList(nn.Linear(2 * dim, dim) for _ in range(3))
        self.u = nn.ModuleList(nn.Linear(dim, dim) for _ in range(3))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        a_in, a_out = self.adjacency.to(h.dtype), self.adjacency.T.to(h.dtype)
        for _ in range(self.steps):
            a = torch.cat((a_in @ h, a_out @ h), dim=-1)
            z = torch.sigmoid(self.w[0](a) + self.u[0](h))
            r = torch.sigmoid(self.w[1](a) + self.u[1](h))
            h = (1 - z) * h + z * torch.tanh(self.w[2](a) + self.u[2](r * h))
        return h
