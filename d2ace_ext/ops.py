"""Typed entry points of the native operators, each with its pure-PyTorch twin.

Each wrapper dispatches to ``torch.ops.d2ace_ext.<op>`` when the extension is loaded
and has a kernel for the tensors' device (CPU always; CUDA when built with CUDA), and to
the pure-PyTorch definition otherwise. The fake kernels registered here give output
shapes without computing, for ``torch.compile`` and ``torch.library.opcheck``.
"""
from __future__ import annotations

import torch

from . import functional
from ._extension import extension_loaded, native_has_cuda, use_native
from .validation import as_index_tensor

if extension_loaded():

    @torch.library.register_fake("d2ace_ext::binary_entropy")
    def _binary_entropy_fake(probs: torch.Tensor) -> torch.Tensor:
        torch._check(probs.is_floating_point(), lambda: "binary_entropy: probs must be floating point")
        return torch.empty_like(probs, memory_format=torch.contiguous_format)

    @torch.library.register_fake("d2ace_ext::record_step")
    def _record_step_fake(window, pushes, last_epoch, loss, flip_average, flip_base, index_errors, indices,
                          outputs, targets, epoch, from_logits, per_epoch, flip_on_probability, flip_threshold,
                          lambda2) -> None:
        torch._check(window.dim() == 3, lambda: "record_step: window must be (n, n_t, q)")
        torch._check(outputs.shape == targets.shape, lambda: "record_step: outputs and targets differ in shape")
        return None

    @torch.library.register_fake("d2ace_ext::score_visits")
    def _score_visits_fake(window, pushes, loss, flip_average, label_ptr, label_cols, context_ptr,
                           context_cols, workspace, lambda1, two_minus_exp, norm_eps, row_normalize,
                           label_weights_in_phi):
        torch._check(window.dim() == 3, lambda: "score_visits: window must be (n, n_t, q)")
        n, _, q = window.shape
        make = lambda *shape: window.new_empty(shape, dtype=torch.float64)  # noqa: E731
        return make(2, q), make(2, q, q), make(2, n), make(2, n), make(2, 2)

    @torch.library.register_fake("d2ace_ext::quantized_mixture")
    def _quantized_mixture_fake(weights, weight_range, pressure, p_beta, index_min):
        torch._check(weights.dim() == 2 and weights.shape[0] == 2, lambda: "quantized_mixture: weights must be (2, n)")
        return torch.empty_like(weights), weights.new_empty(weights.shape[1:])


def native_for(tensor: torch.Tensor) -> bool:
    """Whether the native kernels will run for tensors on ``tensor``'s device."""
    if not use_native():
        return False
    if tensor.device.type == "cpu":
        return True
    return tensor.device.type == "cuda" and native_has_cuda()


def binary_entropy(probs: torch.Tensor) -> torch.Tensor:
    """Eq. 1 in bits, elementwise: (...,) -> (...,), same dtype; 0·log 0 = 0."""
    if not isinstance(probs, torch.Tensor) or not probs.is_floating_point():
        raise TypeError(f"binary_entropy: probs must be a floating-point tensor, got {type(probs).__name__}"
                        + (f" of dtype {probs.dtype}" if isinstance(probs, torch.Tensor) else ""))
    if native_for(probs):
        return torch.ops.d2ace_ext.binary_entropy.default(probs)
    return functional.binary_entropy(probs)


def record_step(state, indices: torch.Tensor, outputs: torch.Tensor, targets: torch.Tensor, epoch: int, *,
                from_logits: bool, per_epoch: bool, flip_on: str, flip_threshold: float, lambda2: float,
                indices_checked: bool = False) -> None:
    """Record one batch into a :class:`~d2ace_ext.visits.VisitState` in one launch.

    indices (b,) int64 distinct, on the state's device; outputs (b, q) float32 logits
    (``from_logits``) or probabilities; targets (b, q) float32 0/1. Computes the
    probabilities and per-label BCE itself, then the flip EMA (Eq. 4) and the window write.

    What is checked where. The CPU kernel checks everything before writing anything:
    index range and repeats, NaN outputs, probabilities in [0, 1], 0/1 targets. The CUDA
    kernel checks no values (that would synchronise with the host every step): for CUDA
    tensors this wrapper checks the indices on the host (one synchronisation) unless
    ``indices_checked`` says the caller already did (the sampler checks indices, outputs
    and targets itself, with one synchronisation per step). An out-of-range index that
    still reaches the CUDA kernel skips its row and is counted in
    ``state.index_errors``; the next :func:`score_visits` raises for it. Repeated indices
    on CUDA are a data race between their rows' updates: the caller must rule them out.
    """
    if indices.is_cuda and not indices_checked:
        as_index_tensor(indices, state.n, "indices")
    torch.ops.d2ace_ext.record_step.default(
        state.window, state.pushes, state.last_epoch, state.loss, state.flip_average, state.flip_base,
        state.index_errors, indices, outputs, targets, int(epoch), bool(from_logits), bool(per_epoch),
        flip_on == "probability", float(flip_threshold), float(lambda2),
    )


def score_visits(state, labels, context, *, lambda1: float, loss_transform: str, norm_eps: float,
                 row_normalize: bool, label_weights_in_phi: bool):
    """Eqs. 3, 5-12 for U and H in one op (three kernels on CUDA).

    state: a VisitState; labels, context: :class:`~d2ace_ext.sparse_rows.SparseRows` of
    Y and Z. Returns float64 (v (2, q), C (2, q, q), δ (2, n), φ (2, n), range of w (2, 2)),
    row 0 for uncertainty and row 1 for hardness. Raises first if a CUDA record_step
    skipped out-of-range indices since the last scoring (one synchronisation per epoch).
    """
    state.raise_index_errors()
    return torch.ops.d2ace_ext.score_visits.default(
        state.window, state.pushes, state.loss, state.flip_average, labels.row_ptr, labels.cols,
        context.row_ptr, context.cols, state.workspace(), float(lambda1), loss_transform == "two_minus_exp", float(norm_eps),
        bool(row_normalize), bool(label_weights_in_phi),
    )


def quantized_mixture(weights: torch.Tensor, pressure: float, p_beta: float, index_min: int,
                      weight_range: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Eqs. 13-14 for both rows of w (2, n) float64, and Eq. 16's mixture.

    Returns P (2, n) (each row sums to 1) and p_β P_U + (1 - p_β) P_H (n,).
    ``weight_range`` (2, 2) = [[min, max]] per row when already known (the scoring op
    returns it); computed here otherwise.
    """
    if native_for(weights):
        if weight_range is None:
            low, high = weights.aminmax(dim=1)
            weight_range = torch.stack([low, high], dim=1)
        return torch.ops.d2ace_ext.quantized_mixture.default(
            weights, weight_range, float(pressure), float(p_beta), int(index_min)
        )
    per_metric = torch.stack([functional.quantized_probabilities(w, pressure, index_min) for w in weights])
    return per_metric, functional.mixture(per_metric[0], per_metric[1], p_beta)
