"""D2ACE's per-epoch scoring (Eqs. 3, 5-17) in passes over the rows a rank holds, for a
row-sharded or compact (16-bit) visit state.

The fused native op scores a whole float32 state in one call. A sharded state holds only
this rank's rows, and a compact one is not what the kernels read; both are scored here,
in the passes the kernel makes, with what needs every row combined over the ranks:

1. U and H (Eqs. 3, 5) of the rows held here: by the native kernel (a compact state's
   rows converted to float32 block by block, at the op boundary) when it serves the
   device and the label weights are Eq. 7's exponential, else by the pure-PyTorch
   functions in float64, the choice the unsharded path makes, so each path's U and H
   are the unsharded path's bit for bit.
2. Column sums of U and H and the raw masked Gram G = Σ_i Σ_{j,k ∈ Y_i} A_ij A_ik,
   summed over the ranks (2q + 2q² numbers); then Σ (A - μ)² (2q numbers).
3. v (Eqs. 6-7), C (Eq. 9: G scaled by the column norms √G_jj + ε), the published
   code's row normalisation; δ (Eq. 8) and φ (Eqs. 10-11) of the rows held here.
4. δ and φ of all n instances gathered (4 floats an instance); every rank quantises
   w = δ + φ (Eqs. 13-14) and mixes (Eq. 16) with the unsharded path's own functions.

Sums over the ranks change the order of float64 additions, so v, C and w equal the
unsharded ones to float64 rounding; the quantised probabilities then agree exactly
except where a weight lies within that rounding of a quantisation boundary.
"""
from __future__ import annotations

import torch

from . import functional, ops
from .config import D2ACEConfig
from .ring import row_blocks
from .row_shard import RowShard
from .scoring import _ROW_NORMALISE_EPS, LabelContext, MetricScore, ScoreReport, schedule_values
from .sparse_rows import SparseRows, masked_gram, propagation_at_labels
from .visits import VisitState


class _Float32Rows:
    """What :func:`ops.score_visits` reads of a state, for rows ``block`` of ``visits``
    in float32 (a compact state's rows converted here), writing U and H to ``workspace``
    (2, rows, q) float32."""

    def __init__(self, visits: VisitState, block: slice, workspace: torch.Tensor) -> None:
        self.window = visits.window[block].to(torch.float32)
        self.pushes = visits.pushes[block]
        self.loss = visits.loss[block].to(torch.float32)
        self.flip_average = visits.flip_average[block].to(torch.float32)
        self._workspace = workspace

    def workspace(self) -> torch.Tensor:
        return self._workspace

    def raise_index_errors(self) -> None:  # the caller asks the whole state once
        pass


def native_metrics(visits: VisitState, config: D2ACEConfig) -> bool:
    """Whether U and H come from the native kernel (the unsharded path's choice)."""
    return ops.native_for(visits.window) and config.label_weight_form == "exponential"


