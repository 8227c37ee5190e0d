"""Per-visit records of every training instance (the inputs of Eqs. 1-5).

For each instance the state keeps a ring of its last n_t predicted probabilities, how
many entries were ever pushed, the epoch of its last visit, the per-label BCE of its
latest visit and the flip EMA f̄ of Eq. 4. An instance never visited reads as a
prediction of 0.5 with loss ln 2 (maximal uncertainty), and a flip EMA of 0.

The window, loss and flip tensors are stored in ``dtype`` (float32; float16 or
bfloat16 for a compact state, ``D2ACEConfig.state_dtype``); arithmetic is float32 (or
the state's own dtype when wider), each stored value rounded once when written (a window
value to the nearest one on its side of the flip threshold: functional.stored_on_its_side).
"""

from __future__ import annotations

import math

import torch

from . import functional, ops
from .ring import PredictionRing
from .scoring import record_metrics
from .tensor_state import as_parts, load_rows, saved_tensors


class VisitState(PredictionRing):
    """Recorded predictions of n instances over q labels, on one device.

    Tensors: window (n, n_t, q) ``dtype``; pushes (n,) int64; last_epoch (n,) int64
    (-1 = never); loss (n, q) ``dtype``; flip_average (n, q) ``dtype``; flip_base
    (n, q) ``dtype`` = f̄ before the current epoch's update (needed when one epoch's
    entry is overwritten by a later visit in that same epoch; visit windows, which push
    on every visit, leave it at 0). ``dtype``: float32, or
    float16 / bfloat16 for a compact state (recorded through the pure-PyTorch path).
    """

    TENSORS = (*PredictionRing.TENSORS, "loss", "flip_average", "flip_base")

    def __init__(
        self, n: int, q: int, window_size: int, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
    ) -> None:
        super().__init__(n, q, window_size, device, dtype)
        device = self.window.device
        self.n, self.q = n, q
        self.loss = torch.full((n, q), math.log(2.0), dtype=dtype, device=device)
        self.flip_average = torch.zeros(n, q, dtype=dtype, device=device)
        self.flip_base = torch.zeros(n, q, dtype=dtype, device=device)
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
        """Record one batch: indices (b,) int64 distinct; probs, losses (b, q) float32,
        rounded to the state's dtype when stored (:func:`functional.record_visits`:
        ``per_epoch=True`` keeps one window entry per epoch, otherwise every visit pushes a
        new entry, as the published code does)."""
        functional.record_visits(
            self.window,
            self.pushes,
            self.last_epoch,
            self.loss,
            self.flip_average,
            self.flip_base,
            indices,
            probs,
            losses,
            epoch,
            per_epoch=per_epoch,
            flip_on=flip_on,
            flip_threshold=flip_threshold,
            lambda2=lambda2,
        )

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
        probabilities; targets (b, q) 0/1. A compact state records through the op's
        pure-PyTorch definition (the kernels read float32 state).
        """
        ops.record_step(
            self.window,
            self.pushes,
            self.last_epoch,
            self.loss,
            self.flip_average,
            self.flip_base,
            self.index_errors,
            indices,
            outputs,
            targets,
            epoch,
            from_logits=from_logits,
            per_epoch=per_epoch,
            flip_on=flip_on,
            flip_threshold=flip_threshold,
            lambda2=lambda2,
            labels=labels,
        )

    def metrics(self, lambda1: float, loss_transform: str, dtype: torch.dtype = torch.float64):
        """U (Eq. 3) and H (Eq. 5) of every instance, each (n, q) in ``dtype``
        (:func:`scoring.record_metrics`, Eq. 1 by :func:`ops.binary_entropy`)."""
        return record_metrics(
            self.window,
            self.pushes,
            self.loss,
            self.flip_average,
            lambda1,
            loss_transform,
            dtype,
            entropy=ops.binary_entropy,
        )

    def state_dict(self) -> dict:
        return saved_tensors(self, self.TENSORS)

    def load_state_dict(self, state: dict) -> None:
        """Restore from :meth:`state_dict`; checks every tensor's shape, dtype and values
        (:mod:`~d2ace_ext.tensor_state`) before changing anything."""
        load_rows(self, self.TENSORS, [(part, None) for part in as_parts(state, "visit state")], None, "visit state")
