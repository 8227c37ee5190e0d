"""What the sampler needs under torch.distributed (DistributedDataParallel).

Every rank draws the same global batches and yields its own shard; each step's records
of all ranks are gathered, so all ranks record the same global batch and hold the same
state; the probabilities of a weighted epoch are taken from rank 0, so float rounding
can never make the ranks' batches drift apart.
"""
from __future__ import annotations

import torch
import torch.distributed as dist

from .validation import check_positive_int


def active() -> bool:
    return dist.is_available() and dist.is_initialized()


def resolve_world(num_replicas: int | None, rank: int | None) -> tuple[int, int]:
    """(num_replicas, rank) from the arguments, else from the process group, else (1, 0)."""
    if num_replicas is None:
        num_replicas = dist.get_world_size() if active() else 1
    if rank is None:
        rank = dist.get_rank() if active() else 0
    check_positive_int(num_replicas, "num_replicas")
    if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < num_replicas:
        raise ValueError(f"rank must be an integer in [0, {num_replicas}), got {rank!r}")
    return num_replicas, rank


def gather_records(index: torch.Tensor, probs: torch.Tensor, losses: torch.Tensor | None):
    """All ranks' (index (b,), a (b, q), b (b, q) | None), concatenated in rank order
    (the sampler passes the model outputs and the targets)."""
    if not active():
        raise RuntimeError("num_replicas > 1 needs an initialised torch.distributed process group")
    mine = (index.cpu(), probs.cpu(), None if losses is None else losses.cpu())
    parts = [None] * dist.get_world_size()
    dist.all_gather_object(parts, mine)
    device = probs.device
    index = torch.cat([p[0] for p in parts])
    probs = torch.cat([p[1] for p in parts]).to(device)
    losses = None if parts[0][2] is None else torch.cat([p[2] for p in parts]).to(device)
    return index, probs, losses


def from_rank_zero(probabilities: torch.Tensor) -> torch.Tensor:
    """Rank 0's probabilities (n,) on every rank."""
    box = [probabilities.detach().cpu()]
    dist.broadcast_object_list(box, src=0)
    return box[0]
