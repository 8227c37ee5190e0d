"""DIHCL (Zhou et al. 2020, dynamic instance hardness), adapted to multi-label.

At each visit of instance i the instant feedback a_i = Σ_j a_ij is the summed per-label
loss change |ℓ_ij - ℓ_ij'| against its previous visit ("dloss", each term clipped at
``loss_clip`` as DIHCL's code does) or the number of labels whose 0/1 prediction flipped
("flip"); the dynamic instance hardness is the discounted moving average
r_i ← γ r_i + (1 - γ) a_i, updated only for visited instances (DIHCL's Eq. 1), γ = 0.95.
A first visit gives no feedback (nothing to compare with) and leaves r_i unchanged.

Which term γ weighs is ambiguous: the D2ACE paper lists "discount factor γ = 0.95"
(Appendix D.1) and writes the EMA it takes from Zhou et al. 2020 (its Eq. 4) with the
named coefficient on the newest value, f̄ ← λ2 f + (1 - λ2) f̄. ``gamma_on="feedback"``
reads γ that way, r_i ← γ a_i + (1 - γ) r_i (r then follows the last few visits: 95 %
of the newest); the default ``"history"`` keeps the earlier reading (r averages over
about 1/(1 - γ) = 20 visits, and starts at 0, so r of an instance seen m + 1 times is
(1 - γ^m) of its feedback's level). DIHCL's released code weighs the history as the
default does: it multiplies the accumulated feedback by ``ema_decay`` and adds the new
one, r ← γ r + a (the missing (1 - γ) is a scale that r / mean r removes).

Sampling is DIHCL's softmax Exp3 rule, not the quantiser: with the mean-normalised
utility u = r / mean(r), P ∝ exp(η_e u), the inverse temperature η_e starting at
``inverse_temperature`` (DIHCL's ``tmpt`` = 20) and multiplied by
``temperature_decay`` (0.8) each selection epoch, never below 1.

How the draws relate to DIHCL's (``draw="subset"``, the default): DIHCL draws one subset
of k·n distinct instances per episode with ``np.random.choice(p=P, replace=False)`` and
trains on it, k shrinking by ``subset_decay`` (DIHCL's ``dk`` = 0.1) each episode down to
``subset_min`` (its ``mk`` = 0.3). Here an episode is a selection epoch: epoch e draws
its subset S_e of ⌈k_e n⌉ instances by the same successive sampling from P, with
k_e = max(subset_min, (1 - subset_decay)^(e - warmup + 1)) (DIHCL shrinks k before its
first selection too), and the epoch's ⌈n/b⌉ batches are drawn uniformly from S_e, so
every instance of the subset is equally likely, as when DIHCL walks it, and an epoch
keeps the shared length. The subset comes from the selector's own generator, seeded
per epoch from ``seed``, so it is reproducible and resumes exactly.

``draw="batch"`` is the earlier reading: every batch is drawn from P itself. At DIHCL's
η = 20 that P is so peaked that the epoch's batches keep drawing the same few hundred
instances (the subset draw cannot: it must take ⌈k n⌉ distinct ones).

The learning-rate normalisation of DIHCL's code (feedback divided by the learning-rate
"pace" since the last visit) is omitted: the sampler does not see the optimiser.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from ..drawing import WeightedDraw
from ..row_shard import check_shard
from ..validation import check_labels, check_seed, seed64
from ._common import check_choice, check_rule, is_int, is_real, load_tensor_state, make_config, tensor_state
from .base import SHUFFLE, WEIGHTED, Selector

# exp(-700) is still a normal float64: the floor keeps every P strictly positive.
_LOGIT_FLOOR = -700.0
# seed64's streams s >= 0 serve the sampler's epochs and -2 Balance's masks: the subset
# generators hang off a stream of their own, so subsets and batches stay independent.
_SUBSET_STREAM = -3


@dataclass(frozen=True)
class DIHCLConfig:
    # fields added after states were saved without them (those runs had the default)
    LATER_FIELDS: ClassVar[tuple[str, ...]] = ("gamma_on",)

    num_epochs: int = 100
    warmup_epochs: int = 10
    gamma: float = 0.95
    gamma_on: str = "history"
    feedback: str = "dloss"
    loss_clip: float = 10.0
    flip_threshold: float = 0.5
    inverse_temperature: float = 20.0
    temperature_decay: float = 0.8
    draw: str = "subset"
    subset_decay: float = 0.1
    subset_min: float = 0.3

    def __post_init__(self) -> None:
        own = "DIHCLConfig"
        check_rule(
            own, "num_epochs", self.num_epochs, is_int(self.num_epochs) and self.num_epochs >= 1, "an integer >= 1"
        )
        check_rule(
            own,
            "warmup_epochs",
            self.warmup_epochs,
            is_int(self.warmup_epochs) and self.warmup_epochs >= 0,
            "an integer >= 0",
        )
        check_choice(own, "gamma_on", self.gamma_on, ("history", "feedback"))
        # γ may not freeze r: at the history's γ = 1 (or the feedback's γ = 0) r stays at 0
        if self.gamma_on == "history":
            check_rule(own, "gamma", self.gamma, is_real(self.gamma) and 0.0 <= self.gamma < 1.0, "in [0, 1)")
        else:
            ok = is_real(self.gamma) and 0.0 < self.gamma <= 1.0
            check_rule(own, "gamma", self.gamma, ok, 'in (0, 1] with gamma_on="feedback"')
        check_choice(own, "feedback", self.feedback, ("dloss", "flip"))
        check_rule(
            own, "loss_clip", self.loss_clip, is_real(self.loss_clip) and self.loss_clip > 0.0, "a finite number > 0"
        )
        check_rule(
            own,
            "flip_threshold",
            self.flip_threshold,
            is_real(self.flip_threshold) and 0.0 < self.flip_threshold < 1.0,
            "in (0, 1)",
        )
        check_rule(
            own,
            "inverse_temperature",
            self.inverse_temperature,
            is_real(self.inverse_temperature) and self.inverse_temperature > 0.0,
            "a finite number > 0",
        )
        check_rule(
            own,
            "temperature_decay",
            self.temperature_decay,
            is_real(self.temperature_decay) and 0.0 < self.temperature_decay <= 1.0,
            "in (0, 1]",
        )
        check_choice(own, "draw", self.draw, ("subset", "batch"))
        check_rule(
            own,
            "subset_decay",
            self.subset_decay,
            is_real(self.subset_decay) and 0.0 <= self.subset_decay < 1.0,
            "in [0, 1)",
        )
        check_rule(
            own, "subset_min", self.subset_min, is_real(self.subset_min) and 0.0 < self.subset_min <= 1.0, "in (0, 1]"
        )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def instant_feedback(
    new: torch.Tensor, previous: torch.Tensor, feedback: str, loss_clip: float, threshold: float
) -> torch.Tensor:
    """a_i summed over labels. new, previous: (b, q) losses ("dloss") or probabilities
    ("flip") -> (b,) float64."""
    if feedback == "dloss":
        # two equal losses change by 0, two infinite ones (a prediction saturated and
        # wrong at both visits) included: inf - inf is NaN, and one NaN made r NaN for good
        change = torch.where(new == previous, torch.zeros_like(new), (new - previous).abs()).clamp(max=loss_clip)
    else:
        change = ((new > threshold) != (previous > threshold)).to(new.dtype)
    return change.to(torch.float64).sum(1)


def exp3_probabilities(hardness: torch.Tensor, inverse_temperature: float) -> torch.Tensor:
    """P ∝ exp(η r / mean(r)). hardness (n,) float64 >= 0 -> (n,); uniform when all r = 0."""
    mean = hardness.mean()
    if not bool(torch.isfinite(mean)) or float(mean) <= 0.0:
        return torch.full_like(hardness, 1.0 / hardness.numel())
    logits = inverse_temperature * (hardness / mean)
    logits = (logits - logits.max()).clamp(min=_LOGIT_FLOOR)
    weights = torch.exp(logits)
    return weights / weights.sum()


def subset_probabilities(probabilities: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """Uniform probabilities over ``size`` distinct instances drawn from ``probabilities``
    (n,) by successive sampling without replacement; every other instance gets the
    floor weight exp(-700) relative to them, so P stays strictly positive. -> (n,) float64."""
    chosen = WeightedDraw(probabilities).batch(size, generator)  # draws on the CPU, whatever the device
    weights = torch.full((probabilities.numel(),), math.exp(_LOGIT_FLOOR), dtype=torch.float64)
    weights[chosen] = 1.0
    return (weights / weights.sum()).to(probabilities.device)


class DIHCLSelector(Selector):
    """labels (n, q) 0/1 (only the shape is used); ``config`` or keyword options of
    :class:`DIHCLConfig`; seed: of the per-epoch subset draws (``draw="subset"``);
    device: where the state lives (default: labels'); shard: this rank's rows of a
    row-sharded state (None: every row).

    State: previous (n, q) float32 (the last visit's losses or probabilities), seen (n,)
    bool, hardness (n,) float64 (r). Linear in nq per epoch. Sharded, the n values of r
    are gathered each selection epoch, and every rank draws from them as one process does.
    """

    TENSORS = ("previous", "seen", "hardness")
    display_name = "DIHCL"
    config_class = DIHCLConfig
    takes_seed = True
    uses_neighbors = False
    schedule_fields = ("num_epochs", "warmup_epochs")
    color = "#009e73"
    display_rank = 3

    def __init__(
        self,
        labels: torch.Tensor,
        config: DIHCLConfig | None = None,
        *,
        seed: int = 0,
        device=None,
        shard=None,
        **options,
    ) -> None:
        labels = check_labels(labels)
        self.config = make_config(DIHCLConfig, config, options)
        self.seed = check_seed(seed, "seed")
        self.n, self.q = labels.shape
        self.shard = check_shard(shard, self.n)
        self.device = torch.device(device) if device is not None else labels.device
        self.labels = self.own_rows(labels.to(self.device)) != 0
        self.needs_loss = self.config.feedback == "dloss"
        rows = self.labels.shape[0]
        self.previous = torch.zeros(rows, self.q, dtype=torch.float32, device=self.device)
        self.seen = torch.zeros(rows, dtype=torch.bool, device=self.device)
        self.hardness = torch.zeros(rows, dtype=torch.float64, device=self.device)

    def batch_mode(self, epoch: int) -> str:
        return SHUFFLE if epoch < self.config.warmup_epochs else WEIGHTED

    def inverse_temperature(self, epoch: int) -> float:
        cfg = self.config
        steps = max(0, epoch - cfg.warmup_epochs)
        return max(1.0, cfg.inverse_temperature * cfg.temperature_decay**steps)

    def subset_size(self, epoch: int) -> int:
        """⌈k_e n⌉, k_e = max(subset_min, (1 - subset_decay)^(epoch - warmup + 1))."""
        cfg = self.config
        episodes = max(0, epoch - cfg.warmup_epochs + 1)
        fraction = max(cfg.subset_min, (1.0 - cfg.subset_decay) ** episodes)
        # the slack keeps float error (0.9 * 10 = 9.000000000000002) from adding an instance
        return min(self.n, max(1, math.ceil(fraction * self.n - 1e-9)))

    def subset_generator(self, epoch: int) -> torch.Generator:
        return torch.Generator().manual_seed(seed64(seed64(self.seed, _SUBSET_STREAM), epoch))

    def record(self, indices, probs, losses, epoch) -> None:
        cfg = self.config
        new = losses if cfg.feedback == "dloss" else probs
        feedback = instant_feedback(new, self.previous[indices], cfg.feedback, cfg.loss_clip, cfg.flip_threshold)
        old = self.hardness[indices]
        keep = cfg.gamma if cfg.gamma_on == "history" else 1.0 - cfg.gamma  # the history's share
        updated = keep * old + (1.0 - keep) * feedback
        self.hardness[indices] = torch.where(self.seen[indices], updated, old)
        self.previous[indices] = new.to(torch.float32)
        self.seen[indices] = True

    def exp3(self, epoch: int) -> torch.Tensor:
        """DIHCL's Exp3 probabilities (n,) float64 at ``epoch``'s inverse temperature."""
        return exp3_probabilities(self.all_rows(self.hardness), self.inverse_temperature(epoch))

    def probabilities(self, epoch: int) -> torch.Tensor:
        """The epoch's batch distribution (n,): Exp3 itself (``draw="batch"``) or uniform
        over the epoch's subset drawn from it (``draw="subset"``)."""
        exp3 = self.exp3(epoch)
        if self.config.draw == "batch":
            return exp3
        return subset_probabilities(exp3, self.subset_size(epoch), self.subset_generator(epoch))

    def state_dict(self) -> dict:
        return {**tensor_state(self, self.TENSORS), "seed": self.seed}

    def load_state_dict(self, state) -> None:
        load_tensor_state(self, state, self.TENSORS, {"seed": self.seed})
