"""The training loss a selector asks for: the model's objective with its mean BCE term
replaced by a weighted BCE where the selector weights losses. One home for the tabular
and the image loop, so Balance's loss mask and InfoBatch's rescaling reach both."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def loss_weights(sampler, index: torch.Tensor, y: torch.Tensor, importance_weights: bool) -> torch.Tensor | None:
    """Per-entry loss weights (b, q) or (b, 1), or None: Balance's loss mask, and the
    sampler's per-instance weights when asked for (``importance_weights``: Appendix C's
    1 / (n P_i)) or when they are part of the selector's method (InfoBatch's rescaling).
    index (b,) training rows, y (b, q) 0/1 on the loss's device."""
    weights = None
    mask = getattr(sampler.selector, "loss_mask", None)
    if mask is not None:
        weights = mask(index, y)
    if importance_weights or sampler.selector.weights_losses:
        w = sampler.importance_weights(index).to(y.device).unsqueeze(1)
        weights = w if weights is None else weights * w
    return weights


def selection_objective(
    model, sampler, index: torch.Tensor, x: torch.Tensor, y: torch.Tensor, importance_weights: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """x (b, ...), y (b, q) -> (logits (b, q), scalar loss) of ``model.objective`` with its
    plain mean BCE swapped for the weighted one of :func:`loss_weights` (the objective's
    other terms, e.g. HST's, stay as they are; ``model.bce_weight`` scales the swap)."""
    logits, loss = model.objective(x, y)
    weights = loss_weights(sampler, index, y, importance_weights)
    if weights is not None:
        target = y.to(logits.dtype)
        plain = F.binary_cross_entropy_with_logits(logits, target)
        weighted = F.binary_cross_entropy_with_logits(logits, target, weight=weights.to(logits.dtype))
        loss = loss + model.bce_weight * (weighted - plain)
    return logits, loss
