"""The plain MLP used by the demo and the tests."""

from __future__ import annotations

from torch import nn

from .base import MultiLabelModel


class MLP(MultiLabelModel):
    """d -> hidden -> q logits, with ReLU and dropout. x (b, d) -> logits (b, q).

    Training objective: the default mean BCE-with-logits.
    """

    def __init__(self, in_features: int, num_labels: int, hidden: int = 256, dropout: float = 0.2) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_features, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, num_labels)
        )

    def forward(self, x):
        return self.net(x)
