"""ML-Unc (Zhou et al. 2025), the uncertainty-and-correlation baseline.

Uncertainty U (n, q) exactly as D2ACE's Eqs. 1-3: u = λ1 e + (1 - λ1) d, e the binary
entropy (bits) of the newest prediction, d the mean absolute change over the last n_t
predictions. Label correlation C (q, q) from mutual information between the
discretised columns of U (5 bins of width 0.2, the released helper's
{0.1, ..., 0.9}): plug-in MI in nats, clamped at 0, diagonal 1, each row divided by its
maximum. With ``correlation="ones"`` C is the all-ones matrix the released notebook
actually uses. Instance weight w = row sums of U C, i.e. w_i = Σ_j U_ij Σ_k C_jk
(Appendix A.2); sampling by Eqs. 13-14 with s decaying 100 → 1.

The MI needs every pair of labels' joint bin counts: O(n q²) per epoch, computed as one
blocked matrix product of the one-hot bin indicators (4 of the 5 bins; the fifth
follows from the marginals), not per pair of labels. Under a row-sharded state each
rank counts its own rows and the (4q)² counts are summed over the ranks: integers,
exact, so every rank gets the C one process would.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .. import functional
from ..ring import PredictionRing, row_blocks
from ._common import QuantizedConfig, QuantizedSelector, check_choice, check_rule, is_int, is_real

BIN_EDGES = (0.2, 0.4, 0.6, 0.8)  # 5 bins, as np.digitize with [0, .2, .4, .6, .8, 1] and clipping


@dataclass(frozen=True)
class MLUncConfig(QuantizedConfig):
    """window_size: n_t; window_unit: "epoch" (the paper) or "visit" (the released
    notebook's per-instance deque); lambda1: λ1 of Eq. 3; correlation:
    "mutual_information" (the paper) or "ones" (the released notebook)."""

    window_size: int = 5
    window_unit: str = "epoch"
    lambda1: float = 0.5
    correlation: str = "mutual_information"

    def _check(self) -> None:
        super()._check()
        check_rule(
            "MLUncConfig",
            "window_size",
            self.window_size,
            is_int(self.window_size) and self.window_size >= 2,
            "an integer >= 2 (Eq. 2 needs two entries)",
        )
        check_choice("MLUncConfig", "window_unit", self.window_unit, ("epoch", "visit"))
        check_rule(
            "MLUncConfig", "lambda1", self.lambda1, is_real(self.lambda1) and 0.0 <= self.lambda1 <= 1.0, "in [0, 1]"
        )
        check_choice("MLUncConfig", "correlation", self.correlation, ("mutual_information", "ones"))


def uncertainty_bins(unc: torch.Tensor) -> torch.Tensor:
    """(n, q) float -> (n, q) int64 bin index in 0..4 (below 0.2 -> 0, 0.8 and above -> 4)."""
    edges = torch.tensor(BIN_EDGES, dtype=unc.dtype, device=unc.device)
    return torch.bucketize(unc, edges, right=True)


def bin_cooccurrence(bins: torch.Tensor, num_bins: int = 5) -> torch.Tensor:
    """Joint counts of the first num_bins - 1 bins of every pair of columns of ``bins``
    (m, q) int64 in [0, num_bins): (q b, q b) float64, b = num_bins - 1, integers."""
    m, q = bins.shape
    b = num_bins - 1
    # Counts are integers below 2^24 in float32 products while m < 2^24: exact and fast.
    dtype = torch.float32 if m < (1 << 24) else torch.float64
    levels = torch.arange(b, device=bins.device)
    gram = torch.zeros(q * b, q * b, dtype=dtype, device=bins.device)
    for block in row_blocks(m, q * b):
        onehot = (bins[block].unsqueeze(2) == levels).to(dtype).reshape(-1, q * b)
        gram.addmm_(onehot.T, onehot)
    return gram.to(torch.float64)


def mutual_information(bins: torch.Tensor, num_bins: int = 5) -> torch.Tensor:
    """Plug-in mutual information (nats) between every pair of columns of ``bins``
    (n, q) int64 in [0, num_bins). -> (q, q) float64, symmetric, MI_jj = entropy of j."""
    n, q = bins.shape
    return information_from_counts(bin_cooccurrence(bins, num_bins), n, q, num_bins)


def information_from_counts(gram: torch.Tensor, n: int, q: int, num_bins: int = 5) -> torch.Tensor:
    """The mutual information (q, q) of :func:`mutual_information` from the joint counts
    ``gram`` (q b, q b) of :func:`bin_cooccurrence` over all n rows."""
    b = num_bins - 1
    joint = gram.reshape(q, b, q, b).permute(0, 2, 1, 3)  # (q, q, b, b)
    same = torch.arange(q, device=gram.device)
    marginal = joint[same, same].diagonal(dim1=1, dim2=2)  # (q, b): N_jj(a, a)
    marginal = torch.cat([marginal, n - marginal.sum(1, keepdim=True)], dim=1)  # (q, num_bins)
    last_col = marginal[:, None, :b] - joint.sum(3)  # N_jk(a, last)
    last_row = marginal[None, :, :b] - joint.sum(2)  # N_jk(last, b)
    corner = n - joint.sum((2, 3)) - last_col.sum(2) - last_row.sum(2)
    xlogx = lambda t: torch.special.xlogy(t, t.clamp(min=0))  # noqa: E731  (0 log 0 = 0)
    joint_sum = xlogx(joint).sum((2, 3)) + xlogx(last_col).sum(2) + xlogx(last_row).sum(2) + xlogx(corner)
    single = xlogx(marginal).sum(1)
    # MI = H_j + H_k - H_jk with H = log n - (Σ c log c)/n.
    return math.log(n) + (joint_sum - single[:, None] - single[None, :]) / n


def correlation_matrix(unc: torch.Tensor, shard=None) -> torch.Tensor:
    """C (q, q) float64 from U (n, q): MI of the binned columns, >= 0, diagonal 1, rows /
    row max. With ``shard`` (a RowShard) ``unc`` holds this rank's rows and the counts
    are summed over the ranks."""
    if shard is None:
        mi = mutual_information(uncertainty_bins(unc))
    else:
        counts = shard.all_sum(bin_cooccurrence(uncertainty_bins(unc)))
        mi = information_from_counts(counts, shard.n, unc.shape[1])
    mi = mi.clamp(min=0.0)
    mi.fill_diagonal_(1.0)
    return mi / mi.max(1, keepdim=True).values


class MLUncSelector(QuantizedSelector):
    """labels (n, q) 0/1 (only the shape is used); ``config`` or keyword options of
    :class:`MLUncConfig`; device: where the state lives (default: labels'); shard: this
    rank's rows of a row-sharded state (None: every row)."""

    needs_loss = False
    TENSORS = ("window", "pushes", "last_epoch")
    display_name = "ML-Unc"
    config_class = MLUncConfig
    takes_seed = False
    uses_neighbors = False
    schedule_fields = ("num_epochs", "warmup_epochs")
    color = "#cc79a7"
    display_rank = 1

    def __init__(
        self, labels: torch.Tensor, config: MLUncConfig | None = None, *, device=None, shard=None, **options
    ) -> None:
        self._setup(labels, MLUncConfig, config, options, device, shard)
        self.ring = PredictionRing(self.rows, self.q, self.config.window_size, self.device)
        self.last_correlation: torch.Tensor | None = None

    window = property(lambda self: self.ring.window)
    pushes = property(lambda self: self.ring.pushes)
    last_epoch = property(lambda self: self.ring.last_epoch)

    def record(self, indices, probs, losses, epoch) -> None:
        self.ring.record(indices, probs, epoch, per_epoch=self.config.window_unit == "epoch")

    def uncertainty(self) -> torch.Tensor:
        """U (rows, q) float64 of the rows held here, Eq. 3 from the ring (an unvisited
        instance reads p = 0.5)."""
        out = torch.empty(self.rows, self.q, dtype=torch.float64, device=self.device)
        for block in self.ring.blocks():
            window, pushes = self.ring.window[block].to(torch.float64), self.ring.pushes[block]
            entropy = functional.binary_entropy(functional.latest_probability(window, pushes))
            out[block] = functional.uncertainty(
                entropy, functional.window_fluctuation(window, pushes), self.config.lambda1
            )
        return out

    def weights(self) -> torch.Tensor:
        unc = self.uncertainty()
        if self.config.correlation == "ones":
            label_weight = torch.full((self.q,), float(self.q), dtype=torch.float64, device=self.device)
        else:
            self.last_correlation = correlation_matrix(unc, self.shard)
            label_weight = self.last_correlation.sum(1)
        return unc @ label_weight
