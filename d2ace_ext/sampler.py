"""The batch sampler users hand to ``DataLoader(dataset, batch_sampler=...)``.

Every epoch yields ceil(S / b) batches (the last may be smaller), each without repeats,
where S = n for a full pass and S = ⌈ρ n⌉ under a budget ρ < 1 (:mod:`~d2ace_ext.budget`;
the annealed last epochs are full passes again). Warm-up epochs are shuffled (or fixed)
passes; afterwards every batch is drawn independently from the selector's probabilities,
computed once at the start of the epoch from the records of the epochs before. A budget
only shortens the epoch: its batches are the first ones the full epoch would have
yielded, so ρ = 1 is exactly the unbudgeted sampler. A pruning selector (InfoBatch)
instead names the instances it keeps; the epoch walks those in a shuffled order.
All randomness comes from a CPU ``torch.Generator`` seeded from (seed, epoch), so
batches are the same on CPU and GPU and ``state_dict()`` / ``load_state_dict()`` resume
to the identical sequence.
"""

from __future__ import annotations

import math
import time
import warnings
from typing import Iterator

import torch
from torch.utils.data import Sampler

from . import distributed
from .budget import EpochBudget, full_pass_epochs
from .config import D2ACEConfig
from .drawing import WeightedDraw
from .row_shard import OwnedRows, RowShard
from .sampler_state import EpochPlan, check_pruned_weights, plan_from_state
from .selectors.base import FIXED, PRUNED, SHUFFLE, WEIGHTED, Selector
from .selectors.d2ace import D2ACESelector
from .validation import (
    as_index_tensor,
    check_labels,
    check_matrix,
    check_non_negative_int,
    check_outputs,
    check_positive_int,
    check_real,
    check_seed,
    check_step,
    check_targets_match,
    is_int,
    is_real,
    seed64,
)

_STATE_FORMAT = 1


def epoch_seed(seed: int, epoch: int) -> int:
    """A well-mixed 63-bit seed for (seed, epoch); ``seed`` may be any non-negative integer."""
    return seed64(seed, epoch)


