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
    #: (n, q) bool training labels on ``device`` when the selector was built from them:
    #: the sampler compares each step's targets with these rows (None: no check)
    labels: torch.Tensor | None = None
    #: whether the method itself weights each instance's loss by the sampler's
    #: ``importance_weights`` (InfoBatch's rescaling of the kept instances): a training
    #: loop must then apply them, whatever its importance-weighting setting
    weights_losses: bool = False

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
        [0, n), on ``device``; outputs (b, q) logits (``kind="logits"``) or probabilities
        (``"probs"``), floating point in the dtype the model gave; targets (b, q) 0/1.

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

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore; must check everything before changing anything."""
