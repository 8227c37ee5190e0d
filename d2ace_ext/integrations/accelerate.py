"""Hugging Face Accelerate: a DataLoader with our batch sampler, prepared without being
re-sharded (``pip install d2ace_ext[accelerate]``).

Our sampler already yields this process's shard of every global batch (it reads rank
and world size from the process group) and gathers all ranks' records in ``update``.
``accelerator.prepare(loader)`` on several processes wraps any batch sampler in
``BatchSamplerShard``, which shards the shards again: it keeps every other local batch
and, with ``even_batches`` (the default), only batches of the full global size, which
a shard never is. With Accelerate 1.16 on two processes and 8 batches an epoch, rank 0
gets no batch and rank 1 one (padded from its first shards), so the ranks' collective
calls no longer pair up and a DDP loop hangs. :class:`~d2ace_ext.integrations.resume.LoopCheckpoint`
refuses such a sampler (when it is made, and at its first step), and :func:`check_loader`
checks a loader. :func:`prepare_loader` builds Accelerate's
``DataLoaderShard`` around the loader as on a single process (device placement,
end-of-epoch bookkeeping for gradient accumulation, ``set_epoch``) and marks it
prepared, so a later ``accelerator.prepare(model, optimizer, loader)`` registers it and
leaves it alone.

    accelerator = Accelerator()
    sampler = D2ACESampler(train_y, 128, train_x)          # after Accelerator(): sees the process group
    loader = prepare_loader(accelerator, DataLoader(IndexedDataset(ds), batch_sampler=sampler))
    model, optimizer = accelerator.prepare(model, optimizer)
    tracker = LoopCheckpoint(sampler)
    accelerator.register_for_checkpointing(tracker)         # exact mid-epoch save_state / load_state
    for epoch in range(tracker.resume_epoch, epochs):
        loader.set_epoch(epoch)                             # not sampler.set_epoch: see below
        for idx, x, y in loader:
            logits = model(x); loss = F.binary_cross_entropy_with_logits(logits, y)
            accelerator.backward(loss); optimizer.step(); optimizer.zero_grad()
            tracker.update(idx, logits, y)

``DataLoaderShard`` calls ``set_epoch`` on the batch sampler with its own iteration
count when iterated, so set the epoch on the prepared loader. Do not use
``accelerator.skip_first_batches`` after a resume: the sampler restores its position
itself.
"""

from __future__ import annotations

import gc

from torch.utils.data import DataLoader

try:
    from accelerate.data_loader import BatchSamplerShard, prepare_data_loader
except ImportError as error:
    raise ImportError(
        "d2ace_ext.integrations.accelerate needs Hugging Face Accelerate: pip install 'd2ace_ext[accelerate]'"
    ) from error

from ..sampler import SelectionBatchSampler


def prepare_loader(accelerator, loader: DataLoader, *, device_placement: bool | None = None) -> DataLoader:
    """``loader`` (whose ``batch_sampler`` is a :class:`SelectionBatchSampler`) prepared
    by ``accelerator`` without re-sharding: batches moved to ``accelerator.device``
    (unless ``device_placement=False``), the sampler kept as it is."""
    sampler = getattr(loader, "batch_sampler", None)
    if not isinstance(sampler, SelectionBatchSampler):
        raise TypeError(f"loader.batch_sampler must be a SelectionBatchSampler, got {type(sampler).__name__}")
    if (sampler.num_replicas, sampler.rank) != (accelerator.num_processes, accelerator.process_index):
        raise ValueError(
            f"the sampler shards for rank {sampler.rank} of {sampler.num_replicas}, but this is process "
            f"{accelerator.process_index} of {accelerator.num_processes}: create the sampler after Accelerator() "
            "so that it reads the process group"
        )
    if device_placement is None:
        device_placement = accelerator.device_placement
    prepared = prepare_data_loader(
        loader,
        accelerator.device,
        num_processes=1,
        process_index=0,
        split_batches=False,
        put_on_device=device_placement,
        rng_types=None,
        dispatch_batches=False,
        even_batches=accelerator.even_batches,
        non_blocking=accelerator.non_blocking,
    )
    # The flag Accelerator.prepare sets on what it has prepared: prepare_data_loader
    # then only registers the loader (for save_state and gradient accumulation).
    prepared._is_accelerate_prepared = True
    return accelerator.prepare_data_loader(prepared)


_RESHARDED = (
    "Accelerate wrapped the selection sampler in BatchSamplerShard (accelerator.prepare(loader) on {} "
    "processes), which shards its shards again: ranks get different numbers of batches and DDP hangs; "
    "prepare the loader with d2ace_ext.integrations.accelerate.prepare_loader"
)


def check_loader(loader: DataLoader) -> None:
    """Raises ValueError if Accelerate re-sharded a :class:`SelectionBatchSampler`
    (``accelerator.prepare(loader)`` on several processes); use :func:`prepare_loader`."""
    batch_sampler = getattr(loader, "batch_sampler", None)
    if isinstance(batch_sampler, BatchSamplerShard) and isinstance(batch_sampler.batch_sampler, SelectionBatchSampler):
        if batch_sampler.num_processes > 1:
            raise ValueError(_RESHARDED.format(batch_sampler.num_processes))


def check_sampler(sampler: SelectionBatchSampler) -> None:
    """Raises ValueError if a live ``BatchSamplerShard`` of several processes wraps
    ``sampler``: :func:`check_loader` for a loader the caller does not hold. Called by
    :class:`~d2ace_ext.integrations.resume.LoopCheckpoint`. Asks the garbage collector
    what refers to the sampler (a scan of every object: about 0.2 s in a process holding
    torch and Lightning), so it is meant for once per run, not per step."""
    for referrer in gc.get_referrers(sampler):
        if type(referrer) is BatchSamplerShard:  # type(), not isinstance: no __class__ lookups on proxies
            processes = referrer.num_processes if referrer.batch_sampler is sampler else 1
        elif type(referrer) is dict and _SHARD_FIELDS <= referrer.keys() and referrer["batch_sampler"] is sampler:
            processes = referrer["num_processes"]  # a BatchSamplerShard's own __dict__ (once materialised)
        else:
            continue
        if processes > 1:
            raise ValueError(_RESHARDED.format(processes))


#: The attributes BatchSamplerShard sets on itself: how its __dict__ is recognised.
_SHARD_FIELDS = frozenset({"batch_sampler", "num_processes", "process_index", "split_batches", "even_batches"})
