"""A ring of each instance's last n_t predicted probabilities (Recent, ML-Unc).

Lighter than :class:`~d2ace_ext.visits.VisitState`: no losses and no flip EMA, which
these baselines do not use.
"""
from __future__ import annotations

import torch

# Window entries per block when a score is computed from the ring (about 32 MB in float64).
BLOCK_ELEMENTS = 1 << 22


class PredictionWindow:
    """window (n, n_t, q) float32 (0.5 where nothing was recorded); pushes (n,) int64
    (entries ever pushed); last_epoch (n,) int64 (-1 = never visited).

    ``per_epoch=True`` keeps one entry per epoch (a second visit in the same epoch
    overwrites it); otherwise every visit pushes an entry. Slot k is written by push
    number k (mod n_t), so a ring that is not full holds its data in slots < pushes.
    """

    TENSORS = ("window", "pushes", "last_epoch")

    def __init__(self, n: int, q: int, size: int, per_epoch: bool, device: torch.device) -> None:
        self.size, self.per_epoch = size, per_epoch
        self.window = torch.full((n, size, q), 0.5, dtype=torch.float32, device=device)
        self.pushes = torch.zeros(n, dtype=torch.int64, device=device)
        self.last_epoch = torch.full((n,), -1, dtype=torch.int64, device=device)

    def record(self, indices: torch.Tensor, probs: torch.Tensor, epoch: int) -> None:
        """indices (b,) int64 distinct; probs (b, q) float32."""
        pushes = self.pushes[indices]
        if self.per_epoch:
            push = self.last_epoch[indices] != epoch
        else:
            push = torch.ones_like(pushes, dtype=torch.bool)
        slot = torch.where(push, torch.remainder(pushes, self.size), torch.remainder(pushes - 1, self.size))
        self.window[indices, slot] = probs.to(torch.float32)
        self.pushes[indices] = pushes + push.to(pushes.dtype)
        self.last_epoch[indices] = epoch

    def held(self, block: slice) -> torch.Tensor:
        """(rows, n_t) bool: which slots of the rows in ``block`` hold a recorded entry."""
        slots = torch.arange(self.size, device=self.pushes.device)
        return slots.unsqueeze(0) < self.pushes[block].clamp(max=self.size).unsqueeze(1)

    def blocks(self):
        """Row slices that keep float64 temporaries of the window near 32 MB."""
        n, size, q = self.window.shape
        rows = max(1, BLOCK_ELEMENTS // (size * q))
        for start in range(0, n, rows):
            yield slice(start, min(n, start + rows))
