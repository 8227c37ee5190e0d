"""The pure-PyTorch equations of D2ACE (Section 3 and Appendix D.1 of the paper).

Every function here is the semantic definition that the native kernels are checked
against. Shapes use n instances, q labels and a window of n_t entries. Functions work on
any device and in the dtype they are given; the scorer calls them in float64.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .ring import ring_visit, ring_write

_LN2 = math.log(2.0)

#: |x| beyond which a logit is saturated: e^-|x| would fall below the smallest normal
#: float32 (2^-126), so σ(x) is recorded as exactly 0 or 1 and the BCE's log1p(e^-|x|)
#: term as 0. Every path (this one, the CPU and the CUDA kernels) applies the same test
#: to the same float32 |x|, so saturated predictions are identical everywhere.
SATURATED_LOGIT = 87.33654
#: probabilities below this (the smallest normal float32) are recorded as exactly 0.
SMALLEST_PROBABILITY = 2.0**-126
#: the published code's ε in the row normalisation of C (Eq. 9, ``row_normalize_correlation``).
ROW_NORMALISE_EPS = 1e-8
#: weights whose span is at most this fraction of their magnitude are all equal (Eq. 13):
#: the records are float32 (ε = 2^-23), so closer weights cannot be told apart from them.
TIE_TOLERANCE = 2.0**-16


def binary_entropy(probs: torch.Tensor) -> torch.Tensor:
    """Eq. 1, in bits, elementwise. ``probs`` (...,) -> (...,).

    Probabilities are clamped to [0, 1] and 0·log 0 is taken as its limit 0, so a
    saturated prediction has entropy 0 rather than NaN. NaN input stays NaN.
    float16 and bfloat16 are computed in float32 and rounded once, as the native kernel
    does (step by step in 16 bits, e(0.5) came out 0.996 in bfloat16).
    """
    compute = torch.promote_types(probs.dtype, torch.float32)
    p = probs.to(compute).clamp(0.0, 1.0)
    r = 1.0 - p
    return (-(torch.special.xlogy(p, p) + torch.special.xlogy(r, r)) / _LN2).to(probs.dtype)


def probabilities_and_losses(
    outputs: torch.Tensor, targets: torch.Tensor, kind: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """A training step's predicted probabilities and per-label BCE. (b, q), (b, q) 0/1 -> two (b, q).

    ``kind="logits"``: p = σ(x) and BCE = softplus(-x) where y = 1, softplus(x) where
    y = 0; choosing the branch by the label keeps an infinite logit well defined (loss 0
    when right, inf when wrong) where PyTorch's fused formula gives NaN. A logit with
    |x| > :data:`SATURATED_LOGIT` is saturated: p is exactly 0 or 1 and the BCE is
    max(margin, 0), as the native kernels compute it.
    ``kind="probs"``: PyTorch's BCE, which clamps each log at -100; probabilities below
    :data:`SMALLEST_PROBABILITY` are taken as 0.
    """
    if kind == "logits":
        positive = targets != 0
        probs = torch.sigmoid(outputs)
        losses = torch.where(positive, F.softplus(-outputs), F.softplus(outputs))
        saturated = outputs.abs() > SATURATED_LOGIT
        if bool(saturated.any()):
            margin = torch.where(positive, -outputs, outputs)
            probs = torch.where(saturated, (outputs > 0).to(probs.dtype), probs)
            losses = torch.where(saturated, margin.clamp(min=0), losses)
        return probs, losses
    if kind == "probs":
        probs = torch.where(outputs < SMALLEST_PROBABILITY, torch.zeros_like(outputs), outputs)
        return probs, F.binary_cross_entropy(probs, targets, reduction="none")
    raise ValueError(f"kind must be 'logits' or 'probs', got {kind!r}")


def window_fluctuation(window: torch.Tensor, pushes: torch.Tensor) -> torch.Tensor:
    """Eq. 2: mean absolute difference of adjacent window entries. -> (n, q).

    With m = min(pushes, n_t) entries the mean runs over the m - 1 differences present
    (the paper's 1/(n_t - 1) once the window is full); fewer than two entries give 0.
    The ring is read in place: slot k is followed in time by slot k + 1 (mod n_t),
    except after the newest entry, and in a ring not yet full only slots < m hold data.
    """
    n_t = window.shape[1]
    diffs = (torch.roll(window, -1, dims=1) - window).abs()
    slots = torch.arange(n_t, device=window.device).unsqueeze(0)
    held = pushes.clamp(max=n_t).unsqueeze(1)
    newest = torch.remainder(pushes - 1, n_t).unsqueeze(1)
    full = (pushes >= n_t).unsqueeze(1)
    valid = torch.where(full, slots != newest, slots + 1 < held)
    count = (held - 1).clamp(min=0).to(window.dtype)
    total = torch.einsum("nkq,nk->nq", diffs, valid.to(window.dtype))
    return torch.where(count > 0, total / count.clamp(min=1), torch.zeros_like(total))


def latest_probability(window: torch.Tensor, pushes: torch.Tensor, unseen: float = 0.5) -> torch.Tensor:
    """The newest recorded probability of each instance, ``unseen`` where none. -> (n, q)."""
    n_t = window.shape[1]
    slot = torch.remainder(pushes - 1, n_t)
    newest = torch.gather(window, 1, slot.view(-1, 1, 1).expand(-1, 1, window.shape[2])).squeeze(1)
    return torch.where((pushes > 0).unsqueeze(1), newest, torch.full_like(newest, unseen))


def uncertainty(entropy: torch.Tensor, fluctuation: torch.Tensor, lambda1: float) -> torch.Tensor:
    """Eq. 3: u = λ1 e + (1 - λ1) d. entropy (Eq. 1), fluctuation (Eq. 2): (n, q) -> (n, q)."""
    return lambda1 * entropy + (1.0 - lambda1) * fluctuation


def flip_indicator(new: torch.Tensor, previous: torch.Tensor, on: str, threshold: float = 0.5) -> torch.Tensor:
    """The flip f of Eq. 4 between two consecutive records. (b, q), (b, q) -> (b, q).

    ``on="prediction"`` (paper): |ỹ_new - ỹ_prev| of the 0/1 predictions (p > threshold).
    ``on="probability"`` (published code): |p_new - p_prev|.
    """
    if on == "prediction":
        return ((new > threshold) != (previous > threshold)).to(new.dtype)
    if on == "probability":
        return (new - previous).abs()
    raise ValueError(f"flip_on must be 'prediction' or 'probability', got {on!r}")


def stored_finite(values: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``values`` rounded to ``dtype``, a finite value to a finite one: above the dtype's
    largest value it saturates there instead of overflowing to inf. (b, q) -> ``dtype``.

    A BCE of 70,000 (a logit of -70,000 on a positive label) is finite in float32 but inf
    in float16 (largest 65,504), and one inf loss made every hardness weight NaN; +inf
    (an infinite logit's BCE, inf in float32 as well) stays +inf."""
    if dtype == values.dtype:
        return values
    largest = torch.finfo(dtype).max
    return torch.where(torch.isfinite(values), values.clamp(max=largest), values).to(dtype)


def stored_on_its_side(values: torch.Tensor, dtype: torch.dtype, threshold: float) -> torch.Tensor:
    """``values`` rounded to ``dtype`` (a 16-bit window), to the nearest value that stays on
    the same side of ``threshold`` (same ``> threshold``). (b, q) -> (b, q) ``dtype``.

    Plain rounding turns 0.5002 into 0.5 in float16 and bfloat16, a positive prediction
    into a negative one, so the next visit's flip of Eq. 4 (``flip_on="prediction"``)
    would vanish or appear where the float32 state has the opposite. Where plain
    rounding crosses the threshold, the neighbouring 16-bit value towards the original is
    on its side (the original lies between the two), at most one step away."""
    rounded = values.to(dtype)
    above = values > threshold
    crossed = (rounded.to(values.dtype) > threshold) != above
    towards = above.to(dtype)  # 1 or 0: up or down from a value near a threshold in (0, 1)
    return torch.where(crossed, torch.nextafter(rounded, towards), rounded)


def flip_ema(flip: torch.Tensor, previous_ema: torch.Tensor, lambda2: float) -> torch.Tensor:
    """Eq. 4: f̄ = λ2 f + (1 - λ2) f̄_prev."""
    return lambda2 * flip + (1.0 - lambda2) * previous_ema


def record_visits(
    window: torch.Tensor,
    pushes: torch.Tensor,
    last_epoch: torch.Tensor,
    loss: torch.Tensor,
    flip_average: torch.Tensor,
    flip_base: torch.Tensor,
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
    """One batch written into the state in place: the ring of Eq. 2 and the flip EMA of Eq. 4.

    State: window (n, n_t, q), pushes and last_epoch (n,) int64, loss, flip_average and
    flip_base (n, q) (f̄ before the current epoch's update; read and written by epoch
    windows only, left untouched by visit windows), in one floating dtype
    (float32, or float16 / bfloat16 for a compact state: the arithmetic is then float32
    and each stored value is rounded once). indices (b,) int64 distinct; probs, losses
    (b, q). ``per_epoch=True`` keeps one window entry per epoch (a second visit in the
    same epoch overwrites it and redoes that epoch's flip update); otherwise every visit
    pushes a new entry (the published code). The slots come from :mod:`~d2ace_ext.ring`.
    The pure-PyTorch definition of the ``record_step`` op after its probabilities and losses.
    """
    visit = ring_visit(pushes, last_epoch, indices, epoch, per_epoch, window.shape[1])
    compute = torch.promote_types(window.dtype, torch.float32)
    probs = probs.to(compute)
    previous = window[indices, visit.previous_slot].to(compute)
    flip = flip_indicator(probs, previous, flip_on, flip_threshold)
    flip = flip * visit.has_previous.unsqueeze(1).to(compute)
    if per_epoch:
        base = torch.where(visit.push.unsqueeze(1), flip_average[indices], flip_base[indices])
        flip_base[indices] = base
    else:  # every visit pushes: f̄ before the update is flip_average, flip_base is not used
        base = flip_average[indices]
    flip_average[indices] = flip_ema(flip, base.to(compute), lambda2).to(flip_average.dtype)
    if flip_on == "prediction" and window.dtype != compute:  # a compact window: see stored_on_its_side
        probs = stored_on_its_side(probs, window.dtype, flip_threshold)
    ring_write(window, pushes, last_epoch, indices, visit, probs, epoch)
    loss[indices] = stored_finite(losses, loss.dtype)


def hardness(loss: torch.Tensor, flip_average: torch.Tensor, transform: str) -> torch.Tensor:
    """Eq. 5: h = T(ℓ) (1 - f̄). loss, flip_average: (n, q) -> (n, q).

    ``transform="identity"`` (paper): T(ℓ) = ℓ. ``transform="two_minus_exp"`` (published
    code): T(ℓ) = 1 - expm1(-ℓ) = 2 - e^(-ℓ).
    """
    if transform == "identity":
        scaled = loss
    elif transform == "two_minus_exp":
        scaled = 1.0 - torch.expm1(-loss)
    else:
        raise ValueError(f"loss_transform must be 'identity' or 'two_minus_exp', got {transform!r}")
    return scaled * (1.0 - flip_average)


def label_weights(metric: torch.Tensor, form: str = "exponential") -> torch.Tensor:
    """Eqs. 6-7: v = exp((μ + σ) / 2) with column mean and population std. (n, q) -> (q,).

    ``form="linear"`` (ablation I): v = (μ + σ) / 2; ``form="none"`` (ablation G): v = 1.
    """
    if form == "none":
        return torch.ones(metric.shape[1], dtype=metric.dtype, device=metric.device)
    mean = metric.mean(0)
    std = metric.var(0, correction=0).clamp(min=0).sqrt()
    return label_weights_from_moments(mean, std, form)


def label_weights_from_moments(mean: torch.Tensor, std: torch.Tensor, form: str = "exponential") -> torch.Tensor:
    """Eq. 7 from each column's mean μ and population std σ: (q,), (q,) -> v (q,)
    (for a metric whose rows are spread over several ranks; :func:`label_weights` for one)."""
    if form == "exponential":
        return torch.exp(0.5 * (mean + std))
    if form == "linear":
        return 0.5 * (mean + std)
    if form == "none":
        return torch.ones_like(mean)
    raise ValueError(f"label_weight_form must be 'exponential', 'linear' or 'none', got {form!r}")


def correlation_from_gram(gram: torch.Tensor, eps: float) -> torch.Tensor:
    """Eq. 9: C = M̄ᵀ M̄ from the raw masked Gram G = Mᵀ M of M = Y ⊙ A.
    (..., q, q) -> (..., q, q) (one G per metric, or a stack of them).

    M̄ divides each column of M by its norm N_j = √G_jj + ε (the paper: ε = 0; the
    published code: 1e-8), so C_jk = G_jk / (N_j N_k), and 0/0 := 0 for a column without
    mass. Normalising the summed G, not M, lets a row-sharded scorer sum G over its
    ranks first. csrc/pipeline_math.h (``column_norm``, ``correlation``) is the kernels'
    copy of this formula; change both together.
    """
    norm = gram.diagonal(dim1=-2, dim2=-1).sqrt() + eps  # N (..., q)
    scale = norm.unsqueeze(-1) * norm.unsqueeze(-2)  # N_j N_k
    has_mass = scale > 0
    return torch.where(has_mass, gram / torch.where(has_mass, scale, torch.ones_like(scale)), torch.zeros_like(gram))


def row_normalised(correlation: torch.Tensor) -> torch.Tensor:
    """The published code's row normalisation of C: C_jk / (Σ_k C_jk + ε).
    (..., q, q) -> (..., q, q) (a stack of C, one per metric, in the sharded scorer)."""
    return correlation / (correlation.sum(-1, keepdim=True) + ROW_NORMALISE_EPS)


def dynamic_weight(metric: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Eq. 8 and the row sum after it: δ = A diag(v) 1. (n, q), (q,) -> (n,)."""
    return metric @ weights


def selection_pressure(epoch: int, warmup_epochs: int, num_epochs: int, initial: float, schedule: str) -> float:
    """Eq. 21 (``schedule="paper"``) or the published code's schedule.

    Epochs count from 0; the first epoch after warm-up is ``warmup_epochs`` (the
    paper's T_w + 1) and the last is ``num_epochs - 1`` (the paper's T).
    paper: s = s0^(1 - (t - T_w)/(T - 1 - T_w)), so s0 at the first selection epoch and
    1 at the last; reference: s = max(1, s0 (1/s0)^((t - T_w)/(T - T_w))).
    Before warm-up ends s = s0; after the schedule's end s = 1.
    """
    if initial < 1.0:
        raise ValueError(f"initial_pressure must be >= 1, got {initial}")
    if epoch < warmup_epochs:
        return float(initial)
    if schedule == "paper":
        span = num_epochs - 1 - warmup_epochs
    elif schedule == "reference":
        span = num_epochs - warmup_epochs
    else:
        raise ValueError(f"pressure_schedule must be 'paper' or 'reference', got {schedule!r}")
    if span <= 0:
        return float(initial)
    progress = min(1.0, (epoch - warmup_epochs) / span)
    return max(1.0, float(initial) ** (1.0 - progress))


def mixing_coefficient(epoch: int, p_start: float, p_end: float, t_start: int, t_end: int) -> float:
    """Eq. 17: p_β linear from ``p_start`` at ``t_start`` to ``p_end`` at ``t_end``, clipped outside."""
    if epoch <= t_start:
        return float(p_start)
    if epoch >= t_end:
        return float(p_end)
    return float(p_start + (epoch - t_start) / (t_end - t_start) * (p_end - p_start))


def weights_tied(low: float, high: float) -> bool:
    """Whether weights ranging over [low, high] count as all equal for Eq. 13: their span
    is not finite, or at most :data:`TIE_TOLERANCE` times their magnitude max(|low|, |high|).
    The native quantiser applies the same test (csrc/quantize_math.h)."""
    span = high - low
    if not math.isfinite(span):
        return True
    return not span > TIE_TOLERANCE * max(abs(low), abs(high))


def quantization_index(weights: torch.Tensor, index_min: int = 0) -> torch.Tensor | None:
    """Eq. 13 read as Q = ⌈(1 - w̃)/Δ⌉ with Δ = 1/n and w̃ the min-max normalised weight.

    weights: (n,) -> (n,) float of integers in [index_min, n], or None when the weights
    are all equal (:func:`weights_tied`: equal up to rounding, or not finite), which
    means "sample uniformly".
    """
    n = weights.numel()
    low, high = weights.min(), weights.max()
    if weights_tied(float(low), float(high)):
        return None
    span = high - low
    normalised = (weights - low) / span
    return torch.ceil((1.0 - normalised) * n).clamp(min=index_min, max=n)


def quantized_probabilities(weights: torch.Tensor, pressure: float, index_min: int = 0) -> torch.Tensor:
    """Eq. 14: P_i ∝ s^(-Q_i/n). weights: (n,) -> (n,) summing to 1, all > 0.

    Uniform when every weight is equal. The largest over the smallest probability is
    s^((Q_max - Q_min)/n), i.e. s when both extremes of Q occur.
    """
    n = weights.numel()
    index = quantization_index(weights, index_min)
    if index is None or pressure == 1.0:
        return torch.full_like(weights, 1.0 / n)
    return torch.softmax(-index * (math.log(pressure) / n), dim=0)


def mixture(p_uncertainty: torch.Tensor, p_hardness: torch.Tensor, p_beta: float) -> torch.Tensor:
    """Eq. 16: P = p_β P_U + (1 - p_β) P_H. (n,), (n,) -> (n,)."""
    return p_beta * p_uncertainty + (1.0 - p_beta) * p_hardness
