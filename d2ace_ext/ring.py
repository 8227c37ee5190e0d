"""A ring of each instance's last n_t predicted probabilities: the one place where a
visit is pushed into a window (D2ACE's :class:`~d2ace_ext.visits.VisitState` extends it
with losses and flips, and :func:`~d2ace_ext.functional.record_visits`, the record op's
pure-PyTorch definition, pushes through :func:`ring_visit` and :func:`ring_write`;
Recent and ML-Unc use it as it is).

Slot k is written by push number k (mod n_t), so a ring that is not full holds its data
in slots < pushes. With ``per_epoch`` one entry is kept per epoch: a second visit in the
same epoch overwrites that epoch's entry instead of pushing a new one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch

#: Window entries per block when a score is computed from the ring in float64: about
#: 32 MB of temporaries, so a 10^6 × 100 state never needs a 10 GB float64 copy.
BLOCK_ELEMENTS = 1 << 22


def row_blocks(rows: int, elements_per_row: int, block_elements: int | None = None) -> Iterator[slice]:
    """Row slices of ``rows`` rows holding about ``block_elements`` (default
    :data:`BLOCK_ELEMENTS`) elements each; at least one row per block."""
    per_block = max(1, (BLOCK_ELEMENTS if block_elements is None else block_elements) // max(1, elements_per_row))
    for start in range(0, rows, per_block):
        yield slice(start, min(rows, start + per_block))


@dataclass(frozen=True)
class RingVisit:
    """Where one batch of visits goes, for indices (b,): ``pushes`` (b,) before the visit,
    ``push`` (b,) bool (a new entry, or an overwrite of this epoch's), ``slot`` (b,) the
    slot written, ``previous_slot`` (b,) the entry before this visit's and
    ``has_previous`` (b,) bool whether there is one."""

    pushes: torch.Tensor
    push: torch.Tensor
    slot: torch.Tensor
    previous_slot: torch.Tensor
    has_previous: torch.Tensor


def ring_visit(
    pushes: torch.Tensor, last_epoch: torch.Tensor, indices: torch.Tensor, epoch: int, per_epoch: bool, size: int
) -> RingVisit:
    """Where one batch of visits goes in rings of ``size`` slots: pushes, last_epoch
    (rows,) int64 as the ring holds them; indices (b,) int64 distinct. Changes nothing."""
    count = pushes[indices]
    if per_epoch:
        push = last_epoch[indices] != epoch
    else:
        push = torch.ones_like(count, dtype=torch.bool)
    newest = torch.remainder(count - 1, size)
    slot = torch.where(push, torch.remainder(count, size), newest)
    previous_slot = torch.where(push, newest, torch.remainder(count - 2, size))
    has_previous = torch.where(push, count >= 1, count >= 2)
    return RingVisit(count, push, slot, previous_slot, has_previous)


def ring_write(
    window: torch.Tensor,
    pushes: torch.Tensor,
    last_epoch: torch.Tensor,
    indices: torch.Tensor,
    visit: RingVisit,
    probs: torch.Tensor,
    epoch: int,
) -> None:
    """Store probs (b, q) at ``visit``'s slots of window (rows, n_t, q) (rounded to its
    dtype) and advance pushes and last_epoch (rows,), in place."""
    window[indices, visit.slot] = probs.to(window.dtype)
    pushes[indices] = visit.pushes + visit.push.to(visit.pushes.dtype)
    last_epoch[indices] = epoch


class PredictionRing:
    """window (rows, n_t, q) in ``dtype`` (0.5 where nothing was recorded); pushes (rows,)
    int64 (entries ever pushed); last_epoch (rows,) int64 (-1 = never visited)."""

    TENSORS = ("window", "pushes", "last_epoch")

    def __init__(
        self, rows: int, q: int, size: int, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
    ) -> None:
        device = torch.device(device)
        self.size = size
        self.window = torch.full((rows, size, q), 0.5, dtype=dtype, device=device)
        self.pushes = torch.zeros(rows, dtype=torch.int64, device=device)
        self.last_epoch = torch.full((rows,), -1, dtype=torch.int64, device=device)

    @property
    def window_size(self) -> int:
        return self.size

    def visit(self, indices: torch.Tensor, epoch: int, per_epoch: bool) -> RingVisit:
        """The slots of one batch's visits; indices (b,) int64 distinct. Changes nothing."""
        return ring_visit(self.pushes, self.last_epoch, indices, epoch, per_epoch, self.size)

    def write(self, indices: torch.Tensor, visit: RingVisit, probs: torch.Tensor, epoch: int) -> None:
        """Store probs (b, q) at the visit's slots (rounded to the window's dtype)."""
        ring_write(self.window, self.pushes, self.last_epoch, indices, visit, probs, epoch)

    def record(self, indices: torch.Tensor, probs: torch.Tensor, epoch: int, per_epoch: bool) -> None:
        """One batch: indices (b,) int64 distinct; probs (b, q)."""
        self.write(indices, self.visit(indices, epoch, per_epoch), probs, epoch)

    def held(self, block: slice) -> torch.Tensor:
        """(rows, n_t) bool: which slots of the rows in ``block`` hold a recorded entry."""
        slots = torch.arange(self.size, device=self.pushes.device)
        return slots.unsqueeze(0) < self.pushes[block].clamp(max=self.size).unsqueeze(1)

    def blocks(self) -> Iterator[slice]:
        """Row slices that keep float64 temporaries of the window near 32 MB."""
        rows, size, q = self.window.shape
        return row_blocks(rows, size * q)
