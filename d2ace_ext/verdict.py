"""Does selection pay in your own training? Compute saved at equal accuracy, with intervals.

The harness answers this for its grids (``d2ace compare``'s time-to-target tables); this
is the same measure for curves from any training loop: run uniform batches (Random) at
full budget and the selector (under a budget or not) on the same seeds or folds, record
one validation metric per epoch, and::

    verdict = d2ace_ext.compute_saved(random_curves, selector_curves, selector_cost=0.5)
    print(verdict)   # "pays: ..." or "does not pay here: ..." in one paragraph

Each pair's target is the uniform run's best value minus ``tolerance``; each run's time is
the sample passes through the first epoch whose value reaches it (``harness.time_to_target``,
the same code path as the grids). A selector run that never reaches it counts as not
reaching, never as its last epoch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

#: A verdict needs an interval, so at least this many pairs (seeds or folds).
MIN_PAIRS = 3


@dataclass(frozen=True)
class Verdict:
    """Compute saved by a selector against uniform batches over paired runs.

    saved, low, high: median share of the uniform runs' sample passes the selector does
    without to reach the target, with its 95 % bootstrap interval (-inf: more than half
    of the pairs, or of a resample, never reach it); reached / pairs: selector runs that
    reach the target; end, end_low, end_high: mean paired difference of the best value
    (selector - uniform, in the metric's direction: > 0 is better) with its interval
    (-inf when a selector run has no finite value at all).
    """

    saved: float
    low: float
    high: float
    reached: int
    pairs: int
    end: float
    end_low: float
    end_high: float
    tolerance: float

    @property
    def pays(self) -> bool:
        """True only when more than half of the pairs reach the target and the whole
        interval of compute saved lies above 0."""
        return self.pairs >= MIN_PAIRS and 2 * self.reached > self.pairs and self.low > 0

    def __str__(self) -> str:
        target = f"uniform batches' best − {self.tolerance:g}"
        end = _end_words(self)
        if self.pairs < MIN_PAIRS:
            return (
                f"no verdict: {self.pairs} pair(s) of runs give no interval; run uniform batches and the "
                f"selector on at least {MIN_PAIRS} seeds or folds."
            )
        if 2 * self.reached <= self.pairs:
            return f"does not pay here: only {self.reached} of {self.pairs} selector runs reach {target} at all; {end}."
        saving = f"{_pct(self.saved)} [{_pct(self.low)}, {_pct(self.high)}]"
        if self.pays:
            return (
                f"pays: the selector reaches {target} with {saving} fewer sample passes "
                f"({self.reached} of {self.pairs} runs reach it); {end}."
            )
        return (
            f"does not pay here: compute saved to {target} is {saving}, an interval that includes no "
            f"saving ({self.reached} of {self.pairs} runs reach it); {end}."
        )


def compute_saved(
    uniform_curves: Sequence[Sequence[float]],
    selector_curves: Sequence[Sequence[float]],
    *,
    tolerance: float = 0.01,
    selector_cost: float | Sequence[float] = 1.0,
    uniform_cost: float | Sequence[float] = 1.0,
    higher_is_better: bool = True,
) -> Verdict:
    """Compute saved by a selector against uniform batches at equal validation quality.

    uniform_curves, selector_curves: m runs each, paired by position (same seed or fold),
      each a sequence (k,) of one validation metric per epoch (NaN for an epoch without
      a value); the uniform runs at full budget.
    tolerance: the target is each uniform run's best minus this (in the metric's units).
    selector_cost, uniform_cost: sample passes of one epoch, in full passes: a float for
      every epoch (0.5 under ``budget=0.5``) or a sequence (k,) per epoch (an annealed
      budget ends on full passes).
    higher_is_better: False for a loss (the curves are negated).

    Returns a :class:`Verdict`; ``str(verdict)`` says in one sentence whether selection
    pays. ValueError naming the argument for mismatched, empty or non-finite input.
    """
    from .harness.paired import bootstrap_effect
    from .harness.time_to_target import pair_time, summarise_pairs

    if not (isinstance(tolerance, (int, float)) and math.isfinite(tolerance) and tolerance >= 0):
        raise ValueError(f"tolerance must be a finite number >= 0, got {tolerance!r}")
    uniform = _curves("uniform_curves", uniform_curves, higher_is_better)
    selected = _curves("selector_curves", selector_curves, higher_is_better)
    if len(uniform) != len(selected):
        raise ValueError(
            f"uniform_curves and selector_curves must pair run for run: got {len(uniform)} and {len(selected)} runs"
        )
    pairs, ends = [], []
    for run, (u, s) in enumerate(zip(uniform, selected)):
        if not np.isfinite(u).any():
            raise ValueError(f"uniform_curves[{run}] has no finite value: no target to reach")
        u_record = _record(u, _passes("uniform_cost", uniform_cost, u.size))
        s_record = _record(s, _passes("selector_cost", selector_cost, s.size))
        pairs.append(pair_time(s_record, u_record, float(tolerance)))
        ends.append((np.nanmax(s) if np.isfinite(s).any() else -math.inf) - np.nanmax(u))
    summary = summarise_pairs(pairs)["saved"]["samples"]
    effect = bootstrap_effect(np.asarray(ends, dtype=np.float64))
    return Verdict(
        saved=summary["median"],
        low=summary["low"],
        high=summary["high"],
        reached=sum(p["reached"] for p in pairs),
        pairs=len(pairs),
        end=effect["mean"],
        end_low=effect["low"],
        end_high=effect["high"],
        tolerance=float(tolerance),
    )


def _curves(name: str, curves, higher_is_better: bool) -> list[np.ndarray]:
    """Each run as float64 (k,), negated for a lower-is-better metric."""
    if isinstance(curves, (str, bytes)) or not hasattr(curves, "__len__") or len(curves) == 0:
        raise ValueError(f"{name} must be a non-empty list of per-epoch curves, one per run")
    out = []
    for run, curve in enumerate(curves):
        if isinstance(curve, (str, bytes)) or not hasattr(curve, "__iter__"):  # one curve where a list goes
            raise ValueError(
                f"{name}[{run}] must be a sequence of per-epoch values, got {type(curve).__name__} {curve!r}; "
                f"{name} is a list of curves, one per run, even for a single run"
            )
        try:
            values = np.asarray([np.nan if v is None else v for v in curve], dtype=np.float64)
        except (TypeError, ValueError) as error:
            raise ValueError(
                f"{name}[{run}] must hold numbers (NaN or None for an epoch without one): {error}"
            ) from None
        if values.ndim != 1 or values.size == 0:
            raise ValueError(
                f"{name}[{run}] must be a non-empty sequence of per-epoch values, got shape {values.shape}"
            )
        if np.isinf(values).any():
            raise ValueError(f"{name}[{run}] holds an infinite value; use NaN for an epoch without one")
        out.append(values if higher_is_better else -values)
    return out


def _passes(name: str, cost, k: int) -> list[float]:
    """Cumulative sample passes (k,) through each epoch, in full passes."""
    per_epoch = np.full(k, cost, dtype=np.float64) if np.ndim(cost) == 0 else np.asarray(cost, dtype=np.float64)
    if per_epoch.shape != (k,):
        raise ValueError(f"{name} must be one number or one per epoch ({k} values), got {per_epoch.size}")
    if not (np.isfinite(per_epoch).all() and (per_epoch > 0).all()):
        raise ValueError(f"{name} must be positive and finite (full passes per epoch), got {cost!r}")
    return np.cumsum(per_epoch).tolist()


def _record(curve: np.ndarray, passes: list[float]) -> dict:
    """A curve in the form of a results record, as ``time_to_target.pair_time`` reads it."""
    return {"history": {"val_macro_auc": curve.tolist(), "samples_seen": passes}}


def _pct(share: float) -> str:
    if math.isnan(share):
        return "n/a"
    if math.isinf(share):
        return "−∞" if share < 0 else "+∞"
    return f"{share * 100:+.0f} %"


def _end_words(v: Verdict) -> str:
    if v.end == -math.inf:  # a selector run without any finite value (diverged): no interval can say "level"
        return "it ends lower: at least one selector run has no finite validation value at all (−∞)"
    if math.isnan(v.end_low):
        return f"it ends {v.end:+.4f} against uniform batches' best"
    interval = f"{v.end:+.4f} [{v.end_low:+.4f}, {v.end_high:+.4f}]"
    if v.end_low > 0:
        return f"it ends higher, {interval}"
    if v.end_high < 0:
        return f"it ends lower, {interval}"
    return f"it ends level, {interval}"
