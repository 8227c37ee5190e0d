"""Fig. 1 / A5: what kind of instances (outliers, high/medium/low loss) fill each
decile of the sampling distribution.
"""

from __future__ import annotations

import numpy as np

from .plot_figure import _integer_locator, _new_figure, _save, _trace_title
from .plot_records import _supports_deciles, load_trace

#: Column order of :func:`decile_groups` and the stacking order of the bars.
GROUPS = ("outlier", "high loss", "medium loss", "low loss")
_GROUP_COLORS = ("#d62728", "#ff7f0e", "#1f77b4", "#2ca02c")


def loss_tiers(instance_loss) -> np.ndarray:
    """(m,) int tier of each loss: 0 high, 1 medium, 2 low, by tertiles of these losses.

    Thresholds are the 1/3 and 2/3 quantiles (linear interpolation) of the
    finite losses: ``low`` is ``loss <= q1/3``, ``high`` is ``loss > q2/3``,
    the rest ``medium``. Thresholds (not ranks) keep equal losses in one tier;
    with distinct losses the tiers have sizes within one of m/3. A non-finite
    loss counts as high (a diverged prediction is as hard as it gets).
    """
    loss = np.asarray(instance_loss, dtype=np.float64).ravel()
    tiers = np.zeros(loss.size, dtype=np.int64)  # non-finite -> high
    finite = np.isfinite(loss)
    if finite.any():
        low_cut, high_cut = np.quantile(loss[finite], [1 / 3, 2 / 3])
        tiers[finite] = np.where(loss[finite] <= low_cut, 2, np.where(loss[finite] > high_cut, 0, 1))
    return tiers


def decile_groups(probabilities, instance_loss, outlier) -> np.ndarray:
    """(10, 4) int counts of instance groups per sampling-probability decile.

    probabilities (n,), instance_loss (n,), outlier (n,) bool, all for one epoch.

    Rows: deciles of the instances sorted by *descending* probability (row 0
    holds the most likely instances; ties keep index order). The n instances
    are split as evenly as possible (``np.array_split``: the first n % 10
    deciles get one more), so n < 10 leaves the last deciles empty.

    Columns follow :data:`GROUPS`: ``outlier`` (the outlier flag, whatever
    the loss), then ``high`` / ``medium`` / ``low loss``, the tertiles of
    instance_loss computed over the *non-outlier* instances only
    (:func:`loss_tiers`), so the three loss tiers are equally sized among the
    instances they describe and outliers do not shift the cut points.
    Each row sums to the decile's size; the whole array sums to n.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64).ravel()
    loss = np.asarray(instance_loss, dtype=np.float64).ravel()
    outlier = np.asarray(outlier, dtype=bool).ravel()
    n = probabilities.size
    if loss.size != n or outlier.size != n:
        raise ValueError(f"shapes differ: probabilities {n}, instance_loss {loss.size}, outlier {outlier.size}")

    group = np.zeros(n, dtype=np.int64)  # column of each instance in GROUPS
    inliers = ~outlier
    group[inliers] = 1 + loss_tiers(loss[inliers])

    # NaN probabilities sort last (least likely) rather than anywhere.
    key = np.where(np.isnan(probabilities), -np.inf, probabilities)
    order = np.argsort(-key, kind="stable")
    counts = np.zeros((10, len(GROUPS)), dtype=np.int64)
    for row, members in enumerate(np.array_split(order, 10)):
        counts[row] = np.bincount(group[members], minlength=len(GROUPS))
    return counts


def default_snapshot_epochs(trace: dict) -> list[int]:
    """[first snapshot epoch with non-uniform probabilities (else the first), last one]."""
    snapshot_epochs = np.asarray(trace["epochs"]).ravel()
    probabilities = np.asarray(trace["probabilities"], dtype=np.float64)
    spread = np.nanmax(probabilities, axis=1) - np.nanmin(probabilities, axis=1)
    selective = np.flatnonzero(spread > 1e-12 * np.nanmax(probabilities, axis=1))
    first = snapshot_epochs[selective[0]] if selective.size else snapshot_epochs[0]
    return [int(first), int(snapshot_epochs[-1])]


def _nearest_snapshots(snapshot_epochs: np.ndarray, wanted) -> list[int]:
    """Row indices of the snapshots closest to the wanted epochs (duplicates dropped)."""
    rows = []
    for epoch in wanted:
        row = int(np.argmin(np.abs(snapshot_epochs.astype(np.float64) - float(epoch))))
        if row not in rows:
            rows.append(row)
    return rows


def plot_probability_deciles(trace_path, out_path, epochs=None, title=None) -> str:
    """Fig. 1 / A5: stacked bars of instance groups per sampling-probability decile.

    One panel per chosen snapshot: by default the first snapshot whose
    probabilities are not uniform (the first selection epoch after warm-up; deciles
    of a uniform draw would only reflect index order) and the last snapshot (one
    panel when they coincide). ``epochs`` picks
    snapshots by epoch number; an epoch that was not snapshotted maps to the
    nearest snapshot, and the panel title shows the snapshot actually used.

    Grouping (see :func:`decile_groups`): instances are sorted by descending
    sampling probability and cut into 10 deciles (decile 1 = most likely to
    be sampled); each bar stacks ``outlier`` (LocalOutlierFactor flag),
    then, for the non-outliers, ``high`` / ``medium`` / ``low loss`` tiers by
    tertiles of that epoch's per-instance loss. Returns ``out_path``.
    """
    trace = load_trace(trace_path)
    if not _supports_deciles(trace):
        raise ValueError(f"{trace_path}: the trace holds no sampling-probability snapshots")
    snapshot_epochs = np.asarray(trace["epochs"]).ravel()
    wanted = default_snapshot_epochs(trace) if epochs is None else list(np.atleast_1d(epochs))
    rows = _nearest_snapshots(snapshot_epochs, wanted)

    figure, axes = _new_figure(1, len(rows), 5.0 * len(rows), 4.0)
    positions = np.arange(1, 11)
    for ax, row in zip(axes[0], rows):
        counts = decile_groups(trace["probabilities"][row], trace["instance_loss"][row], trace["outlier"])
        bottom = np.zeros(10)
        for column, (name, color) in enumerate(zip(GROUPS, _GROUP_COLORS)):
            ax.bar(positions, counts[:, column], bottom=bottom, color=color, label=name, width=0.8)
            bottom += counts[:, column]
        ax.set_xticks(positions)
        ax.yaxis.set_major_locator(_integer_locator())  # counts: no fractional ticks when n is tiny
        ax.set(
            xlabel="decile (descending sampling probability)",
            ylabel="instances",
            title=f"epoch {int(snapshot_epochs[row])}",
        )
    # One legend outside the panels: the bars fill each panel to the top.
    figure.legend(*axes[0][0].get_legend_handles_labels(), loc="outside right upper", fontsize="small")
    figure.suptitle(_trace_title(trace_path, title))
    return _save(figure, out_path)
