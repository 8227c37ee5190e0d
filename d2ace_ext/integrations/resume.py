"""The sampler's state as the training loop has consumed it, for exact mid-epoch resume.

``SelectionBatchSampler.state_dict`` records how many batches the sampler has handed
out. Trainers fetch ahead of the step they run: Lightning's fetcher holds one batch,
Accelerate's ``DataLoaderShard`` iterates one ahead, DataLoader workers prefetch
``num_workers * prefetch_factor``. A state saved mid-epoch would then skip those
batches on resume. :class:`LoopCheckpoint` counts the batches the loop has consumed
(one ``update`` per step) and saves the sampler state rewound to that count.

Rewinding a weighted epoch means restoring the CPU generator to where it stood after
the consumed batches. The batches are re-drawn from the epoch's saved probabilities by
a plain :class:`SelectionBatchSampler` around a stand-in selector (no scoring, no
collective call), and the rewound state is used only if re-drawing all handed-out
batches lands exactly on the saved generator state; otherwise a warning says the
resume will skip the prefetched batches.
"""

from __future__ import annotations

import sys
import warnings

import torch

from ..sampler import SelectionBatchSampler, epoch_seed
from ..selectors.base import WEIGHTED, Selector
from ..validation import is_int


class _SavedPlan(Selector):
    """Stands in for the real selector while a saved epoch plan is re-drawn."""

    needs_loss = False

    def __init__(self, n: int) -> None:
        self.n, self.q, self.device = n, None, torch.device("cpu")

    def batch_mode(self, epoch: int) -> str:
        return WEIGHTED


def _redraw(sampler: SelectionBatchSampler, state: dict, consumed: int) -> dict | None:
    """The plan's generator state after ``consumed`` batches, or None if re-drawing
    does not reproduce the saved generator."""
    plan = state["plan"]
    budget = sampler.budget
    replay = SelectionBatchSampler(
        _SavedPlan(sampler.n),
        sampler.batch_size,
        sampler.seed,
        budget=budget.fraction,
        anneal=budget.anneal,
        run_epochs=budget.num_epochs,
        num_replicas=sampler.num_replicas,
        rank=sampler.rank,
    )
    fresh = torch.Generator().manual_seed(epoch_seed(sampler.seed, state["epoch"])).get_state()
    replay.load_state_dict({**state, "selector": {}, "position": 0, "plan": {**plan, "generator": fresh}})
    batches = iter(replay)
    rewound = None
    for k in range(state["position"] + 1):
        if k == consumed:
            rewound = replay.state_dict()["plan"]["generator"]
        if k < state["position"]:
            next(batches)
    if not torch.equal(replay.state_dict()["plan"]["generator"], plan["generator"]):
        return None
    return rewound


def rewound_state(sampler: SelectionBatchSampler, consumed: int) -> dict:
    """``sampler.state_dict()`` as if only ``consumed`` batches of the current epoch had
    been handed out (``consumed`` <= the sampler's position; larger values change nothing)."""
    state = sampler.state_dict()
    position, plan = state["position"], state["plan"]
    if plan is None or consumed >= position:
        return state
    if plan["mode"] == WEIGHTED and plan.get("order") is None:
        generator = _redraw(sampler, state, consumed)
        if generator is None:
            warnings.warn(
                "could not rewind the sampler state to the consumed batches; a resume from it "
                f"skips the {position - consumed} batch(es) prefetched when it was saved",
                RuntimeWarning,
                stacklevel=2,
            )
            return state
        state["plan"] = {**plan, "generator": generator}
    # a shuffled or fixed epoch keeps its whole order in the plan: the position is enough
    state["position"] = consumed
    return state


def _check_not_resharded(sampler: SelectionBatchSampler) -> None:
    """Under Accelerate, refuse a sampler that ``accelerator.prepare(loader)`` wrapped in
    ``BatchSamplerShard`` (its ranks would get different batch counts and DDP would hang)."""
    if "accelerate" in sys.modules:  # nothing else can have wrapped it; never import it here
        from .accelerate import check_sampler

        check_sampler(sampler)


def _warn_if_accelerate_saves_one_shard(sampler: SelectionBatchSampler) -> None:
    """Under Accelerate, warn that ``save_state`` keeps only rank 0's rows of a sharded
    selector state: it writes registered objects (this tracker) from the main process
    only, so the other ranks' rows would be lost, found only when the resume fails."""
    if "accelerate" in sys.modules and sampler.shard_state and sampler.num_replicas > 1:
        warnings.warn(
            f"the sampler's selector state is sharded over {sampler.num_replicas} ranks (shard_state=True), but "
            "Accelerate's save_state writes registered objects from the main process only: its checkpoints "
            "cannot restore the other ranks' rows. Save every rank's LoopCheckpoint.state_dict() yourself "
            "(docs/scaling.md), or build the sampler without shard_state",
            RuntimeWarning,
            stacklevel=3,
        )


