"""Per-visit records of every training instance (the inputs of Eqs. 1-5).

For each instance the state keeps a ring of its last n_t predicted probabilities, how
many entries were ever pushed, the epoch of its last visit, the per-label BCE of its
latest visit and the flip EMA f̄ of Eq. 4. An instance never visited reads as a
prediction of 0.5 with loss ln 2 (maximal uncertainty), and a flip EMA of 0.

The window, loss and flip tensors are stored in ``dtype`` (float32; float16 or
bfloat16 for a compact state, ``D2ACEConfig.state_dtype``); arithmetic is float32 (or
the state's own dtype when wider), each stored value rounded once when written.
"""
from __future__ import annotations

import math

import torch

from . import functional, ops
from .ops import binary_entropy
from .ring import PredictionRing
from .tensor_state import as_parts, load_rows, saved_tensors


class VisitState(PredictionRing):
    """Recorded predictions of n instances over q labels, on one device.

    Tensors: window (n, n_t, q) ``dtype``; pushes (n,) int64; last_epoch (n,) int64
    (-1 = never); loss (n, q) ``dtype``; flip_average (n, q) ``dtype``; flip_base
    (n, q) ``dtype`` = f̄ before the current epoch's update (needed when one epoch's
    entry is overwritten by a later visit in that same epoch). ``dtype``: float32, or
    float16 / bfloat16 for a compact state (recorded through the pure-PyTorch path).
    """

    TENSORS = (*PredictionRing.TENSORS, "loss", "flip_average", "flip_base")

    def __init__(self, n: int, q: int, window_size: int, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32) -> None:
        super().__init__(n, q, window_size, device, dtype)
        device = self.window.device
        self.n, self.q = n, q
        self.loss = torch.full((n, q), math.log(2.0), dtype=dtype, device=device)
        self.flip_average = torch.zeros(n, q, dtype=dtype, device=device)
        self.flip_base = torch.zeros(n, q, dtype=dtype, device=device)
        # Rows the CUDA record_step kernel skipped for an index outside [0, n): counted on
        # the device (no synchronisation per step), read at the next scoring. Not saved.
        self.index_errors = torch.zeros(1, dtype=torch.int64, device=device)
        self._workspace: torch.Tensor | None = None

    def raise_index_errors(self) -> None:
        """Raise if the CUDA record_step skipped rows for out-of-range indices since the
        last call (and reset the count). A no-op on the CPU, whose kernel raises at once;
        on CUDA one synchronisation."""
        if self.index_errors.device.type == "cpu":
            return
        skipped = int(self.index_errors.item())
        if skipped:
            self.index_errors.zero_()
            raise RuntimeError(
                f"record_step: indices must lie in [0, {self.n}); {skipped} batch row(s) recorded on "
                f"{self.device} since the last scoring had an index outside it and were skipped. "
                "Check the indices passed to the sampler (or to ops.record_step with indices_checked=True)"
            )

    def workspace(self) -> torch.Tensor:
        """A (2, n, q) float32 buffer the scoring op writes U and H into, kept between
        epochs (not part of the saved state)."""
        if self._workspace is None:
            self._workspace = torch.empty(2, self.n, self.q, dtype=torch.float32, device=self.device)
        return self._workspace

    @property
    def device(self) -> torch.device:
        return self.window.device

    def native(self) -> bool:
        """Whether the native kernels serve this state: its device has them and its
        tensors are float32 (a compact state takes the pure-PyTorch path)."""
        return self.window.dtype == torch.float32 and ops.native_for(self.window)

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
        (rounded to the state's dtype when stored).

        ``per_epoch=True`` keeps one window entry per epoch (a second visit in the same
        epoch overwrites it and redoes that epoch's flip update); otherwise every visit
        pushes a new entry (the published code).
        """
        visit = self.visit(indices, epoch, per_epoch)
        compute = torch.promote_types(self.window.dtype, torch.float32)
        probs = probs.to(compute)
        previous = self.window[indices, visit.previous_slot].to(compute)
        flip = functional.flip_indicator(probs, previous, flip_on, flip_threshold)
        flip = flip * visit.has_previous.unsqueeze(1).to(compute)
        base = torch.where(visit.push.unsqueeze(1), self.flip_average[indices], self.flip_base[indices])
        self.flip_base[indices] = base
        self.flip_average[indices] = functional.flip_ema(flip, base.to(compute), lambda2).to(self.flip_average.dtype)
        self.write(indices, visit, probs, epoch)
        self.loss[indices] = losses.to(self.loss.dtype)

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
        indices_checked: bool = False,
    ) -> None:
        """Record one batch from the model's outputs: indices (b,) int64 distinct;
        outputs (b, q) float32 logits (``from_logits``) or probabilities; targets (b, q)
        float32 0/1. One native launch when the extension serves this device; otherwise
        :func:`functional.probabilities_and_losses` followed by :meth:`record`.
        """
        if self.native():
            ops.record_step(self, indices, outputs, targets, epoch, from_logits=from_logits, per_epoch=per_epoch,
                            flip_on=flip_on, flip_threshold=flip_threshold, lambda2=lambda2,
                            indices_checked=indices_checked)
            return
        probs, losses = functional.probabilities_and_losses(outputs, targets, "logits" if from_logits else "probs")
        self.record(indices, probs, losses, epoch, per_epoch=per_epoch, flip_on=flip_on,
                    flip_threshold=flip_threshold, lambda2=lambda2)

    def metrics(self, lambda1: float, loss_transform: str, dtype: torch.dtype = torch.float64):
        """U (Eq. 3) and H (Eq. 5) of every instance, each (n, q) in ``dtype``.

        Rows are processed in blocks so the float64 temporaries of the (n, n_t, q)
        window stay bounded (a 1,000,000 × 100 state would otherwise need > 10 GB).
        """
        unc = torch.empty(self.n, self.q, dtype=dtype, device=self.device)
        hard = torch.empty_like(unc)
        for block in self.blocks():
            window, pushes = self.window[block].to(dtype), self.pushes[block]
            latest = functional.latest_probability(window, pushes)
            fluctuation = functional.window_fluctuation(window, pushes)
            unc[block] = functional.uncertainty(binary_entropy(latest), fluctuation, lambda1)
            hard[block] = functional.hardness(
                self.loss[block].to(dtype), self.flip_average[block].to(dtype), loss_transform
            )
        return unc, hard

    def state_dict(self) -> dict:
        return saved_tensors(self, self.TENSORS)

    def load_state_dict(self, state: dict) -> None:
        """Restore from :meth:`state_dict`; checks every tensor's shape, dtype and values
        (:mod:`~d2ace_ext.tensor_state`) before changing anything."""
        load_rows(self, self.TENSORS, [(part, None) for part in as_parts(state, "visit state")], None, "visit state")
