"""Native kernels against the pure-PyTorch path over seeded random small states.

Each case drives two D2ACE selectors, one on the native ops and one on the pure-PyTorch
path, through the same records (extreme and infinite logits, exact 0.5 predictions,
identical predictions for every instance, empty and all-positive label columns,
single-instance batches, probabilities instead of logits), scores both at the first
selection epoch and compares every instance's quantisation index Q (Eq. 13) for both
metrics. Q is read back from the probabilities each path produced, so the whole path
(recording, scoring, quantiser) is compared, not a re-implementation of it.

The two paths differ by float32 rounding (the native kernels keep U and H in float32),
so an index may differ where the float64 weight lies within that rounding of a
quantisation boundary; such a difference of one step is *explained*. Anything else is
a defect. ``benchmarks/check_random_states.py`` runs the full count; the tests run a share.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field

import torch

from . import functional
from ._extension import extension_loaded, force_fallback
from .config import D2ACEConfig
from .selectors.d2ace import D2ACESelector

#: how far the native weights may lie from the float64 ones, relative to the largest
#: weight: float32 U and H (one rounding each, fast log2 within 1e-7) summed in float64
NATIVE_RELATIVE_ERROR = 1e-6
_EXTREME_LOGITS = (-math.inf, math.inf, -1e4, 1e4, 0.0, -88.0, 88.0, -87.3, 87.3, -30.0, 30.0)
_EXTREME_PROBS = (0.0, 1.0, 0.5, 1e-40, 1.0 - 2.0**-24, 2.0**-126)


@dataclass
class CaseResult:
    """One random state: instances compared (2 per instance: U and H) and differences."""

    seed: int
    compared: int = 0
    explained: int = 0
    unexplained: list = field(default_factory=list)  # (metric, instance, Q native, Q fallback, why)


def _labels(g: torch.Generator, n: int, q: int) -> torch.Tensor:
    y = (torch.rand(n, q, generator=g) < torch.rand(1, generator=g).clamp(0.15, 0.85)).float()
    if q > 1 and bool(torch.rand(1, generator=g) < 0.3):
        y[:, int(torch.randint(q, (1,), generator=g))] = 0.0  # an empty label column
    if q > 1 and bool(torch.rand(1, generator=g) < 0.3):
        y[:, int(torch.randint(q, (1,), generator=g))] = 1.0  # an all-positive label column
    return y


def _outputs(g: torch.Generator, b: int, q: int, style: str, shared: torch.Tensor) -> tuple[torch.Tensor, str]:
    if style == "identical":
        return shared[:1].expand(b, q).clone(), "logits"
    if style == "half":
        return torch.zeros(b, q), "logits"
    if style == "extreme":
        pick = torch.randint(len(_EXTREME_LOGITS), (b, q), generator=g)
        return torch.tensor(_EXTREME_LOGITS)[pick], "logits"
    if style == "probs":
        pick = torch.randint(len(_EXTREME_PROBS), (b, q), generator=g)
        mixed = torch.where(
            torch.rand(b, q, generator=g) < 0.5, torch.tensor(_EXTREME_PROBS)[pick], torch.rand(b, q, generator=g)
        )
        return mixed.float(), "probs"
    return torch.randn(b, q, generator=g) * 4.0, "logits"


def random_case(seed: int):
    """A seeded random small problem: (labels (n, q), features (n, 3), config, steps),
    steps a list of (epoch, indices (b,), outputs (b, q) float32, kind)."""
    g = torch.Generator().manual_seed(seed)
    n = int(torch.randint(2, 13, (1,), generator=g))
    q = int(torch.randint(1, 5, (1,), generator=g))
    labels = _labels(g, n, q)
    features = torch.rand(n, 3, generator=g, dtype=torch.float64)
    preset = "paper" if bool(torch.rand(1, generator=g) < 0.5) else "reference"
    k = min(int(torch.randint(0, 4, (1,), generator=g)), n - 1)
    config = D2ACEConfig.preset(preset, num_neighbors=k).scaled_to(8)
    styles = ("normal", "extreme", "identical", "half", "probs")
    steps = []
    for epoch in range(int(torch.randint(1, 5, (1,), generator=g))):
        style = styles[int(torch.randint(len(styles), (1,), generator=g))]
        shared = torch.randn(1, q, generator=g) * 4.0
        order = torch.randperm(n, generator=g)
        start = 0
        while start < n:
            b = 1 if bool(torch.rand(1, generator=g) < 0.3) else int(torch.randint(1, n + 1, (1,), generator=g))
            index = order[start : start + b]
            outputs, kind = _outputs(g, index.numel(), q, style, shared)
            steps.append((epoch, index, outputs.float(), kind))
            start += b
    return labels, features, config, steps


def _indices_from_probabilities(p: torch.Tensor, pressure: float) -> torch.Tensor:
    """Q_i - min Q, read back from P_i ∝ s^(-Q_i/n) (all 0 when P is uniform)."""
    n = p.numel()
    return torch.round(torch.log(p.max() / p) * n / math.log(pressure)).to(torch.int64)


def _drive(labels, features, config, steps, native: bool):
    context = contextlib.nullcontext() if native else force_fallback()
    with context:
        selector = D2ACESelector(labels, features, config)
        for epoch, index, outputs, kind in steps:
            selector.record_outputs(index, outputs, labels[index], kind, epoch)
        return selector.score(config.warmup_epochs)


def compare_case(seed: int) -> CaseResult:
    """Score one random state on both paths and classify every index difference."""
    if not extension_loaded():
        raise RuntimeError("the native extension is not loaded; nothing to compare against")
    labels, features, config, steps = random_case(seed)
    with torch.no_grad(), _quiet():
        native = _drive(labels, features, config, steps, native=True)
        fallback = _drive(labels, features, config, steps, native=False)
    result = CaseResult(seed)
    n = labels.shape[0]
    for name in ("uncertainty", "hardness"):
        mine, theirs = getattr(native, name), getattr(fallback, name)
        q_native = _indices_from_probabilities(mine.probabilities, native.pressure)
        q_fallback = _indices_from_probabilities(theirs.probabilities, fallback.pressure)
        result.compared += n
        weights = theirs.weights
        for i in torch.nonzero(q_native != q_fallback).flatten().tolist():
            why = _explanation(weights, i, int(q_native[i]) - int(q_fallback[i]))
            if why is None:
                result.unexplained.append((name, i, int(q_native[i]), int(q_fallback[i]), weights.tolist()))
            else:
                result.explained += 1
    return result


def _explanation(weights: torch.Tensor, i: int, step: int) -> str | None:
    """Why instance i's index may differ by ``step`` between the paths, or None."""
    low, high = float(weights.min()), float(weights.max())
    if abs(step) > 1 or functional.weights_tied(low, high):
        return None
    n = weights.numel()
    position = (1.0 - (float(weights[i]) - low) / (high - low)) * n  # Q before the ceiling
    rounding = n * NATIVE_RELATIVE_ERROR * max(abs(low), abs(high)) / (high - low)
    if abs(position - round(position)) <= rounding:
        return "within rounding of a quantisation boundary"
    return None


@contextlib.contextmanager
def _quiet():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # empty label columns warn by design
        yield


def run_cases(seeds) -> tuple[int, int, list]:
    """(instances compared, explained differences, unexplained differences) over ``seeds``."""
    compared, explained, unexplained = 0, 0, []
    for seed in seeds:
        result = compare_case(seed)
        compared += result.compared
        explained += result.explained
        unexplained += [(seed, *item) for item in result.unexplained]
    return compared, explained, unexplained