class LoopCheckpoint:
    """Counts the batches a training loop consumes and saves the sampler state as of
    that count. Call :meth:`update` instead of ``sampler.update`` (or :meth:`step`
    after it) once per training step; save :meth:`state_dict` with the checkpoint
    (e.g. ``accelerator.register_for_checkpointing(tracker)``).

    Under Accelerate it raises ValueError, when made and again at the first step, if
    the sampler was prepared with plain ``accelerator.prepare(loader)`` on several
    processes (use :func:`~d2ace_ext.integrations.accelerate.prepare_loader`). After
    :meth:`load_state_dict` a step at an epoch before :attr:`resume_epoch` raises
    RuntimeError (the loop went back to epochs already trained)."""

    def __init__(self, sampler: SelectionBatchSampler) -> None:
        if not isinstance(sampler, SelectionBatchSampler):
            raise TypeError(f"sampler must be a SelectionBatchSampler, got {type(sampler).__name__}")
        _check_not_resharded(sampler)
        _warn_if_accelerate_saves_one_shard(sampler)
        self.sampler = sampler
        self._epoch = sampler.epoch
        self._count = 0
        self._stepped = False
        self._resumed_at: int | None = None  # resume_epoch after load_state_dict: no step may come before it

    @property
    def consumed(self) -> int:
        """Batches of the sampler's current epoch the loop has finished."""
        return self._count if self._epoch == self.sampler.epoch else 0

    @property
    def resume_epoch(self) -> int:
        """The epoch a resumed loop continues with: the sampler's epoch, or the next one
        when every batch of it was consumed (``set_epoch`` on a finished epoch restarts it)."""
        return self.sampler.epoch + (1 if self.consumed >= len(self.sampler) else 0)

    def step(self) -> None:
        """One batch consumed (call after each training step)."""
        self._first_step_check()
        self._check_not_behind_resume()
        if self._epoch != self.sampler.epoch:
            self._epoch, self._count = self.sampler.epoch, 0
        self._count += 1

    def update(self, indices, outputs: torch.Tensor, targets: torch.Tensor, *, kind: str = "logits") -> None:
        """``sampler.update(indices, outputs, targets, kind=kind)``, then :meth:`step`."""
        self._first_step_check()  # before update's collective call, which a re-sharded rank would hang in
        self._check_not_behind_resume()  # before a wrong epoch's records reach the selector
        self.sampler.update(indices, outputs, targets, kind=kind)
        self.step()

    def _first_step_check(self) -> None:
        if not self._stepped:  # the loader may have been prepared after this tracker was made
            _check_not_resharded(self.sampler)
            self._stepped = True

    def _check_not_behind_resume(self) -> None:
        """A resumed loop whose sampler went back before the epoch it resumed at would train
        finished epochs again, silently: Accelerate's prepared loader sets its own iteration
        count (0 after a restart) as the sampler's epoch unless ``loader.set_epoch`` is called."""
        if self._resumed_at is not None and self.sampler.epoch < self._resumed_at:
            raise RuntimeError(
                f"the sampler is at epoch {self.sampler.epoch}, but this loop resumed at epoch {self._resumed_at}: "
                "start the epoch loop at tracker.resume_epoch and set each epoch on the loader you iterate "
                "(under Accelerate loader.set_epoch(epoch), not sampler.set_epoch: the prepared loader sets its "
                "own iteration count as the sampler's epoch)"
            )

    def state_dict(self) -> dict:
        return {"sampler": rewound_state(self.sampler, self.consumed), "consumed": self.consumed}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`'s ``{"sampler": ..., "consumed": ...}``; a damaged one
        raises ValueError and changes nothing."""
        if not isinstance(state, dict) or not {"sampler", "consumed"} <= state.keys():
            got = sorted(state) if isinstance(state, dict) else type(state).__name__
            raise ValueError(
                f"a LoopCheckpoint state is a dict with 'sampler' and 'consumed' (what LoopCheckpoint.state_dict "
                f"saves), got {got}; a bare sampler state goes to sampler.load_state_dict"
            )
        saved = state["sampler"]  # one state, or (re-sharding) every rank's, all at the same step
        first = saved[0] if isinstance(saved, (list, tuple)) and saved else saved
        consumed, position = state["consumed"], first.get("position") if isinstance(first, dict) else None
        if not is_int(consumed) or not is_int(position) or not 0 <= consumed <= position:
            raise ValueError(
                f"a LoopCheckpoint state's 'consumed' must be an integer in [0, the sampler's position {position!r}], "
                f"got {consumed!r}; the saved state is corrupt"
            )
        self.sampler.load_state_dict(state["sampler"])
        self._epoch, self._count = self.sampler.epoch, int(state["consumed"])
        self._resumed_at = self.resume_epoch
