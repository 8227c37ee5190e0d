"""Balance (Hand et al. 2018, selective learning), as set up in Appendix D.1.

Batches are ordinary shuffled passes; the balancing happens in the loss. For each label
j of a batch of b instances with k_j minority and M_j majority entries (minority = the
rarer of positive/negative in that batch), the minority entries get weight
w_j = min(b / (2 k_j), max_weight) and only round(w_j k_j) of the majority entries,
chosen at random, keep weight 1; the surplus majority entries are masked (weight 0).
The effective batch is then 1:1 positive:negative per label up to rounding (at an odd b,
or a capped w_j k_j that is not an integer, the kept majority is half an entry heavier),
at the batch's original size b when uncapped. A label with one class absent from the
batch cannot be balanced and keeps weight 1 everywhere. Cost: O(b q log b) per step,
O(n q log b) per epoch.

Use in the training step::

    mask = sampler.selector.loss_mask(idx, y)                    # (b, q) float32
    per_entry = F.binary_cross_entropy_with_logits(logits, y, reduction="none")
    loss = (per_entry * mask).sum() / mask.numel()

The choice of the kept majority entries is the only randomness of a selector: it comes
from the selector's own CPU generator, seeded from the sampler's seed by
:func:`~d2ace_ext.factory.make_sampler` and saved in ``state_dict``, so a run is
reproducible by seed and resumes exactly.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch

from ..validation import as_index_tensor, check_binary, check_labels, check_seed, seed64
from ._common import check_rule, is_real, make_config
from .base import SHUFFLE, Selector


@dataclass(frozen=True)
class BalanceConfig:
    """max_weight: cap on the minority weight (None: uncapped, exact 1:1 at size b)."""

    max_weight: float | None = None

    def __post_init__(self) -> None:
        if self.max_weight is not None:
            ok = is_real(self.max_weight) and self.max_weight >= 1.0
            check_rule("BalanceConfig", "max_weight", self.max_weight, ok, "None or a finite number >= 1")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def balance_mask(targets: torch.Tensor, keys: torch.Tensor, max_weight: float | None) -> torch.Tensor:
    """targets (b, q) 0/1; keys (b, q) uniform in [0, 1) deciding which majority entries
    survive (the smallest keys). -> (b, q) float32 loss weights."""
    b = targets.shape[0]
    positive = targets != 0
    pos = positive.sum(0)
    neg = b - pos
    minority_is_pos = pos <= neg
    minority = torch.where(minority_is_pos.unsqueeze(0), positive, ~positive)
    k = torch.minimum(pos, neg).to(torch.float64)
    weight = b / (2.0 * k.clamp(min=1.0))
    if max_weight is not None:
        weight = weight.clamp(max=max_weight)
    keep = torch.floor(weight * k + 0.5)  # majority entries kept, >= k since weight >= 1
    # Rank of each majority entry among its label's majority entries by key (0 = kept first).
    masked_keys = torch.where(minority, torch.full_like(keys, math.inf), keys)
    rank = torch.argsort(torch.argsort(masked_keys, dim=0), dim=0).to(torch.float64)
    majority_weight = (rank < keep.unsqueeze(0)).to(torch.float64)
    out = torch.where(minority, weight.unsqueeze(0).expand_as(keys), majority_weight)
    balanced = k > 0
    out = torch.where(balanced.unsqueeze(0), out, torch.ones_like(out))
    return out.to(torch.float32)


# The generator stream of the loss masks: seed64's stream s serves the sampler's epoch s,
# so a stream no epoch reaches keeps the masks independent of the batch order.
_MASK_STREAM = -2


class BalanceSelector(Selector):
    """labels (n, q) 0/1 training labels; ``config`` or keyword options of
    :class:`BalanceConfig`; seed: of the generator that picks the kept majority
    entries; device: where ``loss_mask`` returns its weights (default: labels')."""

    needs_loss = False
    uses_records = False  # its loss masks come from loss_mask(), not from the records
    display_name = "Balance"
    config_class = BalanceConfig
    takes_seed = True
    uses_neighbors = False
    schedule_fields = ()
    color = "#56b4e9"
    display_rank = 5

    @staticmethod
    def static_label_weights(labels: torch.Tensor) -> torch.Tensor:
        """The minority weight n / (2 min(pos_j, neg_j)) of each label (q,) float64 over
        the whole training set (the per-batch loss_mask weighs by the batch's counts)."""
        y = labels.to(torch.float64)
        positives = y.sum(0)
        return y.shape[0] / (2 * torch.minimum(positives, y.shape[0] - positives).clamp(min=1))

    def __init__(
        self,
        labels: torch.Tensor,
        config: BalanceConfig | None = None,
        *,
        seed: int = 0,
        device=None,
        shard=None,
        **options,
    ) -> None:  # shard: no per-instance state, so nothing to shard
        labels = check_labels(labels)
        self.config = make_config(BalanceConfig, config, options)
        self.n, self.q = labels.shape
        self.device = torch.device(device) if device is not None else labels.device
        self.seed = check_seed(seed, "seed")
        self.generator = torch.Generator().manual_seed(seed64(self.seed, _MASK_STREAM))

    def batch_mode(self, epoch: int) -> str:
        return SHUFFLE

    def loss_mask(self, indices, targets: torch.Tensor) -> torch.Tensor:
        """Per-entry loss weights (b, q) float32 on ``targets``' device: 0 for masked
        surplus majority entries, 1 for kept majority entries, w_j for minority ones.
        indices (b,) the batch's instance indices; targets (b, q) its 0/1 labels."""
        index = as_index_tensor(indices, self.n, "indices")
        if not isinstance(targets, torch.Tensor):
            raise TypeError(f"targets must be a torch.Tensor, got {type(targets).__name__}")
        if targets.dim() != 2 or tuple(targets.shape) != (index.numel(), self.q):
            raise ValueError(f"targets must have shape ({index.numel()}, {self.q}), got {tuple(targets.shape)}")
        check_binary(targets, "targets")
        keys = torch.rand(targets.shape, generator=self.generator, dtype=torch.float64)
        return balance_mask(targets.detach().cpu(), keys, self.config.max_weight).to(targets.device)

    def state_dict(self) -> dict:
        return {
            "config": self.config.to_dict(),
            "n": self.n,
            "q": self.q,
            "seed": self.seed,
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        if not isinstance(state, dict):
            raise TypeError(f"BalanceSelector state must be a dict, got {type(state).__name__}")
        for key in ("config", "n", "q", "seed"):
            mine = self.config.to_dict() if key == "config" else getattr(self, key)
            if state.get(key) != mine:
                raise ValueError(f"BalanceSelector state has {key}={state.get(key)!r}, this one has {mine!r}")
        generator_state = state.get("generator")
        probe = torch.Generator()
        try:
            probe.set_state(generator_state)
        except (TypeError, RuntimeError) as exc:
            raise ValueError(f"BalanceSelector state has an invalid generator state ({exc})") from None
        self.generator.set_state(generator_state)
