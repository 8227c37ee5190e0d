"""Paired statistics for the comparison report: the effect of D2ACE against a baseline over
the (data set, repeat, fold) cells both ran, with a bootstrap confidence interval, and the
convergence check (how many runs found their best validation epoch at the very end).

A cell is one fold of one repeat of one data set: both selectors trained on the same
rows from the same initial weights, so their difference there is a paired observation.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import wilcoxon


def paired_differences(target: dict, baseline: dict, higher: bool) -> np.ndarray:
    """{cell: value} of D2ACE and of a baseline -> differences (m,) over the cells both hold
    with finite values, signed so that a positive difference means D2ACE did better."""
    cells = sorted(set(target) & set(baseline), key=str)
    diffs = np.array([target[c] - baseline[c] for c in cells], dtype=np.float64)
    diffs = diffs[np.isfinite(diffs)]
    return diffs if higher else -diffs


def wilcoxon_p(diffs) -> float:
    """Two-sided Wilcoxon signed-rank p of paired differences (m,) (non-finite ones
    dropped): 1.0 when every difference is 0, NaN with fewer than 2."""
    diffs = np.asarray(diffs, dtype=np.float64)
    diffs = diffs[np.isfinite(diffs)]
    if diffs.size < 2:
        return float("nan")
    if np.all(diffs == 0):
        return 1.0
    return float(wilcoxon(diffs).pvalue)


def bootstrap_interval(
    values: np.ndarray, statistic=np.mean, resamples: int = 10_000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval (low, high) of ``statistic`` over ``values`` (m,):
    the cells resampled with replacement ``resamples`` times by a fixed-seed generator,
    so the report is reproducible. ``statistic(array (resamples, m), axis=1)`` -> (resamples,),
    e.g. ``np.mean`` or ``np.median``. Fewer than two cells: (NaN, NaN).

    Values may be +inf (a time-to-target pair that never reached the target). Linear
    interpolation towards an infinite resample statistic is undefined (inf - inf), so
    then the bounds are the order statistics just outside the percentile positions
    (NumPy's "lower" and "higher" methods): the interval is, if anything, wider."""
    values = np.asarray(values, dtype=np.float64)
    n = values.size
    if n < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    stats = statistic(values[rng.integers(0, n, size=(resamples, n))], axis=1)
    tail = (1.0 - level) / 2.0
    if np.isfinite(stats).all():
        low, high = np.quantile(stats, [tail, 1.0 - tail])
    else:
        low, high = np.quantile(stats, tail, method="lower"), np.quantile(stats, 1.0 - tail, method="higher")
    return float(low), float(high)


def bootstrap_effect(diffs: np.ndarray, resamples: int = 10_000, level: float = 0.95, seed: int = 0) -> dict:
    """Mean paired difference with a percentile bootstrap interval (``bootstrap_interval``),
    the standardised effect d_z = mean / sd of the differences, and the number of cells.
    Fewer than two cells: NaN throughout (no spread to resample)."""
    diffs = np.asarray(diffs, dtype=np.float64)
    n = diffs.size
    if n < 2:
        nan = float("nan")
        return {"mean": float(diffs.mean()) if n else nan, "low": nan, "high": nan, "dz": nan, "cells": int(n)}
    low, high = bootstrap_interval(diffs, np.mean, resamples, level, seed)
    with np.errstate(invalid="ignore"):  # an infinite difference (a run without any value): sd NaN, no d_z
        sd = diffs.std(ddof=1)
    return {
        "mean": float(diffs.mean()),
        "low": low,
        "high": high,
        "dz": float(diffs.mean() / sd) if sd > 0 else float("nan"),
        "cells": int(n),
    }


def interval_text(effect: dict) -> str:
    """'+0.0032 [-0.0006, +0.0065]': a ``bootstrap_effect``'s mean and 95 % interval, the
    mean alone where there is no interval (fewer than two cells)."""
    text = f"{effect['mean']:+.4f}"
    if math.isfinite(effect["low"]):
        text += f" [{effect['low']:+.4f}, {effect['high']:+.4f}]"
    return text


def best_epoch(record: dict) -> int:
    """The epoch of the best validation Macro-AUC in a record's history (first of ties),
    whatever epoch was tested ("last" model selection records the last one as best)."""
    auc = np.asarray(record.get("history", {}).get("val_macro_auc", []), dtype=np.float64)
    if auc.size == 0 or not np.isfinite(auc).any():
        return int(record.get("best_epoch", -1))
    return int(np.nanargmax(auc))


def late_best(record: dict, fraction: float = 0.05) -> bool:
    """True when the run's best validation epoch lies in its last ``fraction`` of epochs
    (epochs 95-99 of 100): the run was likely still improving when it stopped."""
    epochs = len(record.get("history", {}).get("val_macro_auc", []))
    if epochs == 0:
        return False
    return best_epoch(record) >= epochs - max(1, math.ceil(fraction * epochs))


def convergence(records: list[dict], datasets, models, selectors, fraction: float = 0.05) -> dict:
    """{model: {dataset: {selector: {"late": runs with a late best epoch, "runs": runs}}}};
    "runs" counts the runs with a validation curve: one without (a record that kept no
    history) cannot say where its best epoch was, so it is not counted as converged."""
    out: dict = {m: {d: {s: {"late": 0, "runs": 0} for s in selectors} for d in datasets} for m in models}
    for record in records:
        key = record["key"]
        cell = out.get(key["model"], {}).get(key["dataset"], {}).get(key["selector"])
        if cell is not None and (record.get("history") or {}).get("val_macro_auc"):
            cell["runs"] += 1
            cell["late"] += int(late_best(record, fraction))
    return out
