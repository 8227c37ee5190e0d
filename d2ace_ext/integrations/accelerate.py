"""Hugging Face Accelerate: a DataLoader with our batch sampler, prepared without being
re-sharded (``pip install d2ace_ext[accelerate]``).

Our sampler already yields this process's shard of every global batch (it reads rank
and world size from the process group) and gathers all ranks' records in ``update``.
``accelerator.prepare(loader)`` on several processes wraps any batch sampler in
``BatchSamplerShard``, which shards the shards again: it keeps every other local batch
and, with ``even_batches`` (the default), only batches of the full global size, which
a shard never is; with Accelerate 1.15 on two processes the epoch comes out empty,
without an error (``check_loader`` detects the wrapping). :func:`prepare_loader` builds Accelerate's
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

from torch.utils.data import DataLoader

try:
    from accelerate.data_loader import BatchSamplerShard, prepare_data_loader
except ImportError as error:
    raise ImportError("d2ace_ext.integrations.accelerate needs Hugging Face Accelerate: "
                      "pip install 'd2ace_ext[accelerate]'") from error

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
            "so that it reads the process group")
    if device_placement is None:
        device_placement = accelerator.device_placement
    prepared = prepare_data_loader(
        loader, accelerator.device, num_processes=1, process_index=0, split_batches=False,
        put_on_device=device_placement, rng_types=None, dispatch_batches=False,
        even_batches=accelerator.even_batches, non_blocking=accelerator.non_blocking)
    # The flag Accelerator.prepare sets on what it has prepared: prepare_data_loader
    # then only registers the loader (for save_state and gradient accumulation).
    prepared._is_accelerate_prepared = True
    return accelerator.prepare_data_loader(prepared)


def check_loader(loader: DataLoader) -> None:
    """Raises ValueError if Accelerate re-sharded a :class:`SelectionBatchSampler`
    (``accelerator.prepare(loader)`` on several processes); use :func:`prepare_loader`."""
    batch_sampler = getattr(loader, "batch_sampler", None)
    if isinstance(batch_sampler, BatchSamplerShard) and isinstance(batch_sampler.batch_sampler,
                                                                  SelectionBatchSampler):
        if batch_sampler.num_processes > 1:
            raise ValueError("Accelerate wrapped the selection sampler in BatchSamplerShard, which shards its shards "
                             "again; prepare the loader with d2ace_ext.integrations.accelerate.prepare_loader")
