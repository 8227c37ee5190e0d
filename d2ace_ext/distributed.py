"""What the sampler needs under torch.distributed (DistributedDataParallel).

Every rank draws the same global batches and yields its own shard. Each step's records
travel as one uint8 tensor (:mod:`~d2ace_ext.record_payload`) through tensor
collectives on the process group's device (the CPU under gloo, the current GPU under
NCCL), never as pickled objects:

- replicated state: ``all_gather`` of every rank's rows (padded to the largest shard),
  so every rank records the whole global batch and holds the same state;
- row-sharded state (``shard_state=True``): ``all_to_all_single`` sends each row to the
  rank that owns the instance, so each rank records only its rows.

Before the records move, the ranks exchange a small int64 header (an error code, row
counts, q, the outputs' kind): a step that failed validation on any rank then raises the
same error on every rank, and only then do the ranks exchange the error's text
(fixed-size bytes); ranks whose steps disagree on q or on the kind ("logits" or
"probs", which every rank applies to all the records it receives) all raise as well.
The probabilities of a weighted epoch are broadcast from rank 0 as a tensor, so float
rounding can never make the ranks' batches drift apart.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from . import record_payload
from .validation import check_positive_int

# What an agreed error can be, by code (0 = no error); other kinds travel as ValueError.
_ERROR_KINDS = (TypeError, ValueError, IndexError)
# Bytes of an error message exchanged after a failed step (longer ones are cut).
_MESSAGE_BYTES = 1024
# The outputs' kinds, by their code in the header.
_KINDS = ("logits", "probs")


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


def comm_device() -> torch.device:
    """The device whose tensors this process group's collectives take: the current GPU
    under NCCL, the CPU otherwise (gloo, MPI)."""
    if "nccl" in str(dist.get_backend()).lower():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _all_gather(tensor: torch.Tensor) -> torch.Tensor:
    """(m, ...) from every rank -> (world * m, ...) in rank order (same m everywhere)."""
    world = dist.get_world_size()
    out = torch.empty((world * tensor.shape[0], *tensor.shape[1:]), dtype=tensor.dtype, device=tensor.device)
    gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor  # renamed in torch 2.14
    gather(out, tensor.contiguous())
    return out


def _header(values: list[int], device: torch.device) -> torch.Tensor:
    """Every rank's ``values`` (k ints) -> (world, k) int64 on the CPU."""
    mine = torch.tensor(values, dtype=torch.int64, device=device)
    return _all_gather(mine).view(dist.get_world_size(), len(values)).cpu()


def _code(error: Exception | None) -> int:
    if error is None:
        return 0
    for code, kind in enumerate(_ERROR_KINDS, start=1):
        if type(error) is kind:
            return code
    return _ERROR_KINDS.index(ValueError) + 1


def _raise_agreed(codes: list[int], error: Exception | None, device: torch.device) -> None:
    """If any rank's code is an error, every rank raises the first failing rank's error,
    naming it (and the other failing ranks); the texts travel only in that case."""
    failed = [rank for rank, code in enumerate(codes) if code]
    if not failed:
        return
    text = (str(error) if error is not None else "").encode()[:_MESSAGE_BYTES]  # as raised: quotes are its own
    mine = torch.zeros(_MESSAGE_BYTES, dtype=torch.uint8)
    if text:
        mine[: len(text)] = torch.frombuffer(bytearray(text), dtype=torch.uint8)
    texts = _all_gather(mine.to(device)).view(len(codes), _MESSAGE_BYTES).cpu()
    rank = failed[0]
    message = bytes(texts[rank].tolist()).rstrip(b"\0").decode(errors="ignore")
    others = f" (ranks {', '.join(str(r) for r in failed)} failed)" if len(failed) > 1 else ""
    raise _ERROR_KINDS[codes[rank] - 1](f"rank {rank}: {message}{others}")


def _require_group(error: Exception | None) -> None:
    if not active():
        if error is not None:
            raise error
        raise RuntimeError("num_replicas > 1 needs an initialised torch.distributed process group")


def agree(error: Exception | None) -> None:
    """Collective: raise on every rank if ``error`` is set on any (the first failing
    rank's error, naming it); return on every rank otherwise. One small all-gather."""
    _require_group(error)
    device = comm_device()
    _raise_agreed(_header([_code(error)], device)[:, 0].tolist(), error, device)


def _same_q(qs: list[int], error_kind=ValueError) -> int:
    if len(set(qs)) != 1:
        raise error_kind(f"outputs must have the same number of labels on every rank, got {qs} by rank")
    return qs[0]


def _kind_code(kind: str) -> int:
    return _KINDS.index(kind) if kind in _KINDS else 0  # a bad kind is the sender's error, agreed before


