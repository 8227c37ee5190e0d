"""The sampler's epoch plan and its checked restoration (``SelectionBatchSampler.load_state_dict``).

A plan is what an epoch's batches are drawn from: its mode, the CPU generator, the
order (ordered and pruned epochs) or the probabilities (weighted epochs), a pruned
epoch's loss weights, and how many samples the epoch trains on (its budget). A checkpoint may come
from another run, another version or a damaged file, so every field is checked before
the sampler assigns anything.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .drawing import WeightedDraw
from .selectors.base import FIXED, PRUNED, SHUFFLE, WEIGHTED
from .validation import is_int

_MODES = (SHUFFLE, FIXED, WEIGHTED, PRUNED)


@dataclass(frozen=True)
class EpochPlan:
    """One epoch's batches, made once at its start (``SelectionBatchSampler._prepare``).

    ``order`` (n,) int64 is walked in ordered and pruned epochs (None in a weighted one);
    ``draw`` holds a weighted epoch's probabilities (None otherwise); ``weights`` (n,)
    float64 are a pruned epoch's loss weights (None otherwise); the epoch trains on
    ``samples`` instances in ``batches`` = ceil(samples / batch_size) batches, and a
    weighted epoch draws them with ``generator`` (CPU)."""

    mode: str
    generator: torch.Generator
    order: torch.Tensor | None
    draw: WeightedDraw | None
    weights: torch.Tensor | None
    samples: int
    batches: int

    def state_dict(self) -> dict:
        """The plan as saved in a sampler state (format 1: a dict of these keys, the
        draw as its probabilities, the batch count left out), read back by
        :func:`plan_from_state`."""
        return {
            "mode": self.mode,
            "generator": self.generator.get_state(),
            "order": None if self.order is None else self.order.clone(),
            "probabilities": None if self.draw is None else self.draw.probabilities.clone(),
            "weights": None if self.weights is None else self.weights.clone(),
            "samples": self.samples,
        }

    def same_point(self, other: EpochPlan) -> bool:
        """Whether ``other`` is the same point of the same epoch (mode and generator state)."""
        return self.mode == other.mode and torch.equal(self.generator.get_state(), other.generator.get_state())


def check_pruned_weights(weights, n: int, what: str) -> torch.Tensor:
    """A pruned epoch's loss weights as (n,) float64 on the CPU: finite, >= 0 (0 =
    pruned), at least one instance kept; errors name ``what``."""
    if not isinstance(weights, torch.Tensor) or tuple(weights.shape) != (n,) or not weights.is_floating_point():
        got = tuple(weights.shape) if isinstance(weights, torch.Tensor) else type(weights).__name__
        raise ValueError(f"{what} must be a floating-point ({n},) tensor, got {got}")
    weights = weights.detach().to("cpu", torch.float64)
    if not bool(torch.isfinite(weights).all()) or bool((weights < 0).any()):
        raise ValueError(f"{what} must be finite and >= 0 (0 prunes an instance)")
    if not bool((weights > 0).any()):
        raise ValueError(f"{what} prunes every instance: keep at least one")
    return weights


def plan_from_state(saved, n: int, position: int, batch_size: int) -> EpochPlan | None:
    """The epoch plan of a saved sampler state for n instances (the dict
    :meth:`EpochPlan.state_dict` writes), every field checked (errors name it): None,
    or an :class:`EpochPlan`. ``position`` is the saved batch
    position: 0 without a plan, at most the plan's batches with one. States saved
    before budgets have no "samples" (a full pass: n) and no "weights"."""
    if saved is None:
        if position != 0:
            raise ValueError("state_dict plan is None, so its position must be 0 (the epoch has not started)")
        return None
    if not isinstance(saved, dict):
        raise ValueError(f"state_dict plan must be a dict or None, got {type(saved).__name__}")
    mode = saved.get("mode")
    if mode not in _MODES:
        raise ValueError(f"state_dict plan.mode must be one of {_MODES}, got {mode!r}")
    generator = torch.Generator()
    try:
        generator.set_state(saved.get("generator"))
    except (TypeError, RuntimeError, ValueError) as exc:
        raise ValueError(f"state_dict plan.generator is not a CPU generator state ({exc})") from None
    order, probabilities, weights = saved.get("order"), saved.get("probabilities"), saved.get("weights")
    samples = saved.get("samples", n)
    if not is_int(samples) or not 1 <= samples <= n:
        raise ValueError(f"state_dict plan.samples must be an integer in [1, {n}], got {samples!r}")
    if mode == PRUNED:
        weights = check_pruned_weights(weights, n, "state_dict plan.weights")
    elif weights is not None:
        raise ValueError(f"state_dict plan.weights must be None in a {mode} epoch")
    draw = None
    if mode == WEIGHTED:
        if order is not None:
            raise ValueError("state_dict plan.order must be None in a weighted epoch")
        if (
            not isinstance(probabilities, torch.Tensor)
            or tuple(probabilities.shape) != (n,)
            or not probabilities.is_floating_point()
        ):
            got = (
                tuple(probabilities.shape) if isinstance(probabilities, torch.Tensor) else type(probabilities).__name__
            )
            raise ValueError(f"state_dict plan.probabilities must be a floating-point ({n},) tensor, got {got}")
        try:
            draw = WeightedDraw(probabilities)
        except ValueError as exc:
            raise ValueError(f"state_dict plan.probabilities: {exc}") from None
    else:
        if probabilities is not None:
            raise ValueError(f"state_dict plan.probabilities must be None in a {mode} epoch")
        if (
            not isinstance(order, torch.Tensor)
            or tuple(order.shape) != (n,)
            or order.is_floating_point()
            or order.is_complex()
            or order.dtype == torch.bool
        ):
            got = (tuple(order.shape), order.dtype) if isinstance(order, torch.Tensor) else type(order).__name__
            raise ValueError(f"state_dict plan.order must be an integer ({n},) tensor, got {got}")
        order = order.to("cpu", torch.int64)
        if not torch.equal(torch.sort(order).values, torch.arange(n)):
            raise ValueError(f"state_dict plan.order must be a permutation of 0..{n - 1}")
        if mode == PRUNED and not bool((weights[order[:samples]] > 0).all()):
            raise ValueError(
                "state_dict plan: the first plan.samples instances of plan.order must all be kept (plan.weights > 0)"
            )
    batches = math.ceil(samples / batch_size)
    if position > batches:
        raise ValueError(f"state_dict position must be at most the plan's {batches} batches, got {position}")
    return EpochPlan(mode, generator, order, draw, weights, samples, batches)
