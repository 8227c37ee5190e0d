"""Recent (Song et al. 2020, "Carpe diem"/Recency Bias), adapted to multi-label.

Per label, the binary entropy (bits) of the fraction of the instance's last n_t
predictions that are positive (p > threshold); instance weight = sum over labels.
Sampling: the quantiser of Eqs. 13-14 (Appendix D.1, which cites Song et al. for it), or
the rank quantiser of Loshchilov & Hutter's online batch selection.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import functional
from ..ring import PredictionRing
from ._common import QuantizedConfig, QuantizedSelector, check_choice, check_rule, is_int, is_real


@dataclass(frozen=True)
class RecentConfig(QuantizedConfig):
    """window_size: n_t; window_unit: one entry per "visit" (Song et al. record each
    forward pass) or per "epoch"; threshold: p above it counts as a positive prediction;
    quantizer: "index" (Eqs. 13-14) or "rank" (P ∝ s^(-rank/n), Loshchilov & Hutter's)."""

    window_size: int = 5
    window_unit: str = "visit"
    threshold: float = 0.5
    quantizer: str = "index"

    def _check(self) -> None:
        super()._check()
        check_rule(
            "RecentConfig",
            "window_size",
            self.window_size,
            is_int(self.window_size) and self.window_size >= 1,
            "an integer >= 1",
        )
        check_choice("RecentConfig", "window_unit", self.window_unit, ("visit", "epoch"))
        check_rule(
            "RecentConfig",
            "threshold",
            self.threshold,
            is_real(self.threshold) and 0.0 < self.threshold < 1.0,
            "in (0, 1)",
        )
        check_choice("RecentConfig", "quantizer", self.quantizer, ("index", "rank"))


def recent_scores(window: torch.Tensor, held: torch.Tensor, threshold: float) -> torch.Tensor:
    """window (n, n_t, q), held (n, n_t) bool -> (n, q) float64 entropy in bits of the
    positive fraction among held entries; an instance with none reads as 1/2 (1 bit)."""
    positive = (window > threshold) & held.unsqueeze(2)
    count = held.sum(1, keepdim=True).to(torch.float64)
    fraction = positive.sum(1).to(torch.float64) / count.clamp(min=1.0)
    fraction = torch.where(count > 0, fraction, torch.full_like(fraction, 0.5))
    return functional.binary_entropy(fraction)


class RecentSelector(QuantizedSelector):
    """labels (n, q) 0/1 (only the shape is used); ``config`` or keyword options of
    :class:`RecentConfig`; device: where the state lives (default: labels'); shard:
    this rank's rows of a row-sharded state (None: every row)."""

    needs_loss = False
    TENSORS = ("window", "pushes", "last_epoch")
    display_name = "Recent"
    config_class = RecentConfig
    takes_seed = False
    uses_neighbors = False
    schedule_fields = ("num_epochs", "warmup_epochs")
    color = "#999933"
    display_rank = 7

    def __init__(
        self, labels: torch.Tensor, config: RecentConfig | None = None, *, device=None, shard=None, **options
    ) -> None:
        self._setup(labels, RecentConfig, config, options, device, shard)
        self.quantizer = self.config.quantizer
        self.ring = PredictionRing(self.rows, self.q, self.config.window_size, self.device)

    # The ring's tensors are the state.
    window = property(lambda self: self.ring.window)
    pushes = property(lambda self: self.ring.pushes)
    last_epoch = property(lambda self: self.ring.last_epoch)

    def record(self, indices, probs, losses, epoch) -> None:
        self.ring.record(indices, probs, epoch, per_epoch=self.config.window_unit == "epoch")

    def weights(self) -> torch.Tensor:
        out = torch.empty(self.rows, dtype=torch.float64, device=self.device)
        for block in self.ring.blocks():
            out[block] = recent_scores(self.ring.window[block], self.ring.held(block), self.config.threshold).sum(1)
        return out