class SelectionBatchSampler(Sampler):
    """Batches chosen by a :class:`~d2ace_ext.selectors.base.Selector`.

    Use: ``loader = DataLoader(IndexedDataset(ds), batch_sampler=sampler)``; each epoch
    ``sampler.set_epoch(e)``; after each forward pass
    ``sampler.update(indices, logits, targets)``.

    Under DistributedDataParallel, ``batch_size`` is the global batch: every rank draws
    the same global batches and yields its shard ``batch[rank::num_replicas]`` (taken
    from the process group unless given); ``update`` gathers all ranks' records, so
    every rank holds the same state. A last global batch smaller than the number of
    ranks is topped up with further distinct instances, so no rank gets an empty batch.

    Row-sharded state: a selector built with ``shard=RowShard(n, R, r)`` (what
    ``shard_state=True`` of :class:`D2ACESampler` and :func:`~d2ace_ext.make_sampler`
    does) holds only rank r's rows of its per-instance state, about 1/R of it;
    ``update`` then sends each record to the rank owning its instance, scoring combines
    the ranks' column statistics and gathers the per-instance weights, and every rank
    still draws the same global batches. ``state_dict`` then holds this rank's rows:
    save it on every rank (see ``docs/scaling.md``).

    ``budget`` ρ in (0, 1]: each epoch trains on ⌈ρ n⌉ samples, ⌈ρ n / b⌉ batches;
    ``anneal`` δ in [0, 1]: the last ⌈δ T⌉ of the ``run_epochs`` = T epochs are full
    passes (T defaults to the selector's own ``config.num_epochs``). An ordered epoch
    under a budget trains on a uniform random subset: the head of its shuffled order, or
    for a fixed-order warm-up a uniform subset walked in index order.
    """

    def __init__(
        self,
        selector: Selector,
        batch_size: int,
        seed: int = 0,
        *,
        budget: float = 1.0,
        anneal: float = 0.0,
        run_epochs: int | None = None,
        num_replicas: int | None = None,
        rank: int | None = None,
    ) -> None:
        if not isinstance(selector, Selector):
            raise TypeError(f"selector must be a Selector, got {type(selector).__name__}")
        self.selector = selector
        self.batch_size = check_positive_int(batch_size, "batch_size")
        self.seed = check_seed(seed, "seed")
        self.n = selector.n
        self.num_replicas, self.rank = distributed.resolve_world(num_replicas, rank)
        if self.num_replicas > self.n:
            raise ValueError(
                f"num_replicas ({self.num_replicas}) must not exceed the n = {self.n} instances: "
                "every global batch gives each rank at least one distinct instance"
            )
        self._shard: RowShard | None = getattr(selector, "shard", None)
        if self._shard is not None and (self._shard.world, self._shard.rank) != (self.num_replicas, self.rank):
            raise ValueError(
                f"the selector holds {self._shard.describe()}, but this sampler is rank {self.rank} of "
                f"{self.num_replicas}: build both for the same ranks (shard_state=True does)"
            )
        if run_epochs is None:
            run_epochs = getattr(getattr(selector, "config", None), "num_epochs", None)
        self.budget = EpochBudget(budget, anneal, run_epochs)
        #: batches of a full pass, ceil(n / b); ``len(sampler)`` is the current epoch's count
        self.num_batches = math.ceil(self.n / self.batch_size)
        self.overhead_seconds = 0.0  # time spent in update(), scoring and drawing
        self._epoch = 0
        self._position = 0
        self._plan: EpochPlan | None = None
        self._warned_past_run = False

    # -- epochs -------------------------------------------------------------------
    def __len__(self) -> int:
        """The current epoch's batch count: ceil(n / b) for a full pass, fewer under a
        budget or in a pruned epoch, whose count is known once its plan is made: asking
        makes the plan, except under an active process group, where making it is a
        collective call that ``len`` must not hide (there the budget's count, an upper
        bound, is returned until the epoch starts)."""
        if (
            self._plan is None
            and self.selector.batch_mode(self._epoch) == PRUNED
            and not (self.num_replicas > 1 and distributed.active())
        ):
            self._prepare()
        if self._plan is not None:
            return self._plan.batches
        return self.budget.batches(self._epoch, self.n, self.batch_size)

    @property
    def epoch(self) -> int:
        return self._epoch

    @property
    def shard_state(self) -> bool:
        """Whether the selector holds only this rank's rows of its per-instance state."""
        return self._shard is not None

    def planned_batches(self, num_epochs: int | None = None) -> int:
        """The batches of epochs 0 .. num_epochs - 1 (default: ``run_epochs``) under the
        budget and its annealing; a pruning selector's epochs may come out shorter."""
        return self.budget.planned_batches(self.n, self.batch_size, num_epochs)

    def set_epoch(self, epoch: int) -> None:
        """Move to ``epoch`` (0-based). Re-setting the epoch a half-consumed iteration is
        in keeps its position, so a resumed run continues mid-epoch."""
        check_non_negative_int(epoch, "epoch")
        if epoch == self._epoch and self._plan is not None and 0 < self._position < self._plan.batches:
            return
        budget = self.budget
        if budget.fraction < 1 and budget.anneal > 0 and epoch >= budget.num_epochs and not self._warned_past_run:
            # The annealed epochs are the last of run_epochs (by default the selector's
            # num_epochs): a longer run trains every epoch past it as a full pass.
            self._warned_past_run = True
            warnings.warn(
                f"epoch {epoch} is past the run's {budget.num_epochs} epochs that the budget's anneal counts "
                f"from (run_epochs, by default the selector's num_epochs): every epoch from "
                f"{budget.num_epochs - full_pass_epochs(budget.num_epochs, budget.anneal)} on is a full pass; "
                "build the sampler with run_epochs= the number of epochs you train",
                RuntimeWarning,
                stacklevel=2,
            )
        self._epoch, self._position, self._plan = epoch, 0, None

    def __iter__(self) -> Iterator[list[int]]:
        if self._plan is not None and self._position >= self._plan.batches:
            self.set_epoch(self._epoch + 1)
        self._prepare()
        plan, plan_epoch = self._plan, self._epoch
        while self._position < plan.batches:
            started = time.perf_counter()
            batch = self._batch(self._position)
            self._position += 1
            handed = self._position
            self.overhead_seconds += time.perf_counter() - started
            yield batch[self.rank :: self.num_replicas].tolist()
            if self._plan is not plan:  # set_epoch / load_state_dict while this iteration was paused
                if handed >= plan.batches:
                    return  # its epoch was handed out in full: nothing is lost
                raise RuntimeError(
                    f"the sampler moved to another epoch or state (set_epoch or load_state_dict) while an "
                    f"iteration over epoch {plan_epoch} was under way, after {handed} of its {plan.batches} "
                    "batches; change the epoch between passes, then start a new one (iter(sampler), or a "
                    "new pass over the DataLoader)"
                )

    def _prepare(self) -> None:
        if self._plan is not None:
            return
        started = time.perf_counter()
        mode = self.selector.batch_mode(self._epoch)
        generator = torch.Generator().manual_seed(epoch_seed(self.seed, self._epoch))
        samples = self.budget.samples(self._epoch, self.n)
        order = draw = weights = None
        if mode == SHUFFLE:
            order = torch.randperm(self.n, generator=generator)
        elif mode == FIXED:
            order = _fixed_order(self.n, samples, generator)
        elif mode == WEIGHTED:
            probabilities = self.selector.probabilities(self._epoch).detach().to("cpu", torch.float64)
            if self.num_replicas > 1 and distributed.active():
                probabilities = distributed.from_rank_zero(probabilities)
            draw = WeightedDraw(probabilities)
        elif mode == PRUNED:
            weights = self.selector.pruned_weights(self._epoch)
            weights = check_pruned_weights(weights, self.n, f"{type(self.selector).__name__}.pruned_weights")
            if self.num_replicas > 1 and distributed.active():
                weights = distributed.from_rank_zero(weights)
            order = _kept_first(weights, generator)
            samples = min(samples, int((weights > 0).sum()))
        else:
            raise RuntimeError(f"selector returned an unknown batch mode {mode!r}")
        self._plan = EpochPlan(mode, generator, order, draw, weights, samples, math.ceil(samples / self.batch_size))
        self.overhead_seconds += time.perf_counter() - started

    def _batch(self, k: int) -> torch.Tensor:
        """The k-th global batch (before sharding across ranks).

        A batch smaller than the number of ranks (the last one, or every one when
        batch_size < num_replicas) is topped up to one instance per rank: in an ordered
        epoch with the instances that follow it in the order (cyclically), in a weighted
        epoch by drawing more; either way no index repeats (num_replicas <= n)."""
        plan = self._plan
        start = k * self.batch_size
        size = max(min(self.batch_size, plan.samples - start), self.num_replicas)
        if plan.order is not None:
            if start + size <= self.n:
                return plan.order[start : start + size]
            return plan.order[torch.arange(start, start + size) % self.n]
        return plan.draw.batch(size, plan.generator)

    # -- probabilities --------------------------------------------------------------
    @property
    def probabilities(self) -> torch.Tensor:
        """P (n,) float64 on the CPU used for the current epoch: uniform in an ordered
        epoch (also under a budget: its subset is uniform), the selector's in a weighted
        one, uniform over the kept instances (0 for the pruned) in a pruned one."""
        self._prepare()
        plan = self._plan
        if plan.weights is not None:
            kept = (plan.weights > 0).to(torch.float64)
            return kept / kept.sum()
        if plan.draw is None:
            return torch.full((self.n,), 1.0 / self.n, dtype=torch.float64)
        return plan.draw.probabilities.clone()

    def importance_weights(self, indices) -> torch.Tensor:
        """Per-instance loss weights for the current epoch, (b,) float32 for indices (b,).

        Weighted epoch: 1 / (n P_i), so that (1/b) Σ_batch w_i f_i is Lemma 2's (Appendix C)
        estimator of the full-data mean (1/n) Σ_i f_i: unbiased for draws with replacement,
        and for a batch drawn without replacement up to a relative bias of order b max P.
        Ordered epoch: 1 (every batch, and every budgeted epoch's subset, is a uniform
        sample, so the plain mean is already unbiased). Pruned epoch: the selector's
        weights (InfoBatch: 1/(1 - r) on the kept low-loss instances, 1 otherwise), so the
        epoch's summed weighted loss estimates the full pass's summed loss. A budget does
        not change any of this: it only shortens the epoch, each batch keeping its law (a
        budgeted pruned epoch walks a uniform subset of S of the kept instances, so kept / S
        times its summed weighted loss estimates the full pass's sum)."""
        index = as_index_tensor(indices, self.n, "indices")
        self._prepare()
        draw, kept = self._plan.draw, self._plan.weights
        if kept is not None:
            weights = kept[index].to(torch.float32)
        elif draw is None:
            weights = torch.ones(index.numel(), dtype=torch.float32)
        else:
            weights = (1.0 / (self.n * draw.probabilities[index])).to(torch.float32)
        return weights.to(indices.device) if isinstance(indices, torch.Tensor) else weights

    # -- per-step records -----------------------------------------------------------
    def update(self, indices, outputs: torch.Tensor, targets: torch.Tensor, *, kind: str = "logits") -> None:
        """Record one training step.

        indices: (b,) the batch's instance indices; outputs: (b, q) the model's logits
        (``kind="logits"``) or probabilities (``kind="probs"``), detached here;
        targets: (b, q) 0/1 labels, which must equal the training labels the selector
        was built with at those indices. The per-label BCE is computed here. Everything
        is checked before the state changes; under torch.distributed an invalid step on
        any rank raises the same error on every rank. A selector that reads no records
        (Random, Balance) makes this a no-op. With a row-sharded state each record is
        recorded by the rank owning its instance, which also checks its targets.
        """
        if not self.selector.uses_records:
            return
        started = time.perf_counter()
        routed = self._shard is not None and self.num_replicas > 1
        error, step = None, None
        try:
            step = self._checked_step(indices, outputs, targets, kind, labels_here=not routed)
        except (TypeError, ValueError, IndexError) as exc:
            if self.num_replicas == 1:
                raise
            error = exc
        index, outputs, targets = step if step is not None else (None, None, None)
        if routed:
            index, outputs, targets = self._owned_records(index, outputs, targets, kind, error)
        elif self.num_replicas > 1:
            index, outputs, targets = distributed.gather_records(index, outputs, targets, error, kind=kind)
            index = as_index_tensor(index, self.n, "indices (gathered from all ranks)")
        if index.numel():  # a rank owning none of a step's instances records nothing
            device = self.selector.device
            index = index.to(device, non_blocking=True)  # no stream synchronisation for a pageable copy
            self.selector.record_outputs(index, outputs, targets, kind, self._epoch)
        self.overhead_seconds += time.perf_counter() - started

    def _owned_records(self, index, outputs, targets, kind: str, error):
        """This step's records of the instances this rank owns, from every rank, with
        their targets checked against the labels held here (the one check a sender
        cannot make); (local rows (r,), outputs (r, q), targets (r, q)). Collective:
        every rank raises the same error if any rank's step is invalid."""
        owner = None if index is None else self._shard.owner(index)
        index, outputs, targets = distributed.route_records(index, outputs, targets, owner, error, kind=kind)
        failure = None
        try:
            if index.numel():
                as_index_tensor(index, self.n, "indices (gathered from all ranks)")  # one instance on two ranks
                check_targets_match(targets, OwnedRows(self.selector.labels, self._shard), index)
        except (TypeError, ValueError, IndexError) as exc:
            failure = exc
        distributed.agree(failure)
        return self._shard.local(index), outputs, targets

    def _checked_step(self, indices, outputs, targets, kind: str, labels_here: bool = True):
        """This rank's (index (b,) int64 CPU, outputs (b, q), targets (b, q)), in the
        dtypes given: the form of the step is checked here, its values by the selector's
        record path, which holds the whole step before its state changes (docs/fidelity.md,
        "Who checks what"). With several ranks the values are checked here as well, before
        the exchange, so that every rank raises the same error; ``labels_here=False``
        (row-sharded state) leaves the targets' match with the labels to the rank owning
        each instance (:meth:`_owned_records`)."""
        if kind not in ("logits", "probs"):
            raise ValueError(f"kind must be 'logits' or 'probs', got {kind!r}")
        # One process whose selector checks the values itself: the form only here. Several
        # ranks check everything before the exchange (one rank's bad step fails them all).
        values_here = self.num_replicas > 1 or not self.selector.checks_indices
        index = as_index_tensor(indices, self.n, "indices", check_values=values_here)
        device, q, b = self.selector.device, self.selector.q, index.numel()
        if q is None and isinstance(outputs, torch.Tensor) and outputs.dim() == 2:
            q = outputs.shape[1]
        outputs = check_matrix(outputs, "outputs", b, q, device).detach()
        targets = check_matrix(targets, "targets", b, q, device).detach()
        check_outputs(outputs, kind, values=False)
        check_real(targets, "targets")
        if self.num_replicas > 1:  # every rank must reject a bad step before the exchange, naming its rank
            check_step(outputs, kind, targets, self.selector.labels if labels_here else None, index)
        return index, outputs, targets

    # -- checkpoints ------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything needed to continue with the identical batch sequence.

        The position is the number of batches this sampler has handed out. With
        ``num_workers=0`` that is what the training loop has seen; with workers the
        DataLoader prefetches, so save at an epoch boundary for an exact resume.
        """
        plan = self._plan
        return {
            "format": _STATE_FORMAT,
            "n": self.n,
            "batch_size": self.batch_size,
            "seed": self.seed,
            "budget": self.budget.to_dict(),
            "epoch": self._epoch,
            "position": self._position,
            "plan": None if plan is None else plan.state_dict(),
            "selector": self.selector.state_dict(),
            "overhead_seconds": self.overhead_seconds,
        }

    def load_state_dict(self, state) -> None:
        """Restore from :meth:`state_dict`: this rank's saved state, or a list of every
        rank's saved states of a row-sharded run, which re-shards them to the rows this
        sampler's selector holds (another number of ranks, or unsharded). All or nothing:
        every field is checked before anything is assigned, so a rejected state leaves
        the sampler as it was."""
        states = list(state) if isinstance(state, (list, tuple)) else [state]
        if not states:
            raise ValueError("state_dict: got an empty list of saved states")
        fields = [self._checked_fields(saved) for saved in states]
        epoch, position, overhead, plan = fields[0]
        for other in fields[1:]:
            if other[:2] != (epoch, position) or not _same_plan(other[3], plan):
                raise ValueError(
                    "the saved states must come from the same step of one run: they differ in epoch, "
                    "position or epoch plan"
                )
        selectors = [saved["selector"] for saved in states]
        sharded = any(isinstance(s, dict) and s.get("shard") is not None for s in selectors)
        self.selector.load_state_dict(selectors if sharded else selectors[0])  # checks everything before assigning
        self._epoch, self._position, self._plan = epoch, position, plan
        self.overhead_seconds = float(overhead)

    def _checked_fields(self, state) -> tuple:
        """(epoch, position, overhead_seconds, plan) of one saved state, every field checked."""
        if not isinstance(state, dict) or state.get("format") != _STATE_FORMAT:
            raise ValueError("state_dict is not a SelectionBatchSampler state of a known format")
        for key in ("n", "batch_size", "seed"):
            if state.get(key) != getattr(self, key):
                raise ValueError(f"state_dict has {key}={state.get(key)!r}, this sampler has {getattr(self, key)!r}")
        budget = state.get("budget", EpochBudget().to_dict())  # states saved before budgets: full passes
        if budget != self.budget.to_dict():
            raise ValueError(
                f"state_dict has budget {budget!r}, this sampler has {self.budget.to_dict()!r}: "
                "build the sampler with the budget, anneal and run_epochs of the saved run"
            )
        for key in ("epoch", "position", "plan", "selector"):
            if key not in state:
                raise ValueError(f"state_dict is missing {key!r}")
        epoch, position = state["epoch"], state["position"]
        if not is_int(epoch) or epoch < 0:
            raise ValueError(f"state_dict epoch must be an integer >= 0, got {epoch!r}")
        if not is_int(position) or position < 0:
            raise ValueError(f"state_dict position must be an integer >= 0, got {position!r}")
        overhead = state.get("overhead_seconds", 0.0)
        if not is_real(overhead) or overhead < 0:
            raise ValueError(f"state_dict overhead_seconds must be a finite number >= 0, got {overhead!r}")
        return epoch, position, overhead, plan_from_state(state["plan"], self.n, position, self.batch_size)


def _same_plan(a: EpochPlan | None, b: EpochPlan | None) -> bool:
    """Whether two restored epoch plans are the same point of the same epoch."""
    if a is None or b is None:
        return a is b
    return a.same_point(b)


def row_shard_for(labels, num_replicas: int, rank: int) -> RowShard:
    """The RowShard of rank ``rank`` of ``num_replicas`` over the instances of ``labels``
    (n, q); the label checks are the selector's."""
    n = labels.shape[0] if isinstance(labels, torch.Tensor) and labels.dim() == 2 else check_labels(labels).shape[0]
    if num_replicas > n:
        raise ValueError(
            f"num_replicas ({num_replicas}) must not exceed the n = {n} instances: "
            "every global batch gives each rank at least one distinct instance"
        )
    return RowShard(n, num_replicas, rank)


