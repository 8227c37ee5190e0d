"""Building blocks of the score_visits tests: the fallback and native scorers side by
side, random selectors and states, and the check of the probabilities built on them."""

from __future__ import annotations

import warnings

import torch

from d2ace_ext import force_fallback, functional, ops, scoring
from d2ace_ext.neighbors import random_neighbors
from d2ace_ext.scoring import LabelContext
from d2ace_ext.selectors.d2ace import D2ACESelector
from d2ace_ext.sparse_rows import SparseRows, row_pairs

from .fused_checks import assert_within_rule
from .fused_record_checks import random_batch


def context_of(labels: SparseRows, context: SparseRows) -> LabelContext:
    return LabelContext(labels, context, row_pairs(labels, labels), row_pairs(labels, context))


def fallback_scores(state, ctx, config, dtype):
    """v (2, q), C (2, q, q), δ (2, n), φ (2, n), [min, max] of w (2, 2) and the metrics
    (2, n, q), by the pure-PyTorch scorer in ``dtype`` (call with the fallback forced)."""
    metrics = state.metrics(config.lambda1, config.loss_transform, dtype=dtype)
    out = {"v": [], "C": [], "delta": [], "phi": [], "range": []}
    for metric in metrics:
        v = functional.label_weights(metric)
        delta = functional.dynamic_weight(metric, v)
        phi, gram = scoring.correlation_phi(metric, v, ctx, config)
        low, high = (delta + phi).aminmax()
        for key, value in zip(out, (v, gram, delta, phi, torch.stack([low, high]))):
            out[key].append(value)
    result = {key: torch.stack(values) for key, values in out.items()}
    result["metrics"] = torch.stack(metrics)
    return result


def score_visits(state, ctx, **options):
    """ops.score_visits on a VisitState's tensors, its workspace and its index_errors."""
    return ops.score_visits(
        state.window,
        state.pushes,
        state.loss,
        state.flip_average,
        ctx,
        workspace=state.workspace(),
        index_errors=state.index_errors,
        **options,
    )


def native_scores(state, ctx, config):
    v, c, delta, phi, weight_range = score_visits(
        state,
        ctx,
        lambda1=config.lambda1,
        loss_transform=config.loss_transform,
        norm_eps=config.norm_eps,
        row_normalize=config.row_normalize_correlation,
        label_weights_in_phi=config.label_weights_in_phi,
    )
    for t in (v, c, delta, phi, weight_range):
        assert t.dtype == torch.float64 and t.device == state.device
    return {"v": v, "C": c, "delta": delta, "phi": phi, "range": weight_range, "metrics": state.workspace()}


def assert_scores_match(state, ctx, config, where=""):
    """Kernel against the float64 fallback; returns both for further checks."""
    got = native_scores(state, ctx, config)
    with force_fallback():
        ref = fallback_scores(state, ctx, config, torch.float64)
        f32 = fallback_scores(state, ctx, config, torch.float32)
    n, q = state.n, state.q
    shapes = {"v": (2, q), "C": (2, q, q), "delta": (2, n), "phi": (2, n), "range": (2, 2), "metrics": (2, n, q)}
    for key, shape in shapes.items():
        assert tuple(got[key].shape) == shape, key
        assert_within_rule(f"{key} {where}", got[key], f32[key], ref[key])
    # The range is that of the kernel's own w = δ + φ, exactly.
    w = (got["delta"] + got["phi"]).cpu()
    assert torch.equal(got["range"].cpu(), torch.stack(list(w.aminmax(dim=1)), dim=1))
    return got, ref


def random_selector(g, n, q, config, k, density, device="cpu"):
    labels = (torch.rand(n, q, generator=g) < density).float()
    neighbors = random_neighbors(n, k, g) if k else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # label columns without a positive are fine here
        return D2ACESelector(labels, None, config.replace(num_neighbors=k), neighbors=neighbors, device=device)