def _same_kind(codes: list[int]) -> None:
    """Every rank must have given the same ``kind``: each applies it to all the records."""
    if len(set(codes)) != 1:
        kinds = [_KINDS[code] for code in codes]
        raise ValueError(f"update(kind=...) must be the same on every rank, got {kinds} by rank")


def gather_records(
    index: torch.Tensor | None,
    outputs: torch.Tensor | None,
    targets: torch.Tensor | None,
    error: Exception | None = None,
    *,
    kind: str = "logits",
):
    """All ranks' (index (b,) int64 CPU, outputs (b, q) float32, targets (b, q) float32),
    concatenated in rank order, on ``outputs``' device (replicated state).

    A rank whose own step failed validation passes ``error`` (and None for the tensors);
    every rank then raises the same error, naming the rank(s) it came from, instead of
    the others failing inside a collective. So does a ``kind`` ("logits" or "probs" of
    the outputs) that differs between ranks. Two all-gathers: the header, then the rows
    padded to the largest rank's count.
    """
    _require_group(error)
    device = comm_device()
    rows, q = (0, 0) if error is not None else tuple(outputs.shape)
    header = _header([_code(error), rows, q, _kind_code(kind)], device)
    _raise_agreed(header[:, 0].tolist(), error, device)
    q = _same_q(header[:, 2].tolist())
    _same_kind(header[:, 3].tolist())
    counts = header[:, 1].tolist()
    most = max(counts)
    payload = torch.zeros(most, record_payload.row_bytes(q), dtype=torch.uint8, device=device)
    payload[:rows] = record_payload.pack(index, outputs, targets, device)
    gathered = _all_gather(payload)
    kept = torch.cat([gathered[r * most : r * most + count] for r, count in enumerate(counts)])
    index, outputs_all, targets_all = record_payload.unpack(kept, q)
    return index.cpu(), outputs_all.to(outputs.device), targets_all.to(outputs.device)


def route_records(
    index: torch.Tensor | None,
    outputs: torch.Tensor | None,
    targets: torch.Tensor | None,
    owner: torch.Tensor | None,
    error: Exception | None = None,
    *,
    kind: str = "logits",
):
    """The rows of this step, from every rank, whose instance this rank owns
    (row-sharded state): (index (r,) int64 CPU, outputs (r, q) float32, targets (r, q)
    float32) on ``outputs``' device, in order of the sending rank. ``owner`` (b,) int64:
    the rank owning each of this rank's rows. An error on any rank, or a ``kind`` that
    differs between ranks, raises on every rank, as in :func:`gather_records`. Two
    collectives: an all-gather of the header (error code, q, kind, the rows for each
    owner), then one ``all_to_all_single`` of the rows.
    """
    _require_group(error)
    device, world, me = comm_device(), dist.get_world_size(), dist.get_rank()
    if error is not None:
        q, counts = 0, [0] * world
    else:
        q = outputs.shape[1]
        counts = torch.bincount(owner.cpu(), minlength=world).tolist()
    header = _header([_code(error), q, _kind_code(kind), *counts], device)
    _raise_agreed(header[:, 0].tolist(), error, device)
    q = _same_q(header[:, 1].tolist())
    _same_kind(header[:, 2].tolist())
    receive = header[:, 3 + me].tolist()
    order = torch.argsort(owner, stable=True)  # rows grouped by owner, in batch order within one
    payload = record_payload.pack(index[order], outputs[order], targets[order], device)
    received = torch.empty(sum(receive), record_payload.row_bytes(q), dtype=torch.uint8, device=device)
    dist.all_to_all_single(received, payload, receive, counts)
    index, outputs_mine, targets_mine = record_payload.unpack(received, q)
    return index.cpu(), outputs_mine.to(outputs.device), targets_mine.to(outputs.device)


def all_sum(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` summed over the ranks, on every rank (on ``tensor``'s device)."""
    summed = tensor.detach().to(comm_device()).clone()
    dist.all_reduce(summed)
    return summed.to(tensor.device)


def all_gather_padded(local: torch.Tensor, padded: int) -> torch.Tensor:
    """Every rank's (m_r, ...) rows, each padded to ``padded`` rows -> (world, padded, ...)
    on ``local``'s device (the padding rows hold zeros)."""
    device = comm_device()
    carried = local.to(torch.uint8) if local.dtype == torch.bool else local  # gloo has no bool
    block = torch.zeros((padded, *local.shape[1:]), dtype=carried.dtype, device=device)
    block[: local.shape[0]] = carried.to(device)
    stacked = _all_gather(block).view(dist.get_world_size(), padded, *local.shape[1:])
    return stacked.to(local.device, local.dtype)


def from_rank_zero(tensor: torch.Tensor) -> torch.Tensor:
    """Rank 0's ``tensor`` on every rank (same shape and dtype everywhere), on the CPU."""
    box = tensor.detach().to(comm_device()).contiguous().clone()
    dist.broadcast(box, src=0)
    return box.cpu()