def _fixed_order(n: int, samples: int, generator: torch.Generator) -> torch.Tensor:
    """A fixed-order epoch's order (n,): 0..n-1 for a full pass (the generator untouched);
    under a budget a uniform subset of ``samples`` instances in index order, then the
    others (reached only to top up a batch for the ranks). Taking the head of 0..n-1
    instead would train every warm-up epoch on the same instances."""
    if samples >= n:
        return torch.arange(n)
    perm = torch.randperm(n, generator=generator)
    return torch.cat([perm[:samples].sort().values, perm[samples:].sort().values])


def _kept_first(weights: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A pruned epoch's order (n,): the kept instances (weight > 0) in a shuffled order,
    then the pruned ones (reached only to top up a batch for the ranks)."""
    perm = torch.randperm(weights.numel(), generator=generator)
    kept = weights[perm] > 0
    return torch.cat([perm[kept], perm[~kept]])


class D2ACESampler(SelectionBatchSampler):
    """D2ACE batch selection as a DataLoader batch sampler.

    labels: (n, q) 0/1 training labels; features: (n, d) training inputs for the K-NN
    of Eq. 10 (or ``neighbors=`` (n, K), or ``num_neighbors=0`` in the config);
    preset: ``"paper"`` or ``"reference"``; config: a full :class:`D2ACEConfig`
    instead; device: where the per-instance state lives; budget, anneal, run_epochs:
    the epoch budget (see :class:`SelectionBatchSampler`; run_epochs defaults to the
    config's num_epochs); num_replicas, rank: for DistributedDataParallel (default:
    from the process group); shard_state: each rank holds only its rows of the
    per-instance state (about 1/num_replicas of it; see :class:`SelectionBatchSampler`).
    Off by default: every rank must then save its own ``state_dict``, where the usual
    rank-0-only checkpoint would keep only rank 0's rows.
    """

    def __init__(
        self,
        labels: torch.Tensor,
        batch_size: int,
        features: torch.Tensor | None = None,
        *,
        preset: str = "paper",
        config: D2ACEConfig | None = None,
        seed: int = 0,
        device: torch.device | str | None = None,
        neighbors: torch.Tensor | None = None,
        budget: float = 1.0,
        anneal: float = 0.0,
        run_epochs: int | None = None,
        num_replicas: int | None = None,
        rank: int | None = None,
        shard_state: bool = False,
    ) -> None:
        config = config if config is not None else D2ACEConfig.preset(preset)
        num_replicas, rank = distributed.resolve_world(num_replicas, rank)
        shard = row_shard_for(labels, num_replicas, rank) if shard_state else None
        selector = D2ACESelector(labels, features, config, neighbors=neighbors, device=device, shard=shard)
        super().__init__(
            selector,
            batch_size,
            seed,
            budget=budget,
            anneal=anneal,
            run_epochs=run_epochs,
            num_replicas=num_replicas,
            rank=rank,
        )

    @property
    def report(self):
        """The last :class:`~d2ace_ext.scoring.ScoreReport` (None before the first scoring)."""
        return self.selector.last_report
