"""Per-visit records of every training instance (the inputs of Eqs. 1-5).

For each instance the state keeps a ring of its last n_t predicted probabilities, how
many entries were ever pushed, the epoch of its last visit, the per-label BCE of its
latest visit and the flip EMA f̄ of Eq. 4. An instance never visited reads as a
prediction of 0.5 with loss ln 2 (maximal uncertainty), and a flip EMA of 0.
"""
from __future__ import annotations

import math

import torch

from . import functional, ops
from .scoring import record_metrics


class VisitState:
    """Recorded predictions of n instances over q labels, on one device.

    Tensors: window (n, n_t, q) float32; pushes (n,) int64; last_epoch (n,) int64
    (-1 = never); loss (n, q) float32; flip_average (n, q) float32; flip_base (n, q)
    float32 = f̄ before the current epoch's update (needed when one epoch's entry is
    overwritten by a later visit in that same epoch).
    """

    TENSORS = ("window", "pushes", "last_epoch", "loss", "flip_average", "flip_base")

    def __init__(self, n: int, q: int, window_size: int, device: torch.device | str = "cpu") -> None:
        device = torch.device(device)
        self.n, self.q, self.window_size = n, q, window_size
        self.window = torch.full((n, window_size, q), 0.5, dtype=torch.float32, device=device)
        self.pushes = torch.zeros(n, dtype=torch.int64, device=device)
        self.last_epoch = torch.full((n,), -1, dtype=torch.int64, device=device)
        self.loss = torch.full((n, q), math.log(2.0), dtype=torch.float32, device=device)
        self.flip_average = torch.zeros(n, q, dtype=torch.float32, device=device)
        self.flip_base = torch.zeros(n, q, dtype=torch.float32, device=device)
        # Rows the CUDA record_step kernel skipped for an index outside [0, n): counted on
        # the device (no synchronisation per step), read at the next scoring
        # (ops.score_visits). Not saved.
        self.index_errors = torch.zeros(1, dtype=torch.int64, device=device)
        self._workspace: torch.Tensor | None = None

    def workspace(self) -> torch.Tensor:
        """A (2, n, q) float32 buffer the scoring op writes U and H into, kept between
        epochs (not part of the saved state)."""
        if self._workspace is None:
            self._workspace = torch.empty(2, self.n, self.q, dtype=torch.float32, device=self.device)
        return self._workspace

    @property
    def device(self) -> torch.device:
        return self.window.device

    def record(
        self,
        indices: torch.Tensor,
        probs: torch.Tensor,
        losses: torch.Tensor,
        epoch: int,
        *,
        per_epoch: bool,
        flip_on: str,
        flip_threshold: float,
        lambda2: float,
    ) -> None:
        """Record one batch: indices (b,) int64 distinct; probs, losses (b, q) float32
        (:func:`functional.record_visits`: ``per_epoch=True`` keeps one window entry per
        epoch, otherwise every visit pushes a new entry, as the published code does)."""
        functional.record_visits(self.window, self.pushes, self.last_epoch, self.loss, self.flip_average,
                                 self.flip_base, indices, probs, losses, epoch, per_epoch=per_epoch, flip_on=flip_on,
                                 flip_threshold=flip_threshold, lambda2=lambda2)

    def record_outputs(
        self,
        indices: torch.Tensor,
        outputs: torch.Tensor,
        targets: torch.Tensor,
        epoch: int,
        *,
        from_logits: bool,
        per_epoch: bool,
        flip_on: str,
        flip_threshold: float,
        lambda2: float,
        labels: torch.Tensor | None = None,
    ) -> None:
        """Record one batch from the model's outputs with :func:`ops.record_step` (which
        checks its values, and targets against ``labels`` (n, q) bool when given, before
        changing anything): indices (b,) int64; outputs (b, q) logits (``from_logits``) or
        probabilities; targets (b, q) 0/1.
        """
        ops.record_step(self.window, self.pushes, self.last_epoch, self.loss, self.flip_average, self.flip_base,
                        self.index_errors, indices, outputs, targets, epoch, from_logits=from_logits,
                        per_epoch=per_epoch, flip_on=flip_on, flip_threshold=flip_threshold, lambda2=lambda2,
                        labels=labels)

    def metrics(self, lambda1: float, loss_transform: str, dtype: torch.dtype = torch.float64):
        """U (Eq. 3) and H (Eq. 5) of every instance, each (n, q) in ``dtype``
        (:func:`scoring.record_metrics`, Eq. 1 by :func:`ops.binary_entropy`)."""
        return record_metrics(self.window, self.pushes, self.loss, self.flip_average, lambda1, loss_transform, dtype,
                              entropy=ops.binary_entropy)

    def state_dict(self) -> dict:
        return {name: getattr(self, name).clone() for name in self.TENSORS}

    def load_state_dict(self, state: dict) -> None:
        """Restore from :meth:`state_dict`; checks every tensor's shape, dtype and values
        before changing anything."""
        if not isinstance(state, dict):
            raise ValueError(f"visit state must be a dict, got {type(state).__name__}")
        for name in self.TENSORS:
            if name not in state:
                raise KeyError(f"visit state is missing {name!r}")
            mine, theirs = getattr(self, name), state[name]
            if not isinstance(theirs, torch.Tensor):
                raise ValueError(f"visit state {name!r} must be a tensor, got {type(theirs).__name__}")
            if tuple(theirs.shape) != tuple(mine.shape) or theirs.dtype != mine.dtype:
                raise ValueError(
                    f"visit state {name!r} has shape {tuple(theirs.shape)} and dtype {theirs.dtype}, "
                    f"expected {tuple(mine.shape)} and {mine.dtype}"
                )
            if not bool(_VALUE_RULES[name][0](theirs).all()):
                raise ValueError(f"visit state {name!r} must hold {_VALUE_RULES[name][1]}; the saved state is corrupt")
        for name in self.TENSORS:
            getattr(self, name).copy_(state[name])


# What each saved tensor may hold: probabilities and flip EMAs in [0, 1] (NaN fails
# every comparison), counts >= 0, epochs >= -1 (never visited), losses >= 0 or +inf.
_VALUE_RULES = {
    "window": (lambda t: (t >= 0) & (t <= 1), "probabilities in [0, 1]"),
    "pushes": (lambda t: t >= 0, "counts >= 0"),
    "last_epoch": (lambda t: t >= -1, "epochs >= -1"),
    "loss": (lambda t: t >= 0, "losses >= 0 (+inf allowed)"),
    "flip_average": (lambda t: (t >= 0) & (t <= 1), "values in [0, 1]"),
    "flip_base": (lambda t: (t >= 0) & (t <= 1), "values in [0, 1]"),
}
