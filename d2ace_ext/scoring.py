"""The per-epoch D2ACE scorer in pure PyTorch (Eqs. 3, 5-17, 21).

From the records it computes the metric matrices U and H (Eqs. 3, 5), then for each
metric A: label weights v (Eqs. 6-7), δ (Eq. 8), the relevance-masked cosine
correlation C over the nonzeros of Y (Eq. 9), (Z C) only where Y = 1 and φ
(Eqs. 10-11), w = δ + φ (Eq. 12), and the quantised probabilities (Eqs. 13-14); then the
mixture (Eqs. 16-17). :func:`score_records` is the pure-PyTorch definition of the fused
``score_visits`` op; the native kernels are checked against these functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from . import functional
from .config import D2ACEConfig
from .ring import row_blocks
from .sparse_rows import SparseRows, masked_gram, propagation_at_labels


@dataclass(frozen=True)
class LabelContext:
    """What the correlation term needs of Y and Z, built once per training set."""

    labels: SparseRows  # Y
    context: SparseRows  # Z
    label_pairs: tuple[torch.Tensor, torch.Tensor]  # row_pairs(Y, Y)
    context_pairs: tuple[torch.Tensor, torch.Tensor]  # row_pairs(Y, Z)


@dataclass(frozen=True)
class MetricScore:
    """Everything computed for one metric A ∈ {U, H}. Shapes: q, q, (q, q), n, n, n."""

    label_weights: torch.Tensor  # v_A (q,)
    correlation: torch.Tensor  # C_A (q, q), before any row normalisation
    delta: torch.Tensor  # δ_A (n,)
    phi: torch.Tensor  # φ_A (n,)
    probabilities: torch.Tensor  # P(x | w_A) (n,)

    @property
    def weights(self) -> torch.Tensor:
        """w_A = δ_A + φ_A (Eq. 12)."""
        return self.delta + self.phi


@dataclass(frozen=True)
class ScoreReport:
    """One epoch's scoring: both metrics, the schedule values and the mixture (n,)."""

    epoch: int
    pressure: float
    p_beta: float
    uncertainty: MetricScore
    hardness: MetricScore
    probabilities: torch.Tensor


def record_metrics(
    window: torch.Tensor,
    pushes: torch.Tensor,
    loss: torch.Tensor,
    flip_average: torch.Tensor,
    lambda1: float,
    loss_transform: str,
    dtype: torch.dtype = torch.float64,
    entropy: Callable[[torch.Tensor], torch.Tensor] = functional.binary_entropy,
):
    """U (Eq. 3) and H (Eq. 5) of every instance from its records, each (n, q) in ``dtype``.

    window (n, n_t, q), pushes (n,), loss and flip_average (n, q), in any floating dtype
    (a compact state's values are converted block by block); ``entropy`` evaluates Eq. 1.
    Rows are processed in blocks (:func:`ring.row_blocks`) so the temporaries of the
    window stay bounded (a 1,000,000 × 100 state would otherwise need > 10 GB in float64).
    """
    n, n_t, q = window.shape
    unc = torch.empty(n, q, dtype=dtype, device=window.device)
    hard = torch.empty_like(unc)
    for block in row_blocks(n, n_t * q):
        records, count = window[block].to(dtype), pushes[block]
        latest = functional.latest_probability(records, count)
        fluctuation = functional.window_fluctuation(records, count)
        unc[block] = functional.uncertainty(entropy(latest), fluctuation, lambda1)
        hard[block] = functional.hardness(loss[block].to(dtype), flip_average[block].to(dtype), loss_transform)
    return unc, hard


