"""Label noise for robustness experiments, spelled ``KIND:RATE``.

* ``missing:r``: every positive becomes 0 with probability r (missing labels).
* ``extra:r``: every instance with k positives gains m = min(⌊r k + ½⌋, q − k) irrelevant
  labels, drawn uniformly without replacement among its negatives (the partial
  multi-label protocol: candidate sets with about r k false positives). Halves round up.
* ``flip:r``: class-conditional flips that keep each label's expected count: for a label
  with P positives and N negatives in the matrix, a positive becomes 0 with probability
  r and a negative becomes 1 with probability ρ = r P / N, so the expected count stays
  P (1 − r) + N ρ = P. Where r P > N (a label positive in most rows) ρ is capped at 1 and
  the expected count falls below P; a column with no negative flips only positives.

Rates: ``missing`` and ``flip`` in [0, 1], ``extra`` any finite rate >= 0. Every function
takes a 0/1 label matrix (m, q) and a NumPy ``Generator`` and returns a new (m, q)
matrix of the same dtype; the input is never changed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

KINDS = ("missing", "extra", "flip")
#: Mixed into the noise seed so the noise stream shares no draws with fold cuts or models.
NOISE_STREAM = 0x4E4F495345


def drop_positives(labels: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
    """``missing:rate``: each positive of labels (m, q) becomes 0 with probability ``rate``."""
    positive = labels != 0
    dropped = positive & (rng.random(labels.shape) < rate)
    return np.where(dropped, 0, labels).astype(labels.dtype)


def extra_counts(labels: np.ndarray, rate: float) -> np.ndarray:
    """How many irrelevant labels ``extra:rate`` adds to each row of labels (m, q): (m,) int,
    min(⌊rate k + ½⌋, q − k) for a row with k positives (halves round up; the 1e-9 keeps
    products such as 0.35 × 10 = 3.4999999999999996 from rounding down)."""
    k = (labels != 0).sum(1)
    wanted = np.floor(rate * k + 0.5 + 1e-9).astype(np.int64)
    return np.minimum(wanted, labels.shape[1] - k)


def add_irrelevant(labels: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
    """``extra:rate``: each row of labels (m, q) gains exactly ``extra_counts`` of its negatives,
    chosen uniformly at random without replacement; its positives are kept."""
    count = extra_counts(labels, rate)
    keys = rng.random(labels.shape)
    keys[labels != 0] = np.inf  # positives are never chosen
    order = np.argsort(keys, axis=1, kind="stable")  # each row's negatives in random order first
    chosen = np.arange(labels.shape[1])[None, :] < count[:, None]
    added = np.zeros(labels.shape, dtype=bool)
    np.put_along_axis(added, order, chosen, axis=1)
    return np.where(added, 1, labels).astype(labels.dtype)


def flip_rates(labels: np.ndarray, rate: float) -> np.ndarray:
    """ρ (q,): the probability that a negative of each label of labels (m, q) becomes 1 under
    ``flip:rate``, r P / N capped at 1 (0 where the label has no negative)."""
    positives = (labels != 0).sum(0).astype(np.float64)
    negatives = labels.shape[0] - positives
    return np.where(negatives > 0, np.minimum(1.0, rate * positives / np.maximum(negatives, 1.0)), 0.0)


def flip_class_conditional(labels: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
    """``flip:rate``: positives of labels (m, q) become 0 with probability ``rate``, negatives
    of label j become 1 with probability ``flip_rates(labels, rate)[j]``."""
    positive = labels != 0
    chance = np.where(positive, rate, flip_rates(labels, rate)[None, :])
    flipped = rng.random(labels.shape) < chance
    return np.where(flipped ^ positive, 1, 0).astype(labels.dtype)


_APPLY = {"missing": drop_positives, "extra": add_irrelevant, "flip": flip_class_conditional}


@dataclass(frozen=True)
class LabelNoise:
    """One noise setting: ``kind`` in :data:`KINDS` and its ``rate``."""

    kind: str
    rate: float

    @classmethod
    def parse(cls, text, name: str = "label_noise") -> "LabelNoise":
        """From ``KIND:RATE`` (e.g. ``"missing:0.2"``); ``name`` names the setting in errors."""
        parts = text.split(":") if isinstance(text, str) else []
        if len(parts) != 2 or parts[0].strip() not in KINDS:
            raise ValueError(
                f"{name} must be KIND:RATE with KIND one of {', '.join(KINDS)} (e.g. missing:0.2), got {text!r}"
            )
        kind = parts[0].strip()
        try:
            rate = float(parts[1])
        except ValueError:
            raise ValueError(f"{name} {text!r}: the rate must be a number, e.g. {kind}:0.2") from None
        if kind == "extra":
            ok, rule = math.isfinite(rate) and rate >= 0.0, "a finite number >= 0"
        else:
            ok, rule = 0.0 <= rate <= 1.0, "a number in [0, 1]"
        if not ok:
            raise ValueError(f"{name} {text!r}: the rate of {kind} must be {rule}")
        return cls(kind, rate)

    def spec(self) -> str:
        """The canonical ``KIND:RATE`` text (``missing:.2`` and ``missing:0.20`` both give
        ``missing:0.2``), so one setting has one protocol digest."""
        return f"{self.kind}:{self.rate!r}"

    def apply(self, labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Noisy copy (m, q) of 0/1 labels (m, q)."""
        return _APPLY[self.kind](labels, self.rate, rng)


def part_generators(seed: int, repeat: int, fold: int, parts: int = 2) -> list[np.random.Generator]:
    """Independent generators for the noisy parts of one fold (training, validation), seeded
    from (seed, repeat, fold) only, so every selector of a comparison sees the same labels."""
    root = np.random.SeedSequence([NOISE_STREAM, seed, repeat, fold])
    return [np.random.default_rng(child) for child in root.spawn(parts)]
