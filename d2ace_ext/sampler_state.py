"""Checked restoration of a saved epoch plan (``SelectionBatchSampler.load_state_dict``).

A plan is what an epoch's batches are drawn from: its mode, the CPU generator, and the
order (ordered epochs) or the probabilities (weighted epochs). A checkpoint may come
from another run, another version or a damaged file, so every field is checked before
the sampler assigns anything.
"""
from __future__ import annotations

import torch

from .drawing import WeightedDraw
from .selectors.base import FIXED, SHUFFLE, WEIGHTED


def plan_from_state(saved, n: int, position: int) -> dict | None:
    """The epoch plan of a saved sampler state for n instances, every field checked
    (errors name it): None, or {"mode", "generator", "order" (n,) | None, "draw"}.
    ``position`` is the saved batch position (a missing plan requires 0)."""
    if saved is None:
        if position != 0:
            raise ValueError("state_dict plan is None, so its position must be 0 (the epoch has not started)")
        return None
    if not isinstance(saved, dict):
        raise ValueError(f"state_dict plan must be a dict or None, got {type(saved).__name__}")
    mode = saved.get("mode")
    if mode not in (SHUFFLE, FIXED, WEIGHTED):
        raise ValueError(f"state_dict plan.mode must be one of {(SHUFFLE, FIXED, WEIGHTED)}, got {mode!r}")
    generator = torch.Generator()
    try:
        generator.set_state(saved.get("generator"))
    except (TypeError, RuntimeError, ValueError) as exc:
        raise ValueError(f"state_dict plan.generator is not a CPU generator state ({exc})") from None
    order, probabilities = saved.get("order"), saved.get("probabilities")
    draw = None
    if mode == WEIGHTED:
        if order is not None:
            raise ValueError("state_dict plan.order must be None in a weighted epoch")
        if not isinstance(probabilities, torch.Tensor) or tuple(probabilities.shape) != (n,) \
                or not probabilities.is_floating_point():
            got = tuple(probabilities.shape) if isinstance(probabilities, torch.Tensor) else type(probabilities).__name__
            raise ValueError(f"state_dict plan.probabilities must be a floating-point ({n},) tensor, got {got}")
        try:
            draw = WeightedDraw(probabilities)
        except ValueError as exc:
            raise ValueError(f"state_dict plan.probabilities: {exc}") from None
    else:
        if probabilities is not None:
            raise ValueError(f"state_dict plan.probabilities must be None in a {mode} epoch")
        if not isinstance(order, torch.Tensor) or tuple(order.shape) != (n,) or order.is_floating_point() \
                or order.is_complex() or order.dtype == torch.bool:
            got = (tuple(order.shape), order.dtype) if isinstance(order, torch.Tensor) else type(order).__name__
            raise ValueError(f"state_dict plan.order must be an integer ({n},) tensor, got {got}")
        order = order.to("cpu", torch.int64)
        if not torch.equal(torch.sort(order).values, torch.arange(n)):
            raise ValueError(f"state_dict plan.order must be a permutation of 0..{n - 1}")
    return {"mode": mode, "generator": generator, "order": order, "draw": draw}
