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


_ERRORS = {"TypeError": TypeError, "ValueError": ValueError, "IndexError": IndexError}


def gather_records(index: torch.Tensor | None, outputs: torch.Tensor | None, targets: torch.Tensor | None,
                   error: Exception | None = None):
    """All ranks' (index (b,), outputs (b, q), targets (b, q)), concatenated in rank order.

    A rank whose own step failed validation passes ``error`` (and None for the tensors);
    the ranks agree through this same collective, so every rank raises the same error,
    naming the rank(s) it came from, instead of the others failing inside a collective.
    """
    if not active():
        if error is not None:
            raise error
        raise RuntimeError("num_replicas > 1 needs an initialised torch.distributed process group")
    if error is not None:
        mine = ("error", type(error).__name__, str(error).strip("'\""))
    else:
        mine = ("records", index.cpu(), outputs.cpu(), targets.cpu())
    parts = [None] * dist.get_world_size()
    dist.all_gather_object(parts, mine)
    failed = [(rank, part) for rank, part in enumerate(parts) if part[0] == "error"]
    if failed:
        rank, (_, kind, message) = failed[0]
        others = f" (ranks {', '.join(str(r) for r, _ in failed)} failed)" if len(failed) > 1 else ""
        raise _ERRORS.get(kind, ValueError)(f"rank {rank}: {message}{others}")
    device = outputs.device
    index = torch.cat([p[1] for p in parts])
    outputs = torch.cat([p[2] for p in parts]).to(device)
    targets = torch.cat([p[3] for p in parts]).to(device)
    return index, outputs, targets


def from_rank_zero(probabilities: torch.Tensor) -> torch.Tensor:
    """Rank 0's probabilities (n,) on every rank."""
    box = [probabilities.detach().cpu()]
    dist.broadcast_object_list(box, src=0)
    return box[0]
