"""The epoch budget: how many samples each epoch may train on.

A budget ρ in (0, 1] makes every epoch yield ⌈ρ n⌉ samples, ⌈ρ n / b⌉ batches (the last
may be short), instead of a full pass of n. Annealing δ in [0, 1] runs the last ⌈δ T⌉ of
the T epochs as full passes again (InfoBatch's schedule: prune early, finish on all the data).
Which epochs those are is one rule, :func:`full_pass_epoch`, shared by the sampler's
budget and InfoBatch's own annealing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .validation import is_int, is_real

# Slack for products such as 0.3 * 10 = 3.0000000000000004, which must not round up to 4.
_SLACK = 1e-9


def full_pass_epochs(num_epochs: int, anneal: float) -> int:
    """How many of ``num_epochs`` epochs are the annealed last fraction ``anneal``:
    ⌈anneal · num_epochs⌉ (13 of 100 at 0.125, 25 of 200), what InfoBatch's code runs."""
    return min(num_epochs, math.ceil(anneal * num_epochs - _SLACK))


def full_pass_epoch(epoch: int, num_epochs: int, anneal: float) -> bool:
    """Whether epoch ``epoch`` (0-based) lies in the last ``anneal`` fraction of a
    ``num_epochs``-epoch run (epochs past the run's end count as annealed too)."""
    return anneal > 0 and epoch >= num_epochs - full_pass_epochs(num_epochs, anneal)


def _check(name: str, value, ok: bool, rule: str) -> None:
    if isinstance(value, bool) or not ok:
        raise ValueError(f"{name} must be {rule}, got {value!r}")


@dataclass(frozen=True)
class EpochBudget:
    """fraction: ρ in (0, 1]; anneal: δ in [0, 1]; num_epochs: the run's length, which
    an anneal > 0 needs (None otherwise allowed)."""

    fraction: float = 1.0
    anneal: float = 0.0
    num_epochs: int | None = None

    def __post_init__(self) -> None:
        _check(
            "budget",
            self.fraction,
            is_real(self.fraction) and 0.0 < self.fraction <= 1.0,
            "a number in (0, 1] (the fraction of a full pass each epoch trains on)",
        )
        _check(
            "anneal",
            self.anneal,
            is_real(self.anneal) and 0.0 <= self.anneal <= 1.0,
            "a number in [0, 1] (the fraction of the last epochs run as full passes)",
        )
        if self.num_epochs is not None:
            _check(
                "run_epochs",
                self.num_epochs,
                is_int(self.num_epochs) and self.num_epochs >= 1,
                "None or an integer >= 1",
            )
        if self.anneal > 0 and self.fraction < 1.0 and self.num_epochs is None:
            raise ValueError(
                f"anneal={self.anneal} needs the run's length in epochs to know which epochs are its "
                "last ones: pass run_epochs= (the selector given does not know it)"
            )

    def epoch_fraction(self, epoch: int) -> float:
        """ρ, or 1 in an annealed epoch."""
        if self.fraction >= 1.0 or (self.anneal > 0 and full_pass_epoch(epoch, self.num_epochs, self.anneal)):
            return 1.0
        return float(self.fraction)

    def samples(self, epoch: int, n: int) -> int:
        """The samples epoch ``epoch`` may train on out of n: min(n, max(1, ⌈ρ n⌉))."""
        fraction = self.epoch_fraction(epoch)
        if fraction >= 1.0:
            return n
        return min(n, max(1, math.ceil(fraction * n - _SLACK)))

    def batches(self, epoch: int, n: int, batch_size: int) -> int:
        """⌈samples / b⌉ batches of epoch ``epoch``."""
        return math.ceil(self.samples(epoch, n) / batch_size)

    def planned_batches(self, n: int, batch_size: int, num_epochs: int | None = None) -> int:
        """All batches of a run of ``num_epochs`` (default: the budget's) epochs."""
        epochs = self.num_epochs if num_epochs is None else num_epochs
        if epochs is None:
            raise ValueError("planned_batches needs num_epochs: the budget was built without the run's length")
        return sum(self.batches(epoch, n, batch_size) for epoch in range(epochs))

    def to_dict(self) -> dict:
        """The schedule in canonical form (what a saved sampler state is checked against):
        anneal and num_epochs only where they change an epoch."""
        if self.fraction >= 1.0:
            return {"fraction": 1.0, "anneal": 0.0, "num_epochs": None}
        anneal = float(self.anneal)
        return {
            "fraction": float(self.fraction),
            "anneal": anneal,
            "num_epochs": self.num_epochs if anneal > 0 else None,
        }
