"""Which instances' rows of the selector state one rank holds (``shard_state=True``).

Layout "strided": rank r of R holds instances r, r + R, r + 2R, ... (i mod R = r), as
local rows 0, 1, 2, ... (local row = i div R). Chosen over contiguous blocks because
training sets are often stored sorted (by label, by source, by time): contiguous
blocks would hand one rank most of a weighted epoch's draws, and with them most of each
step's records and of the scoring work over Y and Z, where i mod R spreads any run of
neighbouring instances evenly over the ranks. The probabilities come back in global
order by one transpose of the gathered (R, ⌈n/R⌉) rows, no permutation index needed.

A shard of one rank (R = 1) is the whole state; every collective helper is then the
identity, so a single process runs the sharded code paths unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from . import distributed
from .validation import is_int

LAYOUTS = ("strided",)


@dataclass(frozen=True)
class RowShard:
    """Rank ``rank`` of ``world`` holding its rows of n instances (``layout`` "strided")."""

    n: int
    world: int
    rank: int
    layout: str = "strided"

    def __post_init__(self) -> None:
        if not is_int(self.n) or self.n < 1:
            raise ValueError(f"RowShard.n must be an integer >= 1, got {self.n!r}")
        if not is_int(self.world) or not 1 <= self.world <= self.n:
            raise ValueError(f"RowShard.world must be an integer in [1, n = {self.n}], got {self.world!r}")
        if not is_int(self.rank) or not 0 <= self.rank < self.world:
            raise ValueError(f"RowShard.rank must be an integer in [0, {self.world}), got {self.rank!r}")
        if self.layout not in LAYOUTS:
            raise ValueError(f"RowShard.layout must be one of {LAYOUTS}, got {self.layout!r}")

    @classmethod
    def whole(cls, n: int) -> "RowShard":
        """Every row (one rank): how an unsharded state is described."""
        return cls(n, 1, 0)

    @property
    def size(self) -> int:
        """Rows held here: ⌈(n - rank) / world⌉."""
        return (self.n - self.rank + self.world - 1) // self.world

    @property
    def padded_size(self) -> int:
        """Rows of the largest shard, ⌈n / world⌉ (rank 0's): what gathers pad to."""
        return (self.n + self.world - 1) // self.world

    def rows(self, device: torch.device | str | None = None) -> torch.Tensor:
        """The global indices of the rows held here, (size,) int64 ascending."""
        return torch.arange(self.rank, self.n, self.world, device=device)

    def owner(self, index: torch.Tensor) -> torch.Tensor:
        """The rank holding each instance of ``index`` (b,) int64 -> (b,) int64."""
        return torch.remainder(index, self.world)

    def local(self, index: torch.Tensor) -> torch.Tensor:
        """Local rows of instances held here: ``index`` (b,) int64 global -> (b,) int64."""
        return torch.div(index, self.world, rounding_mode="floor")

    def to_dict(self) -> dict:
        return {"n": self.n, "world": self.world, "rank": self.rank, "layout": self.layout}

    @classmethod
    def from_saved(cls, saved, what: str) -> "RowShard":
        """The shard a saved state describes (None: the whole state, as states saved
        without sharding are); errors name ``what``."""
        if saved is None:
            return None
        if not isinstance(saved, dict) or set(saved) != {"n", "world", "rank", "layout"}:
            raise ValueError(f"{what} must be None or a dict with n, world, rank and layout, got {saved!r}")
        try:
            return cls(saved["n"], saved["world"], saved["rank"], saved["layout"])
        except ValueError as exc:
            raise ValueError(f"{what}: {exc}") from None

    def describe(self) -> str:
        if self.world == 1:
            return "every row (unsharded)"
        return f"rank {self.rank}'s rows of {self.world} ranks (layout {self.layout!r})"

    # -- collectives over the ranks holding the other shards --------------------------
    def all_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` summed over the ranks (the same tensor on every rank); itself when
        world = 1. Combine float64 partial sums, so the order of ranks hardly matters."""
        if self.world == 1:
            return tensor
        return distributed.all_sum(tensor)

    def gather(self, local: torch.Tensor) -> torch.Tensor:
        """Every rank's rows (size, ...) -> the whole (n, ...) in global order, on every
        rank; ``local`` itself when world = 1."""
        if self.world == 1:
            return local
        if local.shape[0] != self.size:
            raise ValueError(f"gather: expected this rank's {self.size} rows, got {local.shape[0]}")
        stacked = distributed.all_gather_padded(local, self.padded_size)  # (world, padded, ...)
        # strided: rank r's row k is instance r + world k, so the transpose is global order
        return stacked.transpose(0, 1).reshape(-1, *local.shape[1:])[: self.n]


def check_shard(shard, n: int) -> "RowShard | None":
    """A selector's ``shard`` argument: None, or a RowShard of its n instances."""
    if shard is None:
        return None
    if not isinstance(shard, RowShard):
        raise TypeError(f"shard must be a RowShard or None, got {type(shard).__name__}")
    if shard.n != n:
        raise ValueError(f"shard is of n = {shard.n} instances, but the labels hold n = {n}")
    return shard


class OwnedRows:
    """A per-row tensor of this rank's rows (size, ...), indexed by global instance
    indices (b,) of instances held here: lets a check written for the whole (n, ...)
    tensor read a shard and still name the global indices in its messages."""

    def __init__(self, rows: torch.Tensor, shard: RowShard) -> None:
        self.rows, self.shard = rows, shard

    @property
    def device(self) -> torch.device:
        return self.rows.device

    def __getitem__(self, index: torch.Tensor) -> torch.Tensor:
        return self.rows[self.shard.local(index.to(self.rows.device))]