def correlation_phi(
    metric: torch.Tensor, weights: torch.Tensor, ctx: LabelContext, config: D2ACEConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eqs. 9-11 from the nonzeros of Y and Z, with ``config``'s options.
    metric (n, q), weights v (q,) -> (φ (n,), C (q, q))."""
    return correlation_and_phi(
        metric,
        weights,
        ctx,
        norm_eps=config.norm_eps,
        row_normalize=config.row_normalize_correlation,
        label_weights_in_phi=config.label_weights_in_phi,
    )


def correlation_and_phi(
    metric: torch.Tensor,
    weights: torch.Tensor,
    ctx: LabelContext,
    *,
    norm_eps: float,
    row_normalize: bool,
    label_weights_in_phi: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eqs. 9-11 from the nonzeros of Y and Z. metric (n, q), weights v (q,) -> (φ (n,), C (q, q))."""
    y = ctx.labels
    values = metric[y.rows, y.cols]
    correlation = functional.correlation_from_gram(masked_gram(values, y, ctx.label_pairs), norm_eps)  # Eq. 9
    phi = phi_from_correlation(
        values,
        correlation,
        weights,
        ctx,
        metric.shape[0],
        row_normalize=row_normalize,
        label_weights_in_phi=label_weights_in_phi,
    )
    return phi, correlation


def phi_from_correlation(
    values: torch.Tensor,
    correlation: torch.Tensor,
    weights: torch.Tensor,
    ctx: LabelContext,
    rows: int,
    *,
    row_normalize: bool,
    label_weights_in_phi: bool,
) -> torch.Tensor:
    """Eqs. 10-11: φ (rows,) from A's values at Y's nonzeros (nnz,), C (q, q) and v (q,);
    C row-normalised first under ``row_normalize`` (the published code). The unsharded
    and the row-sharded scorers (:mod:`~d2ace_ext.row_scoring`) both call this."""
    y = ctx.labels
    propagate = functional.row_normalised(correlation).T if row_normalize else correlation
    spread = propagation_at_labels(propagate, y, ctx.context, ctx.context_pairs)
    contribution = values * spread
    if label_weights_in_phi:
        contribution = contribution * weights[y.cols]
    phi = torch.zeros(rows, dtype=values.dtype, device=values.device)
    phi.index_add_(0, y.rows, contribution)
    return phi


def score_records(
    window: torch.Tensor,
    pushes: torch.Tensor,
    loss: torch.Tensor,
    flip_average: torch.Tensor,
    ctx: LabelContext,
    *,
    lambda1: float,
    loss_transform: str,
    norm_eps: float,
    row_normalize: bool,
    label_weights_in_phi: bool,
    workspace: torch.Tensor | None = None,
):
    """The pure-PyTorch definition of the fused ``score_visits`` op, in float64: Eqs. 3,
    5-12 for U (row 0) and H (row 1) with v = exp((μ + σ)/2).

    Returns (v (2, q), C (2, q, q), δ (2, n), φ (2, n), [min, max] of w = δ + φ (2, 2));
    ``workspace`` (2, n, q), when given, receives U and H as the op writes them.
    """
    metrics = record_metrics(window, pushes, loss, flip_average, lambda1, loss_transform)
    parts = []
    for metric in metrics:
        weights = functional.label_weights(metric)
        delta = functional.dynamic_weight(metric, weights)
        phi, gram = correlation_and_phi(
            metric,
            weights,
            ctx,
            norm_eps=norm_eps,
            row_normalize=row_normalize,
            label_weights_in_phi=label_weights_in_phi,
        )
        low, high = (delta + phi).aminmax()
        parts.append((weights, gram, delta, phi, torch.stack([low, high])))
    if workspace is not None:
        for row, metric in zip(workspace, metrics):
            row.copy_(metric)
    return tuple(torch.stack(values) for values in zip(*parts))


def quantised_mixture(
    weights: torch.Tensor, pressure: float, p_beta: float, index_min: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eqs. 13-14 for both rows of w (2, n) and Eq. 16's mixture, renormalised as
    :func:`score_epoch` does: (P (2, n), mixture (n,)). The pure-PyTorch definition of
    the fused ``quantized_mixture`` op."""
    per_metric = torch.stack([functional.quantized_probabilities(w, pressure, index_min) for w in weights])
    mixed = functional.mixture(per_metric[0], per_metric[1], p_beta)
    return per_metric, mixed / mixed.sum()


def score_metric(metric: torch.Tensor, ctx: LabelContext, config: D2ACEConfig, pressure: float) -> MetricScore:
    """Eqs. 6-14 for one metric matrix (n, q). Without ``config.correlation_enhancement``
    (ablation H) φ and C are zero, so w = δ."""
    weights = functional.label_weights(metric, config.label_weight_form)
    delta = functional.dynamic_weight(metric, weights)
    if config.correlation_enhancement:
        phi, gram = correlation_phi(metric, weights, ctx, config)
    else:
        phi = torch.zeros_like(delta)
        gram = metric.new_zeros(metric.shape[1], metric.shape[1])
    probs = functional.quantized_probabilities(delta + phi, pressure, config.quant_index_min)
    return MetricScore(weights, gram, delta, phi, probs)


def schedule_values(epoch: int, config: D2ACEConfig) -> tuple[float, float]:
    """(s, p_β) for the epoch whose batches are about to be drawn (Eqs. 21 and 17).

    ``schedule_epoch="current"`` (paper): Eq. 21 takes the 0-based epoch (its own
    conversion lives in :func:`functional.selection_pressure`), and Eq. 17, whose t_start
    and t_end are the paper's 1-based epochs, takes t = epoch + 1.
    ``"finished"`` (published code): both take the 0-based index of the epoch that just
    finished, epoch - 1, as the code's loop passes it.
    """
    if config.schedule_epoch == "current":
        t_pressure, t_mixing = epoch, epoch + 1
    else:
        t_pressure = t_mixing = epoch - 1
    pressure = functional.selection_pressure(
        t_pressure, config.warmup_epochs, config.num_epochs, config.initial_pressure, config.pressure_schedule
    )
    p_beta = functional.mixing_coefficient(
        t_mixing, config.p_beta_start, config.p_beta_end, config.t_start, config.t_end
    )
    return pressure, p_beta


def score_epoch(
    unc: torch.Tensor, hard: torch.Tensor, ctx: LabelContext, config: D2ACEConfig, epoch: int
) -> ScoreReport:
    """The whole per-epoch scorer. unc, hard: (n, q) -> a report with P (n,) summing to 1."""
    pressure, p_beta = schedule_values(epoch, config)
    by_unc = score_metric(unc, ctx, config, pressure)
    by_hard = score_metric(hard, ctx, config, pressure)
    mixed = functional.mixture(by_unc.probabilities, by_hard.probabilities, p_beta)
    return ScoreReport(epoch, pressure, p_beta, by_unc, by_hard, mixed / mixed.sum())
