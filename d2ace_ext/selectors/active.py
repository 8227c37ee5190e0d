"""Active (Chang et al. 2017, "Active bias"), adapted to multi-label as in Appendix D.1.

Per label, the standard deviation of the instance's predicted probabilities over its
whole history, with Active Bias's confidence term: std-hat = sqrt(v + v²/(m - 1)), v the
sample variance of the m recorded probabilities. Instance weight = sum over labels;
sampling by the quantiser of Eqs. 13-14.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ._common import QuantizedConfig, QuantizedSelector, check_rule, is_real


@dataclass(frozen=True)
class ActiveConfig(QuantizedConfig):
    """``unseen_variance``: the per-label variance assumed for an instance with fewer
    than two records (0.25, the largest a [0, 1] variable can have), so that an instance
    the model has not seen twice is not starved; its confidence term uses m = 2."""

    unseen_variance: float = 0.25

    def _check(self) -> None:
        super()._check()
        ok = is_real(self.unseen_variance) and 0.0 <= self.unseen_variance <= 0.25
        check_rule("ActiveConfig", "unseen_variance", self.unseen_variance, ok, "in [0, 0.25]")


def active_scores(count: torch.Tensor, mean_sq_dev: torch.Tensor, unseen_variance: float) -> torch.Tensor:
    """std-hat per label. count (n,) int64 records; mean_sq_dev (n, q) = Σ (p - mean)²
    (Welford's M2). -> (n, q) float64."""
    m = count.to(torch.float64).unsqueeze(1)
    enough = m >= 2
    dof = torch.where(enough, m - 1.0, torch.ones_like(m))
    var = torch.where(enough, mean_sq_dev.to(torch.float64) / dof, torch.full_like(dof, unseen_variance))
    var = var.clamp(min=0.0)  # Welford's M2 is >= 0 in exact arithmetic; guard rounding
    return torch.sqrt(var + var * var / dof)


class ActiveSelector(QuantizedSelector):
    """labels (n, q) 0/1 (only the shape is used); ``config`` or keyword options of
    :class:`ActiveConfig`; device: where the state lives (default: labels'); shard:
    this rank's rows of a row-sharded state (None: every row).

    State: count (n,) int64, mean (n, q) and m2 (n, q) float32, updated by Welford's
    recurrence at every visit, so the whole-history variance costs O(nq) per epoch
    instead of the O(nqt) of re-reading the history (Appendix B).
    """

    needs_loss = False
    TENSORS = ("count", "mean", "m2")
    display_name = "Active"
    config_class = ActiveConfig
    takes_seed = False
    uses_neighbors = False
    schedule_fields = ("num_epochs", "warmup_epochs")
    color = "#8c564b"
    display_rank = 6

    def __init__(
        self, labels: torch.Tensor, config: ActiveConfig | None = None, *, device=None, shard=None, **options
    ) -> None:
        self._setup(labels, ActiveConfig, config, options, device, shard)
        self.count = torch.zeros(self.rows, dtype=torch.int64, device=self.device)
        self.mean = torch.zeros(self.rows, self.q, dtype=torch.float32, device=self.device)
        self.m2 = torch.zeros(self.rows, self.q, dtype=torch.float32, device=self.device)

    def record(self, indices, probs, losses, epoch) -> None:
        count = self.count[indices] + 1
        mean = self.mean[indices]
        delta = probs - mean
        new_mean = mean + delta / count.unsqueeze(1).to(probs.dtype)
        self.m2[indices] = self.m2[indices] + delta * (probs - new_mean)
        self.mean[indices] = new_mean
        self.count[indices] = count

    def weights(self) -> torch.Tensor:
        return active_scores(self.count, self.m2, self.config.unseen_variance).sum(1)
