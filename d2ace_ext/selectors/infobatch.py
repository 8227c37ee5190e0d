"""InfoBatch (Qin et al., ICLR 2024): prune well-learned instances at random, rescale the rest.

Written here from the paper and its public code (``NUS-HPC-AI-Lab/InfoBatch``,
``infobatch/infobatch.py``), for multi-label data:

- score: each instance's mean per-label BCE at its latest visit; before its first visit
  the score is ``initial_score`` = 3, InfoBatch's own starting value (a loss well above a
  trained one), so an unvisited instance is never "well learned". Epoch 0, where every
  score is 3, prunes nothing.
- each pruned epoch, the "well-learned" instances are those whose score is below the
  mean score of all n instances; a fraction ``prune_ratio`` = r of them, chosen
  uniformly at random, sit the epoch out, and the kept ones among them carry loss weight
  1/(1 - r) (InfoBatch's ``keep_ratio`` rescaling), every other instance weight 1. As in
  InfoBatch, ⌊(1 - r)·|low|⌋ of the |low| well-learned instances are kept.
- the last ``anneal`` = δ of the epochs (⌈δ T⌉ of T = ``num_epochs``: 13 of 100, 25 of
  200, as InfoBatch's code runs them; the rule of :func:`~d2ace_ext.budget.full_pass_epoch`)
  train on the full data with weight 1.

The epoch walks the kept instances in a shuffled order, so a pruned epoch is shorter:
⌈kept / b⌉ batches. The weights reach the loss through the sampler's
``importance_weights``; ``weights_losses = True`` tells a training loop (the harness's
included) that they are part of the method and must be applied.

Where this differs from InfoBatch's code, and why:

- the code resets the weights to 1 on the first full epoch only when its
  ``delta * T`` (δ there = 0.875, the fraction pruned) is an integer
  (``iterations == stop_prune + 1``); otherwise the last pruned epoch's 1/(1 - r) weights
  stay on through the full epochs (at T = 100, for instance). Here full epochs always
  weigh every loss 1.
- ``prune_ratio`` above 0.9 is an error here; the code silently caps it at 0.9.
- the random choice comes from a generator seeded per epoch from ``seed`` (reproducible,
  and a resumed run prunes the same instances), not NumPy's global seed.

Cost: O(b q) per step (one mean per visited row), O(n) per epoch (a mean, a comparison
and a permutation of the well-learned instances).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch

from ..budget import full_pass_epoch
from ..row_shard import check_shard
from ..validation import check_labels, check_seed, seed64
from ._common import check_rule, is_int, is_real, load_tensor_state, make_config, tensor_state
from .base import PRUNED, SHUFFLE, Selector

# seed64's streams s >= 0 serve the sampler's epochs, -2 Balance's masks, -3 DIHCL's
# subsets: InfoBatch's pruning draws hang off a stream of their own.
_PRUNE_STREAM = -4
# Slack for (1 - r) * count products such as 0.7 * 10 = 7.000000000000001 (keep 7, not 8).
_SLACK = 1e-9


@dataclass(frozen=True)
class InfoBatchConfig:
    """num_epochs: the run's length T; prune_ratio: r in [0, 0.9]; anneal: δ in [0, 1];
    initial_score: the score of an instance before its first visit (InfoBatch: 3);
    rescale: the kept low-score instances carry loss weight 1/(1 − r) (InfoBatch's
    rescaling, which keeps the epoch's loss unbiased); False prunes without it, an
    ablation that tells the pruning's effect from the reweighting's."""

    num_epochs: int = 100
    prune_ratio: float = 0.5
    anneal: float = 0.125
    initial_score: float = 3.0
    rescale: bool = True

    def __post_init__(self) -> None:
        own = "InfoBatchConfig"
        check_rule(
            own, "num_epochs", self.num_epochs, is_int(self.num_epochs) and self.num_epochs >= 1, "an integer >= 1"
        )
        check_rule(
            own,
            "prune_ratio",
            self.prune_ratio,
            is_real(self.prune_ratio) and 0.0 <= self.prune_ratio <= 0.9,
            "in [0, 0.9] (InfoBatch caps it at 0.9: the kept weight 1/(1 - r) grows without bound)",
        )
        check_rule(own, "anneal", self.anneal, is_real(self.anneal) and 0.0 <= self.anneal <= 1.0, "in [0, 1]")
        check_rule(
            own,
            "initial_score",
            self.initial_score,
            is_real(self.initial_score) and self.initial_score >= 0.0,
            "a finite number >= 0",
        )
        if not isinstance(self.rescale, bool):
            raise ValueError(f"{own}.rescale must be True or False, got {self.rescale!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class InfoBatchSelector(Selector):
    """labels (n, q) 0/1 (only the shape and the target check use them); ``config`` or
    keyword options of :class:`InfoBatchConfig`; seed: of the per-epoch pruning draws;
    device: where the state lives (default: labels'); shard: this rank's rows of a
    row-sharded state (None: every row).

    State: score (n,) float32, the mean BCE of each instance's latest visit (+inf for a
    saturated wrong prediction). Sharded, the n scores are gathered each pruned epoch,
    and every rank prunes from them as one process does.
    """

    TENSORS = ("score",)
    weights_losses = True
    display_name = "InfoBatch"
    config_class = InfoBatchConfig
    takes_seed = True
    uses_neighbors = False
    schedule_fields = ("num_epochs",)  # its annealed last epochs are a share of the run
    color = "#e69f00"
    display_rank = 4

    def __init__(
        self,
        labels: torch.Tensor,
        config: InfoBatchConfig | None = None,
        *,
        seed: int = 0,
        device=None,
        shard=None,
        **options,
    ) -> None:
        labels = check_labels(labels)
        self.config = make_config(InfoBatchConfig, config, options)
        self.seed = check_seed(seed, "seed")
        self.n, self.q = labels.shape
        self.shard = check_shard(shard, self.n)
        self.device = torch.device(device) if device is not None else labels.device
        self.labels = self.own_rows(labels.to(self.device)) != 0
        self.score = torch.full(
            (self.labels.shape[0],), float(self.config.initial_score), dtype=torch.float32, device=self.device
        )

    def batch_mode(self, epoch: int) -> str:
        cfg = self.config
        return SHUFFLE if full_pass_epoch(epoch, cfg.num_epochs, cfg.anneal) else PRUNED

    def record(self, indices, probs, losses, epoch) -> None:
        self.score[indices] = losses.mean(1).to(torch.float32)

    def prune_generator(self, epoch: int) -> torch.Generator:
        return torch.Generator().manual_seed(seed64(seed64(self.seed, _PRUNE_STREAM), epoch))

    def pruned_weights(self, epoch: int) -> torch.Tensor:
        """(n,) float64: 0 for the pruned, 1/(1 - r) for the kept well-learned (score
        below the mean; 1 without ``rescale``), 1 for the rest."""
        score = self.all_rows(self.score).to("cpu", torch.float64)
        low = torch.nonzero(score < score.mean()).squeeze(1)
        keep = 1.0 - float(self.config.prune_ratio)
        kept = math.floor(keep * low.numel() + _SLACK)
        chosen = low[torch.randperm(low.numel(), generator=self.prune_generator(epoch))[:kept]]
        weights = torch.ones(self.n, dtype=torch.float64)
        weights[low] = 0.0
        weights[chosen] = 1.0 / keep if self.config.rescale else 1.0
        return weights

    def state_dict(self) -> dict:
        return {**tensor_state(self, self.TENSORS), "seed": self.seed}

    def load_state_dict(self, state) -> None:
        load_tensor_state(self, state, self.TENSORS, {"seed": self.seed})
