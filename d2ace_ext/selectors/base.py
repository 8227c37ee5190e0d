"""The interface every selector implements, so all plug into the same sampler.

A selector sees the per-step records the sampler passes on and, at each epoch
boundary, says how the next epoch's batches are formed: a shuffled permutation, the
fixed order 0..n-1, weighted draws from probabilities it computes, or a shuffled pass
over the instances it keeps (PRUNED: the others sit the epoch out, InfoBatch).
"""

from __future__ import annotations

import abc

import torch

from .. import functional
from ..row_shard import RowShard
from ..validation import check_step

SHUFFLE, FIXED, WEIGHTED, PRUNED = "shuffle", "fixed", "weighted", "pruned"


class Selector(abc.ABC):
    """Base class. Subclasses set ``n``, ``q`` and ``device`` in their constructor
    (``q = None`` for a selector that accepts any number of labels)."""

    n: int
    q: int | None
    device: torch.device
    #: whether :meth:`record` needs per-label losses (the sampler computes BCE only then)
    needs_loss: bool = True
    #: whether the selector reads the per-step records at all; when False the sampler's
    #: ``update`` returns at once, so a selector without records costs nothing per step
    uses_records: bool = True
    #: whether :meth:`record_outputs` checks the indices' range and repeats itself, before
    #: the state changes (D2ACE's record op does, on every path): the sampler then checks
    #: only their form, so a step pays for the check once
    checks_indices: bool = False
    #: (n, q) bool training labels on ``device`` when the selector was built from them:
    #: the sampler compares each step's targets with these rows (None: no check)
    labels: torch.Tensor | None = None
    #: whether the method itself weights each instance's loss by the sampler's
    #: ``importance_weights`` (InfoBatch's rescaling of the kept instances): a training
    #: loop must then apply them, whatever its importance-weighting setting
    weights_losses: bool = False
    #: this rank's rows of a row-sharded state (the sampler's ``shard_state=True``), or
    #: None: the selector holds every instance's state. A sharded selector's per-instance
    #: tensors and ``labels`` hold only those rows; ``record`` receives local row indices.
    shard: RowShard | None = None

    # -- what the selector is: read by the registry, ``make_sampler`` and the harness, so
    # that adding a selector touches its own file and the registry only. The five
    # without a default must be stated by every registered selector (the registry
    # refuses one that leaves any out: ``registry.check_metadata``). --
    #: its name as the paper prints it, in tables, figures and messages ("Hard-Imb")
    display_name: str
    #: the frozen dataclass whose fields are its keyword options (None: it takes none)
    config_class: type | None
    #: whether it takes ``seed=`` for a generator of its own; ``make_sampler`` passes
    #: the sampler's seed on
    takes_seed: bool
    #: whether it builds a K-NN over the (n, d) training features (``neighbors=`` (n, K)
    #: instead); its config then has ``num_neighbors``, and K = 0 needs no features
    uses_neighbors: bool
    #: the config fields that count epochs ("num_epochs" first): a run of E epochs sets
    #: ``num_epochs = E`` and scales the others (warm-up, D2ACE's t_start / t_end) by
    #: E over the paper's length (``factory.scheduled_options``); () for none
    schedule_fields: tuple[str, ...]
    #: named configurations ``preset=`` picks from ({name: config}; D2ACE's "paper" and
    #: "reference"); None: the selector has no presets (its runs' key preset is "-")
    presets: dict | None = None
    #: keyword options besides the config's fields that its builder takes (D2ACE's
    #: ``ablation``; ``seed``, ``preset`` and ``neighbors`` follow from the above)
    extra_options: tuple[str, ...] = ()
    #: its colour in every figure (None: a stable spare colour picked by its name)
    color: str | None = None
    #: where its series stands in tables and figure legends, lowest first (None: after
    #: every ranked selector)
    display_rank: int | None = None

    @staticmethod
    def static_label_weights(labels: torch.Tensor) -> torch.Tensor | None:
        """The fixed per-label priority (q,) float64 the selector gives labels (n, q) 0/1
        from the training labels alone, before anything is recorded, for the figures'
        label-weight panels (Fig. 2 / A6); None for a selector without one."""
        return None

    @abc.abstractmethod
    def batch_mode(self, epoch: int) -> str:
        """How epoch ``epoch`` (0-based) forms batches: SHUFFLE, FIXED, WEIGHTED or PRUNED."""

    def record(self, indices: torch.Tensor, probs: torch.Tensor, losses: torch.Tensor | None, epoch: int) -> None:
        """One training step. indices (b,) int64 distinct, on ``device``;
        probs, losses (b, q) float32 on ``device``. Inputs are already validated."""

    def record_outputs(
        self, indices: torch.Tensor, outputs: torch.Tensor, targets: torch.Tensor, kind: str, epoch: int
    ) -> None:
        """One training step from raw model outputs: indices (b,) int64 distinct, in
        [0, n) (local rows when :attr:`shard` is set), on ``device``; outputs (b, q)
        logits (``kind="logits"``) or probabilities (``"probs"``), floating point in the
        dtype the model gave; targets (b, q) 0/1.

        The step's values are checked here, before the state changes, in the dtype given
        (a cast could round a bad value into range): no NaN outputs, probabilities in
        [0, 1], 0/1 targets equal to :attr:`labels` at the indices. The default checks
        them (:func:`~d2ace_ext.validation.check_step`, one host read), turns the outputs
        into float32 probabilities and per-label BCE and calls :meth:`record`; a selector
        with a fused kernel overrides this and checks through it."""
        check_step(outputs, kind, targets, self.labels, indices)
        probs, losses = functional.probabilities_and_losses(outputs.to(torch.float32), targets.to(torch.float32), kind)
        self.record(indices, probs, losses if self.needs_loss else None, epoch)

    def probabilities(self, epoch: int) -> torch.Tensor:
        """Sampling probabilities (n,) for a WEIGHTED epoch, computed from the records
        so far. Called once, at the start of that epoch."""
        raise NotImplementedError(f"{type(self).__name__} has no weighted epochs")

    def pruned_weights(self, epoch: int) -> torch.Tensor:
        """Loss weights (n,) float64 >= 0 for a PRUNED epoch: 0 prunes the instance from
        the epoch, a positive value keeps it with that weight on its loss. Called once,
        at the start of that epoch; the sampler walks the kept instances in a shuffled
        order and hands the weights out through ``importance_weights``."""
        raise NotImplementedError(f"{type(self).__name__} has no pruned epochs")

    def own_rows(self, full: torch.Tensor) -> torch.Tensor:
        """The rows held here of a per-instance tensor (n, ...): all of it unless sharded."""
        return full if self.shard is None else full[self.shard.rows(full.device)]

    def all_rows(self, held: torch.Tensor) -> torch.Tensor:
        """A per-instance tensor of the rows held here -> of all n instances, on every
        rank (gathered from the other ranks when sharded: a collective call)."""
        return held if self.shard is None else self.shard.gather(held)

    def state_dict(self) -> dict:
        """The selector's state; {} for one that keeps none (Random)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore; must check everything before changing anything. A selector with
        per-instance state also takes a list of every rank's saved states (re-sharding).

        This default, for a selector that keeps no state, accepts only the {} its
        ``state_dict`` saves: any other state was saved by another selector, whose
        sampler checkpoint would otherwise load here with that run's epoch plan."""
        if not isinstance(state, dict) or state:
            got = f"keys {sorted(map(str, state))}" if isinstance(state, dict) else type(state).__name__
            raise ValueError(
                f"{type(self).__name__} keeps no state (its state_dict() is {{}}), but the saved selector state "
                f"has {got}: it was saved by another selector; load it into a sampler built with that selector"
            )
