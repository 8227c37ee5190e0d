"""One call from a selector name to a ready DataLoader batch sampler.

    sampler = make_sampler("dihcl", train_y, batch_size=128, seed=0, num_epochs=100)
    loader = DataLoader(IndexedDataset(train_set), batch_sampler=sampler)

Every selector gets the same :class:`~d2ace_ext.sampler.SelectionBatchSampler`: the
same ``set_epoch``, ``update(indices, logits, targets)`` and ``state_dict`` handling.
:func:`make_run_sampler` is the one place a run of a given length builds its sampler
(the tabular and the image harness both call it): the selector's epoch counts scaled
from a paper's schedule to the run, as the selector's own metadata says.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from . import distributed
from .sampler import SelectionBatchSampler, row_shard_for
from .selectors.registry import SELECTORS, default_config, make_selector, selector_class


@dataclass(frozen=True)
class PaperSchedule:
    """The schedule a protocol's paper gives, which runs of other lengths scale:
    ``epochs``, the paper's run length, and ``values``, the epoch counts it sets at that
    length ({"warmup_epochs": 10}). An epoch count it does not set keeps the selector's
    own default, scaled from the default's ``num_epochs`` (D2ACE's t_start / t_end in
    the tabular protocol: its preset's)."""

    epochs: int
    values: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.epochs, int) or self.epochs < 1:
            raise ValueError(f"PaperSchedule epochs must be an integer >= 1, got {self.epochs!r}")


def scheduled_options(name: str, epochs: int, schedule: PaperSchedule, preset: str = "paper") -> dict:
    """The epoch counts of selector ``name`` in a run of ``epochs`` epochs: for each of
    its ``schedule_fields``, ``num_epochs = epochs`` and every other count v scaled to
    round(v · epochs / length), v and length from ``schedule`` or, for a count it does
    not set, the selector's defaults (``preset``'s for a selector with presets).
    {} for a selector whose schedule does not count epochs (Random, Balance)."""
    cls = selector_class(name)
    if not cls.schedule_fields:
        return {}
    defaults = default_config(name, preset)
    options = {}
    for option in cls.schedule_fields:
        if option == "num_epochs":
            options[option] = epochs
        elif option in schedule.values:
            options[option] = round(schedule.values[option] * (epochs / schedule.epochs))
        else:
            options[option] = round(getattr(defaults, option) * (epochs / defaults.num_epochs))
    return options


def needs_features(name: str, preset: str = "paper", options: Mapping | None = None) -> bool:
    """Whether selector ``name`` with ``options`` builds a K-NN over the (n, d) training
    features: it ``uses_neighbors`` and its ``num_neighbors`` (the options', else its
    defaults') is above 0 (Hard-Imb; D2ACE unless K = 0)."""
    cls = selector_class(name)
    if not cls.uses_neighbors:
        return False
    options = options or {}
    return options.get("num_neighbors", default_config(name, preset).num_neighbors) > 0


def make_sampler(
    name: str,
    labels: torch.Tensor,
    batch_size: int,
    features: torch.Tensor | None = None,
    seed: int = 0,
    *,
    device: torch.device | str | None = None,
    budget: float = 1.0,
    anneal: float = 0.0,
    run_epochs: int | None = None,
    num_replicas: int | None = None,
    rank: int | None = None,
    shard_state: bool = False,
    selector_options: Mapping | None = None,
    **options,
) -> SelectionBatchSampler:
    """A :class:`SelectionBatchSampler` driven by the selector ``name`` (see
    :func:`~d2ace_ext.selectors.registry.make_selector` for ``features`` and ``options``).
    The selectors that draw from generators of their own (``takes_seed``: Balance's loss
    masks, DIHCL's per-epoch subsets, InfoBatch's pruning) seed them with ``seed``
    unless ``options`` has ``seed=``. ``budget``, ``anneal`` and ``run_epochs``: the
    epoch budget, for every selector (see the sampler).
    ``shard_state``: each rank holds only its rows of the selector's per-instance state
    (see :class:`SelectionBatchSampler`; a selector without such state is unaffected).
    ``selector_options``: the selector's options as a dict, merged under ``options``; the
    way to pass one whose name is also an argument here (InfoBatch's own ``anneal``)."""
    options = {**(selector_options or {}), **options}
    _check_anneal_meant_for_the_selector(name, budget, anneal)
    if name in SELECTORS and selector_class(name).takes_seed and "seed" not in options:
        options["seed"] = seed
    num_replicas, rank = distributed.resolve_world(num_replicas, rank)
    if shard_state:
        options["shard"] = row_shard_for(labels, num_replicas, rank)
    selector = make_selector(name, labels, features, device=device, **options)
    return SelectionBatchSampler(
        selector,
        batch_size,
        seed,
        budget=budget,
        anneal=anneal,
        run_epochs=run_epochs,
        num_replicas=num_replicas,
        rank=rank,
    )


def _check_anneal_meant_for_the_selector(name: str, budget, anneal) -> None:
    """``anneal=`` is the budget's; at budget 1 it changes nothing. For a selector with an
    ``anneal`` option of its own (InfoBatch's δ) that was surely meant for the selector,
    which would silently keep its default: refuse it, naming the way to set the selector's."""
    if name not in SELECTORS or budget != 1 or anneal == 0:  # budget / anneal values: the sampler checks them
        return
    config_class = selector_class(name).config_class
    if config_class is not None and "anneal" in getattr(config_class, "__dataclass_fields__", {}):
        raise ValueError(
            f"anneal={anneal!r} is the epoch budget's annealing, which does nothing at budget=1; "
            f"{name}'s own anneal is its option: pass selector_options={{'anneal': {anneal!r}}}"
        )


def make_run_sampler(
    name: str,
    labels: torch.Tensor,
    batch_size: int,
    features: torch.Tensor | None = None,
    seed: int = 0,
    *,
    epochs: int,
    schedule: PaperSchedule,
    preset: str = "paper",
    options: Mapping | None = None,
    device: torch.device | str | None = None,
    budget: float = 1.0,
    anneal: float = 0.0,
) -> SelectionBatchSampler:
    """The sampler of a run of ``epochs`` epochs: :func:`make_sampler` with the selector's
    epoch counts from :func:`scheduled_options` (``schedule`` scaled to ``epochs``), its
    ``preset`` where it has presets, then ``options`` (the protocol's
    ``selector_options[name]``) over both; ``run_epochs = epochs``. The budget's
    ``anneal`` is passed on only under a budget (at budget 1 it changes nothing), and
    the options as a dict, so a selector's own ``anneal`` reaches it.
    labels (n, q) 0/1, features (n, d) (read only where :func:`needs_features`)."""
    chosen = {**scheduled_options(name, epochs, schedule, preset), **(options or {})}
    if selector_class(name).presets is not None:
        chosen.setdefault("preset", preset)
    return make_sampler(
        name,
        labels,
        batch_size,
        features,
        seed=seed,
        device=device,
        budget=budget,
        anneal=anneal if budget != 1 else 0.0,
        run_epochs=epochs,
        selector_options=chosen,
    )


__all__ = [
    "make_sampler",
    "make_run_sampler",
    "make_selector",
    "needs_features",
    "scheduled_options",
    "PaperSchedule",
    "SELECTORS",
]
