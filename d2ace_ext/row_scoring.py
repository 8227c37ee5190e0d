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
from .scoring import LabelContext, MetricScore, ScoreReport, phi_from_correlation, quantised_mixture, schedule_values
from .sparse_rows import SparseRows, masked_gram
from .visits import VisitState


def native_metrics(visits: VisitState, config: D2ACEConfig) -> bool:
    """Whether U and H come from the native kernel (the unsharded path's choice)."""
    return ops.native_for(visits.window) and config.label_weight_form == "exponential"


def row_metrics(visits: VisitState, config: D2ACEConfig) -> torch.Tensor:
    """U and H of every row of ``visits``, stacked (2, rows, q): float32 from the native
    kernel, or float64 from the pure-PyTorch functions (see the module's pass 1)."""
    if not native_metrics(visits, config):
        return torch.stack(visits.metrics(config.lambda1, config.loss_transform))
    ops.raise_skipped_rows(visits.index_errors, visits.n)  # the whole state's counter, once
    rows, q = visits.n, visits.q
    options = dict(
        lambda1=config.lambda1,
        loss_transform=config.loss_transform,
        norm_eps=config.norm_eps,
        row_normalize=False,
        label_weights_in_phi=False,
    )
    if visits.window.dtype == torch.float32:  # the whole state in one call, into its own workspace
        ops.score_visits(
            visits.window,
            visits.pushes,
            visits.loss,
            visits.flip_average,
            _no_labels(rows, visits.device),
            workspace=visits.workspace(),
            **options,
        )
        return visits.workspace()
    metrics = torch.empty(2, rows, q, dtype=torch.float32, device=visits.device)
    for block in row_blocks(rows, visits.window_size * q):  # a compact state's rows in float32, block by block
        window, loss, flip_average = (
            t[block].to(torch.float32) for t in (visits.window, visits.loss, visits.flip_average)
        )
        workspace = torch.empty(2, block.stop - block.start, q, dtype=torch.float32, device=visits.device)
        ops.score_visits(
            window,
            visits.pushes[block],
            loss,
            flip_average,
            _no_labels(block.stop - block.start, visits.device),
            workspace=workspace,
            **options,
        )
        metrics[:, block] = workspace
    return metrics


def _no_labels(rows: int, device) -> LabelContext:
    """An empty Y and Z (rows, 1): the kernel then skips its Gram and φ passes (U and H only)."""
    nothing = torch.zeros(0, dtype=torch.int64, device=device)
    empty = SparseRows(
        rows=nothing, cols=nothing, row_ptr=torch.zeros(rows + 1, dtype=torch.int64, device=device), shape=(rows, 1)
    )
    return LabelContext(empty, empty, (nothing, nothing), (nothing, nothing))


def _blocks(metrics: torch.Tensor):
    """Row blocks of the stacked metrics (2, rows, q) in float64, about 32 MB each."""
    for block in row_blocks(metrics.shape[1], 2 * metrics.shape[2]):
        yield block, metrics[:, block].to(torch.float64)


def score_rows(visits: VisitState, ctx: LabelContext, config: D2ACEConfig, epoch: int, shard: RowShard) -> ScoreReport:
    """The epoch's report with P (n,) over all n instances, on every rank (a collective
    call when ``shard.world`` > 1). ``visits`` and ``ctx`` hold the rows of ``shard``."""
    pressure, p_beta = schedule_values(epoch, config)
    q, n, y = visits.q, shard.n, ctx.labels
    metrics = row_metrics(visits, config)  # (2, rows, q)
    # Pass 2: column sums and the raw masked Gram, summed over the ranks; then Σ (A - μ)².
    total = torch.zeros(2, q, dtype=torch.float64, device=metrics.device)
    for _, block in _blocks(metrics):
        total += block.sum(1)
    values = metrics[:, y.rows, y.cols].to(torch.float64)  # (2, nnz) A at Y's nonzeros
    grams = torch.stack([masked_gram(v, y, ctx.label_pairs) for v in values])  # (2, q, q), raw: M unscaled
    summed = shard.all_sum(torch.cat([total, grams.reshape(2, q * q)], dim=1))
    mean, gram = summed[:, :q] / n, summed[:, q:].reshape(2, q, q)
    deviation = torch.zeros_like(mean)
    for _, block in _blocks(metrics):
        centred = block - mean[:, None, :]
        deviation += (centred * centred).sum(1)
    std = (shard.all_sum(deviation) / n).clamp(min=0).sqrt()
    weights = functional.label_weights_from_moments(mean, std, config.label_weight_form)  # v (2, q)
    # Pass 3: δ and φ of the rows held here.
    delta = torch.empty(2, metrics.shape[1], dtype=torch.float64, device=metrics.device)
    for block, values_block in _blocks(metrics):
        for m in range(2):
            delta[m, block] = functional.dynamic_weight(values_block[m], weights[m])  # Eq. 8
    if config.correlation_enhancement:
        correlation = functional.correlation_from_gram(gram, config.norm_eps)  # Eq. 9
        phi = torch.stack(
            [
                phi_from_correlation(
                    values[m],
                    correlation[m],
                    weights[m],
                    ctx,
                    delta.shape[1],
                    row_normalize=config.row_normalize_correlation,
                    label_weights_in_phi=config.label_weights_in_phi,
                )
                for m in range(2)
            ]
        )  # Eqs. 10-11
    else:  # ablation H: w = δ
        correlation, phi = torch.zeros_like(gram), torch.zeros_like(delta)
    # Pass 4: δ and φ of every instance, then the unsharded path's quantiser and mixture.
    everyone = shard.gather(torch.cat([delta, phi]).T)  # (n, 4): δ_U, δ_H, φ_U, φ_H
    deltas, phis = everyone[:, :2].T, everyone[:, 2:].T  # (2, n) each
    per_metric, mixed = _quantised(deltas + phis, pressure, p_beta, config, native_metrics(visits, config))
    scores = [MetricScore(weights[m], correlation[m], deltas[m], phis[m], per_metric[m]) for m in range(2)]
    return ScoreReport(epoch, pressure, p_beta, scores[0], scores[1], mixed)


def _quantised(weights: torch.Tensor, pressure: float, p_beta: float, config: D2ACEConfig, native: bool):
    """Eqs. 13-14 and 16 for w (2, n) as the unsharded path does them: the fused
    quantiser and its unnormalised mixture after the native scoring, else the pure
    definition (scoring.quantised_mixture, score_epoch's arithmetic)."""
    if native:
        return ops.quantized_mixture(weights, pressure, p_beta, config.quant_index_min)
    return quantised_mixture(weights, pressure, p_beta, config.quant_index_min)