def fill_state_directly(state, g):
    """Random state tensors: every window slot holds a value (also the slots not yet
    pushed, which the scorer must ignore), pushes 0..3 n_t so rings are empty, partial,
    full and wrapped; saturated probabilities, flip EMAs of exactly 0 and 1."""
    n, n_t, q = state.window.shape
    window = torch.rand(n, n_t, q, generator=g)
    saturate = torch.rand(n, n_t, q, generator=g) < 0.1
    window = torch.where(saturate, (torch.rand(n, n_t, q, generator=g) < 0.5).float(), window)
    pushes = torch.randint(0, 3 * n_t + 1, (n,), generator=g)
    pushes[: min(n, 3)] = torch.tensor([0, 1, n_t])[: min(n, 3)]
    loss = -torch.log(torch.rand(n, q, generator=g).clamp(min=1e-6)) * 2
    flip = torch.rand(n, q, generator=g)
    flip = torch.where(torch.rand(n, q, generator=g) < 0.1, (torch.rand(n, q, generator=g) < 0.5).float(), flip)
    for name, value in (("window", window), ("pushes", pushes), ("loss", loss), ("flip_average", flip)):
        getattr(state, name).copy_(value)
    state.last_epoch.copy_(torch.where(pushes > 0, 0, -1))


def fill_state_by_recording(selector, g, epochs):
    """The selector's own record_outputs (native) over a few epochs of random batches."""
    n, q = selector.n, selector.q
    for epoch in range(epochs):
        for _ in range(2):
            indices, logits, _ = random_batch(g, n, q, from_logits=True, special_fraction=0.02)
            logits = logits.clamp(-60, 60)  # finite losses: an infinite loss makes H infinite
            targets = selector.context.labels.to_dense(torch.float32)[indices]
            selector.record_outputs(
                indices.to(selector.device), logits.to(selector.device), targets.to(selector.device), "logits", epoch
            )


def fallback_mixture(weights, pressure, p_beta, index_min):
    per_metric = torch.stack([functional.quantized_probabilities(w, pressure, index_min) for w in weights])
    return per_metric, functional.mixture(per_metric[0], per_metric[1], p_beta)


def check_probabilities(got, ref, pressure, index_min):
    """P from the kernel's weights (float32 metrics, float64 sums) against P from the
    float64 fallback's weights.

    The weights agree only to about float32 precision, so a weight lying within that
    error of a quantisation boundary ((1 - w̃) n an integer) may get the neighbouring
    index Q ± 1 on one path: its P then differs by the factor s^(1/n), and the softmax's
    normaliser by at most that factor too. So: every index equal or off by one, an
    index off by one only for a weight that near a boundary, and P within s^(2/n) per
    instance (equal to rounding where no index moved).
    """
    w_got = (got["delta"] + got["phi"]).cpu()
    w_ref = (ref["delta"] + ref["phi"]).cpu()
    n = w_got.shape[1]
    p_got, mixed_got = ops.quantized_mixture(got["delta"] + got["phi"], pressure, 0.4, index_min, got["range"])
    p_got, mixed_got = p_got.cpu(), mixed_got.cpu()
    # The kernel quantises its own weights exactly as the fallback would.
    p_own, mixed_own = fallback_mixture(w_got, pressure, 0.4, index_min)
    torch.testing.assert_close(p_got, p_own, rtol=1e-12, atol=0)
    torch.testing.assert_close(mixed_got, mixed_own, rtol=1e-12, atol=0)
    p_ref, _ = fallback_mixture(w_ref, pressure, 0.4, index_min)
    for m in range(2):
        q_got = functional.quantization_index(w_got[m], index_min)
        q_ref = functional.quantization_index(w_ref[m], index_min)
        if q_ref is None or q_got is None:
            # all weights equal on one path: the other must be (numerically) flat too
            assert (w_got[m].max() - w_got[m].min()).item() <= 1e-6 * max(1.0, w_got[m].abs().max().item())
            assert (w_ref[m].max() - w_ref[m].min()).item() <= 1e-6 * max(1.0, w_ref[m].abs().max().item())
            continue
        moved = q_got != q_ref
        assert bool(((q_got - q_ref).abs() <= 1).all())
        if bool(moved.any()):
            low, high = w_ref[m].min(), w_ref[m].max()
            position = (1.0 - (w_ref[m] - low) / (high - low)) * n
            w_err = (w_got[m] - w_ref[m]).abs().max() + (got["range"][m].cpu() - ref["range"][m].cpu()).abs().max()
            slack = 4 * n * w_err.item() / (high - low).item() + 1e-9
            distance = (position - position.round()).abs()
            assert bool((distance[moved] <= slack).all()), (distance[moved], slack)
            bound = pressure ** (2.0 / n) * (1 + 1e-12)
        else:
            bound = 1 + 1e-12
        ratio = p_got[m] / p_ref[m]
        assert ratio.max().item() <= bound and (1 / ratio).max().item() <= bound
    return p_got, p_ref
