"""One call from a selector name to a ready DataLoader batch sampler.

    sampler = make_sampler("dihcl", train_y, batch_size=128, seed=0, num_epochs=100)
    loader = DataLoader(IndexedDataset(train_set), batch_sampler=sampler)

Every selector gets the same :class:`~d2ace_ext.sampler.SelectionBatchSampler`: the
same ``set_epoch``, ``update(indices, logits, targets)`` and ``state_dict`` handling.
"""
from __future__ import annotations

import torch

from . import distributed
from .sampler import SelectionBatchSampler, row_shard_for
from .selectors.registry import SELECTORS, make_selector


def make_sampler(name: str, labels: torch.Tensor, batch_size: int, features: torch.Tensor | None = None,
                 seed: int = 0, *, device: torch.device | str | None = None, budget: float = 1.0,
                 anneal: float = 0.0, run_epochs: int | None = None, num_replicas: int | None = None,
                 rank: int | None = None, shard_state: bool = False, **options) -> SelectionBatchSampler:
    """A :class:`SelectionBatchSampler` driven by the selector ``name`` (see
    :func:`~d2ace_ext.selectors.registry.make_selector` for ``features`` and ``options``).
    "balance" (its loss masks), "dihcl" (its per-epoch subsets) and "infobatch" (its
    pruning) draw from generators seeded with ``seed``. ``budget``, ``anneal`` and
    ``run_epochs``: the epoch budget, for every selector (see the sampler).
    ``shard_state``: each rank holds only its rows of the selector's per-instance state
    (see :class:`SelectionBatchSampler`; a selector without such state is unaffected)."""
    if name in ("balance", "dihcl", "infobatch") and "seed" not in options:
        options["seed"] = seed
    num_replicas, rank = distributed.resolve_world(num_replicas, rank)
    if shard_state:
        options["shard"] = row_shard_for(labels, num_replicas, rank)
    selector = make_selector(name, labels, features, device=device, **options)
    return SelectionBatchSampler(selector, batch_size, seed, budget=budget, anneal=anneal, run_epochs=run_epochs,
                                 num_replicas=num_replicas, rank=rank)


__all__ = ["make_sampler", "make_selector", "SELECTORS"]
