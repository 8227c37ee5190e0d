"""Random: PyTorch's default shuffled mini-batches, without replacement."""

from __future__ import annotations

import torch

from ..validation import check_positive_int
from .base import SHUFFLE, Selector


class RandomSelector(Selector):
    """Every epoch a fresh permutation, cut into consecutive batches."""

    needs_loss = False
    uses_records = False
    display_name = "Random"
    config_class = None
    takes_seed = False
    uses_neighbors = False
    schedule_fields = ()
    color = "#555555"
    display_rank = 0

    def __init__(self, n: int, q: int | None = None, device: torch.device | str = "cpu") -> None:
        self.n = check_positive_int(n, "n")
        self.q = q  # None: any label count is accepted by update()
        self.device = torch.device(device)

    def batch_mode(self, epoch: int) -> str:
        return SHUFFLE