def row_metrics(visits: VisitState, config: D2ACEConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """U and H (rows, q) of every row of ``visits``: float32 from the native kernel, or
    float64 from the pure-PyTorch functions (see the module's pass 1)."""
    if not native_metrics(visits, config):
        return visits.metrics(config.lambda1, config.loss_transform)
    visits.raise_index_errors()
    rows, q = visits.n, visits.q
    options = dict(lambda1=config.lambda1, loss_transform=config.loss_transform, norm_eps=config.norm_eps,
                   row_normalize=False, label_weights_in_phi=False)
    if visits.window.dtype == torch.float32:  # the whole state in one call, into its own workspace
        empty = _no_labels(rows, visits.device)
        ops.score_visits(visits, empty, empty, **options)
        metrics = visits.workspace()
        return metrics[0], metrics[1]
    metrics = torch.empty(2, rows, q, dtype=torch.float32, device=visits.device)
    for block in row_blocks(rows, visits.window_size * q):
        size = block.stop - block.start
        workspace = torch.empty(2, size, q, dtype=torch.float32, device=visits.device)
        empty = _no_labels(size, visits.device)
        ops.score_visits(_Float32Rows(visits, block, workspace), empty, empty, **options)
        metrics[:, block] = workspace
    return metrics[0], metrics[1]


def _no_labels(rows: int, device) -> SparseRows:
    """An empty Y (rows, 1): the kernel then skips its Gram and φ passes (U and H only)."""
    nothing = torch.zeros(0, dtype=torch.int64, device=device)
    return SparseRows(rows=nothing, cols=nothing, row_ptr=torch.zeros(rows + 1, dtype=torch.int64, device=device),
                      shape=(rows, 1))


def _column_stats(metric: torch.Tensor, ctx: LabelContext, shard: RowShard) -> tuple:
    """(Σ_i A_ij (q,), G (q, q), A at Y's nonzeros (nnz,)) of the rows held here, float64."""
    total = metric.sum(0, dtype=torch.float64)
    values = metric[ctx.labels.rows, ctx.labels.cols].to(torch.float64)
    return total, masked_gram(values, ctx.labels, ctx.label_pairs), values


def _squared_deviation(metric: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """Σ_i (A_ij - μ_j)² (q,) float64 over the rows held here, in row blocks."""
    out = torch.zeros_like(mean)
    for block in row_blocks(metric.shape[0], metric.shape[1]):
        out += ((metric[block].to(torch.float64) - mean) ** 2).sum(0)
    return out


def _local_scores(metric, values, weights, gram, ctx: LabelContext, config: D2ACEConfig):
    """(δ (rows,), φ (rows,), C (q, q)) of the rows held here from the global v and G."""
    delta = torch.empty(metric.shape[0], dtype=torch.float64, device=metric.device)
    for block in row_blocks(metric.shape[0], metric.shape[1]):
        delta[block] = functional.dynamic_weight(metric[block].to(torch.float64), weights)
    if not config.correlation_enhancement:  # ablation H: w = δ
        return delta, torch.zeros_like(delta), torch.zeros_like(gram)
    norm = gram.diagonal().clamp(min=0).sqrt() + config.norm_eps
    scale = norm[:, None] * norm[None, :]
    correlation = torch.where(scale > 0, gram / torch.where(scale > 0, scale, torch.ones_like(scale)),
                              torch.zeros_like(gram))  # 0/0 := 0 for a column without mass
    if config.row_normalize_correlation:
        propagate = (correlation / (correlation.sum(1, keepdim=True) + _ROW_NORMALISE_EPS)).T
    else:
        propagate = correlation
    contribution = values * propagation_at_labels(propagate, ctx.labels, ctx.context, ctx.context_pairs)
    if config.label_weights_in_phi:
        contribution = contribution * weights[ctx.labels.cols]
    phi = torch.zeros_like(delta).index_add_(0, ctx.labels.rows, contribution)
    return delta, phi, correlation


def score_rows(visits: VisitState, ctx: LabelContext, config: D2ACEConfig, epoch: int,
               shard: RowShard) -> ScoreReport:
    """The epoch's report with P (n,) over all n instances, on every rank (a collective
    call when ``shard.world`` > 1). ``visits`` and ``ctx`` hold the rows of ``shard``."""
    pressure, p_beta = schedule_values(epoch, config)
    native = native_metrics(visits, config)
    metrics = row_metrics(visits, config)
    stats = [_column_stats(metric, ctx, shard) for metric in metrics]
    q = visits.q
    summed = shard.all_sum(torch.cat([torch.cat([total, gram.reshape(-1)]) for total, gram, _ in stats]))
    summed = summed.view(2, q + q * q)
    means = summed[:, :q] / shard.n
    deviation = shard.all_sum(torch.stack([_squared_deviation(m, mu) for m, mu in zip(metrics, means)]))
    stds = (deviation / shard.n).clamp(min=0).sqrt()
    local = []
    for m, metric in enumerate(metrics):
        weights = functional.label_weights_from_moments(means[m], stds[m], config.label_weight_form)
        gram = summed[m, q:].view(q, q)
        local.append((weights, *_local_scores(metric, stats[m][2], weights, gram, ctx, config)))
    held = torch.stack([part for _, delta, phi, _ in local for part in (delta, phi)], dim=1)  # (rows, 4)
    everyone = shard.gather(held)                                                            # (n, 4)
    deltas, phis = everyone[:, 0::2].T, everyone[:, 1::2].T                                  # (2, n) each
    weights_all = deltas + phis
    if native:  # as the unsharded native path: the fused quantiser, unnormalised mixture
        per_metric, mixed = ops.quantized_mixture(weights_all, pressure, p_beta, config.quant_index_min)
    else:       # as scoring.score_epoch
        per_metric = torch.stack([functional.quantized_probabilities(w, pressure, config.quant_index_min)
                                  for w in weights_all])
        mixed = functional.mixture(per_metric[0], per_metric[1], p_beta)
        mixed = mixed / mixed.sum()
    scores = [MetricScore(local[m][0], local[m][3], deltas[m], phis[m], per_metric[m]) for m in range(2)]
    return ScoreReport(epoch, pressure, p_beta, scores[0], scores[1], mixed)
